"""Ending a review: the reviewed records (settled, agreed or as before; rejected ones left out) written
as a new version, and labels exported to or imported from a file."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from core.errors import InputProblem, TuneloopError
from core.workspace import Workspace, atomic_path
from curation.data import versions as V
from curation.data.records import Record, canonical_json
from curation.review.state import ReviewState, _show
from curation.review.actions import _Undo, _log_action, _require_reviewer, _set_label


@dataclass
class LabelImport:
    applied: int = 0
    unchanged: int = 0
    conflicts: list[str] = field(default_factory=list)
    unknown_ids: list[str] = field(default_factory=list)


PAGE = 5_000    # records read from the version's index at a time: a commit of a million records holds one page


def version_pages(state: ReviewState) -> Iterator[list[Record]]:
    """The version's records a page at a time, in dataset order, read from its index."""
    for start in range(0, state.count, PAGE):
        yield state.index.page(start, PAGE)


def _reviewed_ids(state: ReviewState) -> list[str]:
    """The records of the version with a review row that bears on the commit, in dataset order."""
    ids = {*state.decisions, *state.labels, *state.settled, *state.edits, *state.comments}
    return sorted((rid for rid in ids if state.has(rid)), key=state.position)


def _decided_labels(state: ReviewState, rid: str) -> dict:
    labelled = {}
    for name in state.schema.names:
        decided, value = state.reviewed_value(rid, name)
        if decided:
            labelled[name] = value
    return labelled


def review_counts(state: ReviewState) -> dict[str, int]:
    """What committing the review does, counted from the review rows alone (the untouched records are kept
    as they are): edited, labelled, approved, rejected, disputed and commented records."""
    counts = {"edited": 0, "labelled": 0, "approved": 0, "rejected": 0, "disputed": 0, "commented": 0}
    for rid in _reviewed_ids(state):
        status = state.review_status(rid)
        counts["disputed"] += state.is_disputed(rid)
        if status == "rejected":
            counts["rejected"] += 1
            continue
        counts["edited"] += bool(state.edits.get(rid))
        counts["labelled"] += bool(_decided_labels(state, rid))
        counts["approved"] += status == "approved"
        counts["commented"] += bool(state.comments.get(rid))
    return counts


def reviewed_records(state: ReviewState) -> Iterator[Record]:
    """The records the review keeps, page by page: edits and labels applied, history in meta; rejected ones
    left out, untouched ones as they were."""
    for page in version_pages(state):
        for r in page:
            status = state.review_status(r.id)
            if status == "rejected":
                continue
            edits = state.edits.get(r.id, [])
            comments = state.comments.get(r.id, [])
            labelled = _decided_labels(state, r.id)
            touched = edits or comments or labelled or status in ("approved", "disputed") or r.id in state.decisions
            if not touched:
                yield r
                continue
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
            yield Record(id=r.id, messages=state.messages(r.id), meta=meta)


def commit_preview(ws: Workspace, version: int | str) -> dict[str, int]:
    """What ``commit_review`` would do: its counts and how many records the new version would hold."""
    state = ReviewState(ws, version)
    counts = review_counts(state)
    return {**counts, "records": state.count - counts["rejected"]}


def commit_review(ws: Workspace, version: int | str, *, by: str | None = None, note: str = "") -> V.Version:
    """Make the reviewed records a new version (step "review"), without the rejected ones, written a page at
    a time."""
    state = ReviewState(ws, version)
    counts = review_counts(state)
    if not any(counts[k] for k in ("edited", "labelled", "approved", "rejected", "commented")):
        raise TuneloopError(f"nothing to commit: no record of {state.version.name} has been edited, labelled, "
                            f"approved, rejected or commented on yet")
    writer = V.SnapshotWriter(ws, batch=PAGE)
    try:
        writer.extend(reviewed_records(state))
    except BaseException:
        writer.discard()
        raise
    return V.create_version(ws, writer, parent=state.version.id, step="review",
                            params={"reviewed": state.version.name, "reviewers": state.reviewers(),
                                    "schema": state.schema.names},
                            counts={k: v for k, v in counts.items() if k != "commented"},
                            note=note or f"review of {state.version.name}", created_by=by)


def export_labels(ws: Workspace, version: int | str, out: str | Path) -> int:
    """One JSON line per record: id, labels (as they stand), status. Returns the number written."""
    state = ReviewState(ws, version)
    fields = state.schema.names
    written = 0
    with atomic_path(Path(out)) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for page in version_pages(state):
            fh.writelines(json.dumps({"id": r.id, "labels": {name: state.label(r.id, name, r) for name in fields},
                                      "status": state.status(r.id, r)}, ensure_ascii=False) + "\n" for r in page)
            written += len(page)
    return written


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
            if not state.has(rid):
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
