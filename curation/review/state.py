"""What a reviewer sees: the review state of one version (every reviewer's labels, decisions, edits,
comments, assignments and settlements), its queues and filters, one record's view and the drafts in it.

``ReviewState(ws, "v3")`` reads it all once; ``queue(reviewer, QueueFilter(...))`` lists the record ids
to do, ``view(record_id, reviewer)`` what the Review tab shows of one record."""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from core.errors import TuneloopError
from core.workspace import Workspace
from curation.data import versions as V
from curation.review.labels import LabelSchema, label_schema
from curation.data.records import Record, canonical_json


DECISIONS = ("approved", "rejected", "skipped")


STATUS_FIELD = "status"   # decisions take part in agreement and settlement like a label field


STATUS_FILTERS = ("to do", "skipped", "approved", "rejected", "disputed", "pending", "any")


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


class ReviewState:
    """Everything reviewers have done to one version, read in one go (a handful of queries)."""

    def __init__(self, ws: Workspace, version: int | str):
        self.ws = ws
        self.version = V.get_version(ws, version)
        vid = self.version.id
        self.records = V.chat_records(ws, vid, step="review")
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
