"""Ratings across arms against published and hand-computed figures: Bradley–Terry, its bootstrap, the win
matrix, rater quality, how many votes are enough and the sequential test."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from core.errors import TuneloopError
from evaluation.ratings import (Comparison, arm_ratings, arms_summary, bradley_terry, count_once, flagged_votes,
                                rater_quality, rough_note, sequential_test, votes_needed_at, votes_to_decide,
                                win_matrix)

ROOT = Path(__file__).resolve().parent.parent

# Agresti, Categorical Data Analysis (2nd ed., 2002), Table 10.10: games won by the row team against the column
# team, 1987 American League East, 13 games per pair (BradleyTerry2's `baseball` data, home and away added up).
TEAMS = ("Milwaukee", "Detroit", "Toronto", "New York", "Boston", "Cleveland", "Baltimore")
WINS = ((0, 7, 9, 7, 7, 9, 11),
        (6, 0, 7, 5, 11, 9, 9),
        (4, 6, 0, 7, 7, 8, 12),
        (6, 8, 6, 0, 6, 7, 10),
        (6, 2, 6, 7, 0, 7, 12),
        (4, 4, 5, 6, 6, 0, 6),
        (2, 4, 1, 3, 1, 7, 0))
# Agresti's Table 10.11, column 3: the Bradley–Terry estimates with Baltimore at 0 (also checked, rounded to two
# places, by BradleyTerry2's tests/testthat/test-baseball.R).
PUBLISHED = {"Milwaukee": 1.58, "Detroit": 1.44, "Toronto": 1.29, "New York": 1.25, "Boston": 1.11,
             "Cleveland": 0.68, "Baltimore": 0.0}


def baseball() -> list[Comparison]:
    """One comparison per game, each its own prompt, the winner shown on the left half the time."""
    out = []
    for i, a in enumerate(TEAMS):
        for j, b in enumerate(TEAMS):
            for g in range(WINS[i][j]):
                left, right, outcome = (a, b, "left") if g % 2 else (b, a, "right")
                out.append(Comparison(f"{a}-{b}-{g}", "league", left, right, outcome))
    return out


def test_bradley_terry_reproduces_agrestis_baseball_estimates():
    fitted = bradley_terry(baseball(), reference="Baltimore")
    assert {t: round(v, 2) for t, v in fitted.items()} == PUBLISHED


def test_a_tie_is_half_a_win_each_way_and_both_bad_is_left_out():
    # Milwaukee-Detroit 7-6 becomes 6-5 with two ties: the same scores (7, 6), so the same fit.
    games = [c for c in baseball() if {c.left, c.right} != {"Milwaukee", "Detroit"}]
    pair = [("Milwaukee", "left")] * 6 + [("Detroit", "left")] * 5 + [(None, "tie")] * 2
    for g, (winner, outcome) in enumerate(pair):
        left = winner or "Milwaukee"
        right = "Detroit" if left == "Milwaukee" else "Milwaukee"
        games.append(Comparison(f"md{g}", "league", left, right, outcome))
    games += [Comparison(f"bad{g}", "league", "Baltimore", "Milwaukee", "both_bad") for g in range(20)]
    fitted = bradley_terry(games, reference="Baltimore")
    assert {t: round(v, 2) for t, v in fitted.items()} == PUBLISHED


def test_bootstrap_intervals_contain_the_estimate_and_are_seeded():
    games = baseball()
    ratings = arm_ratings(games, reference="Baltimore", resamples=300, seed=7)
    assert [r.arm for r in ratings.arms] == list(TEAMS)
    for r in ratings.arms:
        assert r.low <= r.rating <= r.high
        if r.arm != "Baltimore":
            assert r.high - r.low > 0.5             # 78 games a team: about ±0.6 around each estimate (se 0.3)
    again = arm_ratings(games, reference="Baltimore", resamples=300, seed=7)
    other = arm_ratings(games, reference="Baltimore", resamples=300, seed=8)
    assert [(r.low, r.high) for r in again.arms] == [(r.low, r.high) for r in ratings.arms]
    assert [(r.low, r.high) for r in other.arms] != [(r.low, r.high) for r in ratings.arms]
    assert ratings.rough_note is None and ratings.prompts == 273


def test_bootstrap_resamples_prompts_not_votes():
    # Three raters agreeing on each of 12 prompts is 12 pieces of evidence, not 36.
    clustered = [Comparison(f"p{i}", r, "base", "run", "right" if i < 8 else "left") for i in range(12) for r in "xyz"]
    independent = [Comparison(f"q{i}", "x", "base", "run", "right" if i < 24 else "left") for i in range(36)]
    a = arm_ratings(clustered, reference="base", resamples=400).arms[0]
    b = arm_ratings(independent, reference="base", resamples=400).arms[0]
    assert a.rating == pytest.approx(b.rating, abs=1e-6)
    assert a.high - a.low > 1.3 * (b.high - b.low)


def test_an_arm_that_won_every_vote_is_said_to_have_no_finite_rating():
    votes = [Comparison(f"p{i}", "ana", "base", "run", "right") for i in range(6)]
    votes += [Comparison(f"q{i}", "ana", "base", "prompted", "left" if i % 2 else "right") for i in range(6)]
    ratings = arm_ratings(votes, reference="base", resamples=50)
    assert ratings.unbounded == ["run"]
    assert any(n.startswith("run: won (or lost) every vote") for n in ratings.notes())


def test_duplicates_by_a_rater_count_once_with_their_first_vote():
    votes = [Comparison("p1", "ana", "base", "run", "left"), Comparison("p1", "ana", "run", "base", "left"),
             Comparison("p1", "bob", "base", "run", "left"), Comparison("p2", "ana", "base", "run", "tie")]
    kept, dropped = count_once(votes)
    assert dropped == 1 and kept == [votes[0], *votes[2:]]
    ratings = arm_ratings(votes, reference="base", resamples=20)
    assert ratings.duplicates_dropped == 1 and ratings.used == 3
    assert "1 repeated vote(s) by a rater on the same prompt and arms were counted once (their first vote)" \
        in ratings.notes()[1]


def test_fewer_than_ten_prompts_carry_the_caveat():
    votes = [Comparison(f"p{i}", "ana", "base", "run", "right" if i % 3 else "left") for i in range(9)]
    ratings = arm_ratings(votes, reference="base", resamples=50)
    assert ratings.rough_note == "only 9 prompts: this interval is rough"
    assert "⚠️ only 9 prompts: this interval is rough." in ratings.notes()
    more = votes + [Comparison("p9", "ana", "base", "run", "right")]
    assert arm_ratings(more, reference="base", resamples=50).rough_note is None
    assert rough_note(1) == "only 1 prompt: this interval is rough"


def test_the_win_matrix_reads_along_its_rows():
    votes = [Comparison("p1", "ana", "base", "run", "right"), Comparison("p2", "ana", "run", "base", "left"),
             Comparison("p3", "ana", "base", "run", "left"), Comparison("p4", "ana", "run", "base", "tie"),
             Comparison("p5", "ana", "base", "run", "both_bad"), Comparison("p1", "ana", "base", "prompted", "left")]
    cells = {(t.first, t.second): t for t in win_matrix(votes)}
    run = cells[("run", "base")]
    assert (run.wins, run.losses, run.ties, run.both_bad, run.win_rate) == (2, 1, 1, 1, 2 / 3)
    assert (cells[("base", "run")].wins, cells[("base", "prompted")].wins, cells[("prompted", "base")].losses) \
        == (1, 1, 1)
    assert ("prompted", "run") not in cells


def hand_made_raters() -> list[Comparison]:
    """Four raters on prompts p0..p5 (arms base / run; run is better except on p3): ana, bob and cy judge on the
    merits, dan always picks the left side, which is always the base for him; then gold pairs and repeats."""
    out = []
    for i in range(6):
        better = "base" if i == 3 else "run"
        for rater, flip in (("ana", 1), ("bob", 1), ("cy", 0)):
            left, right = ("base", "run") if (i + flip) % 2 else ("run", "base")
            out.append(Comparison(f"p{i}", rater, left, right, "left" if left == better else "right"))
        out.append(Comparison(f"p{i}", "dan", "base", "run", "left"))
    out[-4] = replace(out[-4], flagged="answer A says 'as a SmolLM model'")     # ana on p5
    out.append(out[18])                 # cy's p4 vote again with the same sides: a duplicate, not a swapped repeat
    # p6 without dan: ana and cy say run, bob base; for ana (and cy) the others are split one-one, so no majority
    out += [Comparison("p6", "ana", "base", "run", "right"), Comparison("p6", "bob", "run", "base", "right"),
            Comparison("p6", "cy", "run", "base", "left")]
    # gold pairs: ana right on 5 of 5, dan on 1 of 5 (a tie on a gold pair is wrong)
    for i in range(5):
        out.append(Comparison(f"g{i}", "ana", "worse", "gold answer", "right", gold="gold answer"))
        out.append(Comparison(f"g{i}", "dan", "worse", "gold answer", "right" if i == 0 else "left" if i < 4 else "tie",
                              gold="gold answer"))
    # bob's pairs p0..p2 again with the sides swapped (bob's first showing was base left on p0 and p2, run on p1)
    out.append(Comparison("p0", "bob", "run", "base", "left"))      # run again: consistent
    out.append(Comparison("p1", "bob", "base", "run", "right"))     # run again: consistent
    out.append(Comparison("p2", "bob", "run", "base", "right"))     # base this time: flipped (his first vote counts)
    return out


def test_rater_quality_on_a_hand_made_set():
    by = {q.rater: q for q in rater_quality(hand_made_raters())}
    ana, bob, cy, dan = by["ana"], by["bob"], by["cy"], by["dan"]
    assert (ana.votes, bob.votes, cy.votes, dan.votes) == (12, 7, 7, 11)       # repeats, duplicates count once
    assert (ana.gold_votes, ana.gold_correct, dan.gold_votes, dan.gold_correct) == (5, 5, 5, 1)
    assert (bob.repeats, bob.repeats_consistent) == (3, 2) and bob.repeat_consistency == pytest.approx(2 / 3)
    assert ana.repeats == cy.repeats == dan.repeats == 0               # cy's duplicate kept its sides
    # dan: left on p0..p5 (6) and on g1..g3 of his 4 decisive gold votes: 9 of 10; exact two-sided p = 22/1024
    assert (dan.decisive, dan.left_wins) == (10, 9) and dan.position_p == pytest.approx(22 / 1024)
    # agreement with the others' majority (gold pairs left out, bob's first vote on p2 counted): ana, bob and cy
    # agree with it on p0..p5, bob not on p6 (ana and cy have no majority there); dan matches it only on p3
    assert [(q.shared, q.agreed) for q in (ana, bob, cy, dan)] == [(6, 6), (7, 6), (6, 6), (6, 1)]
    assert dan.outlier == ["gold pairs right 1/5", "agrees with the others 1/6"]
    assert ana.outlier == bob.outlier == cy.outlier == []
    assert [(c.prompt_id, c.rater) for c in flagged_votes(hand_made_raters())] == [("p5", "ana")]
    assert (ana.flagged_votes, bob.flagged_votes) == (1, 0)


def test_votes_to_decide_matches_a_hand_computation():
    # 6 wins of 10: the Wilson interval excludes 50% once |0.6 - 0.5| > 1.96·sqrt(0.25/n), n > 96.04 → 97 votes,
    # 87 more. For 80% power: ((1.95996·0.5 + 0.84162·sqrt(0.24)) / 0.1)² = 193.85 → 194, 184 more.
    need = votes_to_decide(6, 10)
    assert (need["if_rate_holds"], need["for_power"]) == (87, 184)
    assert votes_needed_at(0.6) == 194 and votes_needed_at(0.4) == 194
    assert votes_to_decide(60, 100)["if_rate_holds"] == 0         # 60/100: Wilson [0.502, 0.691] already excludes
    assert votes_to_decide(5, 10)["for_power"] is None and votes_to_decide(0, 0)["win_rate"] is None


def test_the_sequential_test_decides_on_a_constructed_sequence():
    # mSPRT with a uniform mixture: LR = B(w+1, l+1)·2^n. 7-0 → 2^7/8 = 16 < 20; 8-0 → 2^8/9 = 28.4 ≥ 20.
    assert sequential_test([True] * 7)["decided"] is False
    run = sequential_test([True] * 8 + [False] * 3)
    assert run["decided_at"] == 8 and run["decided"] is True
    assert run["likelihood_ratio"] == pytest.approx(math.comb(11, 3) ** -1 / 12 * 2 ** 11)
    # Alternating wins and losses never decide.
    assert sequential_test([True, False] * 200)["decided"] is False
    # One loss, then wins: LR = 2^(w+1) / ((w+1)(w+2)): 10 wins → 2048/132 = 15.5; 11 wins → 4096/156 = 26.3.
    assert sequential_test([False] + [True] * 10)["decided"] is False
    assert sequential_test([False] + [True] * 11)["decided_at"] == 12
    # Losing every vote decides as surely as winning every one (the test is two-sided).
    assert sequential_test([False] * 8)["decided_at"] == 8


def test_the_stats_cli_rates_arms_from_a_comparisons_file(tmp_path):
    path = tmp_path / "comparisons.jsonl"
    path.write_text("".join(json.dumps(asdict(c)) + "\n" for c in hand_made_raters()))
    run = [sys.executable, "-m", "evaluation", "stats", str(path)]
    text = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "Bradley–Terry ratings (logit scale, base at 0" in text
    assert "⚠️ only 7 prompts: this interval is rough." in text
    assert "dan: 11 votes, gold right 1/5 (20%)" in text and "OUTLIER: gold pairs right 1/5" in text
    assert "p5 by ana (run vs base: left): answer A says 'as a SmolLM model'" in text
    s = json.loads(subprocess.run(run + ["--json"], cwd=ROOT, capture_output=True, text=True, check=True).stdout)
    assert [r["arm"] for r in s["ratings"]] == ["run", "base"] and s["duplicates_dropped"] == 4
    wrong = subprocess.run(run + ["--reference", "gpt"], cwd=ROOT, capture_output=True, text=True)
    assert wrong.returncode == 2 and "'gpt' is not an arm of these votes; the arms are base, run" in wrong.stderr


def test_an_evaluation_whose_first_votes_leave_out_the_base_is_rated_with_a_note_not_refused():
    votes = [Comparison("p0", "ana", "prompted", "tuned", "right")]
    s = arms_summary(votes, reference="base", arms=["base", "prompted", "tuned"], resamples=20)
    assert s["unbounded"] == ["prompted", "tuned"] and any("no finite rating fits" in n for n in s["notes"])
    with pytest.raises(TuneloopError, match="'base' is not an arm of these votes; the arms are prompted, tuned"):
        arms_summary(votes, reference="base")


def test_the_decision_line_says_stop_only_while_the_test_still_holds():
    from evaluation.ratings import decision_lines
    need = votes_to_decide(10, 10)
    holding = decision_lines(need, sequential_test([True] * 10), 0.72, 1.0, subject="tuned")
    assert holding[1].endswith("decided at decisive vote 8, tuned better; you can stop rating (likelihood ratio now "
                               "93.1, threshold 20)")
    # 8 wins then 8 losses: decided at the 8th, then B(9, 9)·2^16 = 0.30
    faded = decision_lines(votes_to_decide(8, 16), sequential_test([True] * 8 + [False] * 8), 0.28, 0.72)[1]
    assert "decided at decisive vote 8, the fine-tuned model better, but the votes since have brought the " \
           "likelihood ratio down to 0.3" in faded and "you can stop" not in faded
