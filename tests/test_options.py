"""core.options: one options dataclass gives validation, conversion, YAML and the CLI flags."""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from core.errors import TuneloopError
from core.options import Options, add_arguments, from_args, option


@dataclass
class Sample(Options):
    what = "sample options"
    threshold: float = option(0.6, "similarity that counts", min=0.0, max=1.0)
    fix: str = option("move", "what to do with a leak", choices=("move", "drop", "none"))
    seed: int = option(0, "random seed")
    group: str | None = option(None, "field that keeps records together")
    strict: bool = option(True, "refuse doubtful records")
    skip: tuple[str, ...] = option((), "checks to switch off", choices=("empty", "short"))
    allow: list[str] = option([], "texts that are never flagged")
    limits: dict[str, float] = option({}, "per-type limits", flag="limit")


def parse(*argv: str) -> Sample:
    parser = argparse.ArgumentParser()
    add_arguments(parser, Sample)
    return from_args(Sample, parser.parse_args(list(argv)))


def test_flags_come_from_the_fields():
    parser = argparse.ArgumentParser()
    add_arguments(parser, Sample)
    text = parser.format_help()
    assert "--fix {move,drop,none}" in text and "--strict, --no-strict" in text
    assert "--threshold THRESHOLD" in text and "similarity that counts (default: 0.6)" in text
    assert "--limit [KEY=VALUE ...]" in text and "--options FILE" in text
    assert parse() == Sample()
    got = parse("--threshold", "0.8", "--fix", "drop", "--no-strict", "--skip", "empty", "short",
                "--allow", "ACME", "re:SKU-\\d+", "--limit", "PERSON=0.7", "--group", "customer")
    assert got == Sample(threshold=0.8, fix="drop", strict=False, skip=("empty", "short"),
                         allow=["ACME", "re:SKU-\\d+"], limits={"PERSON": 0.7}, group="customer")


def test_bad_values_name_their_key():
    with pytest.raises(TuneloopError, match=r"threshold: 1\.5 is too large; it must be at most 1\.0"):
        parse("--threshold", "1.5")
    with pytest.raises(TuneloopError, match=r"threshold: 'high' is not a valid number"):
        parse("--threshold", "high")
    with pytest.raises(TuneloopError, match=r"seed: '1\.5' is not a valid whole number"):
        Sample.from_dict({"seed": "1.5"})
    with pytest.raises(SystemExit):
        parse("--fix", "burn")
    problems = Sample(fix="burn", skip=("long",)).problems()
    assert problems == ["fix: 'burn' is not one of move, drop, none", "skip: 'long' is not one of empty, short"]


def test_unknown_keys_are_named():
    with pytest.raises(TuneloopError, match="threshhold: not a key of the sample options") as err:
        Sample.from_dict({"threshhold": 0.5, "seed": 3})
    assert "the keys are threshold, fix" in str(err.value)
    with pytest.raises(TuneloopError, match="did you mean threshold"):
        Sample.from_dict({"Threshold": 0.5})


def test_yaml_round_trip_and_flags_win_over_the_file(tmp_path):
    options = Sample(threshold=0.7, skip=("short",), limits={"PERSON": 0.5}, group="customer")
    path = options.save(tmp_path / "sample.yaml")
    assert Sample.load(path) == options
    assert "skip:\n- short" in path.read_text()
    got = parse("--options", str(path), "--seed", "9")
    assert got == Sample(threshold=0.7, skip=("short",), limits={"PERSON": 0.5}, group="customer", seed=9)
    (tmp_path / "bad.yaml").write_text("fix: burn\nthreshold: 2\n")
    with pytest.raises(TuneloopError, match="fix: 'burn' is not one of") as err:
        parse("--options", str(tmp_path / "bad.yaml"))
    assert "threshold: 2.0 is too large" in str(err.value)
    (tmp_path / "unknown.yaml").write_text("colour: red\n")
    with pytest.raises(TuneloopError, match=r"unknown.yaml: (.|\n)*colour: not a key of the sample options"):
        parse("--options", str(tmp_path / "unknown.yaml"))


def test_coercion_from_form_and_text_values():
    got = Sample.from_dict({"threshold": "0.5", "seed": 3.0, "strict": "no", "group": "", "skip": "empty, short",
                            "allow": "a\nb", "limits": "PERSON=0.4"})
    assert got == Sample(threshold=0.5, seed=3, strict=False, group=None, skip=("empty", "short"),
                         allow=["a", "b"], limits={"PERSON": 0.4})
    assert Sample().replace(fix="none").fix == "none"
    assert Sample(skip=("empty",)).to_dict()["skip"] == ["empty"]
