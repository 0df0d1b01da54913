"""Gold pairs from a split's reference answers: the record's own answer against another prompt's, shown like any
pair, and the raters' gold accuracy computed from them."""
from __future__ import annotations

import dataclasses
import json

from curation.data.records import Record
from curation.data.versions import create_version
from evaluation.arena import Arm, BlindPair, EvalItem, RaterChecks, create_evaluation, evaluation_comparisons, \
    next_pair, record_vote
from evaluation.gold import gold_from_references, gold_needed
from evaluation.ratings import rater_quality
from tests.test_generate import run_folder  # noqa: F401  (a fixture)
from tests.test_prepare_ui import tab  # noqa: F401  (a fixture)

QUESTIONS = [("Where is parcel 12?", "Parcel 12 left the depot this morning.", "shipping"),
             ("Can I get a refund for order 7?", "Yes: open Orders, choose order 7 and press Refund.", "billing"),
             ("How do I change my address?", "Open Account, then Addresses, and edit the default one.", "account"),
             ("Is parcel 30 delayed?", "Parcel 30 is on time and arrives on Friday.", "shipping"),
             ("Why was I charged twice?", "The second charge is a hold; it disappears within 3 days.", "billing")]


def version_with_references(ws):
    records = [Record(f"r{i}", [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                      {"split": "test", "label": label}) for i, (q, a, label) in enumerate(QUESTIONS)]
    return create_version(ws, records, parent=None, step="split")


def test_gold_pairs_from_references_pair_each_prompt_s_answer_with_another_prompt_s(ws):
    version = version_with_references(ws)
    gold = gold_from_references(ws, version.id, split="test", count=3, avoid={"r0", "r1"})
    answers = {q: (a, label) for q, a, label in QUESTIONS}
    assert len(gold) == 3 and {g.prompt_id for g in gold} == {"gold:r2", "gold:r3", "gold:r4"}  # outside first
    for g in gold:
        better, label = answers[g.messages[-1]["content"]]
        assert g.better == better and g.worse != better and g.label == label
        assert g.worse in {a for _, a, other in QUESTIONS if other != label}           # another label's answer
    assert gold_needed(0.1, 24) == 3 and gold_needed(0.0, 24) == 0


def test_gold_pairs_from_references_look_like_any_pair_and_give_each_rater_s_gold_accuracy(ws):
    version = version_with_references(ws)
    arms = [Arm("base", "base"), Arm("shop bot", "endpoint", settings={"model": "m"})]
    items = [EvalItem(f"q{i}", [{"role": "user", "content": q}], responses={"base": f"{a} (base)",
                                                                            "shop bot": a})
             for i, (q, a, _) in enumerate(QUESTIONS)]
    gold = gold_from_references(ws, version.id, split="test", count=gold_needed(0.4, len(items)))
    eid = create_evaluation(ws, "gold from references", items, arms=arms, base_model="tiny", gold=gold, overlap=2,
                            checks=RaterChecks(gold_rate=0.4))
    right = {g.messages[-1]["content"]: g.better for g in gold}
    for rater, knows in (("ana", True), ("bob", False)):
        while (pair := next_pair(ws, eid, rater)) is not None:
            assert type(pair) is BlindPair and set(dataclasses.asdict(pair)) == {
                "assignment_id", "evaluation_id", "context", "prompt", "response_a", "response_b", "done", "total"}
            assert "gold" not in repr(pair).lower()
            better = right.get(pair.prompt)
            good_side = "A" if pair.response_a == better else "B"
            verdict = good_side if knows else ("B" if good_side == "A" else "A")
            record_vote(ws, pair.assignment_id, rater, verdict if better in (pair.response_a, pair.response_b)
                        else "A")
    quality = {q.rater: q for q in rater_quality(evaluation_comparisons(ws, eid))}
    assert quality["ana"].gold_votes == quality["bob"].gold_votes == 2
    assert (quality["ana"].gold_accuracy, quality["bob"].gold_accuracy) == (1.0, 0.0)


def test_the_prepare_form_adds_gold_pairs_from_the_test_split_s_references(ws, tab, run_folder):  # noqa: F811
    from evaluation import prepare_ui
    from evaluation.arena import get_evaluation
    from tests.tab_page import page
    from tests.test_generate import finished_run, split_version
    from tests.test_prepare_ui import no_progress
    w = tab.prepare
    version = split_version(ws)                                 # two test prompts, references "Answer 5." and "6."
    run = finished_run(ws, run_folder, version)
    data = page(w, source="test", purpose="measure", version=version.name, runs=[str(run.id)],
                decoding={"max_new_tokens": 3}, gold_from_references=True, checks={"gold_rate": 0.5})
    out = prepare_ui.generate_clicked(ws, w, tab, data, None, progress=no_progress)
    assert "✅ Evaluation #1 is ready" in out[w.status], out[w.status]
    assert get_evaluation(ws, 1).num_pairs == 2 + 1                          # 0.5 of 2 arm pairs: one gold pair
    gold = ws.db.execute("select first_response, second_response from eval_pairs where gold=1").fetchall()
    assert {tuple(g) for g in gold} <= {("Answer 5.", "Answer 6."), ("Answer 6.", "Answer 5.")}
    made_from = f"the reference answers of {version.name}'s test split"
    assert get_evaluation(ws, 1).settings["gold"] == {"pairs": 1, "from_references": 1, "made_from": [made_from]}
    said = f"gold pairs at rate 0.5: 1 (1 from {made_from})"
    assert f"With {said}." in out[w.status].replace("&#x27;", "'")
    from evaluation import ui
    shown = ui.results_figures(ws, 1, "majority").summary       # the Results tab's summary, before any vote
    assert said in shown.replace("&#x27;", "'")
    refused = prepare_ui.generate_clicked(ws, w, tab, {**data, w.checks["gold_rate"]: 0}, None, progress=no_progress)
    assert "set it above 0" in refused[w.status]


def test_the_generate_command_adds_gold_pairs_from_references_at_the_gold_rate(ws, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from evaluation.arena import get_evaluation
    from tests.tiny_model import build_tiny_model
    tiny = build_tiny_model(tmp_path / "tiny")
    version = version_with_references(ws)
    command = [sys.executable, "-m", "evaluation", "generate", "--arm", "base", "--arm", "prompted:0",
               "--system-prompt", "Be brief.", "--base", str(tiny), "--split", version.name, "--max-new-tokens", "3",
               "--limit", "2", "--gold-from-references", "--gold-rate", "0.5", "--workspace", str(ws.root)]
    done = subprocess.run(command, cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert get_evaluation(ws, 1).num_pairs == 2 + 1
    [prompt] = ws.db.execute("select prompt_id from eval_pairs where gold=1").fetchall()
    assert prompt[0] in {"gold:r2", "gold:r3", "gold:r4"}                     # a prompt outside the evaluation
    report = subprocess.run([sys.executable, "-m", "evaluation", "report", "1", "--workspace", str(ws.root)],
                            cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, check=True)
    assert f" · gold pairs at rate 0.5: 1 (1 from the reference answers of {version.name}'s test split)" in \
        report.stdout.splitlines()[0]
    as_json = subprocess.run([sys.executable, "-m", "evaluation", "report", "1", "--json", "--workspace",
                              str(ws.root)], cwd=Path(__file__).resolve().parent.parent, capture_output=True,
                             text=True, check=True)
    reported = json.loads(as_json.stdout)
    assert reported["gold_rate"] == 0.5 and reported["gold"]["pairs"] == 1 and \
        reported["gold"]["from_references"] == 1
    unset = subprocess.run(command[:-4] + ["--workspace", str(ws.root)], cwd=Path(__file__).resolve().parent.parent,
                           capture_output=True, text=True)
    assert unset.returncode == 2 and "set it above 0" in unset.stderr
