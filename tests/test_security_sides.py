"""What a rater can learn, and what a viewer can reach: sides no reveal predicts, no pair text seen twice across
evaluations, adapters by folder only for admins, and a vote that costs a fixed handful of SQLite statements.

The side-prediction test plays a rater who remembers every reveal and guesses where the fine-tuned answer is
next with the simple strategies a person would try; each must do no better than a coin. Sides come from the
arena's own ``secrets`` draw: nothing is seeded.
"""
from __future__ import annotations

import json

import gradio as gr
import pytest
from scipy.stats import binomtest

from core.users import add_user
from core.workspace import Workspace
from evaluation import arena, playground_ui
from evaluation import ui as rate_ui
from evaluation.arena import EvalItem, create_evaluation, evaluation_votes, next_pair, rater_progress, record_vote
from evaluation.stats import summarize, votes_from_rows
from tests.old_workspace import old_workspace
from tests.tab_page import page

VOTES = 600
# One-sided, per predictor. A fair coin fails one of the three predictors with probability about 0.003;
# a balancing coin like Efron's (the rater guesses right 61% of the time) passes with probability below 1e-6.
ALPHA = 0.001


def items(n: int, *, start: int = 0, tag: str = "") -> list[EvalItem]:
    """Pairs with distinct texts: a customer question and two answers that differ by wording."""
    return [EvalItem(prompt_id=f"q{i}", messages=[{"role": "user", "content": f"Order LM-{4000 + i}{tag}: where is it?"}],
                     base_response=f"It ships soon (order {i}).", finetuned_response=f"Order {i} left the depot today.")
            for i in range(start, start + n)]


def fine_tuned_sides(ws, eid: int, rater: str) -> list[str]:
    """Vote through the arena as ``rater`` until nothing is left; the side of the fine-tuned answer each reveal told."""
    sides = []
    while (pair := next_pair(ws, eid, rater)) is not None:
        reveal = record_vote(ws, pair.assignment_id, rater, "A")
        sides.append("A" if reveal.outcome == "finetuned" else "B")
    return sides


def predictions(sides: list[str]) -> dict[str, list[str]]:
    """For every vote after the first, what each simple strategy guesses from the reveals before it."""
    guesses: dict[str, list[str]] = {"less often the fine-tuned side": [], "alternate": [], "same as last": []}
    for i in range(1, len(sides)):
        seen = sides[:i]
        on_a, on_b = seen.count("A"), seen.count("B")
        guesses["less often the fine-tuned side"].append("A" if on_a < on_b else "B" if on_b < on_a else seen[-1])
        guesses["alternate"].append("B" if seen[-1] == "A" else "A")
        guesses["same as last"].append(seen[-1])
    return guesses


def test_no_simple_strategy_predicts_the_fine_tuned_side_from_the_reveals(ws):
    eid = create_evaluation(ws, "sides", items(VOTES), base_model="base")
    sides = fine_tuned_sides(ws, eid, "ana")
    assert len(sides) == VOTES
    for name, guessed in predictions(sides).items():
        right = sum(g == s for g, s in zip(guessed, sides[1:]))
        p = binomtest(right, len(guessed), 0.5, alternative="greater").pvalue
        assert p >= ALPHA, f"'{name}' guessed {right} of {len(guessed)} sides (one-sided p = {p:.1e})"


def test_the_statistics_show_how_often_the_fine_tuned_answer_was_on_the_left(ws):
    eid = create_evaluation(ws, "balance", items(40), base_model="base")
    sides = fine_tuned_sides(ws, eid, "ana")
    s = summarize(votes_from_rows([v.to_stats_row() for v in evaluation_votes(ws, eid)]))
    assert s["finetuned_left"] == sides.count("A") and s["finetuned_left_share"] == sides.count("A") / 40
    ws.db.execute("update eval_assignments set second_side='A'")
    skewed = summarize(votes_from_rows([v.to_stats_row() for v in evaluation_votes(ws, eid)]))
    assert skewed["finetuned_left"] == 40 and skewed["side_balance_p"] < 1e-9
    shown = rate_ui.summary_markdown(arena.get_evaluation(ws, eid), skewed)
    assert "the fine-tuned answer was on the left in 40 of 40 votes" in shown


def test_a_rater_never_gets_pair_texts_revealed_to_them_in_another_evaluation(ws):
    first = create_evaluation(ws, "round 1", items(6), base_model="base")
    fine_tuned_sides(ws, first, "ana")
    # the same run on the same split again (byte-identical texts), and two prompts that are new
    second = create_evaluation(ws, "round 1 again", items(6) + items(2, start=6), base_model="base")
    progress = rater_progress(ws, second, "ana")
    assert (progress.done, progress.total) == (0, 2)
    got = []
    while (pair := next_pair(ws, second, "ana")) is not None:
        got.append(pair.prompt)
        record_vote(ws, pair.assignment_id, "ana", "B")
    assert sorted(got) == ["Order LM-4006: where is it?", "Order LM-4007: where is it?"]
    assert "judged the same answers in another evaluation" in rate_ui.finished_note(0)
    # the same prompt with other answers is another pair; another rater gets every pair still open
    third = create_evaluation(ws, "round 2", [EvalItem("q0", items(1)[0].messages, "Other words.", "New words.")],
                              base_model="base")
    assert next_pair(ws, third, "ana") is not None
    assert rater_progress(ws, second, "bob").total == 6     # the 6 pairs ana could not take


def test_pairs_stored_before_the_text_keys_are_recognised_after_the_upgrade(tmp_path):
    # the workspace as it was before the text keys (and the arms): ana voted on one evaluation, the other has its texts
    ws = old_workspace(tmp_path / "workspace", {("evaluation", "m009_pair_text_keys"), ("evaluation", "m010_arms")})
    for eid in (1, 2):
        ws.db.execute("insert into evaluations (id, name, base_model, overlap) values (?, ?, 'base', 1)",
                      (eid, f"e{eid}"))
        for item in items(3):
            pair = ws.db.execute("insert into eval_pairs (evaluation_id, prompt_id, messages, base_response,"
                                 " finetuned_response) values (?,?,?,?,?)",
                                 (eid, item.prompt_id, json.dumps(item.messages), item.base_response,
                                  item.finetuned_response)).lastrowid
            if eid == 1:
                shown = ws.db.execute("insert into eval_assignments (pair_id, rater, finetuned_side)"
                                      " values (?, 'ana', 'A')", (pair,)).lastrowid
                ws.db.execute("insert into eval_votes (assignment_id, verdict, outcome) values (?, 'A', 'finetuned')",
                              (shown,))
    upgraded = Workspace.open(tmp_path / "workspace")
    assert upgraded.db.execute("select 1 from _migrations where name='m009_pair_text_keys'").fetchone()
    assert upgraded.db.execute("select count(*) from eval_pairs where text_key is null").fetchone()[0] == 0
    assert next_pair(upgraded, 2, "ana") is None
    assert rater_progress(upgraded, 2, "bob").total == 3


# -- the playground: folders are for admins -------------------------------------------------------

@pytest.fixture
def playground(ws, tmp_path):
    """The viewer app's Playground tab, a workspace run with an adapter, and an adapter folder outside the workspace."""
    for name, role in (("vic", "viewer"), ("rita", "rater"), ("ada", "admin")):
        add_user(ws, name, role, f"{name}-password-1")
    ws.db.execute("insert into runs (id, name, status, config, output_dir, dataset, base_model) values"
                  " (4, 'tuned', 'finished', ?, ?, 'v1', 'tiny-base')",
                  (json.dumps({"base_model": "tiny-base"}), str(ws.path("runs/4"))))
    for folder in (ws.path("runs/4/adapter"), tmp_path / "elsewhere" / "adapter"):
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "tiny-base"}))
    with gr.Blocks(), gr.Tabs():
        w = playground_ui.build_playground_tab(ws, allow_send=False)
    return ws, w, str(tmp_path / "elsewhere" / "adapter")


def as_user(name: str) -> gr.Request:
    return gr.Request(username=name, session_hash=f"s-{name}")


def test_a_viewer_or_rater_naming_an_adapter_folder_is_refused_on_the_server(playground):
    ws, w, folder = playground
    assert w.adapter.visible is False
    for who in ("vic", "rita"):
        for typed in ({"adapter": folder}, {"run": folder}, {"run": "4", "against": folder}):
            shown = playground_ui.models_changed(ws, w, page(w, **typed), as_user(who))
            assert "only an admin can load an adapter from a folder" in shown[w.status], (who, typed)
        asked = list(playground_ui.ask_both(ws, w, page(w, adapter=folder, message="Where is my order?"),
                                            as_user(who)))
        assert len(asked) == 1 and "only an admin can load an adapter from a folder" in asked[0][w.status]
        chosen = playground_ui.models_changed(ws, w, page(w, run="4"), as_user(who))
        assert chosen[w.status] == "" and chosen[w.right_chat].label == "Right: Fine-tuned · run #4 tuned"


def test_an_admin_may_name_an_adapter_folder(playground):
    ws, w, folder = playground
    shown = playground_ui.models_changed(ws, w, page(w, adapter=folder), as_user("ada"))
    assert shown[w.status] == "" and shown[w.right_chat].label == "Right: Fine-tuned · elsewhere"
    assert playground_ui.may_name_folders(ws, as_user("ada")) and not playground_ui.may_name_folders(ws, as_user("vic"))


# -- a vote is a fixed handful of statements -------------------------------------------------------

def statements_per_vote(ws, w, assignment: int) -> tuple[list[str], dict]:
    seen: list[str] = []
    ws.db.set_trace_callback(seen.append)
    try:
        out = rate_ui.vote_clicked(ws, w, "A", page(w, assignment=assignment, name="ana"), None)
    finally:
        ws.db.set_trace_callback(None)
    return seen, out


def test_vote_reveal_and_next_pair_take_the_same_few_statements_however_many_votes_came_before(ws):
    eid = create_evaluation(ws, "latency", items(60), base_model="base")
    for rater in ("bob", "cy"):
        for _ in range(20):
            pair = next_pair(ws, eid, rater)
            record_vote(ws, pair.assignment_id, rater, "tie")
    with gr.Blocks(), gr.Tabs():
        w = rate_ui.build_rate_tab(ws)
    assignment = rate_ui.start_clicked(ws, w, page(w, evaluation=eid, name="ana"), None)[w.assignment]
    counts = []
    for _ in range(10):
        seen, out = statements_per_vote(ws, w, assignment)
        assert out[w.reveal].startswith("✅") and out[w.assignment] != assignment
        assignment = out[w.assignment]
        counts.append(len(seen))
        # two short transactions (the vote; issuing the next pair), nothing that reads the whole evaluation twice
        assert sum(s.startswith("begin") for s in seen) == 2
        assert not any("num_votes" in s for s in seen)
    assert len(set(counts)) == 1 and counts[0] <= 11, counts
    # the buttons stay on by their own labels: an update would make Gradio build a new button per vote
    assert all(out[b] == b.value for b in w.buttons)
