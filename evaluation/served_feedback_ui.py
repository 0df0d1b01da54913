"""The "feedback from use" line of the rounds view: what users of a served run said, and the button that merges
it into the next dataset version (``evaluation.production_feedback``), as ``python -m evaluation
merge-served-feedback`` does.

``layout_served_feedback`` creates the widgets in the caller's layout, ``merge_clicked`` and ``show_served`` are
the handlers, ``wire_served_feedback`` binds them.
"""
from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from core.errors import TuneloopError
from evaluation.production_feedback import collect_served_feedback, merge_served_feedback
from ui.kit import bind, caller_name, error_markdown


class ServedFeedbackWidgets(SimpleNamespace):
    """The feedback-from-use line's components by name."""


def layout_served_feedback() -> ServedFeedbackWidgets:
    """A summary of the feedback from use and the Merge button, placed in the caller's layout."""
    w = ServedFeedbackWidgets()
    with gr.Row(elem_id="served-feedback"):
        w.summary = gr.Markdown(elem_id="served-feedback-summary")
        w.merge = gr.Button("Merge feedback from use", scale=0, elem_id="served-feedback-merge")
    w.message = gr.Markdown(elem_id="served-feedback-message")
    return w


def show_served(ws, w: ServedFeedbackWidgets) -> dict:
    """What the feedback from served answers amounts to now (nothing written)."""
    c = collect_served_feedback(ws).counts()
    return {w.summary: f"**Feedback from use** (served runs): {c['corrections']} corrections, {c['preference_pairs']} "
                       f"preference pairs, {c['kto']} unpaired thumbs (KTO), {c['needs_answer']} prompts that need an "
                       f"answer, {c['without_text']} without text"}


def merge_clicked(ws, w: ServedFeedbackWidgets, request: gr.Request = None) -> dict:
    """Merge the feedback from use: a new dataset version, a preference version, a KTO version, answer requests."""
    try:
        merged = merge_served_feedback(ws, created_by=caller_name(ws, request))
    except TuneloopError as exc:
        return {w.message: error_markdown(exc), **show_served(ws, w)}
    return {w.message: "\n\n".join(f"- {line}" for line in merged.describe().splitlines()), **show_served(ws, w)}


def wire_served_feedback(ws, w: ServedFeedbackWidgets, events) -> None:
    """The summary on each of ``events`` (the rounds view's refresh), the merge on the button."""
    for event in events:
        event(bind(show_served, ws, w), None, [w.summary])
    w.merge.click(bind(merge_clicked, ws, w), None, [w.message, w.summary], api_name=False)
