"""Importing a file makes a new dataset version: all of it, or (told to skip bad records) the good ones, with
the list of the records left out stored beside the version (``skipped_records``).

A file of chat records makes a chat version that becomes the current one; a file of preference pairs
(prompt/chosen/rejected) makes a preference version, which DPO trains on and which never becomes current.
"""
from __future__ import annotations

from pathlib import Path

from core.errors import TuneloopError
from core.workspace import Workspace
from curation.data.formats import ImportResult, ReadAgain, read_records
from curation.data.versions import (SnapshotWriter, Version, create_version, get_version, load_records,
                                   require_current)


# The meta field a public schema labels its records with: an import of such a file makes it the version's label
# field (``python -m curation label-field`` changes it), so splits stratify by it and results group by it.
SCHEMA_LABEL_FIELDS = {"dolly": "category"}


def import_file(ws: Workspace, path: str | Path, *, format: str | None = None, column_map=None,
                max_mb: float | None = None, append: bool = False, created_by: str | None = None,
                note: str = "", progress=None, display_name: str | None = None,
                skip_bad: bool = False) -> tuple[Version, ImportResult]:
    """Read, validate and store ``path`` as a new version; raises InputProblem on any error, unless
    ``skip_bad``: then the good records are stored and the bad ones listed with the version.

    With ``append`` the new version holds the current version's records plus the file's (its
    parent is the current version); otherwise the file starts a new lineage.
    """
    name = display_name or Path(path).name
    writer = SnapshotWriter(ws)
    existing_ids: set[str] = set()
    clash: list[str] = []
    base = require_current(ws) if append else None

    def keep(record) -> None:
        if base is not None and record.is_preference:
            raise TuneloopError(f"{name} holds preference pairs (prompt, chosen, rejected), which cannot be added "
                                "to chat records; import it without 'append' to make a preference version")
        if record.id in existing_ids:
            clash.append(record.id)
        else:
            writer.add(record)

    def keep_columns(ids, messages, meta) -> None:
        if existing_ids:
            repeated = [rid for rid in ids.to_pylist() if rid in existing_ids]
            if repeated:
                clash.extend(repeated)
                return      # the import is refused below
        writer.add_columns(ids, messages, meta)

    def start() -> None:
        if base is not None:
            existing = load_records(ws, base.id)
            existing_ids.update(r.id for r in existing)
            writer.extend(existing)

    try:
        start()
        try:
            result = read_records(path, format=format, column_map=column_map, max_mb=max_mb, progress=progress,
                                  skip_bad=skip_bad, sink=keep, batch_sink=keep_columns)
        except ReadAgain:     # an id repeats: the file is read a line at a time, which names the line
            writer.discard()
            writer = SnapshotWriter(ws)
            clash.clear()
            start()
            result = read_records(path, format=format, column_map=column_map, max_mb=max_mb, progress=progress,
                                  skip_bad=skip_bad, sink=keep)
        if clash:
            sample = ", ".join(sorted(clash)[:5])
            raise TuneloopError(f"{name}: {len(clash)} record id(s) already exist in {base.name} (e.g. {sample}); "
                                "import without 'append' to start a new dataset, or give the records new ids")
        params = {"file": name, "format": result.format, "append": append}
        if column_map:
            params["columns"] = column_map
        if skip_bad:
            params["skip_bad"] = True
        if progress:
            progress(0.95, "writing the version")

        label = SCHEMA_LABEL_FIELDS.get(result.format)
        label = label if base is None and any(r.meta.get(label) not in (None, "") for r in result.records) else None

        def store_rows(db, version_id: int) -> None:
            if result.skipped:
                db.executemany("insert into import_skips (version_id, position, location, reason) values (?, ?, ?, ?)",
                               [(version_id, i, where, reason) for i, (where, reason) in enumerate(result.skipped)])
            if label:
                db.execute("insert into label_fields (version_id, field, set_by) values (?, ?, ?)",
                           (version_id, label, created_by))

        version = create_version(ws, writer, parent=base.id if base else None, step="import", params=params,
                                 counts={"imported": result.count, "warnings": len(result.warnings),
                                         "skipped": len(result.skipped)},
                                 created_by=created_by, note=note,
                                 also=store_rows if result.skipped or label else None)
    finally:
        writer.discard()
    return version, result


def skipped_records(ws: Workspace, version: int | str) -> list[tuple[str, str]]:
    """The records the import that made ``version`` left out, as (where in the file, why), in file order."""
    v = get_version(ws, version)
    return [(row[0], row[1]) for row in ws.db.execute(
        "select location, reason from import_skips where version_id = ? order by position", (v.id,))]


def skipped_lines(skipped: list[tuple[str, str]], limit: int | None = None) -> list[str]:
    """The skipped records as lines a person reads ('line 17: output is empty'), the first ``limit`` of them
    and a closing line counting the rest."""
    shown = skipped if limit is None else skipped[:limit]
    lines = [f"{where}: {reason}" for where, reason in shown]
    if len(skipped) > len(shown):
        lines.append(f"… and {len(skipped) - len(shown):,} more")
    return lines
