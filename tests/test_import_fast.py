"""The fast paths of an import (orjson reading each JSONL line, the check for rows already in Tuneloop's own
shape, the snapshot written from one encoding per record) give exactly what the general path gives: the same
records, the same problems with the same line and field, the same skip log, the same version hash."""
from __future__ import annotations

import json
import math

import pytest

from core.errors import InputProblem
from core.workspace import Workspace
from curation.data import formats
from curation.data import versions as V
from curation.data.formats import read_records
from curation.data.imports import import_file, skipped_records
from curation.data.records import Record

PLAIN = {"messages": [{"role": "user", "content": "Is my order 5512 on its way?"},
                      {"role": "assistant", "content": "It left the depot this morning."}], "meta": {"shop": "north"}}
# A file that is mostly plain rows, with every kind of row the fast paths must hand to the general one between them.
LINES = [
    json.dumps(PLAIN),
    '{"id": "a-7", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}',
    '{"messages": [{"role": "user", "content": "   "}, {"role": "assistant", "content": "blank question"}]}',
    '{"messages": [{"role": "robot", "content": "beep"}]}',
    '{"messages": [{"role": "user", "content": "cut off" }, {"role": "assistant"',
    '{"messages": [{"role": "user", "content": "named", "name": "Ana"}], "meta": "{\\"tier\\": 2}"}',
    '{"messages": [{"role": "user", "content": "big order"}], "meta": {"order": 1180591620717411303424}}',
    '{"messages": [{"role": "user", "content": "nineteen digits"}], "meta": {"order": -9223372036854775809}}',
    '{"messages": [{"role": "user", "content": "a float"}], "meta": {"score": 1e-05, "weight": 0.5}}',
    '{"messages": [{"role": "user", "content": "not a number"}], "meta": {"score": NaN}}',
    '{"messages": [{"role": "user", "content": 42}]}',
    '{"messages": [{"role": "user", "content": "extra key"}], "channel": "mail", "note": null}',
    '{"messages": [], "meta": {}}',
    '{"id": true, "messages": [{"role": "user", "content": "bool id"}]}',
    '["not", "an", "object"]',
    "",
    json.dumps({**PLAIN, "id": "a-7"}),
    '{"messages": [{"role": "user", "content": "caf\\u00e9 \\u2028 \\u0007"}], "meta": {"\\u00e9": [1, {"b": null}]}}',
]


def _file(tmp_path, lines=LINES, bom=True):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + "\n".join(lines).encode("utf-8") + b"\n\xff\xfe bad\n")
    return path


def _general_only(monkeypatch):
    """The reader as it is without its fast paths: json reads every line, every row goes through convert_row."""
    class NoOrjson:
        JSONDecodeError = formats.orjson.JSONDecodeError

        @staticmethod
        def loads(raw):
            raise formats.orjson.JSONDecodeError("off", "", 0)
    monkeypatch.setattr(formats, "orjson", NoOrjson)
    monkeypatch.setattr(formats, "_plain_messages", lambda value: None)


def _read(path, **kw):
    try:
        result = read_records(path, **kw)
    except InputProblem as exc:
        return ("refused", str(exc))
    return ([(r.id, r.messages, r.meta, r.kind) for r in result.records], result.skipped, result.warnings, result.count)


def test_a_mixed_file_reads_the_same_with_and_without_the_fast_paths(tmp_path, monkeypatch):
    path = _file(tmp_path)
    fast = [_read(path, skip_bad=True), _read(path)]
    with monkeypatch.context() as m:
        _general_only(m)
        general = [_read(path, skip_bad=True), _read(path)]
    assert fast == general
    records, skipped, warnings, count = fast[0]
    assert dict(skipped)["line 3"] == "messages[0].content is empty"
    assert dict(skipped)["line 5"].startswith("not valid JSON (Expecting")
    assert dict(skipped)["line 19"].startswith("not valid UTF-8 (byte 0xff at column 1)")   # counted past the blank
    meta = {r[1][0]["content"]: r[2] for r in records}
    assert meta["big order"] == {"order": 1180591620717411303424}          # an integer, exact
    assert meta["nineteen digits"] == {"order": -9223372036854775809}
    assert meta["a float"] == {"score": 1e-05, "weight": 0.5}
    assert math.isnan(meta["not a number"]["score"])
    assert fast[1][0] == "refused" and "line 3: messages[0].content is empty" in fast[1][1]


def test_a_bad_line_in_the_middle_of_a_plain_file_is_named_and_skipped_as_before(tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    rows = [json.dumps({**PLAIN, "id": f"t{i}"}) for i in range(2_000)]
    rows[1_000] = '{"id": "t1000", "messages": [{"role": "user", "content": ""}]}'
    rows[1_500] = rows[1_500][:-3]
    path = tmp_path / "plain.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(InputProblem) as refused:
        import_file(ws, path)
    assert refused.value.problems == ["line 1001: messages[0].content is empty",
                                      "line 1501: not valid JSON (Invalid control character at at column 184)"]
    assert V.list_versions(ws) == []
    version, result = import_file(ws, path, skip_bad=True)
    assert version.num_records == 1_998
    assert skipped_records(ws, version.id) == [("line 1001", "messages[0].content is empty"),
                                               ("line 1501", "not valid JSON (Invalid control character at at column 184)")]


def test_the_snapshot_and_its_hash_are_those_of_canonical_json_for_any_meta(tmp_path):
    """One encoding per record (orjson where it writes what json writes) makes the hash ``content_hash`` gives."""
    ws = Workspace.open(tmp_path / "ws")
    metas = [{"score": 1e-05}, {"n": 10**16 * 1.0}, {"big": 2**70}, {"é": "caf\u00e9 \u2028 \x07 \"q\""},
             {"nested": [{"b": None, "a": True}, [1, 2.5]]}, {}]
    records = [Record(id=f"r{i}", messages=[{"role": "user", "content": f"q {i} \u00e9"}], meta=meta)
               for i, meta in enumerate(metas)]
    writer = V.SnapshotWriter(ws)
    writer.extend(records)
    version = V.create_version(ws, writer, parent=None, step="import")
    assert version.content_hash == V.content_hash(records)
    V._cache.clear()
    import pyarrow.parquet as pq
    stored = pq.read_table(ws.path(version.path)).column("meta").to_pylist()
    assert stored == [json.dumps(m, sort_keys=True, ensure_ascii=False, separators=(",", ":")) for m in metas]


def test_half_a_surrogate_pair_is_a_problem_naming_line_and_field_not_a_crash(tmp_path):
    """JSON lets ``\\ud800`` stand alone, but it is half a character: the import used to crash computing the id."""
    good = '{"messages": [{"role": "user", "content": "pair \\ud83d\\ude00 ok"}, {"role": "assistant", "content": "ok"}]}'
    bad = '{"messages": [{"role": "user", "content": "ok"}, {"role": "assistant", "content": "cut \\udc00"}]}'
    lines = tmp_path / "halves.jsonl"
    lines.write_text(good + "\n" + bad + "\n", encoding="utf-8")
    with pytest.raises(InputProblem) as raised:
        read_records(lines)
    assert raised.value.problems == ["line 2: messages[1].content holds an unpaired UTF-16 surrogate (\\udc00 at "
                                     "character 5), half of a character: the text was cut or mis-encoded where the "
                                     "file was made; remove the escape or write the whole character"]
    array = tmp_path / "halves.json"
    array.write_text("[" + bad + ", " + good + "]", encoding="utf-8")
    result = read_records(array, skip_bad=True)
    assert [r.messages[0]["content"] for r in result.records] == ["pair \U0001F600 ok"]
    assert result.skipped[0][0] == "item 1" and "messages[1].content" in result.skipped[0][1]
