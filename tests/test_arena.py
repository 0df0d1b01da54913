"""Blind rating: issuing pairs, blinding, and votes the server refuses (sides: tests/test_security_sides.py)."""
from __future__ import annotations

import dataclasses
import json
import random
import threading

import pytest

from evaluation import arena
from evaluation.arena import (BlindPair, EvalItem, VoteRefused, create_evaluation, evaluation_votes, get_evaluation,
                              next_pair, rater_progress, record_vote)


def make_items(n: int, *, labels=("billing", "shipping")) -> list[EvalItem]:
    return [EvalItem(prompt_id=f"p{i}",
                     messages=[{"role": "system", "content": "You are Lumio support."},
                               {"role": "user", "content": f"Question {i}: where is order LM-{1000 + i}?"}],
                     base_response=f"base answer {i}", finetuned_response=f"tuned answer {i}",
                     label=labels[i % len(labels)], split="test")
            for i in range(n)]


def register_run(ws, run_id: int = 7, name: str = "first try") -> int:
    """A finished run in the registry, for evaluations that need one to point at (no training happens)."""
    ws.db.execute("insert into runs (id, name, status, config, output_dir, dataset, base_model) values"
                  " (?, ?, 'finished', '{}', ?, 'v1', 'SmolLM2-135M-Instruct')", (run_id, name, f"/runs/{run_id}"))
    return run_id


def make_evaluation(ws, n=6, overlap=1, run_id=7) -> int:
    if run_id is not None and ws.db.execute("select 1 from runs where id=?", (run_id,)).fetchone() is None:
        register_run(ws, run_id)
    return create_evaluation(ws, "tuned vs base", make_items(n), base_model="SmolLM2-135M-Instruct",
                             adapter="/runs/7/adapter", run_id=run_id, overlap=overlap)


def test_pair_shows_both_responses_without_naming_the_models(ws):
    eid = make_evaluation(ws)
    pair = next_pair(ws, eid, "ana")
    assert {pair.response_a, pair.response_b} == {f"base answer {pair.prompt.split()[1][:-1]}",
                                                  f"tuned answer {pair.prompt.split()[1][:-1]}"}
    assert pair.context == [{"role": "system", "content": "You are Lumio support."}]
    names = {f.name for f in dataclasses.fields(BlindPair)}
    assert not names & {"finetuned_side", "outcome", "model_a", "model_b", "run_id", "base_model"}
    payload = json.dumps(dataclasses.asdict(pair)).lower()
    for secret in ("finetuned", "fine-tuned", "run 7", "smollm2", "adapter", "side"):
        assert secret not in payload
    assert (pair.done, pair.total) == (0, 6)


def test_vote_reveals_the_sides_and_counts_in_model_terms(ws):
    eid = make_evaluation(ws)
    pair = next_pair(ws, eid, "ana")
    tuned_on_a = pair.response_a.startswith("tuned")
    reveal = record_vote(ws, pair.assignment_id, "ana", "A", comment="clearer")
    assert reveal.outcome == ("finetuned" if tuned_on_a else "base")
    assert reveal.model_a.startswith("fine-tuned (run 7)" if tuned_on_a else "base (SmolLM2")
    assert "A was" in reveal.describe()
    (vote,) = evaluation_votes(ws, eid)
    assert (vote.rater, vote.verdict, vote.comment, vote.finetuned_side) == ("ana", "A", "clearer",
                                                                            "A" if tuned_on_a else "B")


def test_second_vote_on_the_same_pair_is_refused(ws):
    eid = make_evaluation(ws)
    pair = next_pair(ws, eid, "ana")
    record_vote(ws, pair.assignment_id, "ana", "tie")
    with pytest.raises(VoteRefused, match="already voted"):
        record_vote(ws, pair.assignment_id, "ana", "A")
    assert [v.verdict for v in evaluation_votes(ws, eid)] == ["tie"]


def test_vote_on_a_pair_not_issued_to_the_rater_is_refused(ws):
    eid = make_evaluation(ws)
    pair = next_pair(ws, eid, "ana")
    with pytest.raises(VoteRefused, match="not issued to you"):
        record_vote(ws, pair.assignment_id, "bob", "B")
    with pytest.raises(VoteRefused, match="not issued to you"):
        record_vote(ws, 9999, "ana", "B")
    with pytest.raises(VoteRefused, match="not a verdict"):
        record_vote(ws, pair.assignment_id, "ana", "finetuned")
    with pytest.raises(VoteRefused, match="type your name"):
        record_vote(ws, pair.assignment_id, "  ", "A")
    assert evaluation_votes(ws, eid) == []
    record_vote(ws, pair.assignment_id, "ana", "both_bad")


def test_unvoted_pair_comes_back_after_leaving(ws):
    eid = make_evaluation(ws)
    first = next_pair(ws, eid, "ana")
    again = next_pair(ws, eid, "ana")
    assert again == first
    assert arena.issued_pair(ws, first.assignment_id, "ana") == first
    with pytest.raises(VoteRefused):
        arena.issued_pair(ws, first.assignment_id, "bob")


def test_each_rater_sees_each_pair_once_and_overlap_caps_raters(ws):
    eid = make_evaluation(ws, n=5, overlap=2)
    seen: dict[str, list[str]] = {}
    for rater in ("ana", "bob", "cy"):
        while (pair := next_pair(ws, eid, rater)) is not None:
            seen.setdefault(rater, []).append(pair.prompt)
            record_vote(ws, pair.assignment_id, rater, random.choice(arena.VERDICTS))
    for prompts in seen.values():
        assert len(prompts) == len(set(prompts))
    per_pair: dict[str, int] = {}
    for v in evaluation_votes(ws, eid):
        per_pair[v.prompt_id] = per_pair.get(v.prompt_id, 0) + 1
    assert sorted(per_pair.values()) == [2] * 5
    assert len(seen["ana"]) == 5 and len(seen["bob"]) == 5 and "cy" not in seen
    assert rater_progress(ws, eid, "ana").done == 5
    assert get_evaluation(ws, eid).num_votes == 10


def test_two_raters_at_once_never_share_a_single_slot(ws):
    eid = make_evaluation(ws, n=8, overlap=1)
    got: dict[str, list[str]] = {"ana": [], "bob": []}

    def rate(rater):
        while (pair := next_pair(ws, eid, rater)) is not None:
            got[rater].append(pair.prompt)
            record_vote(ws, pair.assignment_id, rater, "B")

    threads = [threading.Thread(target=rate, args=(r,)) for r in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got["ana"] + got["bob"]) == sorted({*got["ana"], *got["bob"]})
    assert len(got["ana"]) + len(got["bob"]) == 8


def test_evaluation_needs_prompts_ending_with_a_user_turn(ws):
    item = EvalItem("x", [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], "a", "b")
    with pytest.raises(arena.TuneloopError, match="must end with a user turn"):
        create_evaluation(ws, "bad", [item], base_model="m")
    with pytest.raises(arena.TuneloopError, match="no evaluation #42"):
        get_evaluation(ws, 42)


def test_stale_assignments_are_released_so_other_raters_can_fill_the_slot(ws):
    eid = make_evaluation(ws, n=1, overlap=1)
    left = next_pair(ws, eid, "ana")
    assert next_pair(ws, eid, "bob") is None
    assert arena.release_stale_assignments(ws, eid, older_than_hours=1) == 0
    ws.db.execute("update eval_assignments set issued_at='2020-01-01T00:00:00Z'")
    assert arena.release_stale_assignments(ws, eid, older_than_hours=1) == 1
    taken = next_pair(ws, eid, "bob")
    assert taken is not None
    with pytest.raises(VoteRefused, match="not issued to you"):
        record_vote(ws, left.assignment_id, "ana", "A")
    record_vote(ws, taken.assignment_id, "bob", "A")


def test_an_evaluation_points_at_a_registered_run_by_its_id(ws):
    register_run(ws, 3)
    eid = create_evaluation(ws, "e", make_items(1), base_model="m", run_id="#3")
    assert get_evaluation(ws, eid).run_id == 3
    assert ws.db.execute("select typeof(run_id) from evaluations where id=?", (eid,)).fetchone()[0] == "integer"
    with pytest.raises(arena.TuneloopError, match="no run #4"):
        create_evaluation(ws, "e", make_items(1), base_model="m", run_id="4")
    with pytest.raises(arena.TuneloopError, match="not a run id"):
        create_evaluation(ws, "e", make_items(1), base_model="m", run_id="/runs/3/adapter")
