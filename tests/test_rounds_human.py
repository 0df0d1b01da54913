"""The rounds view's human rating: each run's Bradley–Terry rating from the blind votes of an evaluation it is an
arm of, round 1 and round 2 on one scale when they were rated together."""
from __future__ import annotations

import pytest

from evaluation.arena import Arm, EvalItem, create_evaluation, next_pair, record_vote
from evaluation.rounds import round_rows, rounds_table
from tests.test_arena import register_run

ARMS = [Arm("base", "base"), Arm("round 1", "run", run_id=7), Arm("round 2", "run", run_id=8)]
GOOD = {"base": 0, "round 1": 1, "round 2": 2}


def items(n: int) -> list[EvalItem]:
    return [EvalItem(f"q{i}", [{"role": "user", "content": f"Where is parcel {i}?"}],
                     responses={a.name: f"Parcel {i} is on its way, code {GOOD[a.name]}." for a in ARMS})
            for i in range(n)]


def code(text: str) -> int:
    return int(text.rsplit("code ", 1)[1].rstrip("."))


def test_each_round_shows_its_rating_from_the_evaluation_that_rated_both(ws):
    register_run(ws, 7, "round one")
    register_run(ws, 8, "round two")
    assert all("human_rating" not in r.figures for r in round_rows(ws))
    eid = create_evaluation(ws, "rounds side by side", items(12), arms=ARMS, base_model="tiny", overlap=2)
    for rater in ("ana", "bob"):
        while (pair := next_pair(ws, eid, rater)) is not None:
            a, b = code(pair.response_a), code(pair.response_b)
            # ana picks the better answer; bob the worse one on the even prompts (q0, q2, ...)
            worse = rater == "bob" and int(pair.prompt.split()[3].rstrip("?")) % 2 == 0
            record_vote(ws, pair.assignment_id, rater, "A" if (a > b) != worse else "B")
    rows = {r.run_id: r for r in round_rows(ws)}
    one, two = rows[7].figures, rows[8].figures
    assert one["human_evaluation"] == two["human_evaluation"] == eid and one["human_reference"] == "base"
    # Every pair of arms went 18-6 for the better one: round 1 = p, round 2 = 2p with sigmoid(p) + sigmoid(2p)
    # = 36/24 (round 2's 36 wins in its 48 votes), p = 0.76.
    assert two["human_rating"] == pytest.approx(2 * one["human_rating"], abs=2e-3)
    assert one["human_chance"] + two["human_chance"] == pytest.approx(1.5, abs=1e-3)
    assert one["human_low"] <= one["human_rating"] <= one["human_high"] and one["human_rating"] > 0
    cell = {r["run"].split()[0]: r["human rating (Bradley–Terry vs base)"] for r in rounds_table(list(rows.values()))}
    assert cell["#7"].startswith(f"{one['human_rating']:+.2f} [") and f"vs base (beats it 68%), evaluation #{eid}" \
        in cell["#7"]
    assert one["human_note"] is None and "⚠️" not in cell["#7"]


def test_a_round_rated_with_the_one_before_says_how_its_rating_moved():
    from evaluation.rounds import RoundRow, round_summaries

    def row(run_id, previous, rating, evaluation):
        return RoundRow(round=run_id - 6, run_id=run_id, run_name=f"r{run_id}", stage="sft", status="finished",
                        version=None, version_text="", previous_run=previous,
                        figures={"human_rating": rating, "human_evaluation": evaluation, "human_reference": "base"})
    together = round_summaries([row(7, None, 0.76, 3), row(8, 7, 1.52, 3)])
    assert together == ["Round 2, run #8 (SFT) vs run #7: human rating (Bradley–Terry vs base, both in evaluation #3) "
                        "+0.76 → +1.52 (higher)."]
    apart = round_summaries([row(7, None, 0.76, 3), row(8, 7, 1.52, 4)])     # different evaluations: no one scale
    assert apart == ["Round 2, run #8 (SFT) vs run #7: no figure measured on both runs yet."]
