"""The Playground tab in a real browser: type a question, watch two labelled answers, send one to the dataset."""
from __future__ import annotations

import re

import pytest

from tests.tiny_model import build_tiny_model, make_adapter
from training.inference import DecodingSettings


@pytest.mark.browser
def test_a_typed_question_gets_two_streamed_answers_and_one_goes_to_the_dataset(live_app, page, tmp_path):
    base = build_tiny_model(tmp_path / "tiny")
    adapter = make_adapter(base, tmp_path / "my-run" / "adapter", seed=1)
    app = live_app()
    page.goto(app.url)
    page.get_by_role("tab", name="Playground").click()
    folder = page.get_by_label("…or an adapter folder")
    folder.fill(str(adapter))
    folder.press("Enter")
    left, right = page.locator("#playground-left"), page.locator("#playground-right")
    page.wait_for_function("document.querySelector('#playground-right').innerText.includes('Fine-tuned · my-run')")
    assert "Base model · tiny" in left.inner_text()

    page.get_by_role("button", name="Decoding settings").click()
    tokens = page.get_by_label("number input for Max new tokens")
    assert tokens.input_value() == str(DecodingSettings().max_new_tokens)    # the one default, as rating uses
    tokens.fill("16")                                          # short answers: the test is about the page
    tokens.press("Enter")
    page.locator("#playground-message textarea").fill("Where is my order?")
    page.get_by_role("button", name="Ask both").click()
    page.get_by_text("Done.", exact=False).wait_for(timeout=300_000)
    for chat in (left, right):
        bubbles = chat.locator(".message-row")
        assert bubbles.count() == 2                           # the question and its answer
        assert "Where is my order?" in bubbles.nth(0).inner_text()
    # The fine-tuned side says something; a tiny base model's answer may be blank lines.
    assert right.locator(".message-row").nth(1).inner_text().strip()
    status = page.locator("#playground-status").inner_text()
    assert "up to 16 new tokens" in status
    for side in ("Left", "Right"):
        assert re.search(side + r": \d+ tokens?, first after", status)

    page.get_by_text("Send an answer to the dataset").click()
    page.get_by_role("button", name="Take this answer to edit").click()
    answer = page.locator("#playground-answer textarea")
    page.wait_for_function("document.querySelector('#playground-answer textarea').value.length > 0")
    answer.fill("Your order ships within two days.")
    page.get_by_role("button", name="Add to dataset (new version)").click()
    page.get_by_text("Added record", exact=False).wait_for()
    assert "edited, from fine-tuned" in page.get_by_text("Added record", exact=False).inner_text()
