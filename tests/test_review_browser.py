"""The Review tab in a real browser: a reviewer labels 5 records with the keyboard, a draft survives a
reload, and the review is committed as a new version."""
import re
import time

import pytest
from playwright.sync_api import expect

from core.workspace import Workspace
from curation.review.state import load_draft
from curation.data import versions as V
from curation.review.labels import label_schema


def wait_until(condition, timeout=60):
    """Wait for the server to have stored what the page sent (the page shows no sign of the last keystroke)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the server never stored the draft")
        time.sleep(0.2)


def _answer_index(ws, record_id):
    record = next(r for r in V.load_records(ws, 1) if r.id == record_id)
    return max(i for i, m in enumerate(record.messages) if m["role"] == "assistant")


def review_five_records_with_the_keyboard(page, url, workspace):
    page.goto(url)
    page.get_by_role("tab", name="Review").click()
    name = page.locator("#review-name textarea, #review-name input").first
    name.fill("ana")
    name.press("Enter")
    info = page.locator("#review-record-info")
    expect(info).to_contain_text("demo-0001")
    expect(page.locator("#review-queue-info")).to_contain_text("ana: 0 done")   # the name took effect
    page.keyboard.press("Escape")                 # out of the name box: shortcuts work outside text boxes

    page.keyboard.press("?")
    expect(page.locator("#review-help")).to_be_visible()
    expect(page.locator("#review-help")).to_contain_text("approve")
    page.keyboard.press("Escape")
    expect(page.locator("#review-help")).to_be_hidden()

    page.keyboard.press("e")                      # fix the first record's answer
    editor = page.locator("#review-msg-edit textarea")
    expect(editor).to_be_focused()
    editor.press("End")
    page.keyboard.type(" Anything else I can help with?")
    expect(page.locator("#review-draft-status")).to_contain_text("saved")
    page.keyboard.press("Escape")

    radios = page.locator("#review-field-0-single input[type=radio]")
    for i in range(5):
        rid = f"demo-{i + 1:04d}"
        expect(info).to_contain_text(rid)
        page.keyboard.press(str(i + 1))
        expect(radios.nth(i)).to_be_checked()
        page.keyboard.press("a")
        expect(page.locator("#review-message")).to_contain_text(f"{rid} approved")
    expect(info).to_contain_text("demo-0006")

    page.keyboard.press("u")                      # undo brings the fifth record back as it was: label it again
    expect(info).to_contain_text("demo-0005")
    expect(page.locator("#review-message")).to_contain_text("Undid")
    expect(info).to_contain_text("your decision —")
    page.keyboard.press("5")
    expect(radios.nth(4)).to_be_checked()
    page.keyboard.press("a")
    expect(info).to_contain_text("demo-0006")

    page.keyboard.press("e")                      # a draft on the sixth record survives a reload
    page.keyboard.type("half-written answer")
    ws = Workspace.open(workspace)
    wait_until(lambda: (load_draft(ws, 1, "demo-0006", "ana") or {}).get("edits", {}).get(
        _answer_index(ws, "demo-0006"), "").endswith("half-written answer"))
    page.reload()
    page.get_by_role("tab", name="Review").click()
    expect(info).to_contain_text("draft restored")
    expect(info).to_contain_text("demo-0006")
    expect(page.locator("#review-msg-edit textarea")).to_have_value(re.compile("half-written answer$"))
    expect(name).to_have_value("ana")

    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("Shift+C")
    expect(page.locator("#review-commit-message")).to_contain_text("5 approved")
    expect(page.locator("#review-commit-confirm")).to_be_visible()
    page.keyboard.press("Enter")
    expect(page.locator("#review-commit-message")).to_contain_text("Committed as v2")

    v2 = V.get_version(ws, 2)
    assert v2.step == "review" and v2.parent_id == 1
    assert {k: v2.counts[k] for k in ("approved", "labelled", "edited", "rejected")} == \
        {"approved": 5, "labelled": 5, "edited": 1, "rejected": 0}
    options = label_schema(ws, 1).field("label").options
    records = {r.id: r for r in V.load_records(ws, 2)}
    for i in range(5):
        assert records[f"demo-{i + 1:04d}"].meta["label"] == options[i]
        assert records[f"demo-{i + 1:04d}"].meta["review"]["status"] == "approved"
    first = records["demo-0001"]
    assert first.messages[-1]["content"].endswith(" Anything else I can help with?")
    assert first.meta["review"]["edits"][0]["by"] == "ana"
    assert first.meta["review"]["edits"][0]["previous"] == V.load_records(ws, 1)[0].messages[-1]["content"]


@pytest.fixture
def patient_expect():
    """The suite shares two cores with heavy jobs: give each expectation 30 s instead of 5."""
    expect.set_options(timeout=30_000)
    yield
    expect.set_options(timeout=5_000)


@pytest.mark.browser
def test_reviewer_labels_five_records_with_the_keyboard_and_commits(live_app, page, patient_expect):
    app = live_app()
    review_five_records_with_the_keyboard(page, app.url, app.workspace)
