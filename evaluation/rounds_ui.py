"""The rounds view, shown inside the Results tab: did each round of the loop help, and where did it regress?

Thin wiring from widgets to ``evaluation.rounds``: a table with one row per run in round order
(dataset version → run → automatic and human figures → feedback → next version), one sentence per
round against the run before it, a line plot of the 0..1 figures across runs (starting from the base model's, so
one round draws a line too) and a bar plot of
perplexity, base against fine-tuned. Runs that are not rounds (failed, stopped, still training) are
listed apart. **Measure automatically** runs the automatic evaluation of every finished run that lacks
one (with progress; **Stop** cancels it). ``layout_rounds`` creates the widgets in the caller's layout,
``show_rounds`` and ``measure`` are the handlers, ``wire_rounds`` wires them to the buttons and the tab.
"""
from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from core.errors import TuneloopError
from evaluation.served_feedback_ui import layout_served_feedback, wire_served_feedback
from ui.kit import CancelRegistry, bind, error_markdown

MEASURING = CancelRegistry()

NO_ROUNDS = ("_No runs yet. Each run, its automatic evaluation (`python -m evaluation auto`), its blind rating and "
             "the feedback merged from it appear here, round after round._")
COLUMNS = ("round", "dataset", "run", "ROUGE-L", "BLEU", "perplexity (test)", "regression", "general skills (guard)",
           "human (win rate, 95% CI)", "human rating (Bradley–Terry vs base)", "feedback", "next version",
           "vs previous round")


class RoundsWidgets(SimpleNamespace):
    """The rounds view's components by name (``layout_rounds`` fills it)."""

    @property
    def outputs(self) -> list:
        return [self.summary, self.table, self.line, self.bars, self.apart]


def layout_rounds() -> RoundsWidgets:
    """The rounds section's widgets, placed in the caller's layout (the Results tab); nothing is wired yet."""
    w = RoundsWidgets()
    with gr.Column(elem_id="rounds-view"):
        with gr.Row():
            gr.Markdown("### Rounds: is each round better than the last?")
            w.refresh = gr.Button("Refresh rounds", scale=0, elem_id="rounds-refresh")
            w.measure = gr.Button("Measure automatically", scale=0, elem_id="rounds-measure")
            w.stop = gr.Button("Stop", scale=0, elem_id="rounds-measure-stop")
        w.measured = gr.Markdown(elem_id="rounds-measured")
        w.summary = gr.Markdown(NO_ROUNDS, elem_id="rounds-summary")
        w.table = gr.Dataframe(headers=list(COLUMNS), label="Round after round (base → fine-tuned)",
                               interactive=False, wrap=True, elem_id="rounds-table")
        with gr.Row():
            w.line = gr.LinePlot(x="run", y="value", color="figure", y_lim=[0, 1], x_label_angle=-20,
                                 label="Figures across runs (0 to 1, higher is better)", elem_id="rounds-line")
            w.bars = gr.BarPlot(x="bar", y="perplexity", color="model", x_label_angle=-20, x_title="run · model",
                                label="Perplexity of the test answers (lower is better)", elem_id="rounds-bars")
        w.apart = gr.Markdown(elem_id="rounds-apart")
        w.served = layout_served_feedback()
    return w


BASE_POINT = "base model"


def base_points(first) -> list[dict]:
    """The line plot's first x: the base model's figures as the first round measured them, so each line starts
    where the base stood (with one round, a line of one point would draw nothing)."""
    from evaluation.rounds import PLOTTED
    return [{"order": 0, "run": BASE_POINT, "figure": title,
             "value": first.base_figures[key] / 100 if key == "bleu" else first.base_figures[key]}
            for key, title in PLOTTED if first.base_figures.get(key) is not None]


def show_rounds(ws, w: RoundsWidgets) -> dict:
    """The summary, table, line plot and perplexity bars of every round so far."""
    import pandas as pd

    from evaluation.rounds import (perplexity_points, plot_points, round_rows, round_summaries, rounds_table,
                                   runs_apart)

    try:
        rows, apart = round_rows(ws), runs_apart(ws)
    except TuneloopError as exc:
        return {w.summary: error_markdown(exc)}
    apart_text = ("**Not rounds** (only a finished run is one): " + ", ".join(
        f"{run.label} ({run.status_text})" for run in apart)) if apart else ""
    if not rows:
        return {w.summary: NO_ROUNDS, w.table: pd.DataFrame(columns=list(COLUMNS)), w.line: gr.update(value=None),
                w.bars: gr.update(value=None), w.apart: apart_text}
    lines = [f"**{len(rows)} run(s) over {max(r.round for r in rows)} round(s).**"]
    lines += [f"- {s}" for s in round_summaries(rows)]
    unmeasured = [f"#{r.run_id}" for r in rows if r.measured_by != "automatic evaluation"]
    by_run = [f"#{r.run_id}" for r in rows if r.measured_by == "the run itself"]
    if by_run:
        lines.append(f"- ROUGE-L of {', '.join(by_run)} is the run's own, measured at its end on its first test "
                     f"conversations.")
    if any(r.evaluations for r in rows):
        lines.append("- Human figures come from every blind evaluation a run is an arm of, whatever it met there: its "
                     "win rate against the base (or the one other arm; else against each other arm), and its "
                     "Bradley–Terry rating against the base where the base was an arm too.")
    if unmeasured:
        lines.append(f"- {', '.join(unmeasured)} ha{'s' if len(unmeasured) == 1 else 've'} no automatic evaluation "
                     f"yet (BLEU, perplexity, suites): **Measure automatically** measures them.")
    points = pd.DataFrame(base_points(rows[0]) + plot_points(rows), columns=["order", "run", "figure", "value"])
    bars = pd.DataFrame(perplexity_points(rows), columns=["bar", "run", "model", "perplexity"])
    return {w.summary: "\n".join(lines), w.table: pd.DataFrame(rounds_table(rows), columns=list(COLUMNS)),
            w.line: gr.update(value=points, sort=[BASE_POINT] + [r.label for r in rows]),
            w.bars: gr.update(value=bars, sort=list(bars["bar"])), w.apart: apart_text}


def measure(ws, w: RoundsWidgets, request: gr.Request = None, progress=gr.Progress()) -> dict:
    """The automatic evaluation of every finished run that has none yet, then the rounds view with its figures."""
    from evaluation.auto import measure_missing
    from evaluation.guard import guard_finished_runs

    stop = MEASURING.start(request)
    said = lambda i, total, text: progress((i, total) if total else None, desc=text)   # noqa: E731
    try:
        done = measure_missing(ws, progress=said, cancel=stop)
        guarded = guard_finished_runs(ws, progress=lambda i, total, text: said(i, total, f"guard: {text}"),
                                      cancel=stop)
    except TuneloopError as exc:
        return {**show_rounds(ws, w), w.measured: error_markdown(exc)}
    finally:
        MEASURING.finish(request, stop)
    told = (f"Measured {', '.join(f'run #{e.run_id}' for e in done)}." if done
            else "Every finished run already has its automatic evaluation.")
    if guarded:
        told += f" The general-skills guard checked {', '.join(f'run #{g.run_id}' for g in guarded)}."
    return {**show_rounds(ws, w), w.measured: told}


def stop_measuring(ws, w: RoundsWidgets, request: gr.Request = None) -> dict:
    """Stop this browser tab's automatic evaluation (the answers so far stay cached)."""
    return {w.measured: "Stopping…" if MEASURING.cancel(request) else "No measurement of yours is running."}


def wire_rounds(ws, w: RoundsWidgets, tab) -> None:
    """Recompute the rounds view on its Refresh button and whenever ``tab`` is shown."""
    for event in (w.refresh.click, tab.select):
        event(bind(show_rounds, ws, w), None, w.outputs)
    w.measure.click(bind(measure, ws, w), None, [*w.outputs, w.measured], api_name=False)
    w.stop.click(bind(stop_measuring, ws, w), None, [w.measured], api_name=False)
    wire_served_feedback(ws, w.served, (w.refresh.click, tab.select))
