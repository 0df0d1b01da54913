"""A big import streams: records go to the version's snapshot a batch at a time, the result keeps a preview,
and a bad record near the end still leaves nothing behind (no version, no half-written snapshot)."""
from __future__ import annotations

import json

import pytest

from core.errors import InputProblem
from core.workspace import Workspace
from curation.data import versions as V
from curation.data.imports import import_file
from curation.data.records import Record


def _rows(n: int) -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"Where is parcel {i}?"},
                          {"role": "assistant", "content": f"Parcel {i} left the depot on day {i % 7}."}],
             "meta": {"shelf": i % 13}} for i in range(n)]


def _write(path, rows, extra: str = "") -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + extra, encoding="utf-8")


def test_snapshot_writer_in_batches_matches_a_version_made_from_the_list(tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    records = [Record(id=f"r{i}", messages=r["messages"], meta=r["meta"]) for i, r in enumerate(_rows(2_500))]
    writer = V.SnapshotWriter(ws, batch=300)      # nine row groups
    writer.extend(records)
    streamed = V.create_version(ws, writer, parent=None, step="import")
    whole = V.create_version(ws, records, parent=None, step="import")
    assert streamed.content_hash == whole.content_hash == V.content_hash(records)
    V._cache.clear()
    assert V.load_records(ws, streamed.id) == records
    with pytest.raises(Exception, match="same id"):
        V.SnapshotWriter(ws).extend([records[0], records[0]])


def test_import_keeps_a_preview_and_stores_every_record(tmp_path, monkeypatch):
    ws = Workspace.open(tmp_path / "ws")
    monkeypatch.setattr(V.SnapshotWriter.__init__, "__kwdefaults__", {"batch": 500})
    path = tmp_path / "big.jsonl"
    _write(path, _rows(12_000))
    version, result = import_file(ws, path)
    assert result.count == version.num_records == 12_000
    assert len(result.records) == 20                     # the preview, not the file
    V._cache.clear()
    stored = V.load_records(ws, version.id)
    assert [r.prompt for r in stored[:3]] == [f"Where is parcel {i}?" for i in range(3)]
    assert stored[-1].meta == {"shelf": 11_999 % 13}


def test_a_bad_record_at_the_end_imports_nothing_and_leaves_no_file(tmp_path, monkeypatch):
    ws = Workspace.open(tmp_path / "ws")
    monkeypatch.setattr(V.SnapshotWriter.__init__, "__kwdefaults__", {"batch": 500})
    path = tmp_path / "bad.jsonl"
    _write(path, _rows(3_000), extra='{"messages": [{"role": "robot", "content": "hi"}]}\n')
    with pytest.raises(InputProblem, match="line 3001"):
        import_file(ws, path)
    assert V.list_versions(ws) == []
    assert [p.name for p in (ws.root / "versions").glob("*")] == []
    version, result = import_file(ws, path, skip_bad=True)
    assert version.num_records == 3_000 and result.skipped[0][0] == "line 3001"
