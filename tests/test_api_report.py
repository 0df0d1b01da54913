"""The /evaluation_report API's arms figures: Bradley–Terry ratings with intervals, the win matrix, rater quality
and each judge's agreement, exactly what evaluation.ratings and evaluation.judge give, as JSON."""
from __future__ import annotations

import json
from dataclasses import asdict

from evaluation import judge as J
from evaluation.arena import Arm, EvalItem, GoldItem, RaterChecks, create_evaluation, evaluation_comparisons, \
    next_pair, record_vote
from evaluation.ratings import arms_summary
from tests.test_arena_arms import register_run
from tests.test_judge import BAD, GOOD, ReadingJudge
from ui.api import evaluation_report

ARMS = [Arm("base", "base"), Arm("prompted base", "prompted", settings={"system_prompt": "Be brief."}),
        Arm("run 5", "run", run_id=5)]
ANSWERS = {"base": BAD, "prompted base": "Please write to us about it.", "run 5": GOOD}


def three_arm_evaluation(ws) -> int:
    """Four prompts, three arms; two raters vote for the good answer (else the prompted base's), a gold pair each."""
    register_run(ws, 5)
    items = [EvalItem(f"q{i}", [{"role": "user", "content": f"Refund for order {i}?"}], responses=ANSWERS)
             for i in range(4)]
    gold = [GoldItem("g1", [{"role": "user", "content": "Refund for order 90?"}], better=GOOD, worse=BAD)]
    eid = create_evaluation(ws, "three arms", items, arms=ARMS, base_model="tiny", overlap=2, gold=gold,
                            checks=RaterChecks(gold_rate=0.1))
    for rater in ("ana", "bob"):
        while (pair := next_pair(ws, eid, rater)) is not None:
            prefer = GOOD if rater == "ana" or pair.response_a != GOOD else ANSWERS["prompted base"]
            record_vote(ws, pair.assignment_id, rater,
                        "A" if pair.response_a == prefer else "B" if pair.response_b == prefer else "tie")
    return eid


def test_the_report_api_carries_the_arms_figures_and_the_judge_as_the_functions_give_them(ws):
    eid = three_arm_evaluation(ws)
    J.judge_evaluation(ws, eid, ReadingJudge())
    report = json.loads(json.dumps(evaluation_report(ws, str(eid), judge_threshold=0.5)))   # what a script reads
    expected = json.loads(json.dumps(arms_summary(evaluation_comparisons(ws, eid), reference="base",
                                                  arms=[a.name for a in ARMS])))
    assert report["arms"] == expected
    ratings = {r["arm"]: r for r in report["arms"]["ratings"]}
    assert set(ratings) == {"base", "prompted base", "run 5"} and ratings["base"]["rating"] == 0
    assert ratings["run 5"]["low"] <= ratings["run 5"]["rating"] <= ratings["run 5"]["high"]
    assert ratings["run 5"]["rating"] > 0 and ratings["run 5"]["comparisons"] > 0
    assert {frozenset((t["first"], t["second"])) for t in report["arms"]["win_matrix"]} == {
        frozenset(("base", "prompted base")), frozenset(("base", "run 5")), frozenset(("prompted base", "run 5"))}
    quality = {q["rater"]: q for q in report["arms"]["raters"]}
    assert quality["ana"]["gold_votes"] == quality["bob"]["gold_votes"] == 1 and quality["ana"]["gold_accuracy"] == 1
    [judged] = report["judges"]
    cal = J.calibrate(ws, eid, "reader", threshold=0.5)
    assert judged["judge"] == "reader" and judged["calibration"]["threshold"] == 0.5
    assert judged["calibration"] == json.loads(json.dumps({**asdict(cal), "passes": cal.passes}))
    assert judged["calibration"]["overall"]["kappa"] == cal.overall.kappa
    assert judged["rest"] == json.loads(json.dumps(asdict(J.rest_figures(ws, eid, "reader"))))
    assert report["closed"] is None and report["pairs"] == 4 * 3 + 1


def test_the_report_api_of_an_evaluation_without_votes_or_judge_says_so(ws):
    register_run(ws, 5)
    items = [EvalItem("q0", [{"role": "user", "content": "Refund?"}], responses=ANSWERS)]
    eid = create_evaluation(ws, "unrated", items, arms=ARMS, base_model="tiny")
    report = evaluation_report(ws, str(eid))
    assert report["arms"] is None and report["judges"] == [] and report["stats"] is None
