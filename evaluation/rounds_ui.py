"""The rounds view, shown inside the Results tab: did each round of the loop help, and where did it regress?

Thin wiring from widgets to ``evaluation.rounds``: a table with one row per run in round order
(dataset version → run → automatic and human figures → feedback → next version), one sentence per
round against the run before it, a line plot of the 0..1 figures across runs and a bar plot of
perplexity, base against fine-tuned. ``layout_rounds`` creates the widgets in the caller's layout,
``show_rounds`` is the handler, ``wire_rounds`` wires it to the Refresh button and the tab.
"""
from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from core.errors import TuneloopError
from evaluation.served_feedback_ui import layout_served_feedback, wire_served_feedback
from ui.kit import bind, error_markdown

NO_ROUNDS = ("_No runs yet. Each run, its automatic evaluation (`python -m evaluation auto`), its blind rating and "
             "the feedback merged from it appear here, round after round._")
COLUMNS = ("round", "dataset", "run", "ROUGE-L", "BLEU", "perplexity (test)", "regression",
           "human (win rate, 95% CI)", "feedback", "next version", "vs previous round")


class RoundsWidgets(SimpleNamespace):
    """The rounds view's components by name (``layout_rounds`` fills it)."""

    @property
    def outputs(self) -> list:
        return [self.summary, self.table, self.line, self.bars]


def layout_rounds() -> RoundsWidgets:
    """The rounds section's widgets, placed in the caller's layout (the Results tab); nothing is wired yet."""
    w = RoundsWidgets()
    with gr.Column(elem_id="rounds-view"):
        with gr.Row():
            gr.Markdown("### Rounds: is each round better than the last?")
            w.refresh = gr.Button("Refresh rounds", scale=0, elem_id="rounds-refresh")
        w.summary = gr.Markdown(NO_ROUNDS, elem_id="rounds-summary")
        w.table = gr.Dataframe(headers=list(COLUMNS), label="Round after round (base → fine-tuned)",
                               interactive=False, wrap=True, elem_id="rounds-table")
        with gr.Row():
            w.line = gr.LinePlot(x="run", y="value", color="figure", y_lim=[0, 1], x_label_angle=-20,
                                 label="Figures across runs (0 to 1, higher is better)", elem_id="rounds-line")
            w.bars = gr.BarPlot(x="bar", y="perplexity", color="model", x_label_angle=-20, x_title="run · model",
                                label="Perplexity of the test answers (lower is better)", elem_id="rounds-bars")
        w.served = layout_served_feedback()
    return w


def show_rounds(ws, w: RoundsWidgets) -> dict:
    """The summary, table, line plot and perplexity bars of every round so far."""
    import pandas as pd

    from evaluation.rounds import perplexity_points, plot_points, round_rows, round_summaries, rounds_table

    try:
        rows = round_rows(ws)
    except TuneloopError as exc:
        return {w.summary: error_markdown(exc)}
    if not rows:
        return {w.summary: NO_ROUNDS, w.table: pd.DataFrame(columns=list(COLUMNS)), w.line: gr.update(value=None),
                w.bars: gr.update(value=None)}
    lines = [f"**{len(rows)} run(s) over {max(r.round for r in rows)} round(s).**"]
    lines += [f"- {s}" for s in round_summaries(rows)]
    points = pd.DataFrame(plot_points(rows), columns=["order", "run", "figure", "value"])
    bars = pd.DataFrame(perplexity_points(rows), columns=["bar", "run", "model", "perplexity"])
    return {w.summary: "\n".join(lines), w.table: pd.DataFrame(rounds_table(rows), columns=list(COLUMNS)),
            w.line: gr.update(value=points, sort=[r.label for r in rows]),
            w.bars: gr.update(value=bars, sort=list(bars["bar"]))}


def wire_rounds(ws, w: RoundsWidgets, tab) -> None:
    """Recompute the rounds view on its Refresh button and whenever ``tab`` is shown."""
    for event in (w.refresh.click, tab.select):
        event(bind(show_rounds, ws, w), None, w.outputs)
    wire_served_feedback(ws, w.served, (w.refresh.click, tab.select))
