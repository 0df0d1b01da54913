"""A big new version has its search index built in a background thread from the moment it is made: the Data tab
says how far it is and meanwhile pages and searches from the snapshot with the same results; the build can be
cancelled, leaving no file behind, and the next search starts it again."""
from __future__ import annotations

import threading
import time

import pytest

from core.workspace import Workspace
from curation.data import index as I
from curation.data import versions as V
from curation.data.records import Record

WORDS = ["parcel", "refund", "invoice", "courier", "voucher"]


def _records(n: int) -> list[Record]:
    return [Record(id=f"k{i:04d}", messages=[{"role": "user", "content": f"my {WORDS[i % 5]} number {i} is late"},
                                             {"role": "assistant", "content": f"sorry about the {WORDS[i % 3]}"}],
                   meta={"source": ["mail", "chat"][i % 2]}) for i in range(n)]


@pytest.fixture
def held(monkeypatch):
    """The background build held at its first progress report until the test lets it go (or cancels it)."""
    go, reached = threading.Event(), threading.Event()
    real = I.build_index

    def held_build(ws, version, path, progress=None):
        stop = I._builds[path].stop

        def hold(fraction, text):
            progress(fraction, text)
            reached.set()
            while not (go.is_set() or stop.is_set()):
                time.sleep(0.005)
        real(ws, version, path, hold)

    monkeypatch.setattr(I, "build_index", held_build)
    monkeypatch.setattr(I, "BUILD_BATCH", 10)
    monkeypatch.setattr(V, "BACKGROUND_INDEX_FROM", 50)
    return go, reached


def _tab(ws):
    import gradio as gr

    from curation.ui import data
    from tests.tab_page import page
    with gr.Blocks():
        with gr.Tabs():
            w = data.build(ws)
    return lambda **values: data.browse(ws, w, page(w, **values), progress=lambda *a, **k: None)[w.browse_info]


def test_a_big_version_is_indexed_in_the_background_and_searched_from_the_snapshot_meanwhile(tmp_path, held):
    go, reached = held
    ws = Workspace.open(tmp_path / "ws")
    v = V.create_version(ws, _records(60), parent=None, step="import")
    assert reached.wait(30)
    path = I.index_path(ws, v)
    assert I.index_status(ws, v.id).startswith("search index: 17% built")       # 10 of 60 records
    browse = _tab(ws)
    found = browse(browse_pick=v.name, search="refund late", page_no=1)
    assert found.startswith("28 records match “refund late” · page 1 of 2 · search index: 17% built")
    assert not path.exists()
    go.set()
    I._builds[path].thread.join()
    assert path.exists() and I.index_status(ws, v.id) == ""
    assert browse(browse_pick=v.name, search="refund late", page_no=1) == "28 records match “refund late” · page 1 of 2"
    small = V.create_version(ws, _records(49), parent=None, step="import")
    assert I.index_path(ws, small) not in I._builds                              # a small one builds on first use


def test_a_cancelled_build_leaves_no_file_and_the_next_search_starts_it_again(tmp_path, held):
    go, reached = held
    ws = Workspace.open(tmp_path / "ws")
    v = V.create_version(ws, _records(60), parent=None, step="import")
    assert reached.wait(30)
    assert I.cancel_build(ws, v.id)
    assert I.index_status(ws, v.id) == ("search index: not built (the search index of v1 was cancelled); it is built "
                                        "on the next search")
    assert list((ws.root / I.INDEX_FOLDER).iterdir()) == []
    assert not I.cancel_build(ws, v.id)
    go.set()
    browse = _tab(ws)
    assert browse(browse_pick=v.name, search="", page_no=2).startswith("60 records · page 2 of 3 · search index:")
    I._builds[I.index_path(ws, v)].thread.join()
    assert I.index_path(ws, v).exists()


def test_a_search_while_the_index_is_built_reads_the_part_built_and_scans_only_the_rest(tmp_path, monkeypatch):
    go, reached = threading.Event(), threading.Event()
    real = I.build_index

    def held_build(ws, version, path, progress=None):
        def hold(fraction, text):
            progress(fraction, text)
            if fraction >= 0.5:           # 30 of 60 records indexed: the first of the snapshot's 20-row groups
                reached.set()
                while not go.is_set():
                    time.sleep(0.005)
        real(ws, version, path, hold)

    monkeypatch.setattr(I, "build_index", held_build)
    monkeypatch.setattr(I, "BUILD_BATCH", 10)
    monkeypatch.setattr(I, "COMMIT_EVERY", 10)
    monkeypatch.setattr(V, "BACKGROUND_INDEX_FROM", 50)
    below = []
    search = I.RecordIndex.search
    monkeypatch.setattr(I.RecordIndex, "search", lambda self, *a, **k: below.append(k.get("below")) or
                        search(self, *a, **k))
    ws = Workspace.open(tmp_path / "ws")
    writer = V.SnapshotWriter(ws, batch=20)
    writer.extend(_records(60))
    v = V.create_version(ws, writer, parent=None, step="import")
    assert reached.wait(30)
    path = I.index_path(ws, v)
    assert I._partial[path][1] == 30 and not path.exists()
    assert "a search reads the part built and the rest of the version" in I.index_status(ws, v.id)
    records = V.load_records(ws, v.id)
    for query in ("refund", "late sorry", "k002", "7", "parcel number 3", "the voucher"):
        full = V.search_records(records, query)
        for start in (0, 5, 20):
            total, page = I.snapshot_search(ws, v.id, query, start=start, limit=7)
            assert total == len(full), (query, start)
            assert [r.to_dict() for r in page] == [r.to_dict() for r in full[start:start + 7]], (query, start)
    assert set(below) == {20}                     # the records of the row group already indexed came from the index
    go.set()
    I._builds[path].thread.join()
    assert path.exists() and path not in I._partial
