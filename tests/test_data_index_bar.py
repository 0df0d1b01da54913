"""The Data tab's Browse follows a big version's background index build without being pressed: a timer, active
only while the build runs, moves its bar; Stop building the index ends the build (no file left; pages and
searches go on reading the snapshot) and Build the index starts it again. Handlers only, no browser."""
from __future__ import annotations

import gradio as gr

from core.workspace import Workspace
from curation.data import index as I
from curation.data import versions as V
from curation.ui import data
from tests.tab_page import page
from tests.test_index_background import _records, held  # noqa: F401  (fixture)


def _tab(ws):
    with gr.Blocks():
        with gr.Tabs():
            w = data.build(ws)
    return w


def _shown(w, out) -> dict:
    """What the index widgets show: the bar's text (None when hidden), which buttons are up, the timer."""
    bar = out[w.index_bar]
    return {"bar": bar.get("value") if bar.get("visible") else None,
            "stop": out[w.index_cancel].get("visible"), "build": out[w.index_build].get("visible"),
            "ticking": out[w.index_timer].active}


def test_the_timer_moves_the_bar_while_the_build_runs_and_stops_when_it_is_done(tmp_path, held):
    go, reached = held
    ws = Workspace.open(tmp_path / "ws")
    v = V.create_version(ws, _records(60), parent=None, step="import")
    assert reached.wait(30)
    w = _tab(ws)
    values = page(w, browse_pick=v.name, search="", page_no=1)
    shown = _shown(w, data.browse(ws, w, values, progress=lambda *a, **k: None))
    assert shown["stop"] and not shown["build"] and shown["ticking"]
    assert shown["bar"].startswith('<div class="tuneloop-index-bar"><progress max="100" value="17"')
    assert "search index: 17% built" in shown["bar"]
    assert _shown(w, data.index_tick(ws, w, values)) == shown                 # a tick while it runs: the same
    go.set()
    I._builds[I.index_path(ws, v)].thread.join()
    done = _shown(w, data.index_tick(ws, w, values))
    assert done == {"bar": '<div class="tuneloop-index-bar">✅ the search index is built: pages and searches now '
                           'read it</div>', "stop": False, "build": False, "ticking": False}
    assert _shown(w, data.browse(ws, w, values, progress=lambda *a, **k: None))["bar"] is None


def test_stop_ends_the_build_with_no_file_and_build_starts_it_again(tmp_path, held):
    go, reached = held
    ws = Workspace.open(tmp_path / "ws")
    v = V.create_version(ws, _records(60), parent=None, step="import")
    assert reached.wait(30)
    w = _tab(ws)
    values = page(w, browse_pick=v.name, search="refund late", page_no=1)
    stopped = _shown(w, data.cancel_index(ws, w, values))
    assert stopped == {"bar": '<div class="tuneloop-index-bar">stopped building the search index of v1: pages and '
                              'searches read the snapshot meanwhile (same results, slower); Build the index, '
                              'or the next search, starts it again</div>',
                       "stop": False, "build": True, "ticking": False}
    assert not I.index_path(ws, v).exists() and list((ws.root / I.INDEX_FOLDER).iterdir()) == []
    assert _shown(w, data.index_tick(ws, w, values))["bar"] == (
        '<div class="tuneloop-index-bar">search index: not built (the search index of v1 was cancelled); it is '
        'built on the next search</div>')
    reached.clear()
    again = _shown(w, data.start_index(ws, w, values))
    assert again["stop"] and again["ticking"] and not again["build"]
    assert reached.wait(30)
    go.set()
    I._builds[I.index_path(ws, v)].thread.join()
    assert I.index_path(ws, v).exists()
    assert _shown(w, data.cancel_index(ws, w, values))["bar"] == (
        '<div class="tuneloop-index-bar">the search index was already built</div>')


def test_a_small_version_shows_no_index_bar_and_stop_says_when_nothing_runs(tmp_path, held):
    ws = Workspace.open(tmp_path / "ws")
    v = V.create_version(ws, _records(20), parent=None, step="import")
    w = _tab(ws)
    values = page(w, browse_pick=v.name, search="refund", page_no=1)
    assert _shown(w, data.browse(ws, w, values, progress=lambda *a, **k: None)) == {
        "bar": None, "stop": False, "build": False, "ticking": False}
    big = V.create_version(ws, _records(60), parent=None, step="import")
    I.cancel_build(ws, big.id)
    assert _shown(w, data.cancel_index(ws, w, page(w, browse_pick=big.name)))["bar"] == (
        '<div class="tuneloop-index-bar">no index build of this version is running</div>')
