"""The Results tab on an evaluation of three arms with gold pairs and swapped repeats, through its handlers: the
Bradley–Terry table and plot, the win matrix, the rater quality table, the votes-needed and sequential lines."""
from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import gradio as gr
import pytest

from evaluation import ui
from evaluation.arena import Arm, EvalItem, GoldItem, RaterChecks, create_evaluation, next_pair, record_vote
from tests.tab_page import page
from tests.test_arena import register_run

ROOT = Path(__file__).resolve().parent.parent
ARMS = [Arm("base", "base"), Arm("prompted", "prompted", settings={"system": "Be brief."}),
        Arm("tuned", "run", run_id=7)]
# How good each arm's answer is (the simulated raters prefer the higher); the answers carry it as a code only the
# test reads: "ticket K" with K the quality.
QUALITY = {"base": 1, "prompted": 2, "tuned": 3}


def arm_items(n: int) -> list[EvalItem]:
    return [EvalItem(f"q{i}", [{"role": "user", "content": f"Where is parcel {i}?"}],
                     responses={a.name: f"Parcel {i} is on its way, ticket {QUALITY[a.name]}." for a in ARMS})
            for i in range(n)]


def gold_items(n: int) -> list[GoldItem]:
    return [GoldItem(f"g{i}", [{"role": "user", "content": f"Where is parcel {50 + i}?"}],
                     better=f"Parcel {50 + i} is on its way, ticket 9.", worse=f"Parcel {50 + i} is lost, ticket 0.")
            for i in range(n)]


def ticket(text: str) -> int:
    return int(text.rsplit("ticket ", 1)[1].rstrip("."))


def rate(ws, eid, rater, choose) -> int:
    n = 0
    while (pair := next_pair(ws, eid, rater)) is not None:
        record_vote(ws, pair.assignment_id, rater, choose(ticket(pair.response_a), ticket(pair.response_b)))
        n += 1
    return n


@pytest.fixture
def tab(ws):
    register_run(ws, 7)
    with gr.Blocks(), gr.Tabs():
        w = ui.build_results_tab(ws)
    return ws, w


def test_three_arms_show_ratings_win_matrix_and_rater_quality(tab):
    ws, w = tab
    eid = create_evaluation(ws, "three arms", arm_items(8), arms=ARMS, base_model="tiny", overlap=3,
                            gold=gold_items(4), checks=RaterChecks(gold_rate=0.25, repeat_rate=0.2))
    shown = ui.show(ws, w, page(w, evaluation=eid))
    assert "No votes yet. Votes needed: before any decisive vote" in shown[w.summary] and "60%: 194" in shown[w.summary]
    for rater in ("ana", "bob"):
        assert rate(ws, eid, rater, lambda a, b: "A" if a > b else "B") == 33      # 24 pairs, 4 gold, 5 repeats
    rate(ws, eid, "cy", lambda a, b: "A" if a < b else "B")                        # always the worse answer
    shown = ui.show(ws, w, page(w, evaluation=eid))
    assert "compare base (as the base) with tuned (as the fine-tuned model)" in shown[w.summary]

    # Every pair of arms went 16-8 (ana and bob one way, cy the other), so the ratings are evenly spaced:
    # prompted = p, tuned = 2p with sigmoid(p) + sigmoid(2p) = 32/24 (tuned's 32 wins in its 48 votes), p = 0.468.
    assert [row[0] for row in shown[w.arm_table]] == ["tuned", "prompted", "base"]
    tuned, prompted, base = shown[w.arm_table]
    assert base[1:4] == [0.0, 0.0, 0.0] and tuned[7] == prompted[7] == base[7] == 48
    assert tuned[1] == pytest.approx(2 * prompted[1], abs=2e-3)
    assert 1 / (1 + math.exp(-prompted[1])) + 1 / (1 + math.exp(-tuned[1])) == pytest.approx(4 / 3, abs=1e-3)
    assert tuned[2] <= tuned[1] <= tuned[3] and prompted[2] <= prompted[1] <= prompted[3]
    assert "Chance of beating base (Bradley–Terry, bootstrap 95%)" in shown[w.arm_plot]

    matrix = shown[w.win_table]
    assert list(matrix.columns) == ["row arm wins against", "tuned", "prompted", "base"]
    two_to_one = "0.67 (16–8, 0 ties, 0 both bad)"
    assert list(matrix.iloc[0]) == ["tuned", "–", two_to_one, two_to_one]
    assert matrix.iloc[2, 1] == "0.33 (8–16, 0 ties, 0 both bad)"

    notes = shown[w.arms]
    assert "⚠️ only 8 prompts: this interval is rough." in notes
    assert "15 repeated vote(s) by a rater on the same prompt and arms were counted once (their first vote)" in notes
    # 16 of 24: the Wilson interval excludes 50% from n = 35 at this rate (11 more); 80% power at n = 69 (45 more)
    assert "**tuned vs base**: 16 of 24 decisive votes" in notes
    assert "about 11 more decisive votes would make the Wilson interval exclude 50%" in notes
    assert "45 more for an 80% chance" in notes and "sequential test (mSPRT" in notes

    quality = {row[0]: row for row in shown[w.quality]}
    assert quality["ana"][1:4] == [28, "4/4 (100%)", "5/5 (100%)"] and quality["ana"][6] == "–"   # others split
    assert quality["cy"][1:4] == [28, "0/4 (0%)", "5/5 (100%)"] and quality["cy"][6] == "0/24 (0%)"
    assert "agrees with the others 0/24" in quality["cy"][8] and quality["ana"][8] == "–"
    assert quality["cy"][4].startswith(tuple(f"{k}/28" for k in range(29)))


def test_the_admin_closes_an_evaluation_to_new_votes_from_the_tab_and_the_cli(tab):
    ws, w = tab
    eid = create_evaluation(ws, "stop early", arm_items(4), arms=ARMS, base_model="tiny", overlap=1)
    other = create_evaluation(ws, "stop later", arm_items(4)[:2], arms=ARMS, base_model="tiny", overlap=1)
    first = next_pair(ws, eid, "ana")
    record_vote(ws, first.assignment_id, "ana", "A")
    on_screen = next_pair(ws, eid, "ana")
    shown = ui.close_clicked(ws, w, page(w, evaluation=eid), None)
    assert "takes no new votes" in shown[w.close_note] and "🔒 **Closed to new votes** at " in shown[w.summary]
    record_vote(ws, on_screen.assignment_id, "ana", "B")            # the pair already shown can still be voted
    assert next_pair(ws, eid, "ana") is None and next_pair(ws, eid, "bob") is None
    assert next_pair(ws, other, "bob") is not None                  # only the chosen evaluation is closed
    assert "choose an evaluation first" in ui.close_clicked(ws, w, page(w, evaluation=None), None)[w.close_note]
    run = [sys.executable, "-m", "evaluation", "close", str(other), "--reason", "decided", "--workspace", str(ws.root)]
    out = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert f"closed evaluation #{other} to new votes" in out and next_pair(ws, other, "cy") is None
    report = subprocess.run([sys.executable, "-m", "evaluation", "report", str(eid), "--workspace", str(ws.root)],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "closed to new votes at" in report and "Bradley–Terry ratings (logit scale, base at 0" in report
    # the two pairs voted are drawn at random: on one prompt or on two
    assert re.search(r"⚠️ only (1 prompt|2 prompts): this interval is rough", report)


def test_the_model_card_says_an_interval_from_few_prompts_is_rough(ws):
    from evaluation.model_card import model_card
    from tests.test_arena_ui import seed_evaluation
    eid = seed_evaluation(ws, n=3)
    while (pair := next_pair(ws, eid, "ana")) is not None:
        record_vote(ws, pair.assignment_id, "ana", "A")
    assert "⚠️ Only 3 prompts: this interval is rough." in model_card(ws, 7)
