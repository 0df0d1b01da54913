"""Importing a file makes a new dataset version (all of it, or nothing)."""
from __future__ import annotations

from pathlib import Path

from core.workspace import Workspace
from curation.formats import ImportResult, read_records
from curation.versions import Version, create_version


def import_file(ws: Workspace, path: str | Path, *, format: str | None = None, column_map=None,
                max_mb: float | None = None, parent: int | None = None, created_by: str | None = None,
                note: str = "") -> tuple[Version, ImportResult]:
    """Read, validate and store ``path`` as a new current version; raises InputProblem on any error."""
    result = read_records(path, format=format, column_map=column_map, max_mb=max_mb)
    params = {"file": Path(path).name, "format": result.format}
    if column_map:
        params["columns"] = column_map
    version = create_version(ws, result.records, parent=parent, step="import", params=params,
                             counts={"warnings": len(result.warnings)}, created_by=created_by, note=note)
    return version, result
