"""The Rate and Results tabs: what a rater's browser receives, keyboard voting, live results."""
from __future__ import annotations

import json
import re

import pytest

from core.workspace import Workspace
from evaluation.arena import EvalItem, create_evaluation, evaluation_votes
from tests.test_arena import register_run

# Generous: the suite shares two cores with training jobs; a wait returns as soon as its condition holds.
WAIT_MS = 120_000
SECRETS = ("fine-tuned (run", "base (SmolLM2", "A was", "finetuned", "finetuned_side", "outcome")
# Click a verdict button (by its elem_id) and say whether the reveal was hidden by the time the click returned.
HIDDEN_ON_CLICK = """(id) => {
    const host = document.getElementById(id);
    (host.tagName === "BUTTON" ? host : host.querySelector("button")).click();
    return document.getElementById("rate-reveal").classList.contains("rate-reveal-stale");
}"""


def wait_for_text(page, selector: str, text: str) -> None:
    page.wait_for_function("([sel, text]) => (document.querySelector(sel)?.innerText || '').includes(text)",
                           arg=[selector, text], timeout=WAIT_MS)


def seed_evaluation(ws, n=6) -> int:
    items = [EvalItem(f"p{i}", [{"role": "user", "content": f"Question {i}: where is order LM-{1000 + i}?"}],
                      base_response=f"Answer one for {i}", finetuned_response=f"Answer two for {i}",
                      label=("billing", "shipping")[i % 2], split="test") for i in range(n)]
    register_run(ws, 7)
    return create_evaluation(ws, "blind check", items, base_model="SmolLM2", run_id="7", overlap=1,
                             guidelines="Prefer the answer a customer could act on.")


def test_rate_handlers_send_no_side_mapping_before_the_vote(ws):
    import gradio as gr

    from evaluation.ui import build_rate_tab, start_clicked, vote_clicked
    eid = seed_evaluation(ws)
    with gr.Blocks(), gr.Tabs():
        w = build_rate_tab(ws)
    outputs = start_clicked(ws, w, {w.evaluation: eid, w.name: "ana"}, None)
    sent = json.dumps([v for c, v in outputs.items() if c is not w.assignment], default=str)  # State stays on the server
    assert "Answer one for" in sent and "Answer two for" in sent and "0 / 6" in sent
    for secret in SECRETS:
        assert secret not in sent

    def vote(verdict, assignment, name):
        return vote_clicked(ws, w, verdict, {w.assignment: assignment, w.name: name, w.comment: "", w.corrected: ""},
                            None)

    after = vote("tie", outputs[w.assignment], "ana")
    assert "A was" in after[w.reveal] and "1 / 6" in after[w.progress]
    again = vote("A", outputs[w.assignment], "ana")
    assert "already voted" in again[w.reveal]
    stranger = vote("A", after[w.assignment], "bob")
    assert "not issued to you" in stranger[w.reveal]
    assert len(evaluation_votes(ws, eid)) == 1


@pytest.mark.browser
def test_rater_votes_five_pairs_with_the_keyboard_and_results_update(live_app, page, tmp_path):
    workspace = tmp_path / "workspace"
    ws = Workspace.open(workspace)
    eid = seed_evaluation(ws)
    app = live_app(args=["--no-demo"], workspace=workspace)
    page.goto(app.url)
    page.get_by_role("tab", name="Rate").click()
    page.locator("#rate-rater textarea, #rate-rater input").first.fill("ana")
    page.locator("#rate-start").click()
    progress = page.locator("#rate-progress")
    wait_for_text(page, "#rate-progress", "0 / 6")

    received = page.content() + page.evaluate("JSON.stringify(window.gradio_config || {})")
    for secret in SECRETS:
        assert secret not in received, secret
    assert "Prefer the answer a customer could act on." in page.locator("#rate-guidelines").inner_text()

    for done, key in enumerate("12341", start=1):
        page.locator("#rate-progress").click()          # focus on the page, not in a text box
        if done == 3:
            # the verdict's click hides the last reveal in the same tick, before the server has answered
            assert page.evaluate(HIDDEN_ON_CLICK, "rate-tie")
        else:
            page.keyboard.press(key)
        wait_for_text(page, "#rate-progress", f"{done} / 6")
        wait_for_text(page, "#rate-reveal", f"Your vote {done} ")
        assert re.search(r"A was (fine-tuned \(run 7\)|base \(SmolLM2\))", page.locator("#rate-reveal").inner_text())
        # a banner above the next pair, apart from it: not under the answers now on screen
        reveal, question = page.locator("#rate-reveal").bounding_box(), page.locator("#rate-prompt").bounding_box()
        assert reveal["y"] + reveal["height"] <= question["y"] and page.locator("#rate-reveal").is_visible()
        assert page.evaluate("getComputedStyle(document.getElementById('rate-reveal')).visibility") == "visible"
    assert "5 / 6" in progress.inner_text()

    votes = evaluation_votes(ws, eid)
    assert [v.verdict for v in votes] == ["A", "B", "tie", "both_bad", "A"] and {v.rater for v in votes} == {"ana"}
    decisive = sum(v.outcome in ("finetuned", "base") for v in votes)

    page.get_by_role("tab", name="Results").click()
    wait_for_text(page, "#results-summary", f"n={decisive}")
    assert page.locator("#results-plot svg").count() == 1

    page.get_by_role("tab", name="Rate").click()
    page.locator("#rate-progress").click()
    page.keyboard.press("e")
    page.wait_for_function("document.activeElement?.closest('#rate-correction')", timeout=WAIT_MS)
    page.keyboard.type("Order LM-1005 ships tomorrow.")
    page.locator("#rate-bad").click()
    wait_for_text(page, "#rate-reveal", "corrected answer was saved")
    assert evaluation_votes(ws, eid)[-1].corrected_answer == "Order LM-1005 ships tomorrow."

    page.get_by_role("tab", name="Results").click()
    wait_for_text(page, "#results-feedback", "1 corrected")
