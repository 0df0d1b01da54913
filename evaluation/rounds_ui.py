"""The rounds view, shown inside the Results tab: did each round of the loop help, and where did it regress?

Thin wiring from widgets to ``evaluation.rounds``: a table with one row per run in round order
(dataset version → run → automatic and human figures → feedback → next version), one sentence per
round against the run before it, a line plot of the 0..1 figures across runs and a bar plot of
perplexity, base against fine-tuned.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import gradio as gr

from core.errors import TuneloopError

NO_ROUNDS = ("_No runs yet. Each run, its automatic evaluation (`python -m evaluation auto`), its blind rating and "
             "the feedback merged from it appear here, round after round._")
COLUMNS = ("round", "dataset", "run", "ROUGE-L", "BLEU", "perplexity (test)", "regression",
           "human (win rate, 95% CI)", "feedback", "next version", "vs previous round")


@dataclass
class RoundsView:
    """What the caller may wire further: ``refresh`` recomputes ``outputs`` (e.g. on ``tab.select``)."""
    refresh_button: gr.Button
    refresh: Callable[[], tuple]
    outputs: list


def rounds_outputs(ws) -> tuple:
    """Updates for (summary markdown, table, line plot, perplexity bars)."""
    import pandas as pd

    from evaluation.rounds import perplexity_points, plot_points, round_rows, round_summaries, rounds_table

    rows = round_rows(ws)
    if not rows:
        return NO_ROUNDS, pd.DataFrame(columns=list(COLUMNS)), gr.update(value=None), gr.update(value=None)
    table = pd.DataFrame(rounds_table(rows), columns=list(COLUMNS))
    lines = [f"**{len(rows)} run(s) over {max(r.round for r in rows)} round(s).**"]
    lines += [f"- {s}" for s in round_summaries(rows)]
    order = [r.label for r in rows]
    points = pd.DataFrame(plot_points(rows), columns=["order", "run", "figure", "value"])
    bars = pd.DataFrame(perplexity_points(rows), columns=["bar", "run", "model", "perplexity"])
    return "\n".join(lines), table, gr.update(value=points, sort=order), gr.update(value=bars, sort=list(bars["bar"]))


def build_rounds_view(ws) -> RoundsView:
    """The rounds section, placed in the caller's layout (the Results tab)."""
    with gr.Column(elem_id="rounds-view"):
        with gr.Row():
            gr.Markdown("### Rounds: is each round better than the last?")
            refresh = gr.Button("Refresh rounds", scale=0, elem_id="rounds-refresh")
        summary = gr.Markdown(NO_ROUNDS, elem_id="rounds-summary")
        table = gr.Dataframe(headers=list(COLUMNS), label="Round after round (base → fine-tuned)",
                             interactive=False, wrap=True, elem_id="rounds-table")
        with gr.Row():
            line = gr.LinePlot(x="run", y="value", color="figure", y_lim=[0, 1], x_label_angle=-20,
                               label="Figures across runs (0 to 1, higher is better)", elem_id="rounds-line")
            bars = gr.BarPlot(x="bar", y="perplexity", color="model", x_label_angle=-20, x_title="run · model",
                              label="Perplexity of the test answers (lower is better)", elem_id="rounds-bars")
    outputs = [summary, table, line, bars]

    def show():
        try:
            return rounds_outputs(ws)
        except TuneloopError as exc:
            return (f"⚠️ {exc}", gr.update(), gr.update(), gr.update())

    refresh.click(show, None, outputs)
    return RoundsView(refresh_button=refresh, refresh=show, outputs=outputs)
