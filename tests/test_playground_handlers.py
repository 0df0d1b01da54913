"""The Playground tab's handlers called without a browser (no model is loaded: these are the paths that answer
before any generation), and its run pickers, which show the runs of now whenever the tab is shown."""
from __future__ import annotations

import gradio as gr
import pytest

from evaluation import playground_ui as ui
from tests.tab_page import page
from ui.kit import PickerRefresh


@pytest.fixture
def tab(ws):
    with gr.Blocks() as blocks, gr.Tabs():
        w = ui.build_playground_tab(ws)
    return ws, w, blocks


def test_stop_regenerate_and_take_say_when_there_is_nothing_to_act_on(tab):
    ws, w, _ = tab
    assert ui.stop_answers(ws, w, gr.Request(session_hash="s1"))[w.status] == "Nothing is running."
    again = list(ui.regenerate_last(ws, w, page(w), None))
    assert again == [{w.status: "Nothing to regenerate yet: ask something first."}]
    asked = list(ui.ask_both(ws, w, page(w, message="  "), None))
    assert asked[-1][w.status] == "Type a question first."
    taken = ui.take_answer(ws, w, page(w, side="left"))
    assert "No answer on that side yet" in taken[w.result] and taken[w.answer] == ""
    refused = ui.send_answer(ws, w, page(w, answer="text"), None)
    assert "ask something first" in refused[w.result]


def test_a_folder_without_an_adapter_is_reported_and_the_run_picker_follows_the_registry(tab, tmp_path):
    ws, w, blocks = tab
    shown = ui.models_changed(ws, w, page(w, adapter=str(tmp_path)))
    assert "neither a run id (such as 3) nor a folder holding an adapter" in shown[w.status]
    fns = blocks.fns.values() if isinstance(blocks.fns, dict) else blocks.fns
    refresh = next(f.fn for f in fns if isinstance(f.fn, PickerRefresh) and (w.tab._id, "select") in
                   [(t[0], t[1]) for t in f.targets])
    ws.db.execute("insert into runs (id, name, status, config, output_dir, dataset, base_model) values"
                  " (4, 'tuned', 'created', ?, ?, 'v1', 'tiny')",
                  ('{"base_model": "tiny"}', str(ws.path("runs/4"))))
    ws.path("runs/4/adapter").mkdir(parents=True)
    ws.path("runs/4/adapter/adapter_config.json").write_text("{}")
    run, against = refresh(None, "base")
    assert run["value"] == "4" and [v for _, v in against["choices"]] == ["base", "4"] and against["value"] == "base"
