"""Importing a file makes a new dataset version (all of it, or nothing)."""
from __future__ import annotations

from pathlib import Path

from core.errors import TuneloopError
from core.workspace import Workspace
from curation.data.formats import ImportResult, read_records
from curation.data.versions import Version, create_version, load_records, require_current


def import_file(ws: Workspace, path: str | Path, *, format: str | None = None, column_map=None,
                max_mb: float | None = None, append: bool = False, created_by: str | None = None,
                note: str = "", progress=None, display_name: str | None = None) -> tuple[Version, ImportResult]:
    """Read, validate and store ``path`` as a new current version; raises InputProblem on any error.

    With ``append`` the new version holds the current version's records plus the file's (its
    parent is the current version); otherwise the file starts a new lineage.
    """
    result = read_records(path, format=format, column_map=column_map, max_mb=max_mb, progress=progress)
    name = display_name or Path(path).name
    params = {"file": name, "format": result.format, "append": append}
    if column_map:
        params["columns"] = column_map
    records, parent = result.records, None
    if append:
        base = require_current(ws)
        existing = load_records(ws, base.id)
        clash = {r.id for r in existing} & {r.id for r in records}
        if clash:
            sample = ", ".join(sorted(clash)[:5])
            raise TuneloopError(f"{name}: {len(clash)} record id(s) already exist in {base.name} (e.g. {sample}); "
                                "import without 'append' to start a new dataset, or give the records new ids")
        records, parent = existing + records, base.id
    if progress:
        progress(0.95, "writing the version")
    version = create_version(ws, records, parent=parent, step="import", params=params,
                             counts={"imported": len(result.records), "warnings": len(result.warnings)},
                             created_by=created_by, note=note)
    return version, result
