"""An import reads a big JSONL file in blocks (pyarrow parses the lines, the checks and the canonical JSON are made on
columns: ``curation.data.jsonl_blocks``) and gives exactly what the line-at-a-time reader gives: the same snapshot
rows and version hash, the same problems with the same line and field, the same skip log and warnings."""
from __future__ import annotations

import json
import random

import pyarrow.parquet as pq
import pytest

from core.errors import InputProblem
from core.workspace import Workspace
from curation.data import formats, jsonl_blocks
from curation.data import versions as V
from curation.data.imports import import_file, skipped_records

# Rows the block reader must hand to the line reader (or read identically), each put between plain rows.
ODD = [
    '{"id": "odd-blank", "messages": [{"role": "user", "content": "   "}, {"role": "assistant", "content": "x"}]}',
    '{"id": "odd-robot", "messages": [{"role": "robot", "content": "beep"}]}',
    '{"id": "odd-cut", "messages": [{"role": "user", "content": "cut off" }, {"role": "assistant"',
    '{"id": "odd-name", "messages": [{"role": "user", "content": "named", "name": "Ana"}], "meta": {"k": 1}}',
    '{"id": "odd-metatext", "messages": [{"role": "user", "content": "x"}], "meta": "{\\"tier\\": 2}"}',
    '{"id": "odd-big", "messages": [{"role": "user", "content": "big"}], "meta": {"order": 1180591620717411303424}}',
    '{"id": "odd-float", "messages": [{"role": "user", "content": "a float"}], "meta": {"score": 1e-05}}',
    '{"id": "odd-nan", "messages": [{"role": "user", "content": "nan"}], "meta": {"score": NaN}}',
    '{"id": "odd-num", "messages": [{"role": "user", "content": 42}]}',
    '{"id": "odd-extra", "messages": [{"role": "user", "content": "extra"}], "channel": "mail", "note": null}',
    '{"id": "odd-empty", "messages": [], "meta": {}}',
    '{"id": true, "messages": [{"role": "user", "content": "bool id"}]}',
    '["not", "an", "object"]',
    "",
    "   ",
    '{"id": "odd-two", "messages": [{"role": "user", "content": "a"}]} {"id": "odd-three", "messages": []}',
    '{"id": "odd-split", "messages":',
    ' [{"role": "user", "content": "split over two lines"}]}',
    '{"messages": [{"role": "user", "content": "no id: derived"}, {"role": "assistant", "content": "ok"}]}',
    '{"messages": [{"role": "user", "content": "no id: derived"}, {"role": "assistant", "content": "ok"}]}',
    '{"id": "", "messages": [{"role": "user", "content": "empty id"}]}',
    '{"id": 77, "messages": [{"role": "user", "content": "number id"}, {"role": "assistant", "content": "ok"}]}',
    '{"id": "odd-metaid", "messages": [{"role": "user", "content": "x"}], "meta": {"id": "inner", "a": 1}}',
    '{"messages": [{"role": "user", "content": "id from meta"}], "meta": {"id": "from-meta"}}',
    '{"id": "odd-system", "system": "Be kind.", "messages": [{"role": "user", "content": "x"}]}',
    '{"id": "odd-esc", "messages": [{"role": "user", "content": "tab\\there \\"q\\" back\\\\slash\\nnew\\r"}]}',
    '{"id": "odd-u", "messages": [{"role": "user", "content": "caf\\u00e9 \\u000a \\u0022 \\u005c \\ud83d\\ude00"}]}',
    '{"id": "odd-ctrl", "messages": [{"role": "user", "content": "bell \\u0007 \\b \\f"}]}',
    '{"id": "odd-half", "messages": [{"role": "user", "content": "cut \\udc00"}]}',
    '{"id": "odd-nullmeta", "messages": [{"role": "user", "content": "x"}], "meta": {"a": null, "b": "y"}}',
    '{"id": "odd-metanull", "messages": [{"role": "user", "content": "x"}], "meta": null}',
    '{"id": "odd-nested", "messages": [{"role": "user", "content": "x"}], "meta": {"tags": ["a", {"b": 1}]}}',
    '{"id": "odd-types", "messages": [{"role": "user", "content": "x"}], "meta": {"n": -0, "t": true, "f": false}}',
    '{"id": "odd-keys", "messages": [{"role": "user", "content": "x"}], "meta": {"\\u00e9\\"k": "v", "Z": "é\u2028"}}',
    '{"id": "odd-crlf", "messages": [{"role": "user", "content": "windows"}]}\r',
    '{"id": "odd-trail", "messages": [{"role": "user", "content": "trailing space"}]}  ',
    '{"id": "odd-dupkey", "messages": [{"role": "user", "content": "x"}], "meta": {"a": 1, "a": 2}}',
    '{"id": "odd-noanswer", "messages": [{"role": "user", "content": "just a question"}]}',
    '{"id": "odd-bad-utf8", "messages": [{"role": "user", "content": "\xff"}]}',
    '{"id": "t5", "messages": [{"role": "user", "content": "repeats the id of line 6"}]}',
]


def _plain(i: int, rng: random.Random) -> str:
    row = {"id": f"t{i}", "messages": [{"role": "user", "content": f"Where is parcel {i}?"},
                                       {"role": "assistant", "content": f"It left on day {i % 7}."}],
           "meta": {"label": rng.choice(["parcel", "refund", "login"]), "n": i % 5}}
    if i % 3 == 0:
        row["meta"]["source"] = "mail"            # a key only some rows have
    if i % 11 == 0:
        row["messages"].insert(0, {"role": "system", "content": "Answer briefly.\nBe kind."})
    return json.dumps(row, ensure_ascii=i % 2 == 0)


def _write(tmp_path, odd=ODD, n=3_000, seed=0, name="big.jsonl"):
    rng = random.Random(seed)
    lines = [_plain(i, rng) for i in range(n)]
    for k, line in enumerate(odd):
        lines.insert(40 + k * (n // (len(odd) + 1)), line)
    path = tmp_path / name
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8", "surrogateescape").replace(b"\xc3\xbf", b"\xff"))
    return path


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of a few KB (a few dozen lines), so that a test file has many and the halving reaches small ones."""
    monkeypatch.setattr(jsonl_blocks, "BLOCK_BYTES", 6_000)
    monkeypatch.setattr(jsonl_blocks, "SMALLEST_BLOCK", 4)
    monkeypatch.setattr(V, "_SMALL_RUN", 8)      # runs of a few rows join the pending rows; longer ones are row groups
    calls = []
    real = V.SnapshotWriter.add_columns

    def counted(self, ids, messages, meta):
        calls.append(len(ids))
        return real(self, ids, messages, meta)
    monkeypatch.setattr(V.SnapshotWriter, "add_columns", counted)
    return calls


def _outcome(ws_path, path, **kw):
    """What an import gives: the snapshot's rows, the version hash, the skip log, the warnings; or the refusal."""
    ws = Workspace.open(ws_path)
    try:
        version, result = import_file(ws, path, **kw)
    except InputProblem as exc:
        return ("refused", exc.problems)
    rows = pq.read_table(ws.path(version.path)).to_pylist()
    return (rows, version.content_hash, skipped_records(ws, version.id), result.warnings, result.count,
            [r.id for r in result.records])


def _line_at_a_time(monkeypatch):
    monkeypatch.setattr(formats._Reader, "wants_block", lambda self: False)


def test_a_big_mixed_file_imports_the_same_in_blocks_and_a_line_at_a_time(tmp_path, monkeypatch, small_blocks):
    path = _write(tmp_path, odd=ODD[:-1])
    blocks = [_outcome(tmp_path / "b1", path, skip_bad=True), _outcome(tmp_path / "b2", path)]
    assert sum(small_blocks) > 2_500          # most rows went through the block reader
    with monkeypatch.context() as m:
        _line_at_a_time(m)
        small_blocks.clear()
        lines = [_outcome(tmp_path / "l1", path, skip_bad=True), _outcome(tmp_path / "l2", path)]
        assert small_blocks == []
    assert blocks == lines
    rows, digest, skipped, warnings, count, preview = blocks[0]
    skipped = dict(skipped)
    assert skipped[f"line {_line_of(path, 'odd-robot')}"].startswith("messages[0].role is 'robot'")
    assert f"line {_line_of(path, 'odd-half')}" in skipped and f"line {_line_of(path, 'odd-bad-utf8')}" in skipped
    stored = {r["id"]: r for r in rows}
    assert json.loads(stored["odd-u"]["messages"])[0]["content"] == 'caf\u00e9 \n " \\ \U0001F600'
    assert stored["odd-keys"]["meta"] == '{"Z":"é\u2028","é\\"k":"v"}'
    assert stored["t3"]["meta"] == '{"label":"%s","n":3,"source":"mail"}' % json.loads(stored["t3"]["meta"])["label"]
    assert json.loads(stored["t0"]["messages"])[0] == {"role": "system", "content": "Answer briefly.\nBe kind."}
    assert f"line {_line_of(path, 'odd-noanswer')}: the conversation has no assistant turn" in " ".join(warnings)
    assert blocks[1][0] == "refused"


def test_an_id_repeated_across_blocks_is_named_with_both_lines(tmp_path, monkeypatch, small_blocks):
    path = _write(tmp_path, odd=[ODD[-1]])
    repeat = _line_of(path, "repeats the id")
    outcome = _outcome(tmp_path / "b", path)
    assert outcome == ("refused", [f"line {repeat}: id 't5' repeats line 6; ids must be unique"])
    with monkeypatch.context() as m:
        _line_at_a_time(m)
        assert _outcome(tmp_path / "l", path) == outcome
    skipping = _outcome(tmp_path / "s", path, skip_bad=True)
    assert skipping[2] == [(f"line {repeat}", "id 't5' repeats line 6; ids must be unique")]


def test_a_plain_file_in_blocks_keeps_the_hash_of_the_records(tmp_path, small_blocks):
    """The version hash from the block reader's columns is ``content_hash`` of the records read back."""
    path = _write(tmp_path, odd=[], n=2_000)
    ws = Workspace.open(tmp_path / "ws")
    version, result = import_file(ws, path)
    assert sum(small_blocks) >= 1_900 and result.count == version.num_records == 2_000
    V._cache.clear()
    assert version.content_hash == V.content_hash(V.load_records(ws, version.id))


def test_appending_a_file_read_in_blocks_refuses_ids_the_current_version_has(tmp_path, small_blocks):
    ws = Workspace.open(tmp_path / "ws")
    import_file(ws, _write(tmp_path, odd=[], n=300, name="first.jsonl"))
    with pytest.raises(Exception, match="already exist"):
        import_file(ws, _write(tmp_path, odd=[], n=1_000, name="second.jsonl"), append=True)


def _line_of(path, text: str) -> int:
    for number, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        if text.encode() in line:
            return number
    raise AssertionError(text)


def test_rows_with_the_same_meta_keys_read_in_blocks_as_a_line_at_a_time(tmp_path, monkeypatch, small_blocks):
    """Every row with every meta key (the one-join path), keys out of order, text needing escapes."""
    path = tmp_path / "same.jsonl"
    path.write_text("".join(json.dumps({"meta": {"z": i % 2 == 0, "b": i, "a": f'say "{i}"\n'}, "id": f"s{i}",
                                        "messages": [{"content": f"q\\{i}", "role": "user"},
                                                     {"content": "é\t", "role": "assistant"}]},
                                       ensure_ascii=i % 2 == 0) + "\n" for i in range(600)), encoding="utf-8")
    blocks = _outcome(tmp_path / "b", path)
    assert sum(small_blocks) > 500
    with monkeypatch.context() as m:
        _line_at_a_time(m)
        assert _outcome(tmp_path / "l", path) == blocks
    assert blocks[0][7]["meta"] == '{"a":"say \\"7\\"\\n","b":7,"z":false}'


def test_an_import_in_blocks_reports_its_progress_as_it_reads(tmp_path, small_blocks):
    said = []
    version, _ = import_file(Workspace.open(tmp_path / "ws"), _write(tmp_path, odd=[], n=20_000),
                             progress=lambda fraction, text: said.append((fraction, text)))
    assert sum(small_blocks) > 19_000 and version.num_records == 20_000
    reads = [(f, t) for f, t in said if t.startswith("read ")]
    assert len(reads) >= 3 and reads == sorted(reads) and 0 < reads[0][0] < reads[-1][0] <= 0.9
    assert reads[0][1] == "read 5,000 records" or reads[0][1].startswith("read 5,")


def test_whole_number_ids_read_in_blocks_as_their_digits(tmp_path, monkeypatch, small_blocks):
    path = tmp_path / "numbered.jsonl"
    path.write_text("".join(json.dumps({"id": i - 300, "messages": [{"role": "user", "content": f"q {i}"}],
                                        "meta": {}}) + "\n" for i in range(600)), encoding="utf-8")
    blocks = _outcome(tmp_path / "b", path)
    assert sum(small_blocks) > 500
    with monkeypatch.context() as m:
        _line_at_a_time(m)
        assert _outcome(tmp_path / "l", path) == blocks
    assert [r["id"] for r in blocks[0][:2]] == ["-300", "-299"] and blocks[0][0]["meta"] == "{}"


def test_rows_without_ids_get_the_derived_ids_the_line_reader_gives(tmp_path, monkeypatch, small_blocks):
    """Ids derived from the turns, the same content twice (``-2``, ``-3``) within a block and across blocks."""
    rng = random.Random(3)
    rows = [{"messages": [{"role": "user", "content": f"Where is parcel {rng.randrange(150)}?"},
                          {"role": "assistant", "content": "On its way."}], "meta": {"n": i}} for i in range(900)]
    path = tmp_path / "no-ids.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    from curation.data import imports
    reads, real = [], imports.read_records
    monkeypatch.setattr(imports, "read_records", lambda *a, **k: reads.append(1) or real(*a, **k))
    blocks = _outcome(tmp_path / "b", path)
    assert sum(small_blocks) > 100 and reads == [1]        # read once: the repeats were told apart in the blocks
    with monkeypatch.context() as m:
        _line_at_a_time(m)
        lines = _outcome(tmp_path / "l", path)
    assert blocks == lines
    ids = [r["id"] for r in blocks[0]]
    assert len(set(ids)) == 900 and any(i.endswith("-2") for i in ids) and all(i.startswith("r") for i in ids)


def test_an_explicit_id_equal_to_a_derived_one_is_named_as_the_line_reader_names_it(tmp_path, monkeypatch,
                                                                                    small_blocks):
    from curation.data.schemas import derived_id
    turns = [{"role": "user", "content": "no id here"}]
    rows = [json.dumps({"id": f"e{i}", "messages": [{"role": "user", "content": f"q {i}"}]}) for i in range(400)]
    rows[50] = json.dumps({"messages": turns})
    rows[300] = json.dumps({"id": derived_id(turns), "messages": [{"role": "user", "content": "takes that id"}]})
    path = tmp_path / "clash.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    blocks = _outcome(tmp_path / "b", path)
    assert blocks == ("refused", [f"line 301: id '{derived_id(turns)}' repeats line 51; ids must be unique"])
    with monkeypatch.context() as m:
        _line_at_a_time(m)
        assert _outcome(tmp_path / "l", path) == blocks
