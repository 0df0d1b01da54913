"""Review and labels: schema, edits with history, undo, bulk, drafts, team agreement, commit, import/export."""
import json
from pathlib import Path

import pytest

from core.errors import InputProblem, TuneloopError
from core.workspace import Workspace
from curation.review.actions import BulkAction, bulk_apply, bulk_preview, save_draft, submit_review, undo_last_action
from curation.review.cli import main
from curation.review.commit import commit_preview, commit_review, export_labels, import_labels
from curation.review.state import QueueFilter, latest_draft_record, load_draft, record_view, review_queue, review_state
from curation.review.team import (agreement, assign_reviewers, disagreements, krippendorff_alpha, reviewer_progress,
                                  settle)
from curation.data import versions as V
from curation.review.labels import label_schema, parse_schema, save_schema
from curation.data.records import Record

SCHEMA = {"fields": [{"name": "intent", "kind": "single", "options": ["refund", "billing", "other"],
                      "description": "what the customer wants"},
                     {"name": "problems", "kind": "multi", "options": ["rude", "wrong", "vague"]},
                     {"name": "tags", "kind": "tags"}],
          "guidelines": "Label the main request."}


def _records(n=6):
    return [Record(id=f"r{i}", messages=[{"role": "user", "content": f"question {i} about my refund"},
                                         {"role": "assistant", "content": f"answer {i}"}],
                   meta={"source": "chat" if i % 2 else "email", "intent": "other"}) for i in range(n)]


@pytest.fixture
def v1(ws):
    v = V.create_version(ws, _records(), parent=None, step="import")
    save_schema(ws, v.id, parse_schema(SCHEMA), by="admin")
    return v


def test_schema_validation_lists_every_problem():
    with pytest.raises(TuneloopError) as err:
        parse_schema({"fields": [{"name": "Intent", "kind": "single", "options": ["a"]},
                                 {"name": "mood", "kind": "single", "options": []},
                                 {"name": "mood", "kind": "scale", "options": ["x", "x"]},
                                 {"name": "split", "kind": "tags"}]})
    text = str(err.value)
    assert "6 problem(s); nothing was saved" in text
    for expected in ("name 'Intent' must be lower-case", "needs at least one option", "used twice",
                     "kind 'scale'", "listed twice", "'split' is used by Tuneloop"):
        assert expected in text
    with pytest.raises(TuneloopError, match="not valid JSON"):
        parse_schema("{fields: ")


def test_field_values_are_checked_and_normalised():
    schema = parse_schema(SCHEMA)
    assert schema.field("intent").normalise(" refund ") == "refund"
    assert schema.field("problems").normalise(["vague", "rude", "vague"]) == ["rude", "vague"]
    assert schema.field("tags").normalise("late, ORD-1 ,late") == ["ORD-1", "late"]
    assert schema.field("intent").normalise("") is None
    with pytest.raises(TuneloopError, match="'shipping' is not an option of 'intent'"):
        schema.field("intent").normalise("shipping")
    with pytest.raises(TuneloopError, match="not an option of 'problems'"):
        schema.field("problems").normalise(["slow"])
    with pytest.raises(TuneloopError, match="no field 'mood'"):
        schema.normalise({"mood": "happy"})


def test_schema_belongs_to_the_dataset_and_is_suggested_until_saved(ws):
    recs = [Record(id="a", messages=[{"role": "user", "content": "q"}], meta={"label": "refund"}),
            Record(id="b", messages=[{"role": "user", "content": "q2"}], meta={"label": "billing"})]
    v = V.create_version(ws, recs, parent=None, step="import")
    suggested = label_schema(ws, v.id)
    assert suggested.field("label").kind == "single" and suggested.field("label").options == ["billing", "refund"]
    save_schema(ws, v.id, parse_schema(SCHEMA))
    child = V.create_version(ws, recs[:1], parent=v.id, step="filter")
    assert label_schema(ws, child.id).names == ["intent", "problems", "tags"]


def test_edits_keep_history_and_commit_excludes_rejected(ws, v1):
    submit_review(ws, v1.id, "r0", "ana", edits={1: "a better answer"}, labels={"intent": "refund"},
                    decision="approved")
    submit_review(ws, v1.id, "r0", "bo", edits={1: "the best answer"})
    submit_review(ws, v1.id, "r1", "ana", decision="rejected", comment="off topic")
    submit_review(ws, v1.id, "r2", "ana", comment="check the order number", labels={"tags": "late"})
    view = record_view(ws, v1.id, "r0", "ana")
    assert view.messages[1]["content"] == "the best answer"
    assert [(e["by"], e["previous"]) for e in view.edits] == [("ana", "answer 0"), ("bo", "a better answer")]
    with pytest.raises(TuneloopError, match="not an option"):
        submit_review(ws, v1.id, "r3", "ana", labels={"intent": "cake"})

    assert commit_preview(ws, v1.id)["records"] == 5
    v2 = commit_review(ws, v1.id, by="ana")
    assert v2.parent_id == v1.id and v2.step == "review"
    assert {k: v2.counts[k] for k in ("edited", "labelled", "approved", "rejected")} == \
        {"edited": 1, "labelled": 2, "approved": 1, "rejected": 1}
    records = {r.id: r for r in V.load_records(ws, v2.id)}
    assert "r1" not in records and len(records) == 5
    r0 = records["r0"]
    assert r0.messages[1]["content"] == "the best answer" and r0.meta["intent"] == "refund"
    assert [e["previous"] for e in r0.meta["review"]["edits"]] == ["answer 0", "a better answer"]
    assert r0.meta["review"]["status"] == "approved" and r0.meta["review"]["reviewers"] == ["ana", "bo"]
    assert records["r2"].meta["tags"] == ["late"]
    assert records["r2"].meta["review"]["comments"][0]["text"] == "check the order number"
    assert records["r3"].to_dict() == _records()[3].to_dict()   # untouched records are kept as they were

    # the review goes on in the new version: what was approved is done, the rest is still to do
    assert review_queue(ws, v2.id, "cy") == ["r2", "r3", "r4", "r5"]
    assert review_state(ws, v2.id).status("r0") == "approved"
    submit_review(ws, v2.id, "r3", "cy", decision="approved")
    v3 = commit_review(ws, v2.id, by="cy")
    assert v3.counts["approved"] == 1
    r0 = next(r for r in V.load_records(ws, v3.id) if r.id == "r0")
    assert [e["previous"] for e in r0.meta["review"]["edits"]] == ["answer 0", "a better answer"]


def test_commit_with_nothing_reviewed_is_refused(ws, v1):
    with pytest.raises(TuneloopError, match="nothing to commit"):
        commit_review(ws, v1.id)


def test_undo_puts_back_what_the_last_action_replaced(ws, v1):
    submit_review(ws, v1.id, "r0", "ana", labels={"intent": "billing"}, decision="approved")
    submit_review(ws, v1.id, "r0", "ana", labels={"intent": "refund"}, edits={1: "fixed"}, decision="rejected")
    submit_review(ws, v1.id, "r5", "bo", decision="approved")   # someone else's action is not ana's to undo
    undone = undo_last_action(ws, v1.id, "ana")
    assert undone["record_ids"] == ["r0"] and undone["kind"] == "rejected"
    view = record_view(ws, v1.id, "r0", "ana")
    assert view.my_decision == "approved" and view.my_labels == {"intent": "billing"}
    assert view.messages[1]["content"] == "answer 0" and view.edits == []
    undo_last_action(ws, v1.id, "ana")
    assert record_view(ws, v1.id, "r0", "ana").my_decision is None
    assert undo_last_action(ws, v1.id, "ana") is None
    assert record_view(ws, v1.id, "r5", "bo").my_decision == "approved"


def test_bulk_actions_preview_then_apply_and_undo(ws, v1):
    submit_review(ws, v1.id, "r1", "ana", decision="approved")
    chat = QueueFilter(status="any", source="chat")
    assert bulk_preview(ws, v1.id, "ana", chat, BulkAction("approve")) == (3, 2)
    with pytest.raises(TuneloopError, match="selection changed"):
        bulk_apply(ws, v1.id, "ana", chat, BulkAction("approve"), expected=3)
    assert bulk_apply(ws, v1.id, "ana", chat, BulkAction("approve"), expected=2) == 2
    assert review_queue(ws, v1.id, "ana", QueueFilter(status="approved")) == ["r1", "r3", "r5"]
    label = BulkAction("label", field="intent", value="refund")
    assert bulk_preview(ws, v1.id, "ana", QueueFilter(status="any", search="question 4"), label) == (1, 1)
    assert bulk_apply(ws, v1.id, "ana", QueueFilter(status="any", search="refund"), label) == 6
    assert review_queue(ws, v1.id, "ana", QueueFilter(status="any", label="intent=refund")) == \
        [f"r{i}" for i in range(6)]
    undo_last_action(ws, v1.id, "ana")
    assert review_queue(ws, v1.id, "ana", QueueFilter(status="any", label="intent=refund")) == []
    with pytest.raises(TuneloopError, match="not an option"):
        bulk_preview(ws, v1.id, "ana", chat, BulkAction("label", field="intent", value="nope"))


def test_drafts_survive_a_reload_and_clear_when_applied(ws, v1, tmp_path):
    save_draft(ws, v1.id, "r2", "ana", {"edits": {1: "half-typed ans"}, "labels": {"intent": "billing"},
                                          "comment": "ask Bo"})
    save_draft(ws, v1.id, "r4", "bo", {"comment": "bo's own"})
    reopened = Workspace.open(ws.root)          # a new process after a reload reads the same database
    draft = load_draft(reopened, v1.id, "r2", "ana")
    assert draft == {"edits": {1: "half-typed ans"}, "labels": {"intent": "billing"}, "comment": "ask Bo"}
    assert latest_draft_record(reopened, v1.id, "ana") == "r2"
    assert record_view(reopened, v1.id, "r2", "ana").draft["comment"] == "ask Bo"
    submit_review(reopened, v1.id, "r2", "ana", edits=draft["edits"], decision="approved")
    assert load_draft(reopened, v1.id, "r2", "ana") is None
    assert load_draft(reopened, v1.id, "r4", "bo") == {"edits": {}, "labels": {}, "comment": "bo's own"}


def test_assignments_give_each_record_k_reviewers_and_queues_follow(ws, v1):
    counts = assign_reviewers(ws, v1.id, ["ana", "bo", "cy"], overlap=2)
    assert counts == {"ana": 4, "bo": 4, "cy": 4}
    state = review_state(ws, v1.id)
    for r in V.load_records(ws, v1.id):
        assert sum(r.id in ids for ids in state.assigned.values()) == 2
    ana = review_queue(ws, v1.id, "ana")
    assert len(ana) == 4
    submit_review(ws, v1.id, ana[0], "ana", decision="approved")
    submit_review(ws, v1.id, ana[1], "ana", decision="skipped")
    assert review_queue(ws, v1.id, "ana") == ana[2:]
    assert review_queue(ws, v1.id, "ana", QueueFilter(status="skipped")) == [ana[1]]
    assert len(review_queue(ws, v1.id, "admin")) == 6          # not assigned: sees everything
    progress = {p["reviewer"]: p for p in reviewer_progress(ws, v1.id)}
    assert progress["ana"]["done"] == 2 and progress["ana"]["to_do"] == 2 and progress["bo"]["done"] == 0
    with pytest.raises(TuneloopError, match="1 to 3 reviewers"):
        assign_reviewers(ws, v1.id, ["ana", "bo", "cy"], overlap=4)


# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the nominal example: alpha = 0.691.
KRIPPENDORFF_EXAMPLE = [
    [None, None, None, None, None, 3, 4, 1, 2, 1, 1, 3, 3, None, 3],
    [1, None, 2, 1, 3, 3, 4, 3, None, None, None, None, None, None, None],
    [None, None, 2, 1, 3, 4, 4, None, 2, 1, 1, 3, 3, None, 4],
]


def test_agreement_matches_krippendorffs_published_example(ws):
    options = {1: "refund", 2: "billing", 3: "other", 4: "shipping"}
    recs = [Record(id=f"u{j:02d}", messages=[{"role": "user", "content": f"unit {j}"}]) for j in range(15)]
    v = V.create_version(ws, recs, parent=None, step="import")
    save_schema(ws, v.id, parse_schema({"fields": [{"name": "intent", "kind": "single",
                                                    "options": list(options.values())}]}))
    for who, row in zip(["ana", "bo", "cy"], KRIPPENDORFF_EXAMPLE):
        for j, value in enumerate(row):
            if value is not None:
                submit_review(ws, v.id, f"u{j:02d}", who, labels={"intent": options[value]})
    figures = {a.field: a for a in agreement(ws, v.id)}
    assert figures["intent"].alpha == pytest.approx(0.691, abs=5e-4)
    # units with two or more values: 2..12 and 14 (0-based); all agree on 9 of those 12 (not 5, 7, 14)
    assert figures["intent"].records == 12 and figures["intent"].percent == pytest.approx(9 / 12)
    assert figures["status"].records == 0 and figures["status"].alpha is None
    assert krippendorff_alpha([{"a": "x", "b": "x"}, {"a": "y", "b": "y"}]) == pytest.approx(1.0)
    assert krippendorff_alpha([{"a": "x", "b": "x"}]) is None


def test_disagreements_are_listed_and_settled_values_are_kept(ws, v1):
    submit_review(ws, v1.id, "r0", "ana", labels={"intent": "refund"}, decision="approved")
    submit_review(ws, v1.id, "r0", "bo", labels={"intent": "billing"}, decision="rejected")
    submit_review(ws, v1.id, "r1", "ana", labels={"intent": "refund"})
    submit_review(ws, v1.id, "r1", "bo", labels={"intent": "refund"})
    found = {(d.record_id, d.field): d for d in disagreements(ws, v1.id)}
    assert set(found) == {("r0", "intent"), ("r0", "status")}
    assert found[("r0", "intent")].values == {"ana": "refund", "bo": "billing"}
    assert review_queue(ws, v1.id, "admin", QueueFilter(status="disputed")) == ["r0"]
    assert commit_preview(ws, v1.id)["disputed"] == 1
    settle(ws, v1.id, "r0", "intent", "billing", by="admin")
    settle(ws, v1.id, "r0", "status", "approved", by="admin")
    assert disagreements(ws, v1.id) == []
    v2 = commit_review(ws, v1.id, by="admin")
    kept = {r.id: r for r in V.load_records(ws, v2.id)}
    assert kept["r0"].meta["intent"] == "billing" and kept["r1"].meta["intent"] == "refund"
    assert v2.counts["approved"] == 1 and v2.counts["rejected"] == 0


def test_filters_for_flagged_and_needs_answer_records(ws):
    recs = _records(4)
    recs[1].meta["flags"] = ["pii"]
    recs[2].meta["needs_answer"] = True
    v = V.create_version(ws, recs, parent=None, step="import")
    assert review_queue(ws, v.id, "ana", QueueFilter(flagged=True)) == ["r1"]
    assert review_queue(ws, v.id, "ana", QueueFilter(needs_answer=True)) == ["r2"]
    assert review_queue(ws, v.id, "ana", QueueFilter(search="question 3")) == ["r3"]
    assert review_queue(ws, v.id, "ana", QueueFilter(source="email")) == ["r0", "r2"]


def test_labels_export_and_import_merge_by_id_and_report_conflicts(ws, v1, tmp_path):
    submit_review(ws, v1.id, "r0", "ana", labels={"intent": "refund"})
    out = tmp_path / "labels.jsonl"
    assert export_labels(ws, v1.id, out) == 6
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0] == {"id": "r0", "labels": {"intent": "refund", "problems": None, "tags": None}, "status": "pending"}

    src = tmp_path / "elsewhere.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in [
        {"id": "r0", "labels": {"intent": "billing", "problems": ["rude"]}},
        {"id": "r1", "labels": {"intent": "other", "tags": ["late"]}},
        {"id": "zz", "labels": {"intent": "refund"}}]) + "\n")
    result = import_labels(ws, src, version=v1.id, reviewer="vendor")
    assert result.applied == 2 and result.unchanged == 1 and result.unknown_ids == ["zz"]
    assert result.conflicts == ["line 1: r0 intent: has refund, file says billing (kept)"]
    state = review_state(ws, v1.id)
    assert state.label("r0", "intent") == "refund" and state.label("r0", "problems") == ["rude"]
    assert state.label("r1", "tags") == ["late"]

    import_labels(ws, src, version=v1.id, reviewer="vendor", overwrite=True)
    assert [d.field for d in disagreements(ws, v1.id)] == ["intent"]    # ana vs vendor: for the admin

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "r2", "labels": {"intent": "cake"}}\nnot json\n')
    with pytest.raises(InputProblem, match="line 1: 'cake' is not an option") as err:
        import_labels(ws, bad, version=v1.id)
    assert "line 2:" in str(err.value)


def test_review_cli_runs_the_admin_work_headless(ws, v1, tmp_path, capsys):
    args = ["--workspace", str(ws.root), "--version", v1.name]
    assert main(args + ["assign", "ana", "bo", "--overlap", "2"]) == 0
    assert main(args + ["bulk", "label", "--set", "intent=billing", "--by", "ana", "--source", "email"]) == 0
    assert "3 records selected, 3 would change" in capsys.readouterr().out
    assert main(args + ["bulk", "label", "--set", "intent=billing", "--by", "ana", "--source", "email",
                          "--yes"]) == 0
    assert main(args + ["bulk", "reject", "--by", "bo", "--search", "question 0", "--yes"]) == 0
    assert main(args + ["agreement"]) == 0
    out = capsys.readouterr().out
    assert "intent\talpha —" in out and "records 0" in out
    assert main(args + ["commit", "--by", "admin"]) == 0
    assert "review · 5 records" in capsys.readouterr().out
    assert main(args + ["settle", "r9", "intent", "refund"]) == 1
    assert "no record 'r9'" in capsys.readouterr().err
    assert [v.step for v in V.list_versions(ws)] == ["import", "review"]


def test_labels_cli_exports_and_imports_with_conflicts(ws, v1, tmp_path):
    import subprocess
    import sys

    def run(*args):
        return subprocess.run([sys.executable, "-m", "curation", "--workspace", str(ws.root), "labels", *args],
                              capture_output=True, text=True, cwd=str(Path(__file__).resolve().parent.parent))

    submit_review(ws, v1.id, "r0", "ana", labels={"intent": "refund"})
    out = tmp_path / "out.jsonl"
    done = run("export", "v1", str(out))
    assert done.returncode == 0 and "wrote the labels of 6 records of v1" in done.stdout
    assert json.loads(out.read_text().splitlines()[0])["labels"]["intent"] == "refund"
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "r0", "labels": {"intent": "billing"}}) + "\n"
                   + json.dumps({"id": "r2", "labels": {"tags": "late"}}) + "\n")
    done = run("import", str(src), "--reviewer", "vendor")
    assert done.returncode == 0, done.stderr
    assert "conflict: line 1: r0 intent: has refund, file says billing (kept)" in done.stdout
    assert "imported 1 labels as vendor" in done.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "r0"}\n')
    done = run("import", str(bad))
    assert done.returncode == 1 and "line 1" in done.stderr


def test_every_shortcut_targets_an_element_of_the_review_tab(ws, v1):
    import gradio as gr

    from curation.ui import review as tab
    from ui.kit import static_js

    with gr.Blocks() as blocks:
        with gr.Tabs():
            tab.build(ws)
    ids = {b.elem_id for b in blocks.blocks.values() if getattr(b, "elem_id", None)}
    targets = {target for _, _, mapping in tab.SHORTCUTS for _, target in mapping.values()}
    assert targets and targets <= ids
    for used_by_the_script in ("review-commit-confirm", "review-commit-cancel", "review-bulk-confirm",
                               "review-bulk-cancel", "review-comment-btn", "review-comment", "review-root"):
        assert used_by_the_script in ids and f'"{used_by_the_script}"' in static_js("review")
    assert {f"review-field-{i}-{kind}" for i in range(tab.MAX_FIELDS) for kind in ("single", "multi", "tags")} <= ids
    assert all(keys in tab.help_overlay_html() for keys, _, _ in tab.SHORTCUTS)


def test_the_reviewer_is_the_login_when_there_is_one_else_the_typed_name(ws):
    import gradio as gr

    from curation.ui.review import reviewer

    assert reviewer(ws, gr.Request(username="bo"), "someone else") == "bo"
    assert reviewer(ws, gr.Request(), "  ana ") == "ana"
    assert reviewer(ws, None, "ana") == "ana"
    with pytest.raises(TuneloopError, match="type your name"):
        reviewer(ws, gr.Request(), "")


def _scan_queue(state, reviewer, f):
    """The queue as the review state computed it before it had an index: every record, one by one."""
    mine = state.assigned.get(reviewer or "") if f.assigned_only else None
    name, _, value = f.label.partition("=")
    words = [w.lower() for w in f.search.split()]
    out = []
    for r in V.load_records(state.ws, state.version.id):
        votes = state.decisions.get(r.id, {})
        before = not votes and (r.meta.get("review") or {}).get("status") == "approved"
        status = "approved" if before else state.review_status(r.id)
        label = state.reviewed_value(r.id, name.strip())
        label = label[1] if label[0] else r.meta.get(name.strip())
        hay = (r.id + "\n" + "\n".join(m["content"] for m in state.messages(r.id)) + "\n"
               + json.dumps(r.meta, sort_keys=True, ensure_ascii=False, separators=(",", ":"))).lower()
        if ((mine and r.id not in mine) or (f.status == "to do" and (reviewer in votes or before))
                or (f.status == "skipped" and votes.get(reviewer or "") != "skipped")
                or (f.status == "disputed" and not state.is_disputed(r.id))
                or (f.status in ("approved", "rejected", "pending") and status != f.status)
                or (f.source and str(r.meta.get("source", "")) != f.source)
                or (name and not (value.strip() in label if isinstance(label, list)
                                  else label is not None and str(label) == value.strip()))
                or (f.flagged and not r.meta.get("flags")) or (words and not all(w in hay for w in words))):
            continue
        out.append(r.id)
    return out


def test_queues_from_the_index_match_a_scan_of_every_record_as_reviewers_act(ws):
    recs = []
    for i in range(40):
        meta = {"source": ["email", "chat", ""][i % 3], "intent": ["refund", "billing", "other"][i % 3]}
        if i % 7 == 0:
            meta["review"] = {"status": "approved"}
        if i % 5 == 0:
            meta["flags"] = ["pii"]
        recs.append(Record(id=f"q{i:02d}", messages=[{"role": "user", "content": f"Question {i} about a Refund"},
                                                      {"role": "assistant", "content": f"answer {i % 4}"}], meta=meta))
    v = V.create_version(ws, recs, parent=None, step="import")
    save_schema(ws, v.id, parse_schema(SCHEMA), by="admin")
    filters = [QueueFilter()] + [QueueFilter(status=s) for s in ("skipped", "approved", "rejected", "pending",
                                                                  "disputed", "any")]
    filters += [QueueFilter(source="chat"), QueueFilter(label="intent=billing"), QueueFilter(flagged=True),
                QueueFilter(search="refund 1"), QueueFilter(search="fixed"), QueueFilter(search="about"),
                QueueFilter(status="any", search="q0"),
                QueueFilter(status="approved", label="intent=refund", source="email")]

    def check():
        state = review_state(ws, v.id)
        for who in ("ana", "bo"):
            for f in filters:
                assert state.queue(who, f) == _scan_queue(state, who, f), (who, f)

    check()   # the queues are computed (and kept) before anybody acts
    submit_review(ws, v.id, "q01", "ana", decision="approved", labels={"intent": "billing"})
    submit_review(ws, v.id, "q02", "ana", decision="skipped", edits={1: "fixed answer"})
    submit_review(ws, v.id, "q02", "bo", decision="rejected")
    submit_review(ws, v.id, "q03", "bo", decision="approved", labels={"intent": "refund"})
    submit_review(ws, v.id, "q03", "ana", decision="rejected")
    submit_review(ws, v.id, "q07", "bo", labels={"intent": "billing"})
    submit_review(ws, v.id, "q14", "bo", decision="rejected")               # approved in an earlier review
    submit_review(ws, v.id, "q11", "bo", edits={1: "fixed it"})             # edits only: found by its new text
    submit_review(ws, v.id, "q10", "bo", edits={0: "Question ten, a Refund"})   # no longer matches "about"
    check()
    undo_last_action(ws, v.id, "ana")
    bulk_apply(ws, v.id, "bo", QueueFilter(source="email"), BulkAction("label", field="intent", value="other"))
    settle(ws, v.id, "q03", "status", "approved", by="admin")
    check()
    assign_reviewers(ws, v.id, ["ana", "bo"], overlap=1)
    check()


def test_the_warm_state_follows_each_action_without_reading_everything_again(ws, v1):
    from curation.review.state import ReviewState

    review_state(ws, v1.id).queue_of("ana")
    builds, reloads = ReviewState.builds, ReviewState.reloads
    for rid in ("r0", "r1", "r2"):
        submit_review(ws, v1.id, rid, "ana", decision="approved")
        queue = review_state(ws, v1.id).queue_of("ana")
        assert queue.first() == f"r{int(rid[1]) + 1}" and len(queue) == 5 - int(rid[1])
    undo_last_action(ws, v1.id, "ana")
    assert review_queue(ws, v1.id, "ana") == ["r2", "r3", "r4", "r5"]
    assert (ReviewState.builds, ReviewState.reloads) == (builds, reloads)

    other = Workspace(ws.root)          # another connection (another process, the CLI) approves r2
    with other.transaction() as db:
        db.execute("insert into review_decisions (version_id, record_id, reviewer, status) values (?, 'r2', 'ana',"
                   " 'approved')", (v1.id,))
    assert review_queue(ws, v1.id, "ana") == ["r3", "r4", "r5"]
    assert (ReviewState.builds, ReviewState.reloads) == (builds, reloads + 1)
