"""Statistics against known values; the `stats` CLI on a votes file."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import InputProblem
from evaluation.stats import Vote, format_summary, krippendorff_alpha, read_votes_jsonl, summarize

ROOT = Path(__file__).resolve().parent.parent


def known_votes() -> list[dict]:
    """30 decisive votes (20 fine-tuned wins) plus 4 ties and 2 both-bad, on 36 prompts, one rater each."""
    rows = []
    verdicts = ["finetuned"] * 20 + ["base"] * 10 + ["tie"] * 4 + ["both_bad"] * 2
    for i, verdict in enumerate(verdicts):
        rows.append({"prompt_id": f"p{i}", "rater": "ana" if i % 2 else "bob", "verdict": verdict,
                     "finetuned_side": "A" if i % 3 else "B", "label": "billing" if i < 18 else "shipping"})
    return rows


def as_votes(rows) -> list[Vote]:
    return [Vote(r["prompt_id"], r["rater"], r["verdict"], r["finetuned_side"], r.get("label")) for r in rows]


def test_win_rate_wilson_and_sign_test_match_known_values():
    s = summarize(as_votes(known_votes()))
    assert (s["wins"], s["losses"], s["ties"], s["both_bad"], s["decisive"]) == (20, 10, 4, 2, 30)
    assert round(s["win_rate"], 3) == 0.667
    assert (round(s["wilson_low"], 3), round(s["wilson_high"], 3)) == (0.488, 0.808)
    assert round(s["sign_test_p"], 3) == 0.099


def test_ties_count_half_and_bootstrap_brackets_it():
    s = summarize(as_votes(known_votes()))
    assert s["win_rate_ties_half"] == pytest.approx((20 + 0.5 * 6) / 36)
    assert s["bootstrap_low"] < s["win_rate_ties_half"] < s["bootstrap_high"]


def test_bootstrap_resamples_prompts_not_votes():
    # Three raters agreeing on each of 12 prompts is 12 pieces of evidence, not 36.
    clustered = [Vote(f"p{i}", r, "finetuned" if i < 8 else "base", "A") for i in range(12) for r in "xyz"]
    independent = [Vote(f"q{i}", "x", "finetuned" if i < 24 else "base", "A") for i in range(36)]
    a, b = summarize(clustered), summarize(independent)
    assert a["win_rate_ties_half"] == b["win_rate_ties_half"]
    assert a["bootstrap_high"] - a["bootstrap_low"] > 1.3 * (b["bootstrap_high"] - b["bootstrap_low"])


def test_position_bias_counts_the_left_side():
    rows = [Vote(f"p{i}", "ana", "finetuned", "A") for i in range(15)]      # left won 15
    rows += [Vote(f"q{i}", "ana", "base", "B") for i in range(5)]           # base on left won 5
    rows += [Vote(f"r{i}", "ana", "finetuned", "B") for i in range(5)]      # right won 5
    s = summarize(rows)
    assert s["left_wins"] == 20 and s["decisive"] == 25
    assert s["left_win_rate"] == pytest.approx(0.8)
    assert s["position_p"] == pytest.approx(0.004077, abs=1e-5)


def test_krippendorff_alpha_nominal_matches_hand_computation():
    # r1: F F B B, r2: F F B F → D_o = 2/8, D_e = 2*5*3/(8*7) → alpha = 1 - 0.25/0.5357 = 0.5333
    verdicts = {"ana": "finetuned finetuned base base", "bob": "finetuned finetuned base finetuned"}
    votes = [Vote(f"p{i}", r, v, "A") for r, line in verdicts.items() for i, v in enumerate(line.split())]
    votes.append(Vote("solo", "ana", "tie", "A"))                         # one rater only: not an agreement item
    alpha, items = krippendorff_alpha(votes)
    assert items == 4
    assert alpha == pytest.approx(0.5333, abs=1e-4)
    assert krippendorff_alpha([Vote("p", "ana", "tie", "A")]) == (None, 0)


def test_krippendorff_alpha_treats_verdicts_as_unordered_categories():
    # Two raters swap tie and both_bad on two of four prompts: o = 4 disagreeing pairs of 8 values, every
    # verdict twice → D_o = 0.5, D_e = (64 - 16) / 56 → nominal alpha 5/12. Ordinal or interval would
    # call tie and both_bad neighbours and give 0.825.
    verdicts = {"ana": "finetuned base tie both_bad", "bob": "finetuned base both_bad tie"}
    votes = [Vote(f"p{i}", r, v, "A") for r, line in verdicts.items() for i, v in enumerate(line.split())]
    alpha, items = krippendorff_alpha(votes)
    assert items == 4
    assert alpha == pytest.approx(5 / 12, abs=1e-9)


def test_per_rater_and_label_breakdowns():
    s = summarize(as_votes(known_votes()))
    by_rater = {r["rater"]: r for r in s["per_rater"]}
    assert by_rater["ana"]["votes"] + by_rater["bob"]["votes"] == 36
    by_label = {r["label"]: r for r in s["by_label"]}
    assert by_label["billing"]["wins"] == 18 and by_label["shipping"]["wins"] == 2
    assert "Wilson 95%: 0.488, 0.808" in format_summary(s)


def test_votes_file_problems_are_listed_by_line(tmp_path):
    path = tmp_path / "votes.jsonl"
    path.write_text('{"prompt_id": "a", "rater": "x", "verdict": "A", "finetuned_side": "A"}\n'
                    '{"prompt_id": "b", "rater": "x", "verdict": "base", "finetuned_side": "left"}\n'
                    '{"prompt_id": "c", "verdict": "tie", "finetuned_side": "B"}\n')
    with pytest.raises(InputProblem) as err:
        read_votes_jsonl(path)
    text = str(err.value)
    assert "line 1: verdict is 'A'" in text and "line 2: finetuned_side" in text and "line 3: missing rater" in text


def test_stats_cli_prints_json_with_the_documented_keys(tmp_path):
    path = tmp_path / "votes.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in known_votes()))
    out = subprocess.run([sys.executable, "-m", "evaluation", "stats", str(path), "--json"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    s = json.loads(out)
    for key in ("win_rate", "wilson_low", "wilson_high", "sign_test_p", "left_win_rate", "position_p",
                "krippendorff_alpha"):
        assert key in s
    assert round(s["win_rate"], 3) == 0.667 and round(s["sign_test_p"], 3) == 0.099
    text = subprocess.run([sys.executable, "-m", "evaluation", "stats", str(path)], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout
    assert "sign test p = 0.099" in text


def test_a_rater_voting_twice_on_a_prompt_counts_once_in_win_rate_and_alpha():
    # ana votes twice on p0 (base first, then fine-tuned), bob once; p1 both once.
    votes = [Vote("p0", "ana", "base", "A"), Vote("p0", "bob", "finetuned", "B"), Vote("p0", "ana", "finetuned", "B"),
             Vote("p1", "ana", "base", "A"), Vote("p1", "bob", "base", "B"), Vote("p2", "bob", "finetuned", "A")]
    s = summarize(votes)
    assert (s["votes"], s["wins"], s["losses"], s["duplicates_dropped"]) == (5, 2, 3, 1)
    assert [(r["rater"], r["votes"]) for r in s["per_rater"]] == [("ana", 2), ("bob", 3)]
    # alpha over the same counted votes: p0 B F, p1 B B → D_o = 2/4, D_e = 2·3·1/(4·3) → alpha 0 (her later
    # fine-tuned vote would make it 1)
    assert s["krippendorff_alpha"] == pytest.approx(0.0) and s["agreement_items"] == 2
    assert krippendorff_alpha(votes) == (s["krippendorff_alpha"], 2)
    assert "1 repeated vote(s) by a rater on the same prompt were counted once" in format_summary(s)


def test_an_interval_from_fewer_than_ten_prompts_says_it_is_rough(tmp_path):
    few = [r for r in known_votes() if int(r["prompt_id"][1:]) < 9]
    path = tmp_path / "votes.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in few))
    text = subprocess.run([sys.executable, "-m", "evaluation", "stats", str(path)], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout
    assert "⚠️ only 9 prompts: this interval is rough" in text
    assert summarize(as_votes(known_votes()))["rough_note"] is None


def test_the_summary_says_how_many_votes_would_settle_it_and_whether_to_stop():
    # 20 of 30 decisive: |0.667 - 0.5| > 1.96·sqrt(0.25/n) from n = 35 → 5 more if the rate holds.
    s = summarize(as_votes(known_votes()))
    assert s["votes_to_decide"]["if_rate_holds"] == 5
    # the 20 fine-tuned wins come first: 2^8 / 9 = 28.4 ≥ 20 at the 8th decisive vote
    assert s["sequential"]["decided_at"] == 8 and s["sequential"]["better"] is True
    text = format_summary(s)
    assert "votes needed: about 5 more decisive votes" in text and "decided at decisive vote 8" in text
    plan = format_summary(summarize([Vote("p0", "ana", "tie", "A")]))
    assert "before any decisive vote" in plan and "60%: 194" in plan
