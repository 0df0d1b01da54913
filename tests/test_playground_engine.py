"""The Playground tab's engine radio and threads box, called without a browser: the chosen engine answers (the
status names it), whatever $TUNELOOP_ENGINE says, a negative threads count is refused on the page, and 0 (what the empty box
sends) leaves the choice to the engine."""
from __future__ import annotations

import gradio as gr
import pytest

from evaluation import playground_ui as ui
from tests.tab_page import page
from tests.tiny_model import build_tiny_model, make_adapter


@pytest.fixture
def asked(ws, tmp_path, monkeypatch):
    """Ask both sides of the tab (base vs an adapter on a tiny model) with the page's values changed."""
    base = build_tiny_model(tmp_path / "tiny")
    adapter = make_adapter(base, tmp_path / "run" / "adapter", seed=1)
    monkeypatch.setenv("TUNELOOP_ENGINE", "no-such-engine")      # only the page's choice can make it answer
    with gr.Blocks(), gr.Tabs():
        w = ui.build_playground_tab(ws)

    def ask(**typed):
        return w, list(ui.ask_both(ws, w, page(w, adapter=str(adapter), message="Where is my order?", max_tokens=8,
                                                **typed), None))
    return ask


def test_choosing_transformers_answers_with_transformers(asked):
    w, updates = asked(engine="transformers", threads=2)
    status = updates[-1][w.status]
    assert "Done." in status and "answered by **transformers**" in status, status
    assert updates[-1][w.right_chat][-1]["role"] == "assistant"


def test_a_negative_thread_count_is_refused_and_0_is_the_engines_own_choice(asked):
    w, updates = asked(engine="transformers", threads=-1)
    assert "threads -1: give a whole number of CPU threads" in updates[-1][w.status]
    w, updates = asked(engine="transformers", threads=0)                # the box left empty in the browser
    assert "Done." in updates[-1][w.status], updates[-1][w.status]
