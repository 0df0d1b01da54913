"""The PII leak check panel, shown inside the Results tab: does a run's model repeat personal data that was
scrubbed from its training data?

Thin wiring from widgets to ``evaluation.pii_leak`` (the same function as ``python -m evaluation pii-leak``,
with its options form rendered from ``LeakCheckOptions``): a run picker, the check's button with progress and a
Stop button, the latest check's verdict, its table per entity type and the values produced, masked.
``layout_pii_leak`` creates the widgets in the caller's layout, the module-level handlers take the page's
values and return outputs keyed by component, ``wire_pii_leak`` wires them to the buttons and the tab.
"""
from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from core.access import caller
from core.errors import TuneloopError
from evaluation.pii_leak import (COUNT_COLUMNS, EXPLANATION, LEAK_COLUMNS, LeakCheckOptions, count_rows,
                                 latest_leak_check, leak_check_markdown, leak_rows)
from ui.forms import form_values, options_form, options_from_form
from ui.kit import CancelRegistry, bind, error_markdown, refresh_on_select, run_picker

NO_RUN = "_No run with an adapter yet. Train one in the Train tab; its leak check is made here._"
FORM_FIELDS = ("max_values", "samples")
CHECKS = CancelRegistry()       # the panel's Stop button, per browser session


class PiiLeakWidgets(SimpleNamespace):
    """The panel's components by name (``layout_pii_leak`` fills it)."""

    @property
    def outputs(self) -> list:
        return [self.summary, self.counts, self.leaks]


def layout_pii_leak(ws) -> PiiLeakWidgets:
    """The panel's widgets, placed in the caller's layout (the Results tab); nothing is wired yet."""
    w = PiiLeakWidgets()
    with gr.Accordion("PII leak check: does the model repeat personal data scrubbed from its training data?",
                      open=False, elem_id="pii-leak"):
        gr.Markdown(EXPLANATION)
        with gr.Row():
            w.run = run_picker(ws, "Run", with_adapter=True, scale=2, elem_id="pii-leak-run")
            w.form = options_form(LeakCheckOptions, only=FORM_FIELDS, elem_prefix="pii-leak")
        with gr.Row():
            w.check = gr.Button("Check for leaks", variant="primary", elem_id="pii-leak-check")
            w.stop = gr.Button("Stop", variant="stop", elem_id="pii-leak-stop")
        w.summary = gr.Markdown("", elem_id="pii-leak-summary")
        w.counts = gr.Dataframe(headers=list(COUNT_COLUMNS), label="Per entity type", interactive=False,
                                elem_id="pii-leak-counts")
        w.leaks = gr.Dataframe(headers=list(LEAK_COLUMNS), label="Values the models produced (masked)",
                               interactive=False, wrap=True, elem_id="pii-leak-leaks")
    return w


def check_view(w: PiiLeakWidgets, check, run_id) -> dict:
    """A check (or None: not run yet) keyed by the components that show it."""
    import pandas as pd
    counts = count_rows(check) if check is not None and check.status == "checked" else []
    leaks = leak_rows(check) if check is not None else []
    return {w.summary: leak_check_markdown(check, run_id),
            w.counts: pd.DataFrame(counts, columns=list(COUNT_COLUMNS)),
            w.leaks: pd.DataFrame(leaks, columns=list(LEAK_COLUMNS))}


def show_leak_check(ws, w: PiiLeakWidgets, data: dict) -> dict:
    """The chosen run's latest leak check (or how to make one)."""
    run_id = data[w.run]
    if not run_id:
        return {w.summary: NO_RUN}
    try:
        return check_view(w, latest_leak_check(ws, run_id), run_id)
    except TuneloopError as exc:
        return {w.summary: error_markdown(exc)}


def check_clicked(ws, w: PiiLeakWidgets, data: dict, request: gr.Request = None, progress=gr.Progress()) -> dict:
    """Run the leak check of the chosen run with the form's options; Stop ends it after the current batch."""
    from evaluation.pii_leak import check_pii_leaks
    cancel = CHECKS.start(request)
    try:
        if not data[w.run]:
            raise TuneloopError("choose a run with an adapter first")
        options = options_from_form(LeakCheckOptions, form_values(w.form, data))
        check = check_pii_leaks(ws, data[w.run], options, cancel=cancel, created_by=caller(ws, request),
                                progress=lambda d, t, what: progress(d / max(t, 1), desc=what))
    except TuneloopError as exc:
        return {w.summary: error_markdown(exc)}
    finally:
        CHECKS.finish(request, cancel)
    return check_view(w, check, data[w.run])


def stop_clicked(ws, w: PiiLeakWidgets, request: gr.Request = None) -> dict:
    """Stop this browser tab's leak check after its current batch."""
    stopping = CHECKS.cancel(request)
    return {w.summary: "Stopping after the current batch…" if stopping else "No leak check is running."}


def wire_pii_leak(ws, w: PiiLeakWidgets, tab) -> None:
    """The button, Stop, and the latest check shown whenever a run is chosen or ``tab`` is shown."""
    pickers = refresh_on_select(tab, ws, [w.run])
    for event in (w.run.change, tab.select):
        event(bind(show_leak_check, ws, w), {w.run}, w.outputs)
    pickers.after(w.check.click(bind(check_clicked, ws, w), {w.run, *w.form.values()}, w.outputs))
    w.stop.click(bind(stop_clicked, ws, w), None, [w.summary])
