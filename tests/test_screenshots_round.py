"""docs/screenshots.py --with-run's raters: two simulated raters vote through the real arena (a real SQLite
workspace with the demo data split) with two raters per pair, prefer the answer close to the reference, and
leave the pair asked of them for the Rate picture."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from core.workspace import Workspace
from curation.data.demo import load_demo
from curation.splits.build import SplitOptions, split_version
from evaluation.arena import EvalItem, create_evaluation, evaluation_votes, rater_progress
from evaluation.generate import prompts_from_version

ROOT = Path(__file__).resolve().parent.parent


def screenshots():
    spec = importlib.util.spec_from_file_location("screenshots", ROOT / "docs" / "screenshots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_two_simulated_raters_vote_every_pair_through_the_arena(tmp_path):
    shots = screenshots()
    ws = Workspace.open(tmp_path / "ws")
    load_demo(ws, n=80)
    _, version = split_version(ws, "v1", SplitOptions(val=0.1, test=0.2, stratify="label", seed=1))
    answers = shots.references(ws, version.name)
    prompts = prompts_from_version(ws, version.name, limit=5)
    # the fine-tuned side gives the support team's answer, the base side something else
    items = [EvalItem(p.prompt_id, p.messages, base_response="Please contact our support team for help.",
                      finetuned_response=answers[p.messages[-1]["content"]]) for p in prompts]
    eid = create_evaluation(ws, "round 1 vs base", items, base_model="base", overlap=2)

    assert shots.vote(ws, eid, version.name, leave={"ben": 1}) == {"ana": 5, "ben": 4}
    assert rater_progress(ws, eid, "ben").total == 5                    # one pair left for the Rate picture
    assert shots.vote(ws, eid, version.name, leave={}) == {"ana": 5, "ben": 5}
    votes = evaluation_votes(ws, eid)
    assert len(votes) == 10 and {v.rater for v in votes} == {"ana", "ben"}
    assert {v.outcome for v in votes} == {"finetuned"}                  # both prefer the reference answer


def test_the_simulated_raters_judge_by_closeness_to_the_reference():
    shots = screenshots()
    reference = "Open the Lumio app, tap Sign in > Forgot password and enter the email on your account."
    close = "Open the Lumio app and tap Forgot password, then enter your account email."
    for rater in shots.RATERS:
        assert shots.simulated_verdict(rater, close, "I am not sure.", reference) == "A"
        assert shots.simulated_verdict(rater, "I am not sure.", close, reference) == "B"
        assert shots.simulated_verdict(rater, close, close, reference) == "tie"
        assert shots.simulated_verdict(rater, "Bananas.", "Weather is nice.", reference) == "both_bad"
