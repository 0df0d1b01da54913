"""PII review in a workspace: saved settings, scans of the current version, per-record decisions,
and applying the reviewed result as a new dataset version.

Nothing is lost before the user decides: a scan stores only offsets, types and the evidence for each
finding (why it was taken, e.g. "NER PERSON 0.85 + cue 'my name is'"; the originals stay in the scanned
version) and which engine ran; accept / edit / reject is recorded per record; ``apply_scan`` writes a new
version holding no originals, with counts per type, and then drops the scan's findings and edits.

Example::

    scan = run_scan(ws)                              # scans the current version
    items = review_items(ws, scan.id, entity="PERSON")
    decide(ws, scan.id, [items[0].record_id], "reject")
    keep_everywhere(ws, scan.id, "Paypal")           # not PII in any record, nor in later scans
    version = apply_scan(ws, scan.id)                # v7 ← v6 · scrub · PERSON 40, ...

The PII tab and ``python -m curation.pii.review`` (``curation.pii.cli``) both work through these functions.
"""
from __future__ import annotations

import json
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

from core.errors import TuneloopError
from core.workspace import Workspace
from curation.pii.scrub import Finding, PiiOptions, apply_findings, engine_for, replace_spans, scan_records
from curation.data.records import Record
from curation.data.sources import resolve_version
from curation.data.versions import Version, chat_records, create_version, get_version, load_records, require_current

DECISIONS = ("accept", "reject", "edit")
NO_EVIDENCE = "—"    # what a finding of a scan made before evidence was stored shows


@dataclass
class Scan:
    id: int
    version_id: int
    settings: PiiOptions
    counts: dict[str, int]
    status: str
    applied_version_id: int | None
    created_at: str
    engine: str | None = None          # the engine that ran (None for scans made before it was stored)

    @classmethod
    def from_row(cls, row) -> "Scan":
        return cls(id=row["id"], version_id=row["version_id"],
                   settings=PiiOptions.from_dict(json.loads(row["settings"])), counts=json.loads(row["counts"]),
                   status=row["status"], applied_version_id=row["applied_version_id"], created_at=row["created_at"],
                   engine=row["engine"])

    def describe(self) -> str:
        found = ", ".join(f"{k} {v}" for k, v in self.counts.items() if k != "records_with_pii") or "nothing"
        return (f"scan {self.id} of v{self.version_id} · {self.status} · "
                f"{self.counts.get('records_with_pii', 0)} records with PII · {found} · "
                f"engine {self.engine or NO_EVIDENCE}")


@dataclass
class ReviewMessage:
    index: int
    role: str
    original: str
    proposed: str
    spans: list[tuple[int, int, str, float]]
    evidence: list[str] = field(default_factory=list)     # why each span was taken, in the order of spans


@dataclass
class ReviewItem:
    record_id: str
    decision: str                      # pending, accept, reject, edit
    messages: list[ReviewMessage] = field(default_factory=list)
    edited: list[dict] | None = None

    @property
    def entities(self) -> list[str]:
        return sorted({s[2] for m in self.messages for s in m.spans})


# -- settings ---------------------------------------------------------------------------------

def load_settings(ws: Workspace) -> PiiOptions:
    row = ws.db.execute("select settings from pii_settings where id = 1").fetchone()
    return PiiOptions.from_dict(json.loads(row["settings"])) if row else PiiOptions()


def save_settings(ws: Workspace, settings: PiiOptions) -> PiiOptions:
    settings.validate()
    with ws.transaction() as db:
        db.execute("insert into pii_settings (id, settings, salt) values (1, ?, ?) on conflict(id) do update set "
                   "settings = excluded.settings, updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')",
                   (json.dumps(settings.to_dict()), secrets.token_hex(16)))
    return settings


def workspace_salt(ws: Workspace) -> str:
    """The workspace's pseudonym salt (made once), so tokens stay the same across scans."""
    row = ws.db.execute("select salt from pii_settings where id = 1").fetchone()
    if row:
        return row["salt"]
    save_settings(ws, PiiOptions())
    return ws.db.execute("select salt from pii_settings where id = 1").fetchone()["salt"]


# -- scans ------------------------------------------------------------------------------------

def run_scan(ws: Workspace, settings: PiiOptions | None = None, *, version: int | str | None = None,
             workers: int | None = None, progress: Callable[[int, int], None] | None = None,
             cancel: Callable[[], bool] | None = None, actor: str | None = None) -> Scan:
    """Scan ``version`` (default: the current one; ``current`` or ``v3``) with the saved (or given) settings
    and store the findings."""
    settings = (settings or load_settings(ws)).validate()
    version = resolve_version(ws, "current" if version is None else version)
    records = chat_records(ws, version.id, step="PII scrubbing")
    findings = scan_records(records, settings, workers=workers, progress=progress, cancel=cancel)
    engine = engine_for(settings).engine_name
    counts = dict(sorted(Counter(f.entity for f in findings).items()))
    counts["records_with_pii"] = len({f.record_id for f in findings})
    with ws.transaction() as db:
        scan_id = db.execute("insert into pii_scans (version_id, settings, counts, created_by, engine) values "
                             "(?, ?, ?, ?, ?)", (version.id, json.dumps(settings.to_dict()), json.dumps(counts), actor,
                                                 engine)).lastrowid
        db.executemany("insert into pii_findings (scan_id, record_id, message_index, start_char, end_char, entity,"
                       " score, evidence) values (?, ?, ?, ?, ?, ?, ?, ?)",
                       [(scan_id, f.record_id, f.message_index, f.start, f.end, f.entity, f.score, f.evidence)
                        for f in findings])
    return get_scan(ws, scan_id)


def get_scan(ws: Workspace, scan_id: int) -> Scan:
    row = ws.db.execute("select * from pii_scans where id = ?", (int(scan_id),)).fetchone()
    if row is None:
        raise TuneloopError(f"there is no PII scan {scan_id}; run a scan first")
    return Scan.from_row(row)


def latest_scan(ws: Workspace) -> Scan | None:
    """The newest scan of any version, open or applied (which engine ran last)."""
    row = ws.db.execute("select * from pii_scans order by id desc limit 1").fetchone()
    return Scan.from_row(row) if row else None


def latest_open_scan(ws: Workspace) -> Scan | None:
    """The newest unapplied scan of the current version, if any (what the tab reopens)."""
    version = require_current(ws)
    row = ws.db.execute("select * from pii_scans where version_id = ? and status = 'open' order by id desc limit 1",
                        (version.id,)).fetchone()
    return Scan.from_row(row) if row else None


def scan_findings(ws: Workspace, scan_id: int) -> list[Finding]:
    """The scan's findings; those of a scan made before evidence was stored have "—" as evidence."""
    rows = ws.db.execute("select record_id, message_index, start_char, end_char, entity, score, evidence "
                         "from pii_findings where scan_id = ? order by rowid", (int(scan_id),))
    return [Finding(r[0], r[1], r[2], r[3], r[4], r[5], evidence=r[6] or NO_EVIDENCE) for r in rows]


def _decisions(ws: Workspace, scan_id: int) -> dict[str, tuple[str, list[dict] | None]]:
    rows = ws.db.execute("select record_id, decision, edited_messages from pii_decisions where scan_id = ?",
                         (int(scan_id),))
    return {r[0]: (r[1], json.loads(r[2]) if r[2] else None) for r in rows}


def review_items(ws: Workspace, scan_id: int, *, entity: str | None = None,
                 decision: str | None = None) -> list[ReviewItem]:
    """Each record with findings: its changed messages before and after, typed spans, decision.
    ``entity`` keeps records with that type; ``decision`` keeps pending/accept/reject/edit."""
    scan = get_scan(ws, scan_id)
    by_record: dict[str, list[Finding]] = {}
    for f in scan_findings(ws, scan_id):
        by_record.setdefault(f.record_id, []).append(f)
    records = {r.id: r for r in load_records(ws, scan.version_id) if r.id in by_record}
    decisions = _decisions(ws, scan_id)
    salt = workspace_salt(ws)
    items = []
    for rid, found in by_record.items():
        if entity and not any(f.entity == entity for f in found):
            continue
        state, edited = decisions.get(rid, ("pending", None))
        if decision and state != decision:
            continue
        record = records[rid]
        item = ReviewItem(record_id=rid, decision=state, edited=edited)
        for index in sorted({f.message_index for f in found}):
            here = [f for f in found if f.message_index == index]
            spans = [(f.start, f.end, f.entity, f.score) for f in here]
            msg = record.messages[index]
            item.messages.append(ReviewMessage(index=index, role=msg["role"], original=msg["content"],
                                               proposed=replace_spans(msg["content"], spans, scan.settings, salt),
                                               spans=spans, evidence=[f.evidence for f in here]))
        items.append(item)
    return items


def decide(ws: Workspace, scan_id: int, record_ids: Sequence[str], decision: str, *,
           edited_messages: list[dict] | None = None, actor: str | None = None) -> int:
    """Record accept / reject / edit for records of an open scan; returns how many were set.
    ``edit`` takes the reviewer's full message list for one record."""
    if decision not in DECISIONS:
        raise TuneloopError(f"decision must be one of {', '.join(DECISIONS)}, not '{decision}'")
    scan = get_scan(ws, scan_id)
    if scan.status != "open":
        raise TuneloopError(f"scan {scan_id} was already applied; run a new scan to review again")
    if decision == "edit":
        if len(record_ids) != 1 or not isinstance(edited_messages, list) or not all(
                isinstance(m, dict) and isinstance(m.get("content"), str) for m in edited_messages):
            raise TuneloopError("an edit is for one record and needs its messages as {role, content}")
    known = {r[0] for r in ws.db.execute("select distinct record_id from pii_findings where scan_id = ?",
                                         (int(scan_id),))}
    missing = [r for r in record_ids if r not in known]
    if missing:
        raise TuneloopError(f"record(s) {', '.join(missing[:5])} have no findings in scan {scan_id}")
    payload = json.dumps(edited_messages) if decision == "edit" else None
    with ws.transaction() as db:
        db.executemany(
            "insert into pii_decisions (scan_id, record_id, decision, edited_messages, decided_by) values (?,?,?,?,?) "
            "on conflict(scan_id, record_id) do update set decision = excluded.decision, edited_messages = "
            "excluded.edited_messages, decided_by = excluded.decided_by, decided_at = "
            "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')",
            [(int(scan_id), rid, decision, payload, actor) for rid in record_ids])
    return len(record_ids)


@dataclass
class Kept:
    """What ``keep_everywhere`` did: the findings and records it cleared, and whether the allow list grew."""
    value: str
    findings: int
    records: int
    cleared: int                       # records left with no finding, so no longer to review
    added_to_allow_list: bool

    def describe(self) -> str:
        listed = "added to the allow list" if self.added_to_allow_list else "already on the allow list"
        return (f"'{self.value}' kept everywhere: {self.findings} finding(s) in {self.records} record(s) dropped from "
                f"the scan ({self.cleared} record(s) no longer changed); {listed}, so later scans keep it too")


def keep_everywhere(ws: Workspace, scan_id: int, value: str, *, entity: str | None = None) -> Kept:
    """"Not PII" for one text across the whole open scan: every finding whose text is ``value`` (compared as the
    allow list compares, whole and case-insensitive; of type ``entity`` only, when given) is dropped, records left
    with no finding leave the review, and ``value`` joins the saved allow list and the scan's settings, so the
    scrubbed version's step and every later scan keep it too. A word taken for a name in hundreds of records
    ("Paypal") is one decision, not hundreds of edits. A reviewer's own edit of a record is kept as written."""
    text = (value or "").strip()
    if not text:
        raise TuneloopError("give the text to keep, as it appears in the messages (for example: Paypal)")
    if text.startswith("re:"):
        raise TuneloopError(f"'{text}' is a regex: add regexes to the allow list in Settings, then scan again")
    scan = get_scan(ws, scan_id)
    if scan.status != "open":
        raise TuneloopError(f"scan {scan_id} was already applied; run a new scan to review again")
    rows = ws.db.execute("select rowid, record_id, message_index, start_char, end_char, entity from pii_findings "
                         "where scan_id = ?", (int(scan_id),)).fetchall()
    wanted = {r["record_id"] for r in rows}
    messages = {r.id: r.messages for r in load_records(ws, scan.version_id) if r.id in wanted}
    key = text.lower()
    dropped = [r for r in rows if (entity is None or r["entity"] == entity) and
               messages[r["record_id"]][r["message_index"]]["content"][r["start_char"]:r["end_char"]].strip().lower()
               == key]
    records = {r["record_id"] for r in dropped}
    gone = {r["rowid"] for r in dropped}
    remaining = [r for r in rows if r["rowid"] not in gone]
    left = {r["record_id"] for r in remaining}
    cleared = sorted(records - left)
    counts = dict(sorted(Counter(r["entity"] for r in remaining).items()))
    counts["records_with_pii"] = len(left)
    scan_settings = scan.settings
    grown = key not in {a.strip().lower() for a in scan_settings.allow if not a.startswith("re:")}
    if grown:
        scan_settings = PiiOptions.from_dict({**scan_settings.to_dict(), "allow": [*scan_settings.allow, text]})
    saved = load_settings(ws)
    added = key not in {a.strip().lower() for a in saved.allow if not a.startswith("re:")}
    with ws.transaction() as db:
        db.executemany("delete from pii_findings where rowid = ?", [(r["rowid"],) for r in dropped])
        db.executemany("delete from pii_decisions where scan_id = ? and record_id = ? and decision != 'edit'",
                       [(int(scan_id), rid) for rid in cleared])
        db.execute("update pii_scans set settings = ?, counts = ? where id = ?",
                   (json.dumps(scan_settings.to_dict()), json.dumps(counts), int(scan_id)))
    if added:
        save_settings(ws, PiiOptions.from_dict({**saved.to_dict(), "allow": [*saved.allow, text]}))
    return Kept(text, len(dropped), len(records), len(cleared), added)


def edit_message(ws: Workspace, scan_id: int, record_id: str, message_index: int, text: str, *,
                 actor: str | None = None) -> list[dict]:
    """The reviewer's own text for one message of a record (0-based ``message_index``); the record's other
    changed messages keep their proposed (or earlier edited) text. Records the edit; returns the messages."""
    item = next((i for i in review_items(ws, scan_id) if i.record_id == record_id), None)
    if item is None:
        raise TuneloopError(f"record {record_id} has no findings in scan {scan_id}")
    if message_index not in {m.index for m in item.messages}:
        shown = ", ".join(str(m.index + 1) for m in item.messages)
        raise TuneloopError(f"message {message_index + 1} of record {record_id} has no findings; "
                            f"the messages to review are {shown}")
    scan = get_scan(ws, scan_id)
    record = next(r for r in load_records(ws, scan.version_id) if r.id == record_id)
    messages = item.edited or [dict(m) for m in record.messages]
    if item.edited is None:
        for m in item.messages:
            messages[m.index] = dict(messages[m.index], content=m.proposed)
    messages[message_index] = dict(messages[message_index], content=text)
    decide(ws, scan_id, [record_id], "edit", edited_messages=messages, actor=actor)
    return messages


def apply_scan(ws: Workspace, scan_id: int, *, actor: str | None = None, branch: bool = False) -> Version:
    """Make the scrubbed version: pending and accepted records scrubbed as proposed, edited ones
    as the reviewer wrote them, rejected ones unchanged. Counts per type go to the version; the
    scan's findings and edits are then deleted. A scan of a version that is no longer current is
    refused unless ``branch`` (the scrubbed version then branches from the scanned one)."""
    scan = get_scan(ws, scan_id)
    if scan.status != "open":
        raise TuneloopError(f"scan {scan_id} was already applied (v{scan.applied_version_id})")
    current = require_current(ws)
    if current.id != scan.version_id and not branch:
        raise TuneloopError(f"this scan is of v{scan.version_id} but the current version is now v{current.id}; "
                            "scan again before applying (or, from the command line, apply with --branch to "
                            f"scrub v{scan.version_id} anyway)")
    records = load_records(ws, scan.version_id)
    decisions = _decisions(ws, scan_id)
    findings = [f for f in scan_findings(ws, scan_id) if decisions.get(f.record_id, ("accept",))[0] == "accept"]
    scrubbed = apply_findings(records, findings, scan.settings, workspace_salt(ws))
    edits = {rid: edited for rid, (state, edited) in decisions.items() if state == "edit"}
    out = [Record(id=r.id, messages=edits[r.id], meta=dict(r.meta)) if r.id in edits else r for r in scrubbed]
    counts = dict(sorted(Counter(f.entity for f in findings).items()))
    states = Counter(state for state, _ in decisions.values())
    counts.update({"records_scrubbed": len({f.record_id for f in findings}), "records_edited": states["edit"],
                   "records_rejected": states["reject"]})
    params = {k: v for k, v in scan.settings.to_dict().items() if k != "allow"}
    params.update({"scan": scan.id, "allow_entries": len(scan.settings.allow)})
    version = create_version(ws, out, parent=scan.version_id, step="scrub", params=params, counts=counts,
                             created_by=actor)
    with ws.transaction() as db:
        db.execute("update pii_scans set status = 'applied', applied_version_id = ? where id = ?", (version.id, scan.id))
        db.execute("delete from pii_findings where scan_id = ?", (scan.id,))
        db.execute("delete from pii_decisions where scan_id = ?", (scan.id,))
    return get_version(ws, version.id)


if __name__ == "__main__":
    from curation.pii.cli import review_main
    raise SystemExit(review_main())
