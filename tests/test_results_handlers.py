"""The Results tab's handlers called without a browser, and its "prepare a new evaluation" pickers, which show
the runs and versions as they are whenever the tab is shown."""
from __future__ import annotations

import gradio as gr
import pytest

from curation.data.records import Record
from curation.data.versions import create_version
from evaluation import ui
from evaluation.arena import next_pair, record_vote
from tests.tab_page import page
from tests.test_arena_ui import seed_evaluation
from training import registry as R
from ui.kit import PickerRefresh


@pytest.fixture
def tab(ws):
    eid = seed_evaluation(ws)
    with gr.Blocks() as blocks, gr.Tabs():
        w = ui.build_results_tab(ws)
    return ws, w, eid, blocks


def on_select(blocks, w) -> list:
    """The handlers the tab's select event runs."""
    fns = blocks.fns.values() if isinstance(blocks.fns, dict) else blocks.fns
    return [f for f in fns if (w.tab._id, "select") in [(t[0], t[1]) for t in f.targets]]


def test_the_prepare_pickers_show_the_runs_and_versions_of_now_when_the_tab_is_shown(tab):
    ws, w, eid, blocks = tab
    assert w.run.choices == [] and w.version.choices == []
    ws.db.execute("insert into runs (id, name, status, config, output_dir, dataset, base_model) values"
                  " (8, 'second', 'created', '{}', ?, 'v1', 'tiny')", (str(ws.path("runs/8")),))
    (ws.path("runs/8/adapter")).mkdir(parents=True)
    (ws.path("runs/8/adapter/adapter_config.json")).write_text("{}")
    create_version(ws, [Record("t1", [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                               {"split": "test"})], parent=None, step="split")
    refresh = next(f.fn for f in on_select(blocks, w) if isinstance(f.fn, PickerRefresh))
    run, version = refresh(None, None)
    assert run["value"] == "8" and run["choices"][0][0].endswith("· created")
    assert version["value"] == "v1"
    R.update_run(ws, 8, status="finished")
    run, _ = refresh("8", "v1")
    assert run["value"] == "8" and run["choices"][0][0].endswith("· finished")


def test_the_figures_follow_the_chosen_evaluation_and_policy(tab):
    ws, w, eid, _ = tab
    while (pair := next_pair(ws, eid, "ana")) is not None:
        record_vote(ws, pair.assignment_id, "ana", "A")
    shown = ui.show(ws, w, page(w, evaluation=eid, policy="unanimous"))
    assert "**Feedback (unanimous)**" in shown[w.feedback] and "n=" in shown[w.summary]
    assert [row[:2] for row in shown[w.per_rater]] == [["ana", 6]] and shown[w.merged] == ""
    assert ui.select_results(ws, w, page(w, evaluation=None))[w.evaluation]["value"] == eid


def test_actions_without_their_inputs_say_what_to_choose(tab):
    ws, w, eid, _ = tab
    assert "choose a prompt from the queue first" in ui.save_answer(ws, w, page(w, evaluation=eid), None)[w.merged]
    assert "choose an evaluation first" in ui.merge(ws, w, page(w, evaluation=None), None)[w.merged]
    assert "choose a run" in ui.generate(ws, w, page(w, run=None), None, progress=lambda *a, **k: None)[w.status]
    assert ui.stop_generation(ws, w, None)[w.status] == "Nothing is being generated."
    with pytest.raises(gr.Error, match="choose an evaluation first"):
        ui.make_preferences(ws, w, page(w, evaluation=None), None)
