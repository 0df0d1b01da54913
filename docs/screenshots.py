"""Retake the README's tab screenshots on the demo workspace: ``python docs/screenshots.py [TAB ...]``.

Starts the app on a fresh temporary workspace (demo data, made on first start), opens each named tab
(default: every tab that needs no trained run: Data, Review, PII, Dedup, Splits, Train) in headless
Chromium and writes ``docs/screenshots/<tab>.png``. The Rate, Results and Playground pictures need a
trained run and votes; take them by hand from a workspace that has them (``--workspace DIR``).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser import CHROMIUM, CHROMIUM_FLAGS, start_app  # noqa: E402

TABS = ["Data", "Review", "PII", "Dedup", "Splits", "Train", "Playground", "Rate", "Results"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python docs/screenshots.py", description=__doc__.split("\n")[0])
    parser.add_argument("tabs", nargs="*", default=TABS[:6], help=f"tabs to take (of {', '.join(TABS)})")
    parser.add_argument("--workspace", help="an existing workspace to show (default: a fresh demo one)")
    args = parser.parse_args(argv)
    unknown = [t for t in args.tabs if t not in TABS]
    if unknown:
        parser.error(f"unknown tab {unknown[0]!r}; choose from {', '.join(TABS)}")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        app = start_app(Path(args.workspace) if args.workspace else Path(tmp) / "workspace")
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(app.url)
                for tab in args.tabs:
                    page.get_by_role("tab", name=tab, exact=True).click()
                    page.wait_for_timeout(2500)
                    target = ROOT / "docs" / "screenshots" / f"{tab.lower()}.png"
                    page.screenshot(path=str(target), full_page=True)
                    print(target.relative_to(ROOT))
                browser.close()
        finally:
            app.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
