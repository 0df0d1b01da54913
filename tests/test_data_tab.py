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


def test_data_handlers_import_roll_back_and_move_every_picker_to_the_current_version(ws, tmp_path):
    import gradio as gr

    from curation.ui import data
    from ui.kit import version_picker

    with gr.Blocks():
        pickers = [version_picker(ws, "Version") for _ in range(2)]
    first = write_jsonl(tmp_path / "a.jsonl", [chat(f"question {i}", f"answer {i}") for i in range(3)])
    second = write_jsonl(tmp_path / "b.jsonl", [chat("refund please", "done")])
    out = data.import_records(ws, pickers, None, str(first), "auto", "", False, progress=lambda *a, **k: None)
    assert "Imported **3 records**" in out[0] and "Current version: v1" in out[2]
    data.import_records(ws, pickers, None, str(second), "auto", "", True, progress=lambda *a, **k: None)
    back = data.roll_back(ws, pickers, "v1")
    assert "**v1** is now the current version" in back[0]
    assert [u["value"] for u in back[3:]] == ["v1", "v1"]
    assert back[3]["choices"][-1][0].startswith("v1 (current)")
    info, rows, _ = data.browse(ws, "v2", "refund", 1)
    assert info.startswith("1 records match “refund”") and rows[0][2] == "refund please"
    summary, changes = data.compare(ws, "v1", "v2")
    assert "1 added" in summary and changes[0][0] == "added"
    failed = data.import_records(ws, pickers, None, "", "auto", "", False, progress=lambda *a, **k: None)
    assert "choose a file to upload" in failed[0]
