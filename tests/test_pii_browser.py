"""The PII tab in a real browser: scan the current version, review before/after, reject one record (the
next one opens), accept that one with the A key, apply, and find a scrubbed version with the rejected record
untouched."""
import pytest
from playwright.sync_api import expect

from core.workspace import Workspace
from curation.data import versions as V
from curation.data.records import Record


def seed(path):
    ws = Workspace.open(path)
    rows = [("t1", "Hi, I'm Jennifer Lopez, order ORD-2024-00123 is late."),
            ("t2", "Please email me at bob.stone@example.org about SKU-4471-BLK."),
            ("t3", "Call Maria Garcia on (415) 555-0132.")]
    V.create_version(ws, [Record(id=i, messages=[{"role": "user", "content": t}, {"role": "assistant", "content": "ok"}])
                          for i, t in rows], parent=None, step="import")
    return ws


@pytest.mark.browser
def test_scan_review_reject_and_apply(live_app, page, tmp_path):
    ws = seed(tmp_path / "workspace")
    app = live_app(workspace=tmp_path / "workspace")
    page.goto(app.url)
    page.get_by_role("tab", name="PII").click()
    page.locator("#pii-scan").click()
    expect(page.locator("#pii-scan-status")).to_contain_text("3 records with PII", timeout=120_000)
    expect(page.locator("#pii-review-status")).to_contain_text("3 record(s) shown")
    expect(page.locator("#pii-chart")).to_contain_text("PHONE_NUMBER")
    expect(page.locator("#pii-before")).to_contain_text("Jennifer Lopez")
    expect(page.locator("#pii-after")).to_contain_text("<PERSON>")
    expect(page.locator("#pii-after")).to_contain_text("ORD-2024-00123")

    page.locator("#pii-reject").click()
    expect(page.locator("#pii-review-status")).to_contain_text("t1 rejected; showing t2")
    expect(page.get_by_text("reject", exact=True)).to_be_visible()
    expect(page.locator("#pii-before")).to_contain_text("bob.stone@example.org")
    expect(page.locator("#pii-keys")).to_contain_text("A accept")
    page.locator("#pii-before").click()
    page.keyboard.press("a")
    expect(page.locator("#pii-review-status")).to_contain_text("t2 accepted; showing t3")
    expect(page.get_by_text("accept", exact=True)).to_be_visible()
    page.locator("#pii-apply").click()
    expect(page.locator("#pii-apply-status")).to_contain_text("Created v2")

    version = V.get_version(ws, 2)
    assert version.step == "scrub" and version.parent_id == 1 and version.counts["records_rejected"] == 1
    records = {r.id: r for r in V.load_records(ws, 2)}
    assert records["t1"].messages[0]["content"] == "Hi, I'm Jennifer Lopez, order ORD-2024-00123 is late."
    assert records["t2"].messages[0]["content"] == "Please email me at <EMAIL_ADDRESS> about SKU-4471-BLK."
    assert records["t3"].messages[0]["content"] == "Call <PERSON> on <PHONE_NUMBER>."


@pytest.mark.browser
def test_a_clicked_finding_is_kept_everywhere(live_app, page, tmp_path):
    ws = Workspace.open(tmp_path / "workspace")
    rows = [("s1", "The chemist Superdrug refunded me, thanks to Tavita Leota at the desk."),
            ("s2", "I asked Superdrug for a refund and they said no.")]
    V.create_version(ws, [Record(id=i, messages=[{"role": "user", "content": t}]) for i, t in rows], parent=None,
                     step="import")
    app = live_app(workspace=tmp_path / "workspace")
    page.goto(app.url)
    page.get_by_role("tab", name="PII").click()
    page.locator("#pii-scan").click()
    expect(page.locator("#pii-review-status")).to_contain_text("2 record(s) shown", timeout=120_000)
    page.locator("#pii-findings").get_by_text("Superdrug", exact=True).click()
    expect(page.locator("#pii-keep-text textarea, #pii-keep-text input").first).to_have_value("Superdrug")
    page.locator("#pii-keep").click()
    expect(page.locator("#pii-review-status")).to_contain_text(
        "'Superdrug' kept everywhere: 2 finding(s) in 2 record(s)")
    expect(page.locator("#pii-review-status")).to_contain_text("1 record(s) shown")
    expect(page.locator("#pii-findings")).to_contain_text("Tavita Leota")
    expect(page.locator("#pii-findings")).not_to_contain_text("Superdrug")
    page.locator("#pii-apply").click()
    expect(page.locator("#pii-apply-status")).to_contain_text("Created v2")
    assert {r.id: r.messages[0]["content"] for r in V.load_records(ws, 2)}["s2"] == rows[1][1]
