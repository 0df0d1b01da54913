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


@pytest.mark.browser
def test_the_records_table_fits_the_page_however_long_the_texts(live_app, page, tmp_path):
    app = live_app(args=["--no-demo"])
    long_answer = " ".join(f"step-{i} open Settings and choose the plan named Family-Premium" for i in range(60))
    src = write_jsonl(tmp_path / "long.jsonl", [chat(f"question {i} " + "x" * 400, long_answer, label="y" * 80)
                                                for i in range(5)])
    page.goto(app.url)
    page.locator("#data-path textarea, #data-path input").first.fill(str(src))
    page.locator("#data-import-btn").click()
    page.get_by_text("Imported 5 records").wait_for()
    page.get_by_role("tab", name="Browse", exact=True).click()
    expect(page.locator("#data-records")).to_contain_text("question 0")
    widths = page.evaluate("""() => {
        const table = document.querySelector('#data-records table');
        return [table.getBoundingClientRect().width, document.querySelector('#data-records').clientWidth,
                document.documentElement.scrollWidth, window.innerWidth];
    }""")
    table, box, scrolled, window = widths
    assert table <= box + 1 and scrolled <= window, widths


def test_data_handlers_import_roll_back_and_move_every_picker_to_the_current_version(ws, tmp_path):
    import gradio as gr

    from curation.ui import data
    from tests.tab_page import page

    with gr.Blocks():
        with gr.Tabs():
            w = data.build(ws)
    quiet = dict(progress=lambda *a, **k: None)
    first = write_jsonl(tmp_path / "a.jsonl", [chat(f"question {i}", f"answer {i}") for i in range(3)])
    second = write_jsonl(tmp_path / "b.jsonl", [chat("refund please", "done")])
    previewed = data.preview_file(ws, w, page(w, path_box=str(first)))
    assert "Detected format **messages**" in previewed[w.status] and len(previewed[w.preview]) == 3
    out = data.import_records(ws, w, page(w, path_box=str(first)), **quiet)
    assert "Imported **3 records**" in out[w.status] and "Current version: v1" in out[w.lineage]
    appended = data.import_records(ws, w, page(w, path_box=str(second), append=True), **quiet)
    assert "**Current version: v2** (4 records" in appended[w.lineage]
    back = data.roll_back(ws, w, page(w, rollback_pick="v1"))
    assert "**v1** is now the current version" in back[w.rollback_status]
    assert [back[p]["value"] for p in w.pickers] == ["v1"] * len(w.pickers)
    assert back[w.rollback_pick]["choices"][-1][0].startswith("v1 (current)")
    assert back[w.table][0][1] == "v2" and back[w.table][1][0] == "●"
    shown = data.browse(ws, w, page(w, browse_pick="v2", search="refund", page_no=1))
    assert shown[w.browse_info].startswith("1 records match “refund”") and shown[w.records_df][0][2] == "refund please"
    diff = data.compare(ws, w, page(w, diff_a="v1", diff_b="v2"))
    assert "1 added" in diff[w.diff_summary] and diff[w.diff_df][0][0] == "added"
    failed = data.import_records(ws, w, page(w), **quiet)
    assert "choose a file to upload" in failed[w.status] and w.preview not in failed
    assert failed[w.rollback_pick]["value"] == "v1"


def test_compare_marks_what_changed_in_a_changed_record(ws):
    import gradio as gr

    from curation.data import versions as V
    from curation.data.records import Record
    from curation.ui import data
    from tests.tab_page import page

    def rec(answer, label):
        return Record(id="r1", messages=chat("where is my parcel?", answer)["messages"], meta={"label": label})

    V.create_version(ws, [rec("It left the depot on Monday and arrives Friday.", "shipping")], parent=None,
                     step="import")
    V.create_version(ws, [rec("It left the depot on Tuesday and arrives Friday.", "delivery")], parent=1, step="edit")
    with gr.Blocks():
        with gr.Tabs():
            w = data.build(ws)
    diff = data.compare(ws, w, page(w, diff_a="v1", diff_b="v2"))
    change, rid, before, after = diff[w.diff_df][0]
    assert (change, rid) == ("changed", "r1")
    assert "<del>Monday</del>" in before and "<mark>Tuesday</mark>" in after and "Friday" in after
    assert "shipping" in before and "delivery" in after and "<mark>" not in before
