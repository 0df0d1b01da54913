"""Review and label records, alone or as a team; committing the review makes a new dataset version.

A review works on one dataset version. Each reviewer's work is stored as it happens (real SQLite, one
row per label, decision, edit and comment, with who and when), so several people can review the same
version at once and nothing anybody typed is lost:

- **Edits** replace a message's text; every edit keeps the text it replaced, its editor and time.
- **Labels** follow the dataset's label schema (``curation.review.labels``); each reviewer has their own.
- **Decisions**: approve, reject or skip. **Comments** are notes on a record for colleagues.
- **Drafts**: what a reviewer has typed but not yet applied, saved as they type.
- **Undo**: every action stores what it replaced; ``undo_last_action`` puts it back.
- **Team**: ``assign_reviewers`` gives each record to k reviewers; ``agreement`` measures how often they
  agree (Krippendorff's alpha per label field); ``disagreements`` lists what an admin must ``settle``.

What a record ends up with: a settled value if an admin settled it, else the value its reviewers agree
on, else (nobody labelled it, or they disagree) what it had before. ``commit_review`` writes the result
as a new version (step "review"): rejected records leave, edits and labels are applied, and each
reviewed record's ``meta["review"]`` keeps its status, reviewers, comments and every edit's previous text.

Example::

    submit_review(ws, "v3", "demo-0001", "ana", decision="approved", labels={"label": "refund"},
                  edits={2: "Sorry about that! ..."})
    assign_reviewers(ws, "v3", ["ana", "bo", "cy"], overlap=2)
    agreement(ws, "v3"); settle(ws, "v3", "demo-0007", "label", "billing", by="admin")
    commit_review(ws, "v3", by="admin")
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from core.errors import InputProblem, TuneloopError
from core.workspace import Workspace, atomic_write
from curation.data import versions as V
from curation.review.labels import LabelSchema, label_schema, parse_schema, save_schema
from curation.data.records import Record, canonical_json

DECISIONS = ("approved", "rejected", "skipped")
STATUS_FIELD = "status"   # decisions take part in agreement and settlement like a label field
STATUS_FILTERS = ("to do", "skipped", "approved", "rejected", "disputed", "pending", "any")
BULK_ACTIONS = ("approve", "reject", "label")


# -- what a reviewer sees -------------------------------------------------------------------------

@dataclass
class QueueFilter:
    """Which records a queue (or a bulk action) covers.

    ``status``: "to do" and "skipped" are the reviewer's own (not yet decided / skipped by them; records
    approved in an earlier committed review are not "to do");
    "approved", "rejected", "disputed" and "pending" are the record's status as it stands; "any".
    ``label``: "field=value" (a record whose value is, or includes, value). ``flagged``: records whose
    ``meta["flags"]`` is set by a cleaning step (PII, dedup). ``needs_answer``: prompts that rating
    put in the "needs an answer" queue, or whose ``meta["needs_answer"]`` is set.
    """
    status: str = "to do"
    label: str = ""
    source: str = ""
    search: str = ""
    needs_answer: bool = False
    flagged: bool = False
    assigned_only: bool = True


@dataclass
class Disagreement:
    record_id: str
    field: str
    values: dict[str, Any]          # reviewer -> value

    def describe(self) -> str:
        return "; ".join(f"{who}: {_show(v)}" for who, v in sorted(self.values.items()))


@dataclass
class FieldAgreement:
    field: str
    alpha: float | None             # Krippendorff's alpha (nominal); None when it is undefined
    percent: float | None           # share of records on which every reviewer gave the same value
    records: int                    # records with two or more reviewers' values
    reviewers: int
    note: str = ""


@dataclass
class RecordView:
    """One record as a reviewer sees it: the text after edits, labels, status, history, their draft."""
    record: Record
    messages: list[dict[str, str]]
    labels: dict[str, Any]          # the value each field has now
    my_labels: dict[str, Any]       # this reviewer's own labels
    status: str
    my_decision: str | None
    comments: list[dict[str, Any]]
    edits: list[dict[str, Any]]
    draft: dict[str, Any] | None


@dataclass
class BulkAction:
    kind: str                       # approve, reject, label
    field: str = ""
    value: Any = None

    def describe(self) -> str:
        return f"set {self.field} = {_show(self.value)}" if self.kind == "label" else self.kind


@dataclass
class LabelImport:
    applied: int = 0
    unchanged: int = 0
    conflicts: list[str] = field(default_factory=list)
    unknown_ids: list[str] = field(default_factory=list)


# -- the state of a review --------------------------------------------------------------------------

class ReviewState:
    """Everything reviewers have done to one version, read in one go (a handful of queries)."""

    def __init__(self, ws: Workspace, version: int | str):
        self.ws = ws
        self.version = V.get_version(ws, version)
        vid = self.version.id
        self.records = V.load_records(ws, vid)
        self.by_id = {r.id: r for r in self.records}
        self.schema: LabelSchema = label_schema(ws, vid)
        db = ws.db
        self.labels: dict[str, dict[str, dict[str, Any]]] = defaultdict(lambda: defaultdict(dict))
        for rid, who, name, value in db.execute(
                "select record_id, reviewer, field, value from review_labels where version_id=?", (vid,)):
            self.labels[rid][name][who] = json.loads(value)
        self.decisions: dict[str, dict[str, str]] = defaultdict(dict)
        for rid, who, status in db.execute(
                "select record_id, reviewer, status from review_decisions where version_id=?", (vid,)):
            self.decisions[rid][who] = status
        self.edits: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in db.execute("select * from review_edits where version_id=? order by id", (vid,)):
            self.edits[row["record_id"]].append({"id": row["id"], "message": row["message_index"],
                                                 "previous": row["previous"], "text": row["text"],
                                                 "by": row["editor"], "at": row["at"]})
        self.comments: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in db.execute("select * from review_comments where version_id=? order by id", (vid,)):
            self.comments[row["record_id"]].append({"id": row["id"], "by": row["author"], "text": row["text"],
                                                    "at": row["at"]})
        self.settled: dict[str, dict[str, Any]] = defaultdict(dict)
        for rid, name, value in db.execute(
                "select record_id, field, value from review_settlements where version_id=?", (vid,)):
            self.settled[rid][name] = json.loads(value)
        self.assigned: dict[str, set[str]] = defaultdict(set)
        for rid, who in db.execute("select record_id, reviewer from review_assignments where version_id=?", (vid,)):
            self.assigned[who].add(rid)

    def record(self, record_id: str) -> Record:
        rec = self.by_id.get(record_id)
        if rec is None:
            raise TuneloopError(f"there is no record '{record_id}' in {self.version.name}")
        return rec

    def messages(self, record_id: str) -> list[dict[str, str]]:
        """The record's messages with every edit applied, in the order they were made."""
        msgs = [dict(m) for m in self.record(record_id).messages]
        for e in self.edits.get(record_id, []):
            msgs[e["message"]]["content"] = e["text"]
        return msgs

    def label_votes(self, record_id: str, name: str) -> dict[str, Any]:
        if name == STATUS_FIELD:
            return {who: s for who, s in self.decisions.get(record_id, {}).items() if s != "skipped"}
        return dict(self.labels.get(record_id, {}).get(name, {}))

    def reviewed_value(self, record_id: str, name: str) -> tuple[bool, Any]:
        """(decided, value): the settled value, else the one every reviewer gave; (False, None) if neither."""
        if name in self.settled.get(record_id, {}):
            return True, self.settled[record_id][name]
        distinct = {canonical_json(v): v for v in self.label_votes(record_id, name).values()}
        if len(distinct) == 1:
            return True, next(iter(distinct.values()))
        return False, None

    def label(self, record_id: str, name: str) -> Any:
        decided, value = self.reviewed_value(record_id, name)
        return value if decided else self.record(record_id).meta.get(name)

    def current_labels(self, record_id: str) -> dict[str, Any]:
        return {f.name: self.label(record_id, f.name) for f in self.schema.fields}

    def review_status(self, record_id: str) -> str:
        """In this review: approved / rejected (settled or unanimous), disputed, skipped (only skips) or pending."""
        decided, value = self.reviewed_value(record_id, STATUS_FIELD)
        if decided:
            return value
        if len(self.label_votes(record_id, STATUS_FIELD)) > 1:
            return "disputed"
        return "skipped" if self.decisions.get(record_id) else "pending"

    def approved_before(self, record_id: str) -> bool:
        """Approved in an earlier, committed review (and not reviewed again in this one)."""
        return (not self.decisions.get(record_id)
                and (self.record(record_id).meta.get("review") or {}).get("status") == "approved")

    def status(self, record_id: str) -> str:
        """The record's status as it stands: this review's, else an earlier review's approval, else pending."""
        return "approved" if self.approved_before(record_id) else self.review_status(record_id)

    def is_disputed(self, record_id: str) -> bool:
        return any(self._disputed(record_id, name) for name in self.schema.names + [STATUS_FIELD])

    def _disputed(self, record_id: str, name: str) -> bool:
        if name in self.settled.get(record_id, {}):
            return False
        return len({canonical_json(v) for v in self.label_votes(record_id, name).values()}) > 1

    def disagreements(self) -> list[Disagreement]:
        out = []
        for r in self.records:
            for name in self.schema.names + [STATUS_FIELD]:
                if self._disputed(r.id, name):
                    out.append(Disagreement(r.id, name, self.label_votes(r.id, name)))
        return out

    def reviewers(self) -> list[str]:
        names = set(self.assigned)
        for per_record in self.decisions.values():
            names.update(per_record)
        for per_field in self.labels.values():
            for votes in per_field.values():
                names.update(votes)
        for edits in self.edits.values():
            names.update(e["by"] for e in edits)
        return sorted(names)

    def queue(self, reviewer: str | None, filters: QueueFilter | None = None) -> list[str]:
        """Ids of the records the filter selects, in dataset order; a reviewer with assignments sees theirs."""
        f = filters or QueueFilter()
        if f.status not in STATUS_FILTERS:
            raise TuneloopError(f"unknown status filter '{f.status}'; choose one of {', '.join(STATUS_FILTERS)}")
        mine = self.assigned.get(reviewer or "") if f.assigned_only else None
        label_name, _, label_value = f.label.partition("=")
        words = [w.lower() for w in f.search.split()]
        needs = needs_answer_ids(self.ws) if f.needs_answer else set()
        out = []
        for r in self.records:
            if mine and r.id not in mine:
                continue
            if f.status == "to do" and (reviewer in self.decisions.get(r.id, {}) or self.approved_before(r.id)):
                continue
            if f.status == "skipped" and self.decisions.get(r.id, {}).get(reviewer or "") != "skipped":
                continue
            if f.status == "disputed" and not self.is_disputed(r.id):
                continue
            if f.status in ("approved", "rejected", "pending") and self.status(r.id) != f.status:
                continue
            if f.source and str(r.meta.get("source", "")) != f.source:
                continue
            if label_name and not _has_value(self.label(r.id, label_name.strip()), label_value.strip()):
                continue
            if f.flagged and not r.meta.get("flags"):
                continue
            if f.needs_answer and not (r.meta.get("needs_answer") or r.id in needs):
                continue
            if words:
                hay = (r.id + "\n" + "\n".join(m["content"] for m in self.messages(r.id)) + "\n"
                       + canonical_json(r.meta)).lower()
                if not all(w in hay for w in words):
                    continue
            out.append(r.id)
        return out

    def view(self, record_id: str, reviewer: str | None) -> RecordView:
        rec = self.record(record_id)
        mine = {name: votes[reviewer] for name, votes in self.labels.get(record_id, {}).items() if reviewer in votes}
        return RecordView(record=rec, messages=self.messages(record_id), labels=self.current_labels(record_id),
                          my_labels=mine, status=self.status(record_id),
                          my_decision=self.decisions.get(record_id, {}).get(reviewer or ""),
                          comments=list(self.comments.get(record_id, [])), edits=list(self.edits.get(record_id, [])),
                          draft=load_draft(self.ws, self.version.id, record_id, reviewer) if reviewer else None)


def _has_value(current: Any, wanted: str) -> bool:
    if isinstance(current, list):
        return wanted in current
    return current is not None and str(current) == wanted


def _show(value: Any) -> str:
    if value is None:
        return "—"
    return ", ".join(value) if isinstance(value, list) else str(value)


def needs_answer_ids(ws: Workspace) -> set[str]:
    """Record ids whose prompts wait in curation's answer requests (rating sends both-bad prompts there)."""
    from curation.review.answer_requests import open_prompt_ids
    return open_prompt_ids(ws)


def review_state(ws: Workspace, version: int | str) -> ReviewState:
    return ReviewState(ws, version)


def record_view(ws: Workspace, version: int | str, record_id: str, reviewer: str | None) -> RecordView:
    return ReviewState(ws, version).view(record_id, reviewer)


def review_queue(ws: Workspace, version: int | str, reviewer: str | None,
                 filters: QueueFilter | None = None) -> list[str]:
    return ReviewState(ws, version).queue(reviewer, filters)


# -- drafts -------------------------------------------------------------------------------------

def save_draft(ws: Workspace, version: int | str, record_id: str, reviewer: str, draft: dict[str, Any]) -> bool:
    """Keep what a reviewer has typed but not applied yet: ``{"edits": {i: text}, "labels": {}, "comment": ""}``.

    A draft that holds nothing beyond what is already applied (say, one sent just before the action that
    applied it) is not kept. Returns whether a draft is kept.
    """
    reviewer = _require_reviewer(reviewer)
    state = ReviewState(ws, version)
    messages = state.messages(record_id)
    edits = {int(k): v for k, v in (draft.get("edits") or {}).items()
             if 0 <= int(k) < len(messages) and v is not None and v != messages[int(k)]["content"]}
    labels = {k: v for k, v in state.schema.normalise(draft.get("labels") or {}).items() if v is not None}
    comment = (draft.get("comment") or "").strip()
    mine = {name: votes[reviewer] for name, votes in state.labels.get(record_id, {}).items() if reviewer in votes}
    my_comments = [c["text"] for c in state.comments.get(record_id, []) if c["by"] == reviewer]
    applied_labels = all(mine.get(k) == v for k, v in labels.items())
    pending = edits or (comment and comment != (my_comments[-1] if my_comments else None)) or not applied_labels
    vid = state.version.id
    if not pending:
        ws.db.execute("delete from review_drafts where version_id=? and record_id=? and reviewer=?",
                      (vid, record_id, reviewer))
        return False
    clean = {"edits": {str(k): v for k, v in edits.items()}, "labels": labels, "comment": comment}
    ws.db.execute("insert into review_drafts (version_id, record_id, reviewer, draft) values (?,?,?,?) "
                  "on conflict(version_id, record_id, reviewer) do update set draft=excluded.draft,"
                  " at=strftime('%Y-%m-%dT%H:%M:%SZ', 'now')",
                  (vid, record_id, reviewer, json.dumps(clean, ensure_ascii=False)))
    return True


def load_draft(ws: Workspace, version: int | str, record_id: str, reviewer: str) -> dict[str, Any] | None:
    row = ws.db.execute("select draft from review_drafts where version_id=? and record_id=? and reviewer=?",
                        (V.parse_version_id(version), record_id, reviewer)).fetchone()
    if row is None:
        return None
    draft = json.loads(row[0])
    draft["edits"] = {int(k): v for k, v in draft.get("edits", {}).items()}
    return draft


def latest_draft_record(ws: Workspace, version: int | str, reviewer: str) -> str | None:
    """The record a reviewer was last typing on (to reopen it after a reload)."""
    row = ws.db.execute("select record_id from review_drafts where version_id=? and reviewer=?"
                        " order by at desc, rowid desc limit 1", (V.parse_version_id(version), reviewer)).fetchone()
    return row[0] if row else None


# -- actions ------------------------------------------------------------------------------------

def _require_reviewer(reviewer: str | None) -> str:
    name = (reviewer or "").strip()
    if not name:
        raise TuneloopError("who is reviewing? Type your name first, so your work is credited to you")
    return name


class _Undo:
    """Collects what an action replaces, so that undo can put it back."""

    def __init__(self):
        self.labels: list[list] = []        # [record, field, previous value or None]
        self.decisions: list[list] = []     # [record, previous status or None]
        self.settlements: list[list] = []   # [record, field, previous value or None (JSON)]
        self.edit_ids: list[int] = []
        self.comment_ids: list[int] = []

    def to_json(self) -> str:
        return json.dumps({"labels": self.labels, "decisions": self.decisions, "settlements": self.settlements,
                           "edit_ids": self.edit_ids, "comment_ids": self.comment_ids}, ensure_ascii=False)


def _set_label(db, vid: int, rid: str, reviewer: str, name: str, value: Any, undo: _Undo) -> bool:
    row = db.execute("select value from review_labels where version_id=? and record_id=? and reviewer=? and field=?",
                     (vid, rid, reviewer, name)).fetchone()
    previous = json.loads(row[0]) if row else None
    if previous == value:
        return False
    undo.labels.append([rid, name, previous])
    if value is None:
        db.execute("delete from review_labels where version_id=? and record_id=? and reviewer=? and field=?",
                   (vid, rid, reviewer, name))
    else:
        db.execute("insert into review_labels (version_id, record_id, reviewer, field, value) values (?,?,?,?,?) "
                   "on conflict(version_id, record_id, reviewer, field) do update set value=excluded.value,"
                   " at=strftime('%Y-%m-%dT%H:%M:%SZ', 'now')", (vid, rid, reviewer, name, json.dumps(value)))
    return True


def _set_decision(db, vid: int, rid: str, reviewer: str, status: str | None, undo: _Undo) -> bool:
    row = db.execute("select status from review_decisions where version_id=? and record_id=? and reviewer=?",
                     (vid, rid, reviewer)).fetchone()
    previous = row[0] if row else None
    if previous == status:
        return False
    undo.decisions.append([rid, previous])
    if status is None:
        db.execute("delete from review_decisions where version_id=? and record_id=? and reviewer=?", (vid, rid, reviewer))
    else:
        db.execute("insert into review_decisions (version_id, record_id, reviewer, status) values (?,?,?,?) "
                   "on conflict(version_id, record_id, reviewer) do update set status=excluded.status,"
                   " at=strftime('%Y-%m-%dT%H:%M:%SZ', 'now')", (vid, rid, reviewer, status))
    return True


def _log_action(db, vid: int, reviewer: str, kind: str, record_ids: list[str], undo: _Undo) -> int:
    return db.execute("insert into review_actions (version_id, reviewer, kind, record_ids, undo) values (?,?,?,?,?)",
                      (vid, reviewer, kind, json.dumps(record_ids), undo.to_json())).lastrowid


def submit_review(ws: Workspace, version: int | str, record_id: str, reviewer: str, *,
                  decision: str | None = None, labels: dict[str, Any] | None = None,
                  edits: dict[int, str] | None = None, comment: str = "") -> int | None:
    """Apply a reviewer's edits, labels, comment and decision to one record as one undoable action.

    Labels are checked against the schema; an edit equal to the current text is no edit. The
    reviewer's draft for the record is cleared. Returns the action id, or None when nothing changed.
    """
    reviewer = _require_reviewer(reviewer)
    if decision is not None and decision not in DECISIONS:
        raise TuneloopError(f"'{decision}' is not a decision; choose approved, rejected or skipped")
    state = ReviewState(ws, version)
    vid = state.version.id
    current = state.messages(record_id)
    clean_labels = state.schema.normalise(labels or {})
    undo = _Undo()
    with ws.transaction() as db:
        for index, text in sorted((edits or {}).items()):
            index = int(index)
            if not 0 <= index < len(current):
                raise TuneloopError(f"record '{record_id}' has no message #{index + 1}")
            if text is None or text == current[index]["content"]:
                continue
            if not text.strip():
                raise TuneloopError(f"message #{index + 1} would be empty; write the text, or reject the record")
            undo.edit_ids.append(db.execute(
                "insert into review_edits (version_id, record_id, message_index, previous, text, editor)"
                " values (?,?,?,?,?,?)", (vid, record_id, index, current[index]["content"], text, reviewer)).lastrowid)
        for name, value in clean_labels.items():
            _set_label(db, vid, record_id, reviewer, name, value, undo)
        if comment and comment.strip():
            undo.comment_ids.append(db.execute(
                "insert into review_comments (version_id, record_id, author, text) values (?,?,?,?)",
                (vid, record_id, reviewer, comment.strip())).lastrowid)
        if decision is not None:
            _set_decision(db, vid, record_id, reviewer, decision, undo)
        db.execute("delete from review_drafts where version_id=? and record_id=? and reviewer=?",
                   (vid, record_id, reviewer))
        if not (undo.edit_ids or undo.labels or undo.comment_ids or undo.decisions):
            return None
        kind = decision or ("comment" if undo.comment_ids and not (undo.edit_ids or undo.labels) else "edit")
        return _log_action(db, vid, reviewer, kind, [record_id], undo)


def undo_last_action(ws: Workspace, version: int | str, reviewer: str) -> dict[str, Any] | None:
    """Take back this reviewer's most recent action on the version; returns it (kind, record_ids), or None."""
    reviewer = _require_reviewer(reviewer)
    vid = V.parse_version_id(version)
    with ws.transaction() as db:
        row = db.execute("select * from review_actions where version_id=? and reviewer=? and undone=0"
                         " order by id desc limit 1", (vid, reviewer)).fetchone()
        if row is None:
            return None
        undo = json.loads(row["undo"])
        for rid, name, previous in undo["labels"]:
            if previous is None:
                db.execute("delete from review_labels where version_id=? and record_id=? and reviewer=? and field=?",
                           (vid, rid, reviewer, name))
            else:
                db.execute("insert or replace into review_labels (version_id, record_id, reviewer, field, value)"
                           " values (?,?,?,?,?)", (vid, rid, reviewer, name, json.dumps(previous)))
        for rid, previous in undo["decisions"]:
            if previous is None:
                db.execute("delete from review_decisions where version_id=? and record_id=? and reviewer=?",
                           (vid, rid, reviewer))
            else:
                db.execute("insert or replace into review_decisions (version_id, record_id, reviewer, status)"
                           " values (?,?,?,?)", (vid, rid, reviewer, previous))
        for rid, name, previous in undo["settlements"]:
            if previous is None:
                db.execute("delete from review_settlements where version_id=? and record_id=? and field=?",
                           (vid, rid, name))
            else:
                db.execute("insert or replace into review_settlements (version_id, record_id, field, value, settled_by)"
                           " values (?,?,?,?,?)", (vid, rid, name, previous, reviewer))
        for edit_id in undo["edit_ids"]:
            db.execute("delete from review_edits where id=?", (edit_id,))
        for comment_id in undo["comment_ids"]:
            db.execute("delete from review_comments where id=?", (comment_id,))
        db.execute("update review_actions set undone=1 where id=?", (row["id"],))
    return {"id": row["id"], "kind": row["kind"], "record_ids": json.loads(row["record_ids"])}


# -- bulk ---------------------------------------------------------------------------------------

def _bulk_targets(state: ReviewState, reviewer: str, filters: QueueFilter,
                  action: BulkAction) -> tuple[list[str], Any]:
    if action.kind not in BULK_ACTIONS:
        raise TuneloopError(f"unknown bulk action '{action.kind}'; choose approve, reject or label")
    ids = state.queue(reviewer, filters)
    if action.kind == "label":
        value = state.schema.field(action.field).normalise(action.value)
        return [rid for rid in ids if state.labels.get(rid, {}).get(action.field, {}).get(reviewer) != value], value
    status = "approved" if action.kind == "approve" else "rejected"
    return [rid for rid in ids if state.decisions.get(rid, {}).get(reviewer) != status], status


def bulk_preview(ws: Workspace, version: int | str, reviewer: str, filters: QueueFilter,
                 action: BulkAction) -> tuple[int, int]:
    """(records the filter selects, records the action would change) — shown before asking to confirm."""
    reviewer = _require_reviewer(reviewer)
    state = ReviewState(ws, version)
    targets, _ = _bulk_targets(state, reviewer, filters, action)
    return len(state.queue(reviewer, filters)), len(targets)


def bulk_apply(ws: Workspace, version: int | str, reviewer: str, filters: QueueFilter, action: BulkAction,
               *, expected: int | None = None) -> int:
    """Apply ``action`` to every record the filter selects, as one undoable action; returns how many changed.

    ``expected``: the count the user confirmed; if the selection changed since the preview, nothing is done.
    """
    reviewer = _require_reviewer(reviewer)
    state = ReviewState(ws, version)
    targets, value = _bulk_targets(state, reviewer, filters, action)
    if expected is not None and expected != len(targets):
        raise TuneloopError(f"the selection changed since the preview ({expected} → {len(targets)} records); "
                            f"preview again and confirm")
    if not targets:
        return 0
    undo = _Undo()
    with ws.transaction() as db:
        for rid in targets:
            if action.kind == "label":
                _set_label(db, state.version.id, rid, reviewer, action.field, value, undo)
            else:
                _set_decision(db, state.version.id, rid, reviewer, value, undo)
        _log_action(db, state.version.id, reviewer, "bulk " + action.describe(), targets, undo)
    return len(targets)


# -- team ---------------------------------------------------------------------------------------

def assign_reviewers(ws: Workspace, version: int | str, reviewers: list[str], overlap: int = 1, *,
                     filters: QueueFilter | None = None) -> dict[str, int]:
    """Give each selected record to ``overlap`` different reviewers, spreading the load evenly.

    Replaces the version's earlier assignments. Returns records per reviewer.
    """
    names = []
    for r in reviewers:
        if r.strip() and r.strip() not in names:
            names.append(r.strip())
    if not names:
        raise TuneloopError("name at least one reviewer")
    if not 1 <= overlap <= len(names):
        raise TuneloopError(f"each record can go to 1 to {len(names)} reviewers (as many as you named), not {overlap}")
    state = ReviewState(ws, version)
    ids = state.queue(None, filters or QueueFilter(status="any", assigned_only=False))
    rows = [(state.version.id, rid, names[(i * overlap + j) % len(names)]) for i, rid in enumerate(ids)
            for j in range(overlap)]
    with ws.transaction() as db:
        db.execute("delete from review_assignments where version_id=?", (state.version.id,))
        db.executemany("insert into review_assignments (version_id, record_id, reviewer) values (?,?,?)", rows)
    counts = {n: 0 for n in names}
    for _, _, who in rows:
        counts[who] += 1
    return counts


def reviewer_progress(ws: Workspace, version: int | str) -> list[dict[str, Any]]:
    """Per reviewer: assigned, done (approved + rejected + skipped), each decision, labelled, edited, to do."""
    state = ReviewState(ws, version)
    out = []
    for who in state.reviewers():
        mine = {rid: d[who] for rid, d in state.decisions.items() if who in d}
        assigned = state.assigned.get(who, set())
        labelled = {rid for rid, per_field in state.labels.items() if any(who in v for v in per_field.values())}
        edited = {rid for rid, edits in state.edits.items() if any(e["by"] == who for e in edits)}
        out.append({"reviewer": who, "assigned": len(assigned), "done": len(mine),
                    "approved": sum(1 for s in mine.values() if s == "approved"),
                    "rejected": sum(1 for s in mine.values() if s == "rejected"),
                    "skipped": sum(1 for s in mine.values() if s == "skipped"),
                    "labelled": len(labelled), "edited": len(edited),
                    "to_do": len([rid for rid in assigned if rid not in mine])})
    return out


def krippendorff_alpha(units: list[dict[str, Any]]) -> float | None:
    """Nominal Krippendorff's alpha; ``units`` holds, per record, {reviewer: value}. None if undefined.

    Undefined when fewer than two values were given per record, or when everybody used one value.
    """
    import numpy as np
    import krippendorff

    coders = sorted({who for unit in units for who in unit})
    codes: dict[str, int] = {}
    matrix = np.full((len(coders), len(units)), np.nan)
    for j, unit in enumerate(units):
        for who, value in unit.items():
            matrix[coders.index(who), j] = codes.setdefault(canonical_json(value), len(codes))
    if len(codes) < 2 or not any(len(unit) >= 2 for unit in units):
        return None
    return float(krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal"))


def agreement(ws: Workspace, version: int | str) -> list[FieldAgreement]:
    """How much reviewers agree, per label field and on approve/reject, over records two or more reviewed."""
    state = ReviewState(ws, version)
    out = []
    for name in state.schema.names + [STATUS_FIELD]:
        units = [votes for votes in (state.label_votes(r.id, name) for r in state.records) if len(votes) >= 2]
        if not units:
            out.append(FieldAgreement(name, None, None, 0, 0, "no record has two reviewers' values yet"))
            continue
        same = sum(1 for u in units if len({canonical_json(v) for v in u.values()}) == 1)
        alpha = krippendorff_alpha(units)
        note = "everyone gave the same value; alpha is undefined" if alpha is None else ""
        out.append(FieldAgreement(name, alpha, same / len(units), len(units),
                                  len({who for u in units for who in u}), note))
    return out


def disagreements(ws: Workspace, version: int | str) -> list[Disagreement]:
    return ReviewState(ws, version).disagreements()


def settle(ws: Workspace, version: int | str, record_id: str, field_name: str, value: Any, *, by: str) -> None:
    """The admin's word on a field ('status' for approve/reject): the value the dataset keeps."""
    by = _require_reviewer(by)
    state = ReviewState(ws, version)
    state.record(record_id)
    if field_name == STATUS_FIELD:
        if value not in ("approved", "rejected"):
            raise TuneloopError("settle the status as approved or rejected")
        clean = value
    else:
        clean = state.schema.field(field_name).normalise(value)
    undo = _Undo()
    previous = state.settled.get(record_id, {}).get(field_name)
    undo.settlements.append([record_id, field_name, None if field_name not in state.settled.get(record_id, {})
                             else json.dumps(previous)])
    with ws.transaction() as db:
        db.execute("insert into review_settlements (version_id, record_id, field, value, settled_by) values (?,?,?,?,?)"
                   " on conflict(version_id, record_id, field) do update set value=excluded.value,"
                   " settled_by=excluded.settled_by, at=strftime('%Y-%m-%dT%H:%M:%SZ', 'now')",
                   (state.version.id, record_id, field_name, json.dumps(clean), by))
        _log_action(db, state.version.id, by, "settle", [record_id], undo)


# -- commit -------------------------------------------------------------------------------------

def reviewed_records(state: ReviewState) -> tuple[list[Record], dict[str, int]]:
    """The records the review keeps (edits and labels applied, history in meta) and its counts."""
    counts = {"edited": 0, "labelled": 0, "approved": 0, "rejected": 0, "disputed": 0, "commented": 0}
    kept = []
    for r in state.records:
        status = state.review_status(r.id)
        edits = state.edits.get(r.id, [])
        comments = state.comments.get(r.id, [])
        labelled = {}
        for name in state.schema.names:
            decided, value = state.reviewed_value(r.id, name)
            if decided:
                labelled[name] = value
        counts["disputed"] += state.is_disputed(r.id)
        if status == "rejected":
            counts["rejected"] += 1
            continue
        touched = edits or comments or labelled or status in ("approved", "disputed") or r.id in state.decisions
        if not touched:
            kept.append(r)
            continue
        counts["edited"] += bool(edits)
        counts["labelled"] += bool(labelled)
        counts["approved"] += status == "approved"
        counts["commented"] += bool(comments)
        meta = {**r.meta, **labelled}
        history = dict(r.meta.get("review") or {})
        history.update({"status": status, "version": state.version.id,
                        "reviewers": sorted({*state.decisions.get(r.id, {}),
                                             *(who for v in state.labels.get(r.id, {}).values() for who in v),
                                             *(e["by"] for e in edits)})})
        history["edits"] = list(history.get("edits", [])) + [
            {"message": e["message"], "role": r.messages[e["message"]]["role"], "previous": e["previous"],
             "by": e["by"], "at": e["at"]} for e in edits]
        history["comments"] = list(history.get("comments", [])) + [
            {"by": c["by"], "text": c["text"], "at": c["at"]} for c in comments]
        meta["review"] = history
        kept.append(Record(id=r.id, messages=state.messages(r.id), meta=meta))
    return kept, counts


def commit_preview(ws: Workspace, version: int | str) -> dict[str, int]:
    """What ``commit_review`` would do: its counts and how many records the new version would hold."""
    kept, counts = reviewed_records(ReviewState(ws, version))
    return {**counts, "records": len(kept)}


def commit_review(ws: Workspace, version: int | str, *, by: str | None = None, note: str = "") -> V.Version:
    """Make the reviewed records a new version (step "review"), without the rejected ones."""
    state = ReviewState(ws, version)
    kept, counts = reviewed_records(state)
    if not any(counts[k] for k in ("edited", "labelled", "approved", "rejected", "commented")):
        raise TuneloopError(f"nothing to commit: no record of {state.version.name} has been edited, labelled, "
                            f"approved, rejected or commented on yet")
    return V.create_version(ws, kept, parent=state.version.id, step="review",
                            params={"reviewed": state.version.name, "reviewers": state.reviewers(),
                                    "schema": state.schema.names},
                            counts={k: v for k, v in counts.items() if k != "commented"},
                            note=note or f"review of {state.version.name}", created_by=by)


# -- labels in and out ------------------------------------------------------------------------------

def export_labels(ws: Workspace, version: int | str, out: str | Path) -> int:
    """One JSON line per record: id, labels (as they stand), status. Returns the number written."""
    state = ReviewState(ws, version)
    lines = [json.dumps({"id": r.id, "labels": state.current_labels(r.id), "status": state.status(r.id)},
                        ensure_ascii=False) + "\n" for r in state.records]
    atomic_write(Path(out), "".join(lines).encode("utf-8"))
    return len(lines)


def import_labels(ws: Workspace, path: str | Path, *, version: int | str | None = None, reviewer: str = "import",
                  overwrite: bool = False) -> LabelImport:
    """Merge labels made elsewhere (JSONL: ``{"id", "labels": {field: value}}``) into the review, by record id.

    A label the record has no value for is added as ``reviewer``'s. One that differs from the value the
    record has now is a conflict: reported and left alone, or (``overwrite``) applied. Unknown ids are
    reported; an invalid line stops the import before anything is written.
    """
    reviewer = _require_reviewer(reviewer)
    state = ReviewState(ws, version if version is not None else V.require_current(ws).id)
    path = Path(path)
    if not path.exists():
        raise TuneloopError(f"{path} does not exist")
    rows, problems = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or "id" not in row or not isinstance(row.get("labels"), dict):
                raise ValueError('each line needs "id" and a "labels" object')
            rows.append((n, str(row["id"]), state.schema.normalise(row["labels"])))
        except (ValueError, TuneloopError) as exc:
            problems.append(f"line {n}: {exc}")
    if problems:
        raise InputProblem(problems, source=str(path))
    result = LabelImport()
    undo = _Undo()
    with ws.transaction() as db:
        for n, rid, labels in rows:
            if rid not in state.by_id:
                result.unknown_ids.append(rid)
                continue
            for name, value in labels.items():
                have = state.label(rid, name)
                if value is None or canonical_json(have) == canonical_json(value):
                    result.unchanged += 1
                    continue
                if have is not None:
                    result.conflicts.append(f"line {n}: {rid} {name}: has {_show(have)}, file says {_show(value)}"
                                            + (" (file applied)" if overwrite else " (kept)"))
                    if not overwrite:
                        continue
                _set_label(db, state.version.id, rid, reviewer, name, value, undo)
                result.applied += 1
        if undo.labels:
            _log_action(db, state.version.id, reviewer, f"import {path.name}", sorted({u[0] for u in undo.labels}), undo)
    return result


# -- command line -------------------------------------------------------------------------------

def labels_command(ws: Workspace, args) -> int:
    """``python -m curation labels export VERSION OUT`` / ``labels import FILE`` (see curation.cli)."""
    if args.labels_command == "export":
        n = export_labels(ws, args.version, args.out)
        print(f"wrote the labels of {n} records of {V.get_version(ws, args.version).name} to {args.out}")
        return 0
    result = import_labels(ws, args.file, version=args.version, reviewer=args.reviewer, overwrite=args.overwrite)
    for conflict in result.conflicts:
        print(f"conflict: {conflict}")
    if result.unknown_ids:
        shown = ", ".join(result.unknown_ids[:10]) + (" …" if len(result.unknown_ids) > 10 else "")
        print(f"warning: {len(result.unknown_ids)} ids are not in the version and were skipped: {shown}",
              file=sys.stderr)
    print(f"imported {result.applied} labels as {args.reviewer}; {result.unchanged} already so; "
          f"{len(result.conflicts)} conflicts" + (" (file applied)" if args.overwrite else " (kept as they were)"))
    return 0


def main(argv=None) -> int:
    """``python -m curation.review``: the Review tab's admin work, headless."""
    p = argparse.ArgumentParser(prog="python -m curation.review", description="Review, label, assign, commit.")
    p.add_argument("--workspace")
    p.add_argument("--version", help="the version under review (default: the current one)")
    sub = p.add_subparsers(dest="command", required=True)
    sch = sub.add_parser("schema", help="show the label schema, or set it from a JSON file")
    sch.add_argument("--set", metavar="FILE", help='{"fields": [...], "guidelines": "..."}')
    asg = sub.add_parser("assign", help="give each record to k reviewers")
    asg.add_argument("reviewers", nargs="+")
    asg.add_argument("--overlap", type=int, default=1)
    sub.add_parser("progress", help="each reviewer's progress")
    sub.add_parser("agreement", help="agreement per label field, and the disagreements to settle")
    st = sub.add_parser("settle", help="settle a disagreement: the value the dataset keeps")
    st.add_argument("record_id")
    st.add_argument("field")
    st.add_argument("value")
    st.add_argument("--by", default="admin")
    bulk = sub.add_parser("bulk", help="approve, reject or label every record matching a filter")
    bulk.add_argument("action", choices=BULK_ACTIONS)
    bulk.add_argument("--set", metavar="FIELD=VALUE", default="", help="for label: the value to set")
    bulk.add_argument("--by", required=True, help="the reviewer the action is credited to")
    bulk.add_argument("--search", default="")
    bulk.add_argument("--label", default="", help="only records with FIELD=VALUE")
    bulk.add_argument("--source", default="")
    bulk.add_argument("--status", default="any", choices=STATUS_FILTERS)
    bulk.add_argument("--yes", action="store_true", help="apply; without it, only say how many would change")
    com = sub.add_parser("commit", help="make the reviewed records a new version (rejected ones left out)")
    com.add_argument("--by")
    com.add_argument("--note", default="")
    args = p.parse_args(argv)
    try:
        ws = Workspace.open(args.workspace)
        version = args.version or V.require_current(ws).name
        return _COMMANDS[args.command](ws, version, args)
    except TuneloopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _cli_schema(ws, version, args) -> int:
    if args.set:
        schema = save_schema(ws, version, parse_schema(Path(args.set).read_text(encoding="utf-8")))
        print(f"saved the label schema of {version}'s dataset: {', '.join(schema.names)}")
    print(json.dumps(label_schema(ws, version).to_dict(), indent=2, ensure_ascii=False))
    return 0


def _cli_assign(ws, version, args) -> int:
    for who, n in assign_reviewers(ws, version, args.reviewers, args.overlap).items():
        print(f"{who}\t{n} records")
    return 0


def _cli_progress(ws, version, args) -> int:
    rows = reviewer_progress(ws, version)
    if not rows:
        print(f"nobody has reviewed {version} yet")
    for row in rows:
        print("\t".join(f"{k} {v}" if k != "reviewer" else str(v) for k, v in row.items()))
    return 0


def _cli_agreement(ws, version, args) -> int:
    for a in agreement(ws, version):
        alpha = "—" if a.alpha is None else f"{a.alpha:.3f}"
        percent = "—" if a.percent is None else f"{a.percent:.0%}"
        print(f"{a.field}\talpha {alpha}\tagree {percent}\trecords {a.records}\treviewers {a.reviewers}"
              + (f"\t({a.note})" if a.note else ""))
    for d in disagreements(ws, version):
        print(f"disagreement\t{d.record_id}\t{d.field}\t{d.describe()}")
    return 0


def _cli_settle(ws, version, args) -> int:
    value = args.value.split(",") if "," in args.value else args.value
    settle(ws, version, args.record_id, args.field, value, by=args.by)
    print(f"settled {args.record_id} {args.field} = {args.value}")
    return 0


def _cli_bulk(ws, version, args) -> int:
    name, _, value = args.set.partition("=")
    action = BulkAction(args.action, field=name.strip(), value=value.strip())
    filters = QueueFilter(status=args.status, label=args.label, source=args.source, search=args.search,
                          assigned_only=False)
    selected, changing = bulk_preview(ws, version, args.by, filters, action)
    if not args.yes:
        print(f"{action.describe()}: {selected} records selected, {changing} would change (add --yes to apply)")
        return 0
    print(f"{action.describe()}: changed {bulk_apply(ws, version, args.by, filters, action, expected=changing)} records")
    return 0


def _cli_commit(ws, version, args) -> int:
    v = commit_review(ws, version, by=args.by, note=args.note)
    print(f"committed the review of {version} as {v.describe()}")
    return 0


_COMMANDS: dict[str, Callable] = {"schema": _cli_schema, "assign": _cli_assign, "progress": _cli_progress,
                                  "agreement": _cli_agreement, "settle": _cli_settle, "bulk": _cli_bulk,
                                  "commit": _cli_commit}
