"""Every command line of the project answers --help, and so does each of its subcommands: argparse formats a help
text with %, so a "95% interval" in one of them once ended `python -m evaluation --help` in a TypeError."""
import argparse
import importlib
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def _help(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0, f"{argv} exited {done.value.code}"
    return capsys.readouterr().out


def _subcommands(main) -> list[str]:
    """The subcommands ``main``'s parser has, found by catching the parser it builds."""
    made: list[argparse.ArgumentParser] = []
    original = argparse.ArgumentParser.parse_args

    def catch(self, *args, **kwargs):
        made.append(self)
        raise SystemExit(0)

    argparse.ArgumentParser.parse_args = catch
    try:
        with pytest.raises(SystemExit):
            main(["--help"])
    finally:
        argparse.ArgumentParser.parse_args = original
    actions = [a for p in made[:1] for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    return [name for a in actions for name in a.choices]


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_every_command_and_subcommand_answers_help(script, capsys):
    module, _, function = SCRIPTS[script].partition(":")
    main = getattr(importlib.import_module(module), function)
    assert "usage:" in _help(main, ["--help"], capsys)
    for name in _subcommands(main):
        assert "usage:" in _help(main, [name, "--help"], capsys), name


def test_the_guard_is_a_subcommand_of_the_evaluation_cli(tmp_path, capsys):
    from evaluation.cli import main

    assert main(["guard", "--workspace", str(tmp_path / "ws")]) == 0
    assert "every finished run has been checked" in capsys.readouterr().out
    assert main(["guard", "--workspace", str(tmp_path / "ws"), "--run", "7"]) == 2
    assert "error:" in capsys.readouterr().err
