"""The Dedup tab's quality filters in a real browser: why each record was flagged, and a filter switched off
for one label from the form."""
from __future__ import annotations

import pytest

from tests.conftest import write_jsonl


def record(rid, question, answer, category):
    return {"id": rid, "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
            "meta": {"category": category}}


@pytest.mark.browser
def test_filters_show_why_and_switch_off_per_label(live_app, page, tmp_path):
    from core.workspace import Workspace
    from curation.data.imports import import_file

    rows = [record("munich", "Which German state is Munich in?", "Bavaria", "open_qa"),
            record("camels", "Why do camels have humps?", "Fat.", "open_qa"),
            record("party", "Give me ideas for a party", "Games.", "brainstorming")]
    workspace = tmp_path / "workspace"
    import_file(Workspace.open(workspace), write_jsonl(tmp_path / "dolly_like.jsonl", rows))
    app = live_app(args=["--no-demo"], workspace=workspace)
    page.goto(app.url)
    page.get_by_role("tab", name="Dedup").click()
    page.get_by_role("button", name="Quality filters").click()
    page.locator("#filters-run").click()
    status = page.locator("#filters-status")
    status.get_by_text("2 of 3 records flagged").wait_for(timeout=60_000)
    findings = page.locator("#filters-findings")
    findings.get_by_text("asks for more than a name or a number ('Why')").first.wait_for()
    assert "munich" not in findings.inner_text()
    page.locator("#filters-option-label-field input, #filters-option-label-field textarea").first.fill("category")
    page.locator("#filters-option-off-for-labels textarea").fill("short_answer=open_qa")
    page.locator("#filters-run").click()
    status.get_by_text("1 of 3 records flagged").wait_for(timeout=60_000)
    shown = findings.inner_text()
    assert "('Give me')" in shown and "party" in shown and "camels" not in shown
