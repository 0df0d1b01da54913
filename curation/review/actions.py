"""What a reviewer does: submit (decision, labels, edits, comment), drafts as they type, undo, and bulk
actions over every record a filter selects. Every action stores what it replaced, so undo can put it
back."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from core.errors import TuneloopError
from core.workspace import Workspace
from curation.data import versions as V
from curation.review.state import DECISIONS, QueueFilter, ReviewState, _show, review_state, revision


BULK_ACTIONS = ("approve", "reject", "label")


@dataclass
class BulkAction:
    kind: str                       # approve, reject, label
    field: str = ""
    value: Any = None

    def describe(self) -> str:
        return f"set {self.field} = {_show(self.value)}" if self.kind == "label" else self.kind


def save_draft(ws: Workspace, version: int | str, record_id: str, reviewer: str, draft: dict[str, Any]) -> bool:
    """Keep what a reviewer has typed but not applied yet: ``{"edits": {i: text}, "labels": {}, "comment": ""}``.

    A draft that holds nothing beyond what is already applied (say, one sent just before the action that
    applied it) is not kept. Returns whether a draft is kept.
    """
    reviewer = _require_reviewer(reviewer)
    state = review_state(ws, version)
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
    state = review_state(ws, version)
    vid = state.version.id
    current = state.messages(record_id)
    clean_labels = state.schema.normalise(labels or {})
    undo = _Undo()
    with ws.transaction() as db:
        before = revision(db, vid)
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
        action = _log_action(db, vid, reviewer, kind, [record_id], undo)
        after = revision(db, vid)
    state.applied([record_id], before, after)
    return action


def undo_last_action(ws: Workspace, version: int | str, reviewer: str) -> dict[str, Any] | None:
    """Take back this reviewer's most recent action on the version; returns it (kind, record_ids), or None."""
    reviewer = _require_reviewer(reviewer)
    vid = V.parse_version_id(version)
    state = review_state(ws, vid)
    with ws.transaction() as db:
        before = revision(db, vid)
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
        after = revision(db, vid)
    record_ids = json.loads(row["record_ids"])
    state.applied(record_ids, before, after)
    return {"id": row["id"], "kind": row["kind"], "record_ids": record_ids}


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
    state = review_state(ws, version)
    targets, _ = _bulk_targets(state, reviewer, filters, action)
    return len(state.queue_of(reviewer, filters)), len(targets)


def bulk_apply(ws: Workspace, version: int | str, reviewer: str, filters: QueueFilter, action: BulkAction,
               *, expected: int | None = None) -> int:
    """Apply ``action`` to every record the filter selects, as one undoable action; returns how many changed.

    ``expected``: the count the user confirmed; if the selection changed since the preview, nothing is done.
    """
    reviewer = _require_reviewer(reviewer)
    state = review_state(ws, version)
    targets, value = _bulk_targets(state, reviewer, filters, action)
    if expected is not None and expected != len(targets):
        raise TuneloopError(f"the selection changed since the preview ({expected} → {len(targets)} records); "
                            f"preview again and confirm")
    if not targets:
        return 0
    undo = _Undo()
    with ws.transaction() as db:
        before = revision(db, state.version.id)
        for rid in targets:
            if action.kind == "label":
                _set_label(db, state.version.id, rid, reviewer, action.field, value, undo)
            else:
                _set_decision(db, state.version.id, rid, reviewer, value, undo)
        _log_action(db, state.version.id, reviewer, "bulk " + action.describe(), targets, undo)
        after = revision(db, state.version.id)
    state.applied(targets, before, after)
    return len(targets)
