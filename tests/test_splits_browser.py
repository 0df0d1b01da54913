"""The Splits tab in a real browser: build a grouped, stratified split of the demo data with the leakage
fix, read the audit and the balance, export. (The template preview is the Train tab's: test_train_browser.py.)"""
from __future__ import annotations

import pytest


def drive_splits_tab(page, url: str) -> dict[str, str]:
    """Click through the tab; returns the texts it showed."""
    page.goto(url)
    page.get_by_role("tab", name="Splits").click()
    page.locator("#splits-build").click()
    status = page.locator("#splits-status")
    status.get_by_text("Saved").wait_for(timeout=180_000)
    shown = {"status": status.inner_text(), "leakage": page.locator("#splits-leakage").inner_text()}
    page.get_by_role("tab", name="Balance").click()
    page.locator("#splits-balance").get_by_text("Largest gap").wait_for()
    shown["balance"] = page.locator("#splits-balance").inner_text()
    page.get_by_role("tab", name="Export").click()
    page.locator("#splits-export-btn").click()
    page.get_by_text("Wrote 3 file(s)").wait_for(timeout=60_000)
    return shown


@pytest.mark.browser
def test_splits_tab_builds_a_leak_free_split_and_exports_it(live_app, page, tmp_path):
    app = live_app()
    shown = drive_splits_tab(page, app.url)
    assert "Saved v2" in shown["status"]
    assert "Before the fix:" in shown["leakage"] and "No leakage between the splits" in shown["leakage"]
    # The demo's customers ask the same template questions, so grouping plus the fix ties most records
    # together; the tab says so instead of claiming balanced shares.
    gap = float(shown["balance"].split("overall:")[1].split("points")[0])
    assert gap <= 2.0 or "tied together" in shown["status"]
    from core.workspace import Workspace
    from curation.data.versions import current_version
    version = current_version(Workspace.open(app.workspace))
    assert version.step == "split" and version.params["group"] == "customer_id" and version.params["fix"] == "move"
    assert (app.workspace / "exports" / f"{version.name}-messages" / "test.jsonl").exists()
