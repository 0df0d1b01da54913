"""Reviewing as a team: give each record to k reviewers, each reviewer's progress, agreement per label
field (Krippendorff's alpha), the disagreements left and an admin's settlement of them."""
from __future__ import annotations

import json
from typing import Any

from core.errors import TuneloopError
from core.workspace import Workspace
from curation.data.records import canonical_json
from curation.review.state import Disagreement, FieldAgreement, QueueFilter, ReviewState, STATUS_FIELD
from curation.review.actions import _Undo, _log_action, _require_reviewer


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
    # only records with review rows have votes: those, in dataset order, not the whole version
    voted = sorted((rid for rid in {*state.labels, *state.decisions} if state.has(rid)), key=state.position)
    out = []
    for name in state.schema.names + [STATUS_FIELD]:
        units = [votes for votes in (state.label_votes(rid, name) for rid in voted) if len(votes) >= 2]
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
