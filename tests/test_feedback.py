"""Votes become data: preference pairs, corrected answers, the needs-an-answer queue, and the merge."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import TuneloopError
from curation.data.records import Record
from curation.data.versions import create_version, current_version, get_version, list_versions, load_records
from curation.review.answer_requests import open_requests
from curation.review.state import needs_answer_ids
from evaluation.arena import next_pair, record_vote
from evaluation.feedback import (answer_needed, collect_feedback, export_kto, export_preferences, make_kto_version,
                                 make_preference_version, merge_feedback, origin, request_missing_answers)
from tests.test_arena import make_evaluation

ROOT = Path(__file__).resolve().parent.parent

# prompt → rater → outcome (or (outcome, corrected answer))
PLAN = {
    "p0": {"ana": "finetuned", "bob": "finetuned", "cy": "tie"},
    "p1": {"ana": "finetuned", "bob": "base", "cy": "finetuned"},
    "p2": {"ana": "finetuned", "bob": "base", "cy": "tie"},
    "p3": {"ana": "both_bad", "bob": "both_bad", "cy": "both_bad"},
    "p4": {"ana": ("both_bad", "Order LM-1004 ships on Monday; the tracking link is in your email."),
           "bob": "base", "cy": "tie"},
    "p5": {"ana": "finetuned", "bob": "finetuned", "cy": "finetuned"},
}


def vote_as_planned(ws, eid):
    for rater in ("ana", "bob", "cy"):
        while (pair := next_pair(ws, eid, rater)) is not None:
            prompt_id = "p" + pair.prompt.split()[1].rstrip(":")
            planned = PLAN.get(prompt_id, {}).get(rater, "tie")
            outcome, corrected = planned if isinstance(planned, tuple) else (planned, None)
            if outcome in ("finetuned", "base"):
                tuned_on_a = pair.response_a.startswith("tuned")
                verdict = "A" if tuned_on_a == (outcome == "finetuned") else "B"
            else:
                verdict = outcome
            record_vote(ws, pair.assignment_id, rater, verdict, corrected_answer=corrected)


@pytest.fixture
def rated(ws):
    records = [Record(f"p{i}", [{"role": "system", "content": "You are Lumio support."},
                                {"role": "user", "content": f"Question {i}: where is order LM-{1000 + i}?"},
                                {"role": "assistant", "content": "reference"}], {"split": "test"})
               for i in range(6)]
    records += [Record(f"t{i}", [{"role": "user", "content": f"train {i}"}, {"role": "assistant", "content": "ok"}],
                       {"split": "train"}) for i in range(4)]
    version = create_version(ws, records, parent=None, step="split")
    eid = make_evaluation(ws, n=6, overlap=3)
    vote_as_planned(ws, eid)
    return ws, eid, version


def test_majority_policy_keeps_the_larger_side_and_lists_disagreements(rated):
    ws, eid, _ = rated
    fb = collect_feedback(ws, eid, policy="majority")
    chosen = {p["meta"]["prompt_id"]: p["meta"]["chosen_model"] for p in fb.preference_pairs}
    assert chosen == {"p0": "finetuned", "p1": "finetuned", "p4": "base", "p5": "finetuned"}
    resolutions = {d["prompt_id"]: d["resolution"] for d in fb.disagreements}
    # a tie or both-bad beside decisive votes is a disagreement too (p0: tuned, tuned, tie)
    assert resolutions == {"p0": "majority", "p1": "majority", "p2": "excluded", "p4": "majority"}
    assert {p["meta"]["prompt_id"]: p["meta"]["resolution"] for p in fb.preference_pairs}["p5"] == "unanimous"
    p1 = next(p for p in fb.preference_pairs if p["meta"]["prompt_id"] == "p1")
    assert p1["chosen"] == [{"role": "assistant", "content": "tuned answer 1"}]
    assert p1["rejected"] == [{"role": "assistant", "content": "base answer 1"}]
    assert p1["prompt"][-1]["role"] == "user" and p1["meta"]["raters"] == ["ana", "cy"]
    assert len(p1["meta"]["vote_ids"]) == 2 and p1["meta"]["run"] == 7


def test_a_feedback_version_whose_lineage_row_fails_is_not_made(rated):
    ws, eid, base_version = rated
    versions_before = [v.id for v in list_versions(ws)]
    ws.db.execute("create trigger refuse_lineage before insert on feedback_versions"
                  " begin select raise(abort, 'lineage row refused'); end")
    for make in (merge_feedback, make_preference_version):
        with pytest.raises(Exception, match="lineage row refused"):
            make(ws, eid)
        assert [v.id for v in list_versions(ws)] == versions_before
        assert current_version(ws).id == base_version.id


def test_unanimous_policy_keeps_only_pairs_every_rater_voted_the_same_side_for(rated):
    ws, eid, _ = rated
    fb = collect_feedback(ws, eid, policy="unanimous")
    # p0 (tuned, tuned, tie) and p4 (both bad, base, tie) are not unanimous: one rater saw no winner
    assert [p["meta"]["prompt_id"] for p in fb.preference_pairs] == ["p5"]
    assert fb.preference_pairs[0]["meta"]["resolution"] == "unanimous"
    assert fb.counts()["disagreements_excluded"] == 4


def test_a_pair_whose_two_answers_are_the_same_text_is_never_a_preference(ws):
    from evaluation.arena import EvalItem, create_evaluation
    items = [EvalItem(prompt_id=f"q{i}", messages=[{"role": "user", "content": f"Where is order LM-{i}?"}],
                      base_response=base, finetuned_response=tuned, split="test")
             for i, (base, tuned) in enumerate([("It ships  on Monday.\n", " It ships on\tMonday."),
                                                 ("It ships on Monday.", "It shipped on Monday.")])]
    eid = create_evaluation(ws, "same answers", items, base_model="SmolLM2-135M-Instruct")
    while (pair := next_pair(ws, eid, "ana")) is not None:
        record_vote(ws, pair.assignment_id, "ana", "A")
    for policy in ("majority", "unanimous"):
        fb = collect_feedback(ws, eid, policy=policy)
        assert [p["meta"]["prompt_id"] for p in fb.preference_pairs] == ["q1"]
        assert fb.counts()["identical_answers"] == 1
    from evaluation.ui import results_figures
    assert "1 voted pairs left out: both answers the same text" in results_figures(ws, eid, "majority").feedback


def test_the_preference_version_is_made_once_and_exported_as_trl_rows(rated, tmp_path):
    ws, eid, base_version = rated
    versions_before = len(list_versions(ws))
    collect_feedback(ws, eid, policy="unanimous")          # what a view does: nothing is written
    assert len(list_versions(ws)) == versions_before and open_requests(ws) == []
    with pytest.raises(TuneloopError, match="would mix the test set into training"):
        export_preferences(ws, eid, tmp_path / "prefs.jsonl")    # every prompt here is a test prompt
    version = export_preferences(ws, eid, tmp_path / "prefs")
    assert version.kind == "preference" and version.step == "preferences" and version.num_records == 4
    assert version.params == {"evaluation": eid, "run": 7, "policy": "majority"}
    assert version.parent_id is None          # the evaluation names no version its prompts came from
    assert current_version(ws).id == base_version.id        # preference pairs never become the SFT data
    assert ws.db.execute("select evaluation_id, kind, policy from feedback_versions where version_id=?",
                         (version.id,)).fetchone()[:] == (eid, "preferences", "majority")
    assert sorted(p.name for p in (tmp_path / "prefs").iterdir()) == ["test.jsonl"]
    rows = [json.loads(line) for line in (tmp_path / "prefs" / "test.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    for row in rows:
        assert set(row) == {"id", "prompt", "chosen", "rejected", "meta"}
        assert row["prompt"][-1]["role"] == "user"
        assert row["chosen"][0]["role"] == row["rejected"][0]["role"] == "assistant"
        assert row["meta"]["evaluation"] == eid and row["meta"]["vote_ids"] and row["meta"]["split"] == "test"
    assert make_preference_version(ws, eid).id == version.id      # same votes, same policy: the same version
    unanimous = make_preference_version(ws, eid, policy="unanimous")
    assert unanimous.id != version.id and unanimous.num_records == 1 and unanimous.params["policy"] == "unanimous"
    (p5,) = load_records(ws, unanimous.id)
    assert p5.chosen == [{"role": "assistant", "content": "tuned answer 5"}] and p5.meta["chosen_model"] == "finetuned"


def _labels(examples) -> dict[tuple[str, str], bool]:
    return {(e.meta["prompt_id"], e.meta["answer_model"]): e.desirable for e in examples}


def test_every_answer_a_vote_judged_becomes_a_kto_example(rated):
    ws, eid, _ = rated
    fb = collect_feedback(ws, eid, policy="majority")
    # p2 (tuned, base, tie) judges each answer once good and once bad: excluded, as p4's base answer (base, both bad)
    assert _labels(fb.kto) == {("p0", "finetuned"): True, ("p0", "base"): False,
                               ("p1", "finetuned"): True, ("p1", "base"): False,
                               ("p3", "finetuned"): False, ("p3", "base"): False,
                               ("p4", "finetuned"): False, ("p4", "correction"): True,
                               ("p5", "finetuned"): True, ("p5", "base"): False}
    assert fb.kto_excluded == 3 and fb.ties_unused == 3
    p1 = next(e for e in fb.kto if e.meta["prompt_id"] == "p1" and e.meta["answer_model"] == "base")
    assert p1.completion == [{"role": "assistant", "content": "base answer 1"}] and p1.messages[-1]["role"] == "user"
    assert p1.meta["raters"] == ["ana", "cy"] and p1.meta["resolution"] == "majority" and p1.meta["run"] == 7
    assert p1.meta["split"] == "test" and p1.meta["evaluation"] == eid
    correction = next(e for e in fb.kto if e.meta["answer_model"] == "correction")
    assert correction.completion[0]["content"].startswith("Order LM-1004 ships on Monday")
    unanimous = collect_feedback(ws, eid, policy="unanimous")
    assert set(_labels(unanimous.kto)) == set(_labels(fb.kto)) - {("p1", "finetuned"), ("p1", "base")}
    assert unanimous.kto_excluded == 5


def test_the_kto_version_is_made_once_and_exported_as_trl_rows(rated, tmp_path):
    ws, eid, base_version = rated
    version = export_kto(ws, eid, tmp_path / "kto")
    assert version.kind == "kto" and version.step == "kto" and version.num_records == 10
    assert version.counts["desirable"] == 4 and version.counts["undesirable"] == 6
    assert version.counts["from_test_prompts"] == 10 and version.params["policy"] == "majority"
    assert current_version(ws).id == base_version.id
    assert make_kto_version(ws, eid).id == version.id
    rows = [json.loads(line) for line in (tmp_path / "kto" / "test.jsonl").read_text().splitlines()]
    assert {tuple(sorted(row)) for row in rows} == {("completion", "id", "label", "meta", "prompt")}
    assert sorted(row["label"] for row in rows) == [False] * 6 + [True] * 4
    out = subprocess.run([sys.executable, "-m", "evaluation", "export-kto", str(eid), "--policy", "unanimous",
                          "--workspace", str(ws.root)], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "8 KTO examples" in out and "kto_data: v" in out


def test_the_merge_says_where_each_record_went_and_why(rated):
    ws, eid, _ = rated
    version = merge_feedback(ws, eid)
    assert version.counts["into_test"] == 1 and "into_train" not in version.counts
    assert "1 into test: they answer test prompts (rated to measure), so they stay in test and never train" \
        in version.note


def test_both_bad_without_a_correction_is_asked_for_in_curation(rated):
    ws, eid, _ = rated
    assert needs_answer_ids(ws) == set()
    request_missing_answers(ws, eid)
    queue = open_requests(ws, origin(eid))
    assert [q.prompt_id for q in queue] == ["p3"] and needs_answer_ids(ws) == {"p3"}
    assert queue[0].raters == ["ana", "bob", "cy"] and len(queue[0].meta["from_votes"]) == 3
    assert queue[0].prompt.startswith("Question 3") and queue[0].meta["evaluation"] == eid
    request_missing_answers(ws, eid)
    assert len(open_requests(ws)) == 1         # asked once


def test_merge_adds_corrected_answers_as_a_feedback_version(rated):
    ws, eid, base_version = rated
    version = merge_feedback(ws, eid, created_by="lead")
    assert version.parent_id == base_version.id and version.step == "feedback"
    assert version.params["evaluation"] == eid and version.counts["corrected"] == 1
    assert get_version(ws, version.id).num_records == 11
    (new,) = [r for r in load_records(ws, version.id) if r.meta.get("source") == "feedback"]
    assert new.messages[-1] == {"role": "assistant",
                                "content": "Order LM-1004 ships on Monday; the tracking link is in your email."}
    assert new.messages[:-1][-1]["content"].startswith("Question 4")
    assert new.meta["rater"] == "ana" and new.meta["run"] == 7 and new.meta["from_vote"]
    assert new.meta["split"] == "test"       # a test prompt's correction never leaks into train
    with pytest.raises(TuneloopError, match="nothing new to merge"):
        merge_feedback(ws, eid)

    (item,) = open_requests(ws, origin(eid))
    answer_needed(ws, eid, item.record_id, "Order LM-1003 is delayed; we will refund the shipping.", answered_by="lead")
    assert open_requests(ws, origin(eid)) == [] and needs_answer_ids(ws) == set()
    second = merge_feedback(ws, eid)
    assert second.parent_id == version.id and second.counts["answered"] == 1
    answered = [r for r in load_records(ws, second.id) if r.meta.get("kind") == "needs_answer"]
    assert answered[0].meta["answered_by"] == "lead" and len(answered[0].meta["from_votes"]) == 3


def test_report_export_and_merge_from_the_command_line(rated, tmp_path):
    ws, eid, _ = rated
    base = [sys.executable, "-m", "evaluation"]
    where = ["--workspace", str(ws.root)]
    report = json.loads(subprocess.run(base + ["report", str(eid), "--json"] + where, cwd=ROOT, capture_output=True,
                                       text=True, check=True).stdout)
    assert report["stats"]["votes"] == 18 and report["feedback"]["preference_pairs"] == 4
    out = subprocess.run(base + ["export-preferences", str(eid), str(tmp_path / "p.jsonl"), "--policy", "unanimous",
                                 "--single-file"] + where, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "preference" in out and "wrote 1 preference pairs" in out
    shown = subprocess.run([sys.executable, "-m", "curation"] + where + ["show", "v2", "--limit", "1"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout
    assert "1 preference pairs" in shown and '"chosen"' in shown
    subprocess.run(base + ["export-votes", str(eid), str(tmp_path / "votes.jsonl")] + where, cwd=ROOT, check=True,
                   capture_output=True)
    stats = json.loads(subprocess.run(base + ["stats", str(tmp_path / "votes.jsonl"), "--json"], cwd=ROOT,
                                      capture_output=True, text=True, check=True).stdout)
    assert stats["votes"] == 18 and stats["agreement_items"] == 6
    merged = subprocess.run(base + ["merge-feedback", str(eid)] + where, cwd=ROOT, capture_output=True, text=True)
    assert merged.returncode == 0 and "feedback" in merged.stdout
    again = subprocess.run(base + ["merge-feedback", str(eid)] + where, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 2 and "nothing new to merge" in again.stderr


def test_the_results_view_only_computes_whatever_the_policy(rated):
    from evaluation.ui import results_figures
    ws, eid, _ = rated

    def written():
        return [ws.db.execute(f"select count(*) from {t}").fetchone()[0]
                for t in ("dataset_versions", "answer_requests", "feedback_versions")]

    before = written()
    for policy in ("unanimous", "majority", "unanimous"):
        figures = results_figures(ws, eid, policy)
        assert f"**Feedback ({policy})**" in figures.feedback
    assert written() == before
    queue = figures.queue
    assert [row[1] for row in queue] == ["p3"] and queue[0][0].startswith(f"fb{eid}-p")
    answer_needed(ws, eid, queue[0][0], "Order LM-1003 is delayed.", answered_by="lead")
    assert results_figures(ws, eid, "majority").queue == []


def test_the_results_tab_makes_the_kto_version_beside_the_preference_one(rated):
    import gradio as gr

    from evaluation import ui
    from tests.tab_page import page
    ws, eid, _ = rated
    with gr.Blocks(), gr.Tabs():
        w = ui.build_results_tab(ws)
    assert "10 judged answers for KTO (4 desirable)" in ui.results_figures(ws, eid, "majority").feedback
    shown = ui.make_kto(ws, w, page(w, evaluation=eid, policy="majority"), None)
    (version,) = [v for v in list_versions(ws) if v.kind == "kto"]
    assert f"kto_data: {version.name}" in shown[w.merged] and shown[w.download]["value"].endswith(f"kto-eval{eid}.zip")
    with pytest.raises(gr.Error, match="choose an evaluation first"):
        ui.make_kto(ws, w, page(w, evaluation=None), None)


def test_the_results_tab_merge_says_where_the_records_went(rated):
    import gradio as gr

    from evaluation import ui
    from tests.tab_page import page
    ws, eid, _ = rated
    with gr.Blocks(), gr.Tabs():
        w = ui.build_results_tab(ws)
    shown = ui.merge(ws, w, page(w, evaluation=eid, policy="majority"), None)[w.merged]
    assert "1 into test: they answer test prompts (rated to measure), so they stay in test and never train" in shown
