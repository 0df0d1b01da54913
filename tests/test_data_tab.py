"""The Data tab in a real browser: import a file and see the new version in the lineage."""
import pytest
from playwright.sync_api import expect

from tests.conftest import chat, write_jsonl


@pytest.mark.browser
def test_import_shows_new_version_in_lineage(live_app, page, tmp_path):
    app = live_app(args=["--no-demo"])
    src = write_jsonl(tmp_path / "tickets.jsonl", [chat(f"question {i}", f"answer {i}", label="x") for i in range(7)])
    page.goto(app.url)
    page.get_by_text("No dataset yet").wait_for()
    page.locator("#data-upload input[type=file]").set_input_files(str(src))
    page.get_by_text("Detected format messages").wait_for()
    page.locator("#data-import-btn").click()
    page.get_by_text("Imported 7 records").wait_for()
    lineage = page.locator("#data-lineage")
    lineage.get_by_text("Current version: v1").wait_for()
    assert "import (7)" in lineage.inner_text()

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "bot", "content": "x"}]}\n')
    page.locator("#data-path textarea, #data-path input").first.fill(str(bad))
    page.get_by_role("button", name="Clear").first.click()  # use the path, not the uploaded file
    page.locator("#data-import-btn").click()
    page.get_by_text("line 1: messages[0].role is 'bot'").wait_for()
    assert "Current version: v1" in lineage.inner_text()

    page.get_by_role("tab", name="Versions", exact=True).click()
    expect(page.locator("#data-versions")).to_contain_text("import")
