"""The Results tab's handlers called without a browser (preparing an evaluation moved to the Rate tab:
tests/test_prepare_ui.py)."""
from __future__ import annotations

import gradio as gr
import pytest

from evaluation import ui
from evaluation.arena import next_pair, record_vote
from tests.tab_page import page
from tests.test_arena_ui import seed_evaluation


@pytest.fixture
def tab(ws):
    eid = seed_evaluation(ws)
    with gr.Blocks() as blocks, gr.Tabs():
        w = ui.build_results_tab(ws)
    return ws, w, eid, blocks


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
    with pytest.raises(gr.Error, match="choose an evaluation first"):
        ui.make_preferences(ws, w, page(w, evaluation=None), None)
