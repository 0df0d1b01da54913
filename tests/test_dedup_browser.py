"""The Dedup tab in a real browser: find duplicates, open a cluster, override a member, apply."""
from __future__ import annotations

import pytest

from benchmarks.planted_duplicates import planted_dataset
from tests.conftest import write_jsonl


def drive_dedup_tab(page, url: str) -> dict[str, str]:
    """Run, open the second cluster, keep its last member, apply; returns what the tab showed."""
    page.goto(url)
    page.get_by_role("tab", name="Dedup").click()
    page.locator("#dedup-run").click()
    summary = page.locator("#dedup-summary")
    summary.get_by_text("records to drop").wait_for(timeout=180_000)
    shown = {"summary": summary.inner_text()}
    page.locator("#dedup-cluster input").click()
    page.get_by_role("option", name="2", exact=True).click()
    page.locator("#dedup-members [data-cluster='2']").wait_for()
    members = page.locator("#dedup-members .dd-member")
    shown["member_ids"] = ",".join(members.nth(i).get_attribute("data-id") for i in range(members.count()))
    shown["members"] = page.locator("#dedup-members").inner_text()
    shown["highlighted"] = str(page.locator("#dedup-members ins.dd-ins, #dedup-members del.dd-del").count())
    page.locator("#dedup-keep").click()
    summary.get_by_text("1 override(s)").wait_for()
    shown["after_override"] = summary.inner_text()
    shown["members_after"] = page.locator("#dedup-members").inner_text()
    page.locator("#dedup-apply").click()
    status = page.locator("#dedup-apply-status")
    status.get_by_text("Made").wait_for(timeout=60_000)
    shown["applied"] = status.inner_text()
    return shown


@pytest.mark.browser
def test_dedup_tab_runs_overrides_and_applies(live_app, page, tmp_path):
    from core.workspace import Workspace
    from curation.data.imports import import_file
    from curation.data.versions import current_version, load_records

    planted = planted_dataset(600, seed=3)
    source = write_jsonl(tmp_path / "planted.jsonl", [r.to_dict() for r in planted.records])
    workspace = tmp_path / "workspace"
    import_file(Workspace.open(workspace), source)
    app = live_app(args=["--no-demo"], workspace=workspace)
    shown = drive_dedup_tab(page, app.url)
    assert "600 records" in shown["summary"] and "near-duplicate clusters" in shown["summary"]
    assert "keeper" in shown["members"] and "similarity" in shown["members"]
    kept_member = shown["member_ids"].split(",")[-1]
    assert "DROP" in shown["members"] and "overridden · KEEP" in shown["members_after"]
    assert "Made v2" in shown["applied"]
    version = current_version(Workspace.open(workspace))
    assert version.step == "dedup" and version.counts["overrides"] == 1
    assert version.params["overrides"] == {kept_member: "keep"}
    kept_ids = {r.id for r in load_records(Workspace.open(workspace), version.id)}
    assert kept_member in kept_ids and len(kept_ids) < 600
    assert not planted.hard_negatives - kept_ids
