"""The rounds view in the live app's Results tab, on two real rounds of a tiny model."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.round_workspace import build_two_rounds


@pytest.mark.browser
@pytest.mark.slow
def test_rounds_view_lines_up_rounds_with_figures_and_plots(live_app, page, tmp_path):
    loop = build_two_rounds(tmp_path / "loop")
    app = live_app(args=["--no-demo"], workspace=loop.ws.root)
    page.goto(app.url)
    page.get_by_role("tab", name="Results").click()
    page.locator("#rounds-refresh").click()
    summary = page.locator("#rounds-summary")
    expect(summary).to_contain_text("3 run(s) over 2 round(s).")
    expect(summary).to_contain_text(f"Round 2, run #{loop.dpo} (DPO) vs run #{loop.sft1}:")
    expect(summary).to_contain_text("ROUGE-L")
    table = page.locator("#rounds-table")
    expect(table).to_contain_text(f"#{loop.sft1} SFT (finished)")
    expect(table).to_contain_text(f"#{loop.dpo} DPO (finished) ← #{loop.sft1}")
    expect(table).to_contain_text(f"v{loop.v2}")                  # round 1's feedback made the next version
    expect(table).to_contain_text("100% [")                        # round 1's human win rate with its interval
    # Both plots draw (Vega renders into a canvas or an SVG once it has data).
    expect(page.locator("#rounds-line").locator("canvas, svg").first).to_be_visible()
    expect(page.locator("#rounds-bars").locator("canvas, svg").first).to_be_visible()
    assert "Traceback" not in app.logs()
