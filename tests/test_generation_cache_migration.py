"""A workspace whose generation cache predates keying by the answering engine loses those rows on upgrade, and
keeps everything an evaluation holds."""
from __future__ import annotations

from core.workspace import Workspace
from tests.old_workspace import old_workspace

STEP = ("evaluation", "m012_generation_cache_by_answering_engine")


def test_the_upgrade_empties_the_cache_keyed_before_the_answering_engine_and_keeps_evaluations(tmp_path):
    ws = old_workspace(tmp_path / "workspace", {STEP})
    ws.db.execute("insert into generation_cache (key, response) values ('llamacpp-key', 'an answer transformers gave')")
    eid = ws.db.execute("insert into evaluations (name, base_model, overlap) values ('kept', 'tiny', 1)").lastrowid
    ws.db.commit()
    upgraded = Workspace.open(ws.root)
    assert upgraded.db.execute("select count(*) from generation_cache").fetchone()[0] == 0
    assert upgraded.db.execute("select name from evaluations where id=?", (eid,)).fetchone()[0] == "kept"
    upgraded.db.execute("insert into generation_cache (key, response) values ('new', 'kept from now on')")
    upgraded.db.commit()
    again = Workspace.open(ws.root)                                    # a migration runs once
    assert [tuple(r) for r in again.db.execute("select response from generation_cache")] == [("kept from now on",)]
