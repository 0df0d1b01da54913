"""The PII commands with the detector's settings: ``--engine``, ``--public-figures`` and ``--dates`` reach the
scan and are saved, each command says which engine ran, ``review list --show`` prints the evidence of each
finding, and a scan made before evidence was stored still lists (with "—")."""
from __future__ import annotations

import json

import pytest

from core.workspace import Workspace
from curation.data import versions as V
from curation.data.records import Record
from curation.pii.cli import main, review_main
from curation.pii.review import latest_open_scan, load_settings, review_items
from curation.pii.scrub import PiiOptions, engine_for
from tests.old_workspace import old_workspace

DEFAULT = PiiOptions().engine
TICKETS = [("t1", "Hi, I'm Jennifer Lopez, order ORD-2024-00123 is late."),
           ("t2", "Thanks, that worked.")]


def records():
    return [Record(id=i, messages=[{"role": "user", "content": t}]) for i, t in TICKETS]


@pytest.fixture
def workspace(ws):
    V.create_version(ws, records(), parent=None, step="import")
    return ws


def test_flags_reach_the_scan_and_the_engine_and_evidence_are_printed(workspace, capsys):
    root = str(workspace.root)
    assert review_main(["scan", "--workspace", root, "--engine", DEFAULT, "--public-figures", "scrub",
                        "--dates", "off"]) == 0
    out = capsys.readouterr().out
    ran = engine_for(PiiOptions()).engine_name
    assert DEFAULT in ran and "1 records with PII" in out and out.strip().endswith(f"engine {ran}")
    saved = load_settings(workspace)
    assert (saved.engine, saved.public_figures, saved.dates) == (DEFAULT, "scrub", "off")

    assert review_main(["list", "--workspace", root, "--show"]) == 0
    listed = capsys.readouterr().out
    found = [line for line in listed.splitlines() if line.strip().startswith("found:")]
    assert found and found[0].strip().startswith("found:  'Jennifer Lopez' PERSON")
    assert "PERSON" in found[0].split(" · ", 1)[1]

    assert main(["current", "--workspace", root, "--dates", "birth"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"engine: {ran}"
    assert load_settings(workspace).dates == "birth"


def test_a_file_scrub_reports_its_engine(tmp_path, capsys):
    source = tmp_path / "tickets.jsonl"
    source.write_text("".join(json.dumps({"id": r.id, "messages": r.messages}) + "\n" for r in records()))
    report = tmp_path / "report.json"
    assert main([str(source), str(tmp_path / "out.jsonl"), "--public-figures", "keep", "--report", str(report)]) == 0
    ran = engine_for(PiiOptions()).engine_name
    assert DEFAULT in ran and capsys.readouterr().out.strip().endswith(f"engine: {ran}")
    assert json.loads(report.read_text())["engine"] == ran


def test_a_scan_made_before_evidence_was_stored_still_lists_with_a_dash(tmp_path, capsys):
    root = tmp_path / "workspace"
    old = old_workspace(root, {("curation", "m403_pii_evidence")})
    version = V.create_version(old, records(), parent=None, step="import")
    scan = old.db.execute("insert into pii_scans (version_id, settings, counts) values (?, '{}', ?)",
                          (version.id, json.dumps({"PERSON": 1, "records_with_pii": 1}))).lastrowid
    old.db.execute("insert into pii_findings (scan_id, record_id, message_index, start_char, end_char, entity, score)"
                   " values (?, 't1', 0, 8, 22, 'PERSON', 0.85)", (scan,))

    upgraded = Workspace.open(root)
    assert latest_open_scan(upgraded).engine is None
    assert review_items(upgraded, scan)[0].messages[0].evidence == ["—"]
    assert review_main(["list", "--workspace", str(root), "--show"]) == 0
    assert "found:  'Jennifer Lopez' PERSON 0.85 · —" in capsys.readouterr().out
