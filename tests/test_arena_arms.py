"""Arms in the arena: any set of arms per evaluation, every pair of arms on every prompt (or a balanced share),
votes in the arms' terms, and two-arm evaluations of older workspaces upgraded to arms."""
from __future__ import annotations

import itertools
import json
from collections import Counter

import pytest
from scipy.stats import binomtest

from core.errors import TuneloopError
from core.workspace import Workspace
from evaluation.arena import (Arm, EvalItem, create_evaluation, evaluation_arms, evaluation_comparisons,
                              evaluation_votes, get_evaluation, next_pair, rater_progress, record_vote)
from evaluation.feedback import collect_feedback
from tests.old_workspace import old_workspace

ARMS = [Arm("base", "base"), Arm("prompted base (2 examples)", "prompted", settings={"system_prompt": "Be brief."}),
        Arm("run 5", "run", run_id=5)]


def register_run(ws, run_id: int) -> None:
    ws.db.execute("insert into runs (id, name, status, config, output_dir, dataset, base_model) values"
                  " (?, ?, 'finished', '{}', ?, 'v1', 'tiny')", (run_id, f"try {run_id}", f"/runs/{run_id}"))


def arm_items(n: int, arms=ARMS) -> list[EvalItem]:
    """Every arm answers every prompt with its own words: the answer says whose it is (for the test only)."""
    return [EvalItem(f"q{i}", [{"role": "user", "content": f"Where is parcel {i}?"}],
                     responses={a.name: f"{a.name} says parcel {i} is on its way" for a in arms}, label="shipping")
            for i in range(n)]


def author(text: str) -> str:
    return text.split(" says ")[0]


def vote_everything(ws, eid: int, rater: str, verdict: str = "A") -> list[tuple[str, str, str]]:
    """(prompt, arm shown as A, arm shown as B) for every pair the rater got, voting ``verdict`` on each."""
    shown = []
    while (pair := next_pair(ws, eid, rater)) is not None:
        shown.append((pair.prompt, author(pair.response_a), author(pair.response_b)))
        record_vote(ws, pair.assignment_id, rater, verdict)
    return shown


def test_three_arms_issue_every_pair_of_arms_on_every_prompt_and_votes_become_comparisons(ws):
    register_run(ws, 5)
    eid = create_evaluation(ws, "three arms", arm_items(4), arms=ARMS, base_model="tiny")
    assert [a.name for a in evaluation_arms(ws, eid)] == [a.name for a in ARMS]
    evaluation = get_evaluation(ws, eid)
    assert evaluation.num_pairs == 12 and evaluation.run_id == 5 and evaluation.arms == tuple(a.name for a in ARMS)
    assert "three arms · base vs prompted base (2 examples) vs run 5 (on tiny) · 12 pairs" in evaluation.describe()
    assert rater_progress(ws, eid, "ana").total == 12
    shown = vote_everything(ws, eid, "ana", "A")
    assert len(shown) == 12
    per_prompt = Counter(prompt for prompt, _, _ in shown)
    assert set(per_prompt.values()) == {3}
    assert {frozenset((a, b)) for _, a, b in shown} == {frozenset(p) for p in itertools.combinations(
        [a.name for a in ARMS], 2)}
    comparisons = evaluation_comparisons(ws, eid)
    assert [(c.left, c.right, c.outcome) for c in comparisons] == [(a, b, "left") for _, a, b in shown]
    assert {c.winner for c in comparisons} <= {a.name for a in ARMS} and all(c.label == "shipping" for c in comparisons)
    assert all(c.gold is None and c.flagged is None for c in comparisons)


def test_a_reveal_names_both_arms_after_the_vote(ws):
    register_run(ws, 5)
    eid = create_evaluation(ws, "three arms", arm_items(2), arms=ARMS, base_model="tiny")
    shown_as = {"base": "base (tiny)", "prompted base (2 examples)": "prompted base (2 examples) (tiny with a prompt)",
                "run 5": "fine-tuned (run 5)"}
    while (pair := next_pair(ws, eid, "ana")) is not None:
        reveal = record_vote(ws, pair.assignment_id, "ana", "B")
        assert (reveal.model_a, reveal.model_b) == (shown_as[author(pair.response_a)],
                                                    shown_as[author(pair.response_b)])


def test_with_fewer_pairs_per_prompt_every_pair_of_arms_is_compared_equally_often(ws):
    arms = [Arm(f"arm {k}", "endpoint", settings={"model": f"m{k}"}) for k in range(4)]
    eid = create_evaluation(ws, "four arms", arm_items(10, arms), arms=arms, base_model="tiny", pairs_per_prompt=2)
    shown = vote_everything(ws, eid, "ana")
    assert len(shown) == 20 and set(Counter(prompt for prompt, _, _ in shown).values()) == {2}
    per_pair = Counter(frozenset((a, b)) for _, a, b in shown)
    assert len(per_pair) == 6 and set(per_pair.values()) <= {3, 4}       # 20 pairs over 6 pairs of arms
    with pytest.raises(TuneloopError, match="between 1 and 6"):
        create_evaluation(ws, "too many", arm_items(2, arms), arms=arms, base_model="tiny", pairs_per_prompt=7)


def test_sides_are_a_fair_coin_for_every_arm(ws):
    register_run(ws, 5)
    eid = create_evaluation(ws, "sides", arm_items(100), arms=ARMS, base_model="tiny")
    shown = vote_everything(ws, eid, "ana")
    for arm in ARMS:
        on_a = sum(a == arm.name for _, a, _ in shown)
        appeared = sum(arm.name in (a, b) for _, a, b in shown)
        assert appeared == 200
        assert binomtest(on_a, appeared, 0.5).pvalue >= 0.001, (arm.name, on_a)


def test_two_arms_given_as_arms_still_give_the_two_arm_votes(ws):
    register_run(ws, 5)
    arms = [ARMS[0], ARMS[2]]
    eid = create_evaluation(ws, "two arms", arm_items(6, arms), arms=arms, base_model="tiny")
    shown = vote_everything(ws, eid, "ana", "A")
    votes = evaluation_votes(ws, eid)
    assert [(v.outcome, v.finetuned_side) for v in votes] == [
        ("finetuned" if a == "run 5" else "base", "A" if a == "run 5" else "B") for _, a, _ in shown]
    flipped = evaluation_votes(ws, eid, arms=("run 5", "base"))
    assert [v.outcome for v in flipped] == [{"finetuned": "base", "base": "finetuned"}[v.outcome] for v in votes]
    with pytest.raises(TuneloopError, match="no arm 'run 9'"):
        evaluation_votes(ws, eid, arms=("base", "run 9"))


def test_every_arm_must_answer_every_prompt_and_arms_need_their_own_names(ws):
    register_run(ws, 5)
    items = arm_items(2)
    items[1].responses.pop("run 5")
    with pytest.raises(TuneloopError, match="prompt 'q1' has no answer from run 5"):
        create_evaluation(ws, "gap", items, arms=ARMS, base_model="tiny")
    with pytest.raises(TuneloopError, match="two arms are called base"):
        create_evaluation(ws, "twice", arm_items(1), arms=[ARMS[0], ARMS[0]], base_model="tiny")
    with pytest.raises(TuneloopError, match="kind 'model'"):
        create_evaluation(ws, "kind", arm_items(1), arms=[ARMS[0], Arm("x", "model")], base_model="tiny")
    with pytest.raises(TuneloopError, match="no run #8"):
        create_evaluation(ws, "run", arm_items(1), arms=[ARMS[0], Arm("run 8", "run", run_id=8)], base_model="tiny")
    assert ws.db.execute("select count(*) from evaluations").fetchone()[0] == 0


def test_a_two_arm_evaluation_with_votes_upgrades_to_the_arms_base_and_its_run(tmp_path):
    ws = old_workspace(tmp_path / "workspace", {("evaluation", "m010_arms")})
    register_run(ws, 3)
    ws.db.execute("insert into evaluations (id, name, run_id, base_model, overlap) values (1, 'old', 3, 'tiny', 2)")
    votes = {"p0": ("A", "A", "finetuned"), "p1": ("B", "A", "base"), "p2": ("tie", "B", "tie")}
    for prompt, (verdict, side, outcome) in votes.items():
        messages = json.dumps([{"role": "user", "content": f"Refund for {prompt}?"}])
        pair = ws.db.execute("insert into eval_pairs (evaluation_id, prompt_id, messages, label, base_response,"
                             " finetuned_response, text_key) values (1, ?, ?, 'billing', ?, ?, ?)",
                             (prompt, messages, f"base on {prompt}", f"tuned on {prompt}", prompt)).lastrowid
        shown = ws.db.execute("insert into eval_assignments (pair_id, rater, finetuned_side) values (?, 'ana', ?)",
                              (pair, side)).lastrowid
        ws.db.execute("insert into eval_votes (assignment_id, verdict, outcome, comment) values (?,?,?, 'old')",
                      (shown, verdict, outcome))
    ws.db.execute("insert into evaluations (id, name, base_model, adapter, overlap) values (2, 'folder', 'tiny',"
                  " '/a/adapter', 1)")
    ws.db.execute("insert into eval_pairs (evaluation_id, prompt_id, messages, base_response, finetuned_response)"
                  " values (2, 'p9', ?, 'As ChatGPT, I cannot track parcels.', 'It left today.')",
                  (json.dumps([{"role": "user", "content": "Where?"}]),))
    upgraded = Workspace.open(ws.root)
    assert [(a.name, a.kind, a.run_id) for a in evaluation_arms(upgraded, 1)] == [("base", "base", None),
                                                                                  ("run 3", "run", 3)]
    assert [a.name for a in evaluation_arms(upgraded, 2)] == ["base", "fine-tuned"]
    assert upgraded.db.execute("select names_model from eval_pairs where prompt_id='p9'").fetchone()[0] == \
        '{"base": "As ChatGPT"}'                           # an old answer that names its model is flagged too
    rows = evaluation_votes(upgraded, 1)
    assert [(v.prompt_id, v.verdict, v.outcome, v.finetuned_side, v.comment, v.label) for v in rows] == [
        (p, verdict, outcome, side, "old", "billing") for p, (verdict, side, outcome) in votes.items()]
    assert [(c.left, c.right, c.outcome) for c in evaluation_comparisons(upgraded, 1)] == [
        ("run 3", "base", "left"), ("run 3", "base", "right"), ("base", "run 3", "tie")]
    assert [p["chosen"][0]["content"] for p in collect_feedback(upgraded, 1).preference_pairs] == [
        "tuned on p0", "base on p1"]
    pair = next_pair(upgraded, 1, "bob")                  # the old evaluation can still be rated
    assert {pair.response_a, pair.response_b} == {f"base on {pair.prompt[11:13]}", f"tuned on {pair.prompt[11:13]}"}
    reveal = record_vote(upgraded, pair.assignment_id, "bob", "A")
    assert {reveal.model_a, reveal.model_b} == {"base (tiny)", "fine-tuned (run 3)"}
    assert upgraded.db.execute("pragma foreign_key_check").fetchall() == []
