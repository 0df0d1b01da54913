"""A workspace as an older version of Tuneloop left it, for migration tests: every migration applied except
the ones a test is about, so that ``Workspace.migrate()`` (or ``Workspace.open``) upgrades it."""
from __future__ import annotations

import importlib

from core.workspace import _REGISTRY, SCHEMA_MODULES, Workspace


def old_workspace(root, without: set[tuple[str, str]]) -> Workspace:
    """A new workspace at ``root`` with every migration applied but those named (package, name) in ``without``."""
    ws = Workspace(root)
    ws.root.mkdir(parents=True)
    for module in SCHEMA_MODULES:          # fills the registry, as migrate does
        importlib.import_module(module)
    ws.db.execute("create table _migrations (package text, name text, applied_at text default (datetime('now')),"
                  " primary key (package, name))")
    for package, steps in _REGISTRY.items():
        for step in steps:
            if (package, step.__name__) not in without:
                ws._apply(package, step)
    return ws
