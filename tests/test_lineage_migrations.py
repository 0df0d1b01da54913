"""An existing workspace with data upgrades to lineage as rows: run keys, feedback versions, answer requests."""
from __future__ import annotations

import json

import pytest

from core.errors import TuneloopError
from core.workspace import _REGISTRY, Workspace, migrations
from curation.data.records import Record
from curation.data.versions import create_version
from curation.review.answer_requests import answer_requests, open_prompt_ids
from evaluation.arena import get_evaluation
from evaluation.auto import latest_auto_evaluation
from evaluation.feedback import request_missing_answers
from evaluation.regression import latest_results
from training.registry import get_run
from tests.old_workspace import old_workspace as workspace_without

NEW = {("curation", "m401_version_kinds"), ("curation", "m402_answer_requests"), ("training", "m002_lineage"),
       ("evaluation", "m005_run_keys"), ("evaluation", "m006_feedback_versions"),
       ("evaluation", "m007_answers_and_pairs_move_to_curation"), ("evaluation", "m010_arms"),
       ("curation", "m407_kto_versions"), ("evaluation", "m011_kto_feedback_versions")}


def old_workspace(root) -> Workspace:
    """A workspace as the code before these migrations left it: every other step applied."""
    return workspace_without(root, NEW)


@pytest.fixture
def upgraded(tmp_path):
    ws = old_workspace(tmp_path / "workspace")
    db = ws.db
    v1 = db.execute("insert into dataset_versions (step, content_hash, num_records, path) values"
                    " ('split', 'h1', 2, 'versions/a.parquet')").lastrowid
    for rid, config in ((3, {"stage": "sft"}), (4, {"stage": "dpo", "sft_run": "#3", "preferences": "1"})):
        db.execute("insert into runs (id, name, status, config, output_dir, dataset, dataset_version, base_model)"
                   " values (?, ?, 'finished', ?, ?, 'v1', ?, 'tiny')",
                   (rid, f"run {rid}", json.dumps(config), f"/runs/{rid}", v1))
    for eid, run_id, adapter in ((1, "#3", None), (2, "/runs/x/adapter", None), (3, "9", "/gone/adapter")):
        db.execute("insert into evaluations (id, name, run_id, base_model, adapter, overlap) values (?,?,?,?,?,1)",
                   (eid, f"e{eid}", run_id, "tiny", adapter))
    pair = db.execute("insert into eval_pairs (evaluation_id, prompt_id, messages, label, split, base_response,"
                      " finetuned_response) values (1, 'r7', ?, 'billing', 'test', 'b', 't')",
                      (json.dumps([{"role": "user", "content": "Where is LM-1?"}]),)).lastrowid
    pair2 = db.execute("insert into eval_pairs (evaluation_id, prompt_id, messages, base_response, finetuned_response)"
                       " values (1, 'r8', ?, 'b', 't')",
                       (json.dumps([{"role": "user", "content": "Refund?"}]),)).lastrowid
    db.execute("insert into needs_answer (evaluation_id, pair_id, vote_ids, raters) values (1, ?, '[5]', '[\"ana\"]')",
               (pair,))
    db.execute("insert into needs_answer (evaluation_id, pair_id, vote_ids, raters, answer, answered_by)"
               " values (1, ?, '[6]', '[\"bob\"]', 'Yes, within 30 days.', 'lead')", (pair2,))
    db.execute("insert into preference_pairs (evaluation_id, pair_id, prompt, chosen, rejected, chosen_model, vote_ids,"
               " raters, resolution) values (1, ?, '[]', 't', 'b', 'finetuned', '[1]', '[\"ana\"]', 'unanimous')",
               (pair,))
    db.execute("insert into dataset_versions (parent_id, step, params, content_hash, num_records, path) values"
               " (?, 'feedback', ?, 'h2', 3, 'versions/b.parquet')", (v1, json.dumps({"evaluation": 1, "run": "#3"})))
    suite = db.execute("insert into regression_suites (name) values ('rules')").lastrowid
    db.execute("insert into regression_runs (suite_id, run_id, model, base_model, passed, total)"
               " values (?, '3', 'finetuned', 'tiny', 1, 2)", (suite,))
    db.execute("insert into regression_runs (suite_id, run_id, model, base_model, adapter, passed, total)"
               " values (?, '/runs/x/adapter', 'finetuned', 'tiny', null, 2, 2)", (suite,))
    db.execute("insert into auto_evaluations (run_id, adapter, base_model, dataset_version, dataset_hash, split,"
               " settings, metrics) values ('3', '/runs/3/adapter', 'tiny', ?, 'h1', 'test', '{}', '{}')", (v1,))
    upgraded = Workspace.open(ws.root)
    assert {(r[0], r[1]) for r in upgraded.db.execute("select package, name from _migrations")} >= NEW
    return upgraded


def test_run_references_become_integer_keys_and_folders_move_to_adapter(upgraded):
    ws = upgraded
    assert get_evaluation(ws, 1).run_id == 3
    second = get_evaluation(ws, 2)
    assert second.run_id is None and second.adapter == "/runs/x/adapter"
    third = get_evaluation(ws, 3)          # pointed at a run that no longer exists; its own folder is kept
    assert third.run_id is None and third.adapter == "/gone/adapter"
    types = {r[0] for r in ws.db.execute("select typeof(run_id) from evaluations")}
    assert types == {"integer", "null"}
    for table in ("evaluations", "auto_evaluations", "regression_runs"):
        keys = {(r["table"], r["from"]) for r in ws.db.execute(f"select * from pragma_foreign_key_list('{table}')")}
        assert ("runs", "run_id") in keys
    assert latest_auto_evaluation(ws, 3).run_id == 3
    assert [r.run_id for r in latest_results(ws, 3)] == [3]
    (folder,) = latest_results(ws, None)
    assert ws.db.execute("select adapter from regression_runs where id=?",
                         (folder.regression_run_id,)).fetchone()[0] == "/runs/x/adapter"
    assert ws.db.execute("pragma foreign_key_check").fetchall() == []
    assert ws.db.execute("pragma foreign_keys").fetchone()[0] == 1
    with pytest.raises(Exception):
        ws.db.execute("insert into evaluations (name, run_id, base_model, overlap) values ('x', 99, 'tiny', 1)")


def test_lineage_rows_and_the_queue_move_where_they_belong(upgraded):
    ws = upgraded
    assert get_run(ws, 4).parent_run_id == 3 and get_run(ws, 3).parent_run_id is None
    assert ws.db.execute("select version_id, evaluation_id, kind from feedback_versions").fetchall()[0][:] == \
        (2, 1, "corrections")
    tables = {r[0] for r in ws.db.execute("select name from sqlite_master where type='table'")}
    assert not tables & {"needs_answer", "preference_pairs"}
    requests = {r.prompt_id: r for r in answer_requests(ws, "evaluation 1", answered=None)}
    assert requests["r7"].answer is None and requests["r7"].meta["from_votes"] == [5]
    assert requests["r7"].meta["run"] == 3 and requests["r7"].meta["split"] == "test"
    assert requests["r8"].answer == "Yes, within 30 days." and requests["r8"].record_id == "fb1-q2"
    assert open_prompt_ids(ws) == {"r7"}
    assert [v.kind for v in (create_version(ws, [Record("a", [{"role": "user", "content": "q"},
                                                              {"role": "assistant", "content": "a"}])],
                                            parent=None, step="import"),)] == ["sft"]
    request_missing_answers(ws, 1)         # no votes any more say p7 needs an answer: the open one is withdrawn
    assert open_prompt_ids(ws) == set() and len(answer_requests(ws, "evaluation 1", answered=True)) == 1


def test_a_rebuild_that_breaks_a_key_is_refused_and_changes_nothing(tmp_path):
    ws = Workspace.open(tmp_path / "workspace")
    migration = migrations("test_broken")

    @migration(foreign_keys=False)
    def m001_orphan(db):
        db.execute("create table t_child (id integer primary key, run_id integer references runs(id))")
        db.execute("insert into t_child (run_id) values (42)")

    try:
        with pytest.raises(TuneloopError, match="m001_orphan left 1 row"):
            ws.migrate()
        assert ws.db.execute("select count(*) from sqlite_master where name='t_child'").fetchone()[0] == 0
        assert ws.db.execute("pragma foreign_keys").fetchone()[0] == 1
    finally:
        del _REGISTRY["test_broken"]
