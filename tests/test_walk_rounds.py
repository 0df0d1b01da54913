"""Both rounds of the loop walked in a real browser as a domain expert would, from what the pages show:
import a small file → review (approve a few) → PII scan + apply → dedup → split → train round 1 on a tiny
model (its folder typed in the base-model field) → prepare "rate to improve" on train-pool prompts → rate
(some corrections) → merge them → train round 2 (preflight shows the new data) → prepare "rate to measure"
on test prompts with arms round 1 and round 2 → rate → the rounds view shows round 2 against round 1.

Each step's wall time is printed and written to ``walk-times.json`` beside the step's screenshot
(``walk-<step>.png``) in ``$TUNELOOP_WALK_DIR`` (``docs/walk.py`` points it at docs/screenshots/), else
in the test's temporary folder.
"""
from __future__ import annotations

import json
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.tiny_model import build_tiny_model

WAIT_MS = 240_000

# A hand-written support log: a few customers twice (one exact repeat), names, emails and a phone number for
# the PII scan, and order numbers that are not PII.
TICKETS = [
    ("Where is my order ORD-5521?", "Order ORD-5521 left the warehouse yesterday; it arrives within three days."),
    ("Hi, I'm Helen Marsh, my parcel never came.", "Sorry about that. Open Orders, pick the parcel and press "
                                                   "Report missing; we send a new one at once."),
    ("Can I change the delivery address?", "Yes, until the parcel ships: Orders, then Edit address."),
    ("How do I get a refund for a broken kettle?", "Press Return on the order, choose Damaged and attach a photo; "
                                                   "the refund follows within five days."),
    ("Please email me at tom.reyes@example.net about my invoice.", "Your invoices are under Account, Billing; "
                                                                   "each has a Download button."),
    ("My discount code SAVE10 does not work.", "SAVE10 applies to full-price items only; the basket shows why."),
    ("How long does shipping to Norway take?", "Four to six working days to Norway."),
    ("Can I pay with a bank transfer?", "Yes: pick Bank transfer at checkout; we ship when the money arrives."),
    ("Call me on (415) 555-0188 about order ORD-7730.", "We keep support in writing: order ORD-7730 ships Monday."),
    ("The app crashes when I open my basket.", "Update the app to the newest version; that fixes the crash."),
    ("How do I reset my password?", "Press Forgot password on the login page and follow the email."),
    ("Where is my order ORD-5521?", "Order ORD-5521 left the warehouse yesterday; it arrives within three days."),
    ("Do you ship to Canada?", "Yes, to every Canadian province, in five to eight working days."),
    ("How do I cancel my subscription?", "Account, Subscription, Cancel; it runs to the end of the month."),
    ("Is the blue jacket back in stock?", "Press Notify me on its page; we email you the day it returns."),
    ("Can I return sale items?", "Sale items can be returned within fourteen days, like any other."),
    ("My name is Rosa Klein and I was charged twice.", "Sorry, Rosa. The second charge is a hold that drops off "
                                                       "within three days."),
    ("What sizes does the wool sweater come in?", "From XS to XXL; the size guide is under the photos."),
    ("How do I track my parcel?", "Orders, then Track: the courier's link shows where it is."),
    ("Can I add an item to an order I already placed?", "Not to a placed order; place a second one and we "
                                                        "ship them together when we can."),
    ("Why was my card declined?", "Your bank declined it; try again or use another card."),
    ("Do you have a shop in Berlin?", "We sell online only."),
    ("How do I change my email address?", "Account, Profile, Email; we send a link to the new address."),
    ("The zip on my bag broke after a week.", "That is covered: press Return, choose Faulty, and we replace it."),
    ("Can I order by phone?", "Only online, through the site or the app."),
    ("How do I unsubscribe from the newsletter?", "Use the Unsubscribe link at the bottom of any newsletter."),
    ("Is gift wrapping available?", "Yes, tick Gift wrap in the basket; it costs two euros."),
    ("My tracking link says unknown.", "Couriers update the link a day after pickup; try again tomorrow."),
]
CORRECTION = "Open Orders, pick the order and press Track; the courier's page says where it is."


@pytest.fixture
def patient_expect():
    """The walk shares two loaded cores with the rest of the suite: each expectation waits up to 4 minutes."""
    expect.set_options(timeout=WAIT_MS)
    yield
    expect.set_options(timeout=5_000)


class Walk:
    """Times each step of the walk and takes its screenshot."""

    def __init__(self, page, out: Path):
        self.page, self.out, self.times = page, out, {}
        out.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def step(self, name: str):
        start = time.monotonic()
        try:
            yield
        except Exception:
            self.page.screenshot(path=str(self.out / f"walk-{name}-failed.png"), full_page=True)
            raise
        self.times[name] = round(time.monotonic() - start, 1)
        print(f"walk: {name}: {self.times[name]:.1f} s", flush=True)
        self.page.screenshot(path=str(self.out / f"walk-{name}.png"), full_page=True)
        (self.out / "walk-times.json").write_text(json.dumps(self.times, indent=2) + "\n")


def tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()


def current(page, picker: str, version: int) -> None:
    """Wait until the tab's version picker, refreshed as the tab is shown, offers ``version`` as current."""
    expect(page.locator(f"{picker} input")).to_have_value(re.compile(rf"^v{version} \(current\)"))


def train(page, run_name: str, version: int) -> str:
    """Pick split ``version`` (the current one) in the Train tab, preflight and launch one small run; wait until
    it finishes. Returns what preflight said."""
    tab(page, "Train")
    current(page, "#train-split", version)        # nobody picked a split: the picker follows the newest one
    page.get_by_text("Config (axolotl-style keys)").click()
    for key, value in (("max_steps", "2"), ("eval_steps", "0"), ("save_steps", "50"), ("rouge_test_samples", "2"),
                       ("sequence_len", "128")):
        page.locator(f"#train-cfg-{key} input").fill(value)
    page.locator("#train-run-name input, #train-run-name textarea").first.fill(run_name)
    page.locator("#train-preflight-btn").click()
    expect(page.locator("#train-preflight")).to_contain_text(f"Split: v{version}")   # not the last run's plan
    expect(page.locator("#train-preflight")).to_contain_text("fits")
    said = page.locator("#train-preflight").inner_text()
    page.locator("#train-launch-btn").click()
    expect(page.locator("#train-message")).to_contain_text(re.compile(rf"Launched #\d+ {run_name}"))
    expect(page.locator("#train-status-box[data-status='finished']")).to_contain_text(run_name)
    page.get_by_text("Config (axolotl-style keys)").click()
    return said


def chosen_run(page, name: str):
    """The prepare form's token for the chosen run called ``name``."""
    return page.locator("#prepare-runs .token").filter(has_text=name)


def pick_run(page, name: str) -> None:
    """Add the run called ``name`` to the prepare form's arms."""
    page.locator("#prepare-runs input").click()
    page.get_by_role("option", name=re.compile(name)).click()
    page.keyboard.press("Escape")


def prepare(page, purpose: str, source: str, limit: int) -> None:
    """Fill the Rate tab's prepare form (its arms already chosen by the caller) and generate."""
    page.locator("#prepare-purpose").get_by_text(purpose).click()
    page.locator("#prepare-source").get_by_text(source).click()
    page.locator("#prepare").get_by_label("At most this many prompts").fill(str(limit))
    page.locator("#prepare-go").click()
    expect(page.locator("#prepare-status")).to_contain_text("is ready")


def rate(page, rater: str, keys: str, corrections: int = 0) -> None:
    """Start rating as ``rater`` and vote with the keyboard, correcting the first ``corrections`` answers."""
    page.locator("#rate-rater textarea, #rate-rater input").first.fill(rater)
    page.locator("#rate-start").click()
    expect(page.locator("#rate-progress")).to_contain_text("0 / ", timeout=60_000)
    for done, key in enumerate(keys, start=1):
        if done <= corrections:
            page.locator("#rate-edit").click()
            page.locator("#rate-correction textarea").fill(CORRECTION)
            page.locator("#rate-bad").click()
        else:
            page.locator("#rate-progress").click()
            page.keyboard.press(key)
        expect(page.locator("#rate-reveal")).to_contain_text(f"Your vote {done} ", timeout=60_000)


@pytest.mark.browser
@pytest.mark.slow
def test_walk_both_rounds_in_the_browser(live_app, page, tmp_path, patient_expect):
    page.set_default_timeout(WAIT_MS)
    tickets = tmp_path / "tickets.jsonl"
    tickets.write_text("".join(json.dumps({"messages": [{"role": "user", "content": q},
                                                         {"role": "assistant", "content": a}]}) + "\n"
                               for q, a in TICKETS))
    model = build_tiny_model(tmp_path / "tiny")
    app = live_app(args=["--no-demo"])
    walk = Walk(page, Path(os.environ.get("TUNELOOP_WALK_DIR") or tmp_path / "walk"))
    page.goto(app.url)

    with walk.step("import"):
        tab(page, "Data")
        page.locator("#data-path input, #data-path textarea").first.fill(str(tickets))
        page.locator("#data-import-btn").click()
        expect(page.locator("#data-import-status")).to_contain_text(f"{len(TICKETS)} records")

    with walk.step("review"):
        tab(page, "Review")
        name = page.locator("#review-name textarea, #review-name input").first
        name.fill("ana")
        name.press("Enter")
        expect(page.locator("#review-queue-info")).to_contain_text("ana: 0 done")
        page.keyboard.press("Escape")
        for _ in range(4):
            shown = page.locator("#review-record-info").inner_text()
            page.keyboard.press("a")
            expect(page.locator("#review-record-info")).not_to_have_text(shown)
        page.locator("body").click(position={"x": 5, "y": 5})
        page.keyboard.press("Shift+C")
        expect(page.locator("#review-commit-confirm")).to_be_visible()
        page.keyboard.press("Enter")
        expect(page.locator("#review-commit-message")).to_contain_text("Committed as v2")

    with walk.step("pii"):
        tab(page, "PII")
        page.locator("#pii-scan").click()
        expect(page.locator("#pii-scan-status")).to_contain_text("records with PII")
        expect(page.locator("#pii-before")).to_contain_text("Helen Marsh")
        page.locator("#pii-apply").click()
        expect(page.locator("#pii-apply-status")).to_contain_text("Created v3")

    with walk.step("dedup"):
        tab(page, "Dedup")
        current(page, "#dedup-version", 3)
        page.locator("#dedup-run").click()
        expect(page.locator("#dedup-summary")).to_contain_text("records to drop")
        page.locator("#dedup-apply").click()
        expect(page.locator("#dedup-apply-status")).to_contain_text("Made")

    with walk.step("split"):
        tab(page, "Splits")
        current(page, "#splits-source", 4)
        page.locator("#splits-build").click()
        expect(page.locator("#splits-status")).to_contain_text("Saved")

    with walk.step("train-round-1"):
        tab(page, "Train")
        page.locator("#train-base-model textarea, #train-base-model input").first.fill(str(model))
        first = train(page, "round 1", 5)

    with walk.step("prepare-improve"):
        tab(page, "Rate")
        page.get_by_text("Prepare an evaluation (admins)").click()
        expect(chosen_run(page, "round 1")).to_be_visible()      # an untouched list offers the run made since
        prepare(page, "Rate to improve", "Train split", 4)

    with walk.step("rate-improve"):
        rate(page, "ana", "1212", corrections=2)

    with walk.step("merge"):
        tab(page, "Results")
        expect(page.locator("#results-feedback")).to_contain_text("2 corrected")
        page.locator("#results-merge").click()
        expect(page.locator("#results-merged")).to_contain_text("Made v6")
        expect(page.locator("#results-merged")).to_contain_text("2 into train")

    with walk.step("train-round-2"):
        second = train(page, "round 2", 6)
        conversations = [int(re.search(r"(\d+) conversations", said).group(1)) for said in (first, second)]
        assert conversations[1] == conversations[0] + 2, (first, second)

    with walk.step("prepare-measure"):
        tab(page, "Rate")
        if not page.locator("#prepare-base input").is_visible():      # still open from round 1's evaluation?
            page.get_by_text("Prepare an evaluation (admins)").click()
        expect(chosen_run(page, "round 2")).to_be_visible()      # the preselection followed the newest run
        expect(chosen_run(page, "round 1")).to_have_count(0)
        pick_run(page, "round 1")
        page.locator("#prepare-pairs-per-prompt input").fill("1")   # base, round 1, round 2: one pair a prompt
        prepare(page, "Rate to measure", "Test split", 3)
        expect(page.locator("#prepare-status")).to_contain_text("3 arms")

    with walk.step("rate-measure"):
        rate(page, "ana", "121")

    with walk.step("rounds"):
        tab(page, "Results")
        expect(page.locator("#results-evaluation input")).to_have_value(re.compile(r"^#2 "))   # the newest
        page.locator("#rounds-refresh").click()
        summary = page.locator("#rounds-summary")
        expect(summary).to_contain_text("over 2 round(s)")
        expect(summary).to_contain_text("Round 2, run #2 (SFT) vs run #1")
        expect(summary).to_contain_text("both in evaluation #2")      # round 1 and 2 rated on one scale
        expect(summary).to_contain_text("ROUGE-L")
    logs = app.logs()
    assert "Traceback" not in logs, logs[logs.index("Traceback"):][:6000]     # the first one, to read
