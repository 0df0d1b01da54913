"""The Results tab's arms section in the live app: ratings, win matrix and rater quality of a three-arm
evaluation, and the button that closes it to new votes."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from core.workspace import Workspace
from evaluation.arena import RaterChecks, create_evaluation, next_pair
from tests.test_arena import register_run
from tests.test_results_arms import ARMS, arm_items, gold_items, rate


@pytest.mark.browser
def test_the_arms_section_shows_the_ratings_and_closes_the_evaluation(live_app, page, tmp_path):
    ws = Workspace.open(tmp_path / "workspace")
    register_run(ws, 7)
    eid = create_evaluation(ws, "three arms", arm_items(8), arms=ARMS, base_model="tiny", overlap=3,
                            gold=gold_items(4), checks=RaterChecks(gold_rate=0.25, repeat_rate=0.2))
    for rater in ("ana", "bob"):
        rate(ws, eid, rater, lambda a, b: "A" if a > b else "B")
    rate(ws, eid, "cy", lambda a, b: "A" if a < b else "B")
    app = live_app(args=["--no-demo"], workspace=ws.root)
    page.goto(app.url)
    page.get_by_role("tab", name="Results").click()
    # the figures take a few seconds on a loaded machine (two bootstraps)
    expect(page.locator("#results-arms")).to_contain_text("only 8 prompts: this interval is rough", timeout=120_000)
    expect(page.locator("#results-arm-table")).to_contain_text("tuned")
    expect(page.locator("#results-win-matrix")).to_contain_text("0.67 (16–8, 0 ties, 0 both bad)")
    expect(page.locator("#results-rater-quality")).to_contain_text("0/24 (0%)")
    expect(page.locator("#results-arm-plot")).to_contain_text("Chance of beating base")
    page.locator("#results-close").click()
    expect(page.locator("#results-close-note")).to_contain_text(f"Evaluation #{eid} takes no new votes",
                                                                timeout=120_000)
    expect(page.locator("#results-summary")).to_contain_text("Closed to new votes")
    assert next_pair(ws, eid, "dan") is None
    assert "Traceback" not in app.logs()
