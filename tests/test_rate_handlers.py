"""The Rate tab's handlers called without a browser: each takes the workspace, the tab's widgets and the values
the page would send, and returns what changes, keyed by component."""
from __future__ import annotations

import gradio as gr
import pytest

from core.users import add_user
from evaluation import ui
from evaluation.arena import EvalItem, create_evaluation, evaluation_votes
from tests.tab_page import page
from tests.test_arena_ui import seed_evaluation


@pytest.fixture
def tab(ws):
    eid = seed_evaluation(ws)
    with gr.Blocks(), gr.Tabs():
        w = ui.build_rate_tab(ws)
    return ws, w, eid


def test_a_local_rater_without_a_name_is_asked_for_one_and_gets_no_pair(tab):
    ws, w, eid = tab
    refused = ui.start_clicked(ws, w, page(w, evaluation=eid, name="  "), None)
    assert "type your name first" in refused[w.conversation] and refused[w.assignment] is None
    assert all(refused[b]["interactive"] is False for b in w.buttons)
    started = ui.start_clicked(ws, w, page(w, evaluation=eid, name="ana"), None)
    voted = ui.vote_clicked(ws, w, "A", page(w, assignment=started[w.assignment], name=""), None)
    assert set(voted) == {w.reveal} and "type your name first" in voted[w.reveal]
    assert evaluation_votes(ws, eid) == []


def test_a_signed_in_rater_votes_as_their_login_whatever_is_typed(tab):
    ws, w, eid = tab
    add_user(ws, "rita", "rater", "rater-pass-1")
    request = gr.Request(username="rita", session_hash="s1")
    started = ui.start_clicked(ws, w, page(w, evaluation=eid, name="someone else"), request)
    assert started[w.name]["value"] == "rita" and started[w.name]["interactive"] is False
    ui.vote_clicked(ws, w, "B", page(w, assignment=started[w.assignment], name="someone else"), request)
    assert [v.rater for v in evaluation_votes(ws, eid)] == ["rita"]


def test_the_evaluation_picker_shows_new_evaluations_and_keeps_the_chosen_one(tab):
    ws, w, eid = tab
    items = [EvalItem("q", [{"role": "user", "content": "Hi?"}], base_response="a", finetuned_response="b")]
    newer = create_evaluation(ws, "blind check two", items, base_model="SmolLM2", run_id="7")
    kept = ui.refresh_choices(ws, w, page(w, evaluation=eid))[w.evaluation]
    assert kept["value"] == eid and [v for _, v in kept["choices"]] == [newer, eid]
    assert all("blind check" not in label for label, _ in kept["choices"])      # the admin's name stays hidden
    assert ui.refresh_choices(ws, w, page(w, evaluation=999))[w.evaluation]["value"] == newer


def test_the_reveal_of_the_last_vote_does_not_point_at_a_pair_below(tab):
    ws, w, eid = tab
    shown = ui.start_clicked(ws, w, page(w, evaluation=eid, name="lena"), None)
    banners = []
    while shown.get(w.assignment) is not None:
        shown = ui.vote_clicked(ws, w, "tie", page(w, assignment=shown[w.assignment], name="lena"), None)
        banners.append(shown[w.reveal])
    assert len(banners) >= 2 and all("the pair before the one below" in b for b in banners[:-1])
    assert "your last pair" in banners[-1] and "below" not in banners[-1]
