"""Every vote of an evaluation with more than two arms becomes data: preference pairs between every pair of arms,
one KTO example per answer (judged by every pair that showed it), one correction and one request per prompt;
gold pairs and repeats never do. KTO versions are feedback versions too (``evaluation.m011_kto_feedback_versions``),
listed as the next version of every run the evaluation rated."""
from __future__ import annotations

import json

import pytest

from core.workspace import Workspace
from curation.data.records import Record
from curation.data.versions import create_version, load_records
from evaluation.arena import Arm, EvalItem, GoldItem, RaterChecks, create_evaluation, next_pair, record_vote
from evaluation.feedback import collect_feedback, make_kto_version, make_preference_version, merge_feedback
from evaluation.rounds import round_rows, rounds_table
from tests.old_workspace import old_workspace

ARMS = [Arm("base", "base"), Arm("prompted base", "prompted", settings={"system_prompt": "Be brief."}),
        Arm("run 5", "run", run_id=5)]
RANK = {"base": 0, "prompted base": 1, "run 5": 2}          # what the raters prefer, best last
CORRECTION = "Parcel 2 left the Leeds depot this morning; it arrives tomorrow."


def register_run(ws, run_id: int, version: int) -> None:
    ws.db.execute("insert into runs (id, name, status, config, output_dir, dataset, dataset_version, base_model)"
                  " values (?, ?, 'finished', ?, ?, 'v1', ?, 'tiny')",
                  (run_id, f"try {run_id}", json.dumps({"stage": "sft"}), f"/runs/{run_id}", version))


def author(text: str) -> str:
    return text.split(" says ")[0]


def vote_three_arms(ws, eid: int) -> dict[str, int]:
    """Two raters vote every pair they get: q0 and q1 by RANK, q2 and q3 both bad (ana corrects q2 on each of its
    pairs, the same text); a gold pair gets 'A', a repeat the *opposite* of the plan with a correction of its own
    (so a repeat or gold vote that became data would show). Returns how many of each kind were voted."""
    kinds = {"arms": 0, "gold": 0, "repeat": 0}
    for rater in ("ana", "bob"):
        while (pair := next_pair(ws, eid, rater)) is not None:
            row = ws.db.execute("select p.gold, a.repeat from eval_assignments a join eval_pairs p on p.id=a.pair_id"
                                " where a.id=?", (pair.assignment_id,)).fetchone()
            prompt = pair.prompt.split()[-1].rstrip("?")
            a, b = author(pair.response_a), author(pair.response_b)
            correction = None
            if row["gold"]:
                kind, verdict = "gold", "A"
            elif prompt in ("q2", "q3"):
                kind, verdict = "arms", "both_bad"
                correction = CORRECTION if prompt == "q2" and rater == "ana" else None
            else:
                kind, verdict = "arms", "A" if RANK[a] > RANK[b] else "B"
            if row["repeat"]:
                kind, verdict = "repeat", "B" if RANK[a] > RANK[b] else "A"
                correction = "a repeat's correction"
            record_vote(ws, pair.assignment_id, rater, verdict, corrected_answer=correction)
            kinds[kind] += 1
    return kinds


@pytest.fixture
def three_arms(ws):
    prompts = [Record(f"q{i}", [{"role": "user", "content": f"Where is parcel q{i}?"},
                                {"role": "assistant", "content": "reference"}], {"split": "train"}) for i in range(4)]
    version = create_version(ws, prompts, parent=None, step="split")
    register_run(ws, 5, version.id)
    items = [EvalItem(r.id, r.messages[:1], responses={a.name: f"{a.name} says {r.id} is on its way" for a in ARMS},
                      split="train") for r in prompts]
    gold = [GoldItem(f"g{i}", [{"role": "user", "content": f"Is gold parcel g{i} insured?"}],
                     better=f"gold better {i}", worse=f"gold worse {i}") for i in range(3)]
    eid = create_evaluation(ws, "rate to improve", items, arms=ARMS, base_model="tiny", overlap=2,
                            dataset_version=version.id, gold=gold,
                            checks=RaterChecks(gold_rate=0.25, repeat_rate=0.25))
    kinds = vote_three_arms(ws, eid)
    assert kinds == {"arms": 24, "gold": 6, "repeat": 6}      # every arm pair of 4 prompts by 2 raters, and checks
    return ws, eid, version


def _texts(records) -> str:
    return json.dumps([r.to_dict() for r in records])


def test_every_pair_of_arms_gives_its_preference_pairs_and_says_which_arms(three_arms):
    ws, eid, _ = three_arms
    fb = collect_feedback(ws, eid)
    got = sorted((p["meta"]["prompt_id"], p["meta"]["chosen_arm"], p["meta"]["rejected_arm"])
                 for p in fb.preference_pairs)
    assert got == sorted((q, better, worse) for q in ("q0", "q1") for better, worse in
                         (("run 5", "base"), ("run 5", "prompted base"), ("prompted base", "base")))
    for p in fb.preference_pairs:
        assert p["chosen"][0]["content"].startswith(p["meta"]["chosen_arm"] + " says")
        assert p["rejected"][0]["content"].startswith(p["meta"]["rejected_arm"] + " says")
        assert p["meta"]["raters"] == ["ana", "bob"] and p["meta"]["resolution"] == "unanimous"
    assert fb.disagreements == []           # the repeats voted the other way: counted, they would disagree
    version = make_preference_version(ws, eid)
    assert version.num_records == 6
    assert {k: v for k, v in version.counts.items() if " over " in k} == {
        "run 5 over base": 2, "run 5 over prompted base": 2, "prompted base over base": 2}


def test_an_answer_shown_in_several_pairs_of_arms_is_one_kto_example_judged_by_all_of_them(three_arms):
    ws, eid, _ = three_arms
    fb = collect_feedback(ws, eid)
    labels = {(e.meta["prompt_id"], tuple(e.meta["arms"])): e.desirable for e in fb.kto
              if e.meta["answer_model"] != "correction"}
    # q0/q1: run 5 won both its pairs (desirable), base lost both (undesirable), the prompted base won one and lost
    # one, by both raters: a split, excluded; q2/q3: every answer both bad on both of its pairs
    assert labels == {**{(q, ("run 5",)): True for q in ("q0", "q1")},
                      **{(q, ("base",)): False for q in ("q0", "q1")},
                      **{(q, (arm,)): False for q in ("q2", "q3") for arm in ("base", "prompted base", "run 5")}}
    assert fb.kto_excluded == 2
    run5 = next(e for e in fb.kto if e.meta["prompt_id"] == "q0" and e.meta["arms"] == ["run 5"])
    assert len(run5.meta["vote_ids"]) == 4 and run5.completion[0]["content"] == "run 5 says q0 is on its way"
    (correction,) = [e for e in fb.kto if e.meta["answer_model"] == "correction"]
    assert correction.desirable and correction.completion[0]["content"] == CORRECTION
    assert len({e.id for e in fb.kto}) == len(fb.kto) == 11


def test_a_prompt_gives_one_correction_and_one_request_however_many_of_its_pairs_were_voted(three_arms):
    ws, eid, version = three_arms
    fb = collect_feedback(ws, eid)
    (correction,) = fb.corrections          # ana wrote the same text on q2's three pairs
    assert correction.meta["prompt_id"] == "q2" and correction.messages[-1]["content"] == CORRECTION
    assert len(correction.meta["same_correction_votes"]) == 2 and correction.meta["rater"] == "ana"
    (needed,) = fb.needs_answer             # q3: both bad on all three pairs, by both raters, uncorrected
    assert needed.meta["prompt_id"] == "q3" and len(needed.meta["from_votes"]) == 6
    merged = merge_feedback(ws, eid)
    assert merged.counts["corrected"] == 1 and merged.num_records == 5


def test_gold_pairs_and_repeats_never_become_training_data(three_arms):
    ws, eid, _ = three_arms
    fb = collect_feedback(ws, eid)
    made = [*fb.corrections, *fb.kto, *fb.needs_answer]
    text = _texts(made) + json.dumps(fb.preference_pairs)
    assert "gold" not in text and "repeat" not in text
    voted = {v for r in fb.kto for v in r.meta.get("vote_ids", [])}
    checks = {r[0] for r in ws.db.execute(
        "select v.id from eval_votes v join eval_assignments a on a.id=v.assignment_id join eval_pairs p"
        " on p.id=a.pair_id where p.gold=1 or a.repeat=1")}
    assert len(checks) == 12 and not voted & checks


def test_a_kto_version_from_votes_is_a_feedback_version_and_the_next_version_of_the_runs_rated(three_arms):
    ws, eid, _ = three_arms
    kto = make_kto_version(ws, eid, created_by="ana")
    assert ws.db.execute("select evaluation_id, kind, policy from feedback_versions where version_id=?",
                         (kto.id,)).fetchone()[:] == (eid, "kto", "majority")
    assert make_kto_version(ws, eid).id == kto.id
    assert len(load_records(ws, kto.id)) == 11
    prefs = make_preference_version(ws, eid)
    (row,) = round_rows(ws)
    assert row.run_id == 5 and row.next_versions == [kto.id, prefs.id]
    assert row.feedback == {"preference_pairs": 6, "corrected": 1, "kto_examples": 11, "needs_answer": 1}
    table = rounds_table([row])[0]
    assert table["next version"] == f"v{kto.id}, v{prefs.id}"
    assert table["feedback"] == "6 pairs, 1 corrections, 11 KTO examples"


def test_a_run_that_is_one_of_several_run_arms_lists_the_evaluation_s_versions(ws):
    chat = [Record("q0", [{"role": "user", "content": "Where is parcel q0?"}, {"role": "assistant", "content": "r"}],
                   {"split": "train"})]
    version = create_version(ws, chat, parent=None, step="split")
    for run in (5, 6):
        register_run(ws, run, version.id)
    arms = [Arm("base", "base"), Arm("round 1", "run", run_id=5), Arm("round 2", "run", run_id=6)]
    eid = create_evaluation(ws, "rate to measure", [EvalItem("q0", chat[0].messages[:1], responses={
        a.name: f"{a.name} says q0 is on its way" for a in arms})], arms=arms, base_model="tiny")
    assert ws.db.execute("select run_id from evaluations where id=?", (eid,)).fetchone()[0] is None
    while (pair := next_pair(ws, eid, "ana")) is not None:
        record_vote(ws, pair.assignment_id, "ana", "both_bad")
    kto = make_kto_version(ws, eid)
    rows = {r.run_id: r for r in round_rows(ws)}
    assert rows[5].next_versions == rows[6].next_versions == [kto.id]


def test_the_kto_migration_keeps_the_rows_and_gives_earlier_kto_versions_theirs(tmp_path):
    ws = old_workspace(tmp_path / "workspace", {("evaluation", "m011_kto_feedback_versions")})
    db = ws.db
    db.execute("insert into evaluations (id, name, base_model, overlap) values (1, 'old', 'tiny', 1)")
    db.execute("insert into evaluations (id, name, base_model, overlap) values (2, 'other', 'tiny', 1)")
    rows = {}
    for name, step, kind, params in (("merged", "feedback", "sft", {"evaluation": 1, "policy": "majority"}),
                                     ("pairs", "preferences", "preference", {"evaluation": 1, "policy": "unanimous"}),
                                     ("kto", "kto", "kto", {"evaluation": 2, "policy": "unanimous"}),
                                     ("kto by hand", "kto", "kto", {}),
                                     ("kto of a gone evaluation", "kto", "kto", {"evaluation": 9})):
        rows[name] = db.execute("insert into dataset_versions (step, params, content_hash, num_records, path, kind)"
                                " values (?, ?, ?, 1, ?, ?)", (step, json.dumps(params), name, f"versions/{name}",
                                                               kind)).lastrowid
    db.execute("insert into feedback_versions values (?, 1, 'corrections', 'majority')", (rows["merged"],))
    db.execute("insert into feedback_versions values (?, 1, 'preferences', 'unanimous')", (rows["pairs"],))
    upgraded = Workspace.open(ws.root)
    assert [tuple(r) for r in upgraded.db.execute("select version_id, evaluation_id, kind, policy from"
                                                  " feedback_versions order by version_id")] == [
        (rows["merged"], 1, "corrections", "majority"), (rows["pairs"], 1, "preferences", "unanimous"),
        (rows["kto"], 2, "kto", "unanimous")]
    upgraded.db.execute("insert into feedback_versions values (?, 1, 'kto', 'majority')", (rows["kto by hand"],))
    with pytest.raises(Exception, match="CHECK constraint"):
        upgraded.db.execute("insert into feedback_versions values (?, 1, 'thumbs', 'majority')",
                            (rows["kto of a gone evaluation"],))
    assert upgraded.db.execute("pragma foreign_key_check").fetchall() == []
