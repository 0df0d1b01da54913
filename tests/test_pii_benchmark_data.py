"""The PII benchmark's data: files parse, the labelled prose sample is big enough and points at real text,
and the held-out names are names Faker does not hold (the detector's old source), so the benchmark
measures names the detector has never seen."""
import importlib
import json
import pkgutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "benchmarks" / "data"
PUBLIC = ROOT / "shared" / "pii-benchmark"
LABEL_KEYS = {"record", "start", "end", "text", "entity", "is_pii", "note"}

needs_public = pytest.mark.skipif(not (PUBLIC / "held_out_names.tsv").is_file(),
                                  reason=f"{PUBLIC} not built (python benchmarks/pii_data.py, see benchmarks/data/README.md)")


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_prose_labels_are_at_least_100_judged_findings():
    labels = _jsonl(COMMITTED / "pii_prose_labels.jsonl")
    assert len(labels) >= 100
    for row in labels:
        assert LABEL_KEYS <= row.keys(), row
        assert isinstance(row["is_pii"], bool), row
        assert row["note"].strip(), f"label without a reason: {row}"
    assert len({(r["record"], r["start"], r["end"]) for r in labels}) == len(labels), "a span is labelled twice"


def _dolly_messages() -> dict[str, str]:
    """The Dolly slice's messages by the ids the benchmark gives them: dolly-N/0 the instruction (then the
    context), dolly-N/1 the response."""
    out = {}
    for n, row in enumerate(_jsonl(COMMITTED / "dolly_slice.jsonl"), 1):
        context = (row.get("context") or "").strip()
        out[f"dolly-{n}/0"] = row["instruction"] + (f"\n\n{context}" if context else "")
        if row.get("response"):
            out[f"dolly-{n}/1"] = row["response"]
    return out


@needs_public
def test_prose_labels_point_at_their_text_in_the_prose():
    prose = {r["id"]: r["text"] for r in _jsonl(PUBLIC / "prose.jsonl")}
    assert len(prose) >= 2000
    prose |= _dolly_messages()
    for row in _jsonl(COMMITTED / "pii_prose_labels.jsonl"):
        assert prose[row["record"]][row["start"]:row["end"]] == row["text"], row


def test_domain_tokens_lie_where_their_offsets_say():
    rows = _jsonl(COMMITTED / "pii_domain_sentences.jsonl")
    kinds = {t["kind"] for r in rows for t in r["tokens"]}
    assert kinds == {"order", "sku", "version", "error", "price", "product"}
    for r in rows:
        for t in r["tokens"]:
            assert r["text"][t["start"]:t["end"]] == t["text"], (r["id"], t)


@needs_public
def test_synth_dataset_spans_match_their_values():
    rows = json.loads((PUBLIC / "synth_dataset_v2.json").read_text(encoding="utf-8"))
    assert len(rows) == 1500
    for r in rows:
        for s in r["spans"]:
            assert r["full_text"][s["start_position"]:s["end_position"]] == s["entity_value"]


def _faker_names() -> set[str]:
    import faker.providers.person as person

    names = set()
    for module in pkgutil.iter_modules(person.__path__):
        provider = importlib.import_module(f"{person.__name__}.{module.name}").Provider
        for attribute, values in vars(provider).items():
            if attribute.startswith(("first_names", "last_names")) and isinstance(values, (list, tuple, dict)):
                names.update(n.lower() for n in values)
    return names


@needs_public
def test_no_held_out_name_is_held_by_faker():
    lines = (PUBLIC / "held_out_names.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "given\tfamily\tcountry"
    pairs = [line.split("\t") for line in lines[1:]]
    assert len(pairs) >= 900
    assert len({country for _, _, country in pairs}) >= 50
    known = _faker_names()
    held = [name for given, family, _ in pairs for name in (given, family) if name.lower() in known]
    assert not held, f"{len(held)} held-out names are Faker names, e.g. {held[:5]}"
