"""What a reviewer sees: the review state of one version (every reviewer's labels, decisions, edits,
comments, assignments and settlements), its queues and filters, one record's view and the drafts in it.

``ReviewState(ws, "v3")`` reads it all once; ``queue(reviewer, QueueFilter(...))`` lists the record ids
to do, ``view(record_id, reviewer)`` what the Review tab shows of one record."""
from __future__ import annotations

import json
import threading
from array import array
from bisect import bisect_left, bisect_right
from collections import OrderedDict, defaultdict
from dataclasses import astuple, dataclass, replace
from typing import Any, Callable

from core.errors import TuneloopError
from core.workspace import Workspace
from curation.data import versions as V
from curation.data.index import record_index
from curation.review.labels import LabelSchema, label_field, stored_schema, suggested_schema
from curation.data.records import Record, canonical_json


DECISIONS = ("approved", "rejected", "skipped")


STATUS_FIELD = "status"   # decisions take part in agreement and settlement like a label field


KEPT_QUEUES = 16       # queues kept per version (each reviewer's filters); every action updates each of them
RELOAD_ABOVE = 2_000   # an action on more records than this is cheaper to follow by reading every review row again

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
    """Everything reviewers have done to one version: the review rows read in one go (a handful of queries), the
    records read from the version's index (``curation.data.index``) as they are needed.

    ``review_state(ws, version)`` keeps one warm state per version between a reviewer's actions: the actions
    (``curation.review.actions``) update it record by record (``applied``), and a change made elsewhere (another
    process, another connection) is seen through the version's review revision, which makes it read the review
    rows again (``sync``). The queues it has computed follow each change of a record, so approving a record and
    moving to the next costs a few queries however big the version is."""

    builds = 0                      # states made from scratch (a test counts them)
    reloads = 0                     # full re-reads of the review rows

    def __init__(self, ws: Workspace, version: int | str, progress: Callable[[float, str], None] | None = None):
        ReviewState.builds += 1
        self.ws = ws
        self.version = V.get_version(ws, version)
        if self.version.kind != "sft":
            V.chat_records(ws, self.version.id, step="review")   # refuses it, naming the version's kind
        self.index = record_index(ws, self.version.id, progress)
        self._lock = threading.RLock()
        self._queues: OrderedDict[tuple, Queue] = OrderedDict()
        self._positions: dict[str, int | None] = {}
        self._suggested: dict[str | None, LabelSchema] = {}
        self._sources: list[str] | None = None
        self.revision = -1
        self._load_review()

    # -- the review rows ---------------------------------------------------------------------------------
    def _load_review(self) -> None:
        ReviewState.reloads += 1
        vid, db = self.version.id, self.ws.db
        self.revision = revision(db, vid)
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
            self.edits[row["record_id"]].append(_edit(row))
        self.comments: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in db.execute("select * from review_comments where version_id=? order by id", (vid,)):
            self.comments[row["record_id"]].append(_comment(row))
        self.settled: dict[str, dict[str, Any]] = defaultdict(dict)
        for rid, name, value in db.execute(
                "select record_id, field, value from review_settlements where version_id=?", (vid,)):
            self.settled[rid][name] = json.loads(value)
        self.assigned: dict[str, set[str]] = defaultdict(set)
        for rid, who in db.execute("select record_id, reviewer from review_assignments where version_id=?", (vid,)):
            self.assigned[who].add(rid)
        self._queues.clear()

    def _reload_record(self, rid: str) -> None:
        """Read one record's review rows again (its assignments too)."""
        vid, db = self.version.id, self.ws.db
        for table in (self.labels, self.decisions, self.edits, self.comments, self.settled):
            table.pop(rid, None)
        for who, name, value in db.execute("select reviewer, field, value from review_labels"
                                           " where version_id=? and record_id=?", (vid, rid)):
            self.labels[rid][name][who] = json.loads(value)
        for who, status in db.execute("select reviewer, status from review_decisions where version_id=? and"
                                      " record_id=?", (vid, rid)):
            self.decisions[rid][who] = status
        for row in db.execute("select * from review_edits where version_id=? and record_id=? order by id", (vid, rid)):
            self.edits[rid].append(_edit(row))
        for row in db.execute("select * from review_comments where version_id=? and record_id=? order by id",
                              (vid, rid)):
            self.comments[rid].append(_comment(row))
        for name, value in db.execute("select field, value from review_settlements where version_id=? and"
                                      " record_id=?", (vid, rid)):
            self.settled[rid][name] = json.loads(value)
        for who in list(self.assigned):
            self.assigned[who].discard(rid)
        for (who,) in db.execute("select reviewer from review_assignments where version_id=? and record_id=?",
                                 (vid, rid)):
            self.assigned[who].add(rid)
        for table in (self.labels, self.decisions, self.edits, self.comments, self.settled):
            if not table.get(rid):
                table.pop(rid, None)

    def sync(self) -> "ReviewState":
        """Bring the state up to date: read the review rows again if anybody changed them since."""
        with self._lock:
            if revision(self.ws.db, self.version.id) != self.revision:
                self._load_review()
        return self

    def applied(self, record_ids: list[str], before: int, after: int) -> None:
        """An action changed these records' review rows, moving the revision from ``before`` to ``after``: read
        just those rows and move the records in or out of every queue. When the state had not seen ``before``
        (somebody else changed the review meanwhile), the next ``sync`` reads everything instead."""
        with self._lock:
            if self.revision != before:
                return
            if len(record_ids) > RELOAD_ABOVE:
                self._load_review()
                return
            for rid in record_ids:
                self._reload_record(rid)
            for (who, key), q in self._queues.items():
                filters = QueueFilter(*key)
                for rid in record_ids:
                    q.put(self.position(rid), self._selects(rid, who, filters))
            self.revision = after

    # -- records ------------------------------------------------------------------------------------------
    @property
    def count(self) -> int:
        return self.index.count

    def position(self, record_id: str) -> int | None:
        """Where the record is in the version (None: it is not in it)."""
        if record_id not in self._positions:
            if len(self._positions) > 100_000:
                self._positions.clear()
            self._positions[record_id] = self.index.position(record_id)
        return self._positions[record_id]

    def has(self, record_id: str | None) -> bool:
        return record_id is not None and self.position(record_id) is not None

    def record(self, record_id: str) -> Record:
        rec = self.index.record(record_id)
        if rec is None:
            raise TuneloopError(f"there is no record '{record_id}' in {self.version.name}")
        return rec

    def sources(self) -> list[str]:
        """Every source the version's records name (meta.source), sorted."""
        if self._sources is None:
            self._sources = self.index.sources()
        return self._sources

    @property
    def schema(self) -> LabelSchema:
        """The dataset's saved label schema, else the one suggested from the version's label field (the values
        it holds read once from the index)."""
        stored = stored_schema(self.ws, self.version.id)
        if stored is not None:
            return stored
        name = label_field(self.ws, self.version.id)
        if name not in self._suggested:
            values = sorted({str(v) for v in self.index.distinct_values(name) if v not in (None, "")}) if name else []
            self._suggested[name] = suggested_schema([Record(id="", messages=[], meta={name: v}) for v in values], name)
        return self._suggested[name]

    def messages(self, record_id: str) -> list[dict[str, str]]:
        """The record's messages with every edit applied, in the order they were made."""
        return self._edited(self.record(record_id))

    def _edited(self, rec: Record) -> list[dict[str, str]]:
        msgs = [dict(m) for m in rec.messages]
        for e in self.edits.get(rec.id, []):
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

    def label(self, record_id: str, name: str, record: Record | None = None) -> Any:
        decided, value = self.reviewed_value(record_id, name)
        return value if decided else (record or self.record(record_id)).meta.get(name)

    def current_labels(self, record_id: str) -> dict[str, Any]:
        rec = self.record(record_id)
        return {f.name: self.label(record_id, f.name, rec) for f in self.schema.fields}

    def review_status(self, record_id: str) -> str:
        """In this review: approved / rejected (settled or unanimous), disputed, skipped (only skips) or pending."""
        decided, value = self.reviewed_value(record_id, STATUS_FIELD)
        if decided:
            return value
        if len(self.label_votes(record_id, STATUS_FIELD)) > 1:
            return "disputed"
        return "skipped" if self.decisions.get(record_id) else "pending"

    def approved_before(self, record_id: str, record: Record | None = None) -> bool:
        """Approved in an earlier, committed review (and not reviewed again in this one)."""
        return (not self.decisions.get(record_id)
                and ((record or self.record(record_id)).meta.get("review") or {}).get("status") == "approved")

    def status(self, record_id: str, record: Record | None = None) -> str:
        """The record's status as it stands: this review's, else an earlier review's approval, else pending."""
        return "approved" if self.approved_before(record_id, record) else self.review_status(record_id)

    def is_disputed(self, record_id: str) -> bool:
        return any(self._disputed(record_id, name) for name in self.schema.names + [STATUS_FIELD])

    def _disputed(self, record_id: str, name: str) -> bool:
        if name in self.settled.get(record_id, {}):
            return False
        return len({canonical_json(v) for v in self.label_votes(record_id, name).values()}) > 1

    def disagreements(self) -> list[Disagreement]:
        out = []
        names = self.schema.names + [STATUS_FIELD]
        for rid in self._ordered(self._touched()):
            for name in names:
                if self._disputed(rid, name):
                    out.append(Disagreement(rid, name, self.label_votes(rid, name)))
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

    # -- queues -------------------------------------------------------------------------------------------
    def queue(self, reviewer: str | None, filters: QueueFilter | None = None) -> list[str]:
        """Ids of the records the filter selects, in dataset order; a reviewer with assignments sees theirs."""
        return self.queue_of(reviewer, filters).ids()

    def queue_of(self, reviewer: str | None, filters: QueueFilter | None = None) -> "Queue":
        """The queue ``queue`` lists, as positions: kept, and updated record by record as reviewers act."""
        f = filters or QueueFilter()
        if f.status not in STATUS_FILTERS:
            raise TuneloopError(f"unknown status filter '{f.status}'; choose one of {', '.join(STATUS_FILTERS)}")
        key = (reviewer, astuple(f))
        with self._lock:
            if f.needs_answer:      # answer requests live outside the review rows: read afresh every time
                return Queue(self, self._compute(reviewer, f))
            found = self._queues.get(key)
            if found is None:
                found = self._queues[key] = Queue(self, self._compute(reviewer, f))
                while len(self._queues) > KEPT_QUEUES:
                    self._queues.popitem(last=False)
            self._queues.move_to_end(key)
            return found

    def decided_by(self, reviewer: str, filters: QueueFilter | None = None) -> "Queue":
        """The records ``reviewer`` has decided that the filter would select whatever their status."""
        f = replace(filters or QueueFilter(), status="any")
        everything = self.queue_of(reviewer, f)
        positions = [p for p in (self.position(rid) for rid, d in self.decisions.items() if reviewer in d)
                     if p is not None and everything.where_position(p) is not None]
        return Queue(self, sorted(positions))

    def _touched(self) -> set[str]:
        """Records with any review row that bears on their status or labels."""
        return set(self.decisions) | set(self.labels) | set(self.settled)

    def _ordered(self, record_ids) -> list[str]:
        return sorted((rid for rid in record_ids if self.has(rid)), key=self.position)

    def _mine(self, reviewer: str | None, f: QueueFilter) -> set[str] | None:
        return (self.assigned.get(reviewer or "") or None) if f.assigned_only else None

    def _compute(self, reviewer: str | None, f: QueueFilter) -> list[int]:
        """The queue from the index and the review rows: the content filters narrow the positions through the
        index, the records anybody reviewed are judged one by one (``_selects``), the others by the one flag
        their status depends on (approved in an earlier review)."""
        narrowed: set[int] | None = None

        def narrow(found) -> None:
            nonlocal narrowed
            found = set(found)
            narrowed = found if narrowed is None else narrowed & found

        mine = self._mine(reviewer, f)
        if mine is not None:
            narrow(self.index.positions(mine).values())
        if f.source:
            narrow(self.index.where("source", f.source))
        if f.flagged:
            narrow(self.index.where("flagged", 1))
        if f.needs_answer:
            narrow(set(self.index.where("needs_answer", 1)) | set(self.index.positions(needs_answer_ids(self.ws))
                                                                   .values()))
        label_name, _, label_value = f.label.partition("=")
        label_name, label_value = label_name.strip(), label_value.strip()
        if label_name:
            narrow(p for p, value in self.index.meta_values(label_name) if _has_value(value, label_value))
        words = [w.lower() for w in f.search.split()]
        if words:
            narrow(self.index.matches(words))
        touched = self._touched() | (set(self.edits) if words else set())
        touched_positions = set(self.index.positions(touched).values())
        approved = set(self.index.where("approved", 1))
        if f.status in ("to do", "pending"):
            untouched = None if narrowed is None else narrowed - touched_positions - approved
            out = (set(range(self.count)) - touched_positions - approved) if untouched is None else untouched
        elif f.status == "approved":
            out = (approved if narrowed is None else narrowed & approved) - touched_positions
        elif f.status == "any":
            out = (set(range(self.count)) if narrowed is None else set(narrowed)) - touched_positions
        else:
            out = set()
        for rid in touched:
            p = self.position(rid)
            if p is not None and self._selects(rid, reviewer, f):
                out.add(p)
        return sorted(out)

    def _selects(self, rid: str, reviewer: str | None, f: QueueFilter) -> bool:
        """Whether the filter selects record ``rid`` for ``reviewer``: the rule every queue follows, one record."""
        if not self.has(rid):
            return False
        mine = self._mine(reviewer, f)
        if mine is not None and rid not in mine:
            return False
        r = self.record(rid)
        if f.status == "to do" and (reviewer in self.decisions.get(rid, {}) or self.approved_before(rid, r)):
            return False
        if f.status == "skipped" and self.decisions.get(rid, {}).get(reviewer or "") != "skipped":
            return False
        if f.status == "disputed" and not self.is_disputed(rid):
            return False
        if f.status in ("approved", "rejected", "pending") and self.status(rid, r) != f.status:
            return False
        if f.source and str(r.meta.get("source", "")) != f.source:
            return False
        label_name, _, label_value = f.label.partition("=")
        if label_name and not _has_value(self.label(rid, label_name.strip(), r), label_value.strip()):
            return False
        if f.flagged and not r.meta.get("flags"):
            return False
        if f.needs_answer and not (r.meta.get("needs_answer") or rid in needs_answer_ids(self.ws)):
            return False
        words = [w.lower() for w in f.search.split()]
        if words:
            text = "\n".join(m["content"] for m in self._edited(r))
            hay = (rid + "\n" + text + "\n" + canonical_json(r.meta)).lower()
            if not all(w in hay for w in words):
                return False
        return True

    def view(self, record_id: str, reviewer: str | None) -> RecordView:
        rec = self.record(record_id)
        mine = {name: votes[reviewer] for name, votes in self.labels.get(record_id, {}).items() if reviewer in votes}
        return RecordView(record=rec, messages=self._edited(rec), labels=self.current_labels(record_id),
                          my_labels=mine, status=self.status(record_id, rec),
                          my_decision=self.decisions.get(record_id, {}).get(reviewer or ""),
                          comments=list(self.comments.get(record_id, [])), edits=list(self.edits.get(record_id, [])),
                          draft=load_draft(self.ws, self.version.id, record_id, reviewer) if reviewer else None)


class Queue:
    """The records one filter selects for one reviewer, as positions in the version, kept in order."""

    def __init__(self, state: ReviewState, positions: list[int]):
        self.state = state
        self.positions = array("q", positions)

    def __len__(self) -> int:
        return len(self.positions)

    def ids(self) -> list[str]:
        found = self.state.index.ids_at(self.positions)
        return [found[p] for p in self.positions]

    def first(self) -> str | None:
        return self.state.index.id_at(self.positions[0]) if self.positions else None

    def where(self, record_id: str | None) -> int | None:
        """Where the record stands in the queue (0 for the first), None when it is not in it."""
        p = self.state.position(record_id) if record_id is not None else None
        return None if p is None else self.where_position(p)

    def where_position(self, position: int) -> int | None:
        i = bisect_left(self.positions, position)
        return i if i < len(self.positions) and self.positions[i] == position else None

    def put(self, position: int | None, selected: bool) -> None:
        """Put the record at ``position`` in the queue, or take it out."""
        if position is None:
            return
        i = bisect_left(self.positions, position)
        present = i < len(self.positions) and self.positions[i] == position
        if selected and not present:
            self.positions.insert(i, position)
        elif present and not selected:
            del self.positions[i]

    def neighbour(self, record_id: str | None, step: int, also: "Queue | None" = None) -> str | None:
        """The next (step=1) or previous (step=-1) queued record after ``record_id`` in dataset order, wrapping
        around; ``also``, a second queue whose records count as neighbours too (going back to a record the
        reviewer has just decided, which left this queue)."""
        if not self.positions:
            return None
        p = self.state.position(record_id) if record_id is not None else None
        if p is None:
            return self.first()
        found = [q for q in (_beside(self.positions, p, step), _beside(also.positions, p, step) if also else None)
                 if q is not None]
        if found:
            return self.state.index.id_at(min(found) if step > 0 else max(found))
        return self.state.index.id_at(self.positions[0] if step > 0 else self.positions[-1])


def _beside(positions, p: int, step: int) -> int | None:
    """The nearest position after (step=1) or before (step=-1) ``p`` in sorted ``positions``."""
    if step > 0:
        i = bisect_right(positions, p)
        return positions[i] if i < len(positions) else None
    i = bisect_left(positions, p)
    return positions[i - 1] if i > 0 else None


def _edit(row) -> dict[str, Any]:
    return {"id": row["id"], "message": row["message_index"], "previous": row["previous"], "text": row["text"],
            "by": row["editor"], "at": row["at"]}


def _comment(row) -> dict[str, Any]:
    return {"id": row["id"], "by": row["author"], "text": row["text"], "at": row["at"]}


def revision(db, version_id: int) -> int:
    """How many changes the review of a version has seen (review_revisions, bumped by triggers)."""
    row = db.execute("select revision from review_revisions where version_id=?", (version_id,)).fetchone()
    return row[0] if row else 0


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


_WARM_SIZE = 4
_warm: "OrderedDict[tuple[str, int], ReviewState]" = OrderedDict()
_warm_lock = threading.Lock()


def review_state(ws: Workspace, version: int | str,
                 progress: Callable[[float, str], None] | None = None) -> ReviewState:
    """The warm review state of ``version``: made once per process, then brought up to date (``sync``);
    ``progress`` hears how far the version's index is built, the first time it is needed."""
    v = V.get_version(ws, version)
    key = (str(ws.root), v.id)
    with _warm_lock:
        state = _warm.get(key)
        if state is not None:
            _warm.move_to_end(key)
    if state is None:
        state = ReviewState(ws, v.id, progress)
        with _warm_lock:
            state = _warm.setdefault(key, state)
            while len(_warm) > _WARM_SIZE:
                _warm.popitem(last=False)
    return state.sync()


def record_view(ws: Workspace, version: int | str, record_id: str, reviewer: str | None) -> RecordView:
    return review_state(ws, version).view(record_id, reviewer)


def review_queue(ws: Workspace, version: int | str, reviewer: str | None,
                 filters: QueueFilter | None = None) -> list[str]:
    return review_state(ws, version).queue(reviewer, filters)


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
