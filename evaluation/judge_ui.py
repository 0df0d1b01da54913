"""The automatic judge panel, shown inside the Results tab: how far a judge agrees with the experts' votes,
and, above the team's threshold, its verdicts on the pairs nobody rated.

Thin wiring from widgets to ``evaluation.judge`` (the same functions as ``python -m evaluation judge``): the
judge (default, a base model, or endpoint:URL#MODEL with the name of the environment variable holding its
key), the threshold, "Judge the rated pairs" with progress and Stop, the calibration (agreement and kappa with
intervals, overall and per label), "Judge the pairs nobody rated" and "Judge the rest of the test split" (the
test prompts of the evaluation's dataset version outside the evaluation, answered by its arms; a limit box,
progress and Cancel, and the judge's figures beside its kappa), both only available while the calibration
passes the threshold. ``layout_judge`` creates the widgets in the caller's
layout, the module-level handlers take the page's values and return outputs keyed by component,
``wire_judge`` wires them to the buttons, the Results tab's evaluation picker and the tab.
"""
from __future__ import annotations

import html
from types import SimpleNamespace

import gradio as gr

from core.errors import TuneloopError
from evaluation.judge import (AGREEMENT_HEADERS, DEFAULT_JUDGE, DEFAULT_KEY_ENV, DEFAULT_THRESHOLD, JUDGE_PROMPT,
                              SPLIT_HEADERS, agreement_rows, calibrate, format_calibration, format_rest, format_split,
                              rest_figures, split_figures, split_rows)
from ui.kit import CancelRegistry, bind, error_markdown

EXPLANATION = f"""The judge reads the pairs the raters saw, blind and twice (A/B, then with the sides swapped); a
verdict that flips with the sides counts as a tie. Its verdicts are stored apart from the votes and never counted
as votes. It may rate the pairs nobody rated only when its Cohen's kappa with the experts reaches the threshold.
A small local model (the default, SmolLM2-135M) is a weak judge: see the figures before trusting it.

**The rest of the test split** is the test prompts of the evaluation's dataset version that are not in the
evaluation: its arms answer them the way they answered its own prompts, and the judge reads every pair of arms in
both orders. The figures are the judge's, shown beside its kappa, never votes. The limit is how many such prompts
to answer (empty: all); a stopped job keeps its readings and the next start reads only the rest.

The prompt it reads (the evaluation's guidelines filled in):

```
{JUDGE_PROMPT}
```"""
JUDGING = CancelRegistry()      # the panel's Stop button, per browser session


class JudgeWidgets(SimpleNamespace):
    """The panel's components by name (``layout_judge`` fills it)."""

    @property
    def outputs(self) -> list:
        return [self.summary, self.table, self.rest_summary, self.rest, self.split, self.split_summary,
                self.split_table]


def layout_judge() -> JudgeWidgets:
    """The panel's widgets, placed in the caller's layout (the Results tab); nothing is wired yet."""
    w = JudgeWidgets()
    with gr.Accordion("Automatic judge, calibrated on the experts' votes", open=False, elem_id="judge"):
        gr.Markdown(EXPLANATION)
        with gr.Row():
            w.judge = gr.Textbox(DEFAULT_JUDGE, label="Judge: default, a base model, or endpoint:URL#MODEL", scale=3,
                                 elem_id="judge-model")
            w.key_env = gr.Textbox(DEFAULT_KEY_ENV, label="Endpoint key from the environment variable", scale=2)
            w.threshold = gr.Number(DEFAULT_THRESHOLD, label="Threshold: kappa at least", minimum=-1, maximum=1,
                                    scale=1, elem_id="judge-threshold")
        with gr.Row():
            w.calibrate = gr.Button("Judge the rated pairs", variant="primary", elem_id="judge-calibrate")
            w.rest = gr.Button("Judge the pairs nobody rated", interactive=False, elem_id="judge-rest")
            w.stop = gr.Button("Stop", variant="stop", elem_id="judge-stop")
        w.summary = gr.Markdown("", elem_id="judge-summary")
        w.table = gr.Dataframe(headers=AGREEMENT_HEADERS, label="Agreement with the experts, overall and per label",
                               interactive=False, elem_id="judge-agreement")
        w.rest_summary = gr.Markdown("", elem_id="judge-rest-summary")
        with gr.Row():
            w.limit = gr.Number(None, label="Prompts outside the evaluation to answer and judge (empty: all)",
                                minimum=1, precision=0, scale=2, elem_id="judge-split-limit")
            w.split = gr.Button("Judge the rest of the test split", interactive=False, scale=2,
                                elem_id="judge-split")
            w.cancel = gr.Button("Cancel", variant="stop", scale=1, elem_id="judge-split-cancel")
        w.split_summary = gr.Markdown("", elem_id="judge-split-summary")
        w.split_table = gr.Dataframe(headers=SPLIT_HEADERS, label="The judge's verdicts on the rest of the test split, "
                                     "per pair of arms (not votes)", interactive=False, elem_id="judge-split-table")
    return w


def judge_view(ws, w: JudgeWidgets, evaluation_id, judge_name: str, threshold: float) -> dict:
    """The judge's calibration on the evaluation and its verdicts on the unrated pairs, with the rest button
    available only while the calibration passes."""
    cal = calibrate(ws, evaluation_id, judge_name, threshold=threshold)
    rest = rest_figures(ws, cal.evaluation_id, judge_name)
    split = split_figures(ws, cal.evaluation_id, judge_name, threshold=threshold, calibration=cal)
    split_text = html.escape(format_split(split)).replace("\n", "  \n")
    if not cal.passes:
        shown = "undefined" if cal.overall.kappa is None else f"{cal.overall.kappa:.2f}"
        split_text = (f"**Judging the rest of the test split is off:** it needs a calibration kappa of at least "
                      f"{threshold:g}, and {html.escape(judge_name)} has {shown} on {cal.pairs} rated pairs."
                      + (f"  \n{split_text}" if split.pairs else ""))
    return {w.summary: html.escape(format_calibration(cal)).replace("\n", "  \n"), w.table: agreement_rows(cal),
            w.rest_summary: f"**The judge's, not the raters':** {html.escape(format_rest(rest))}" if rest.pairs else "",
            w.rest: gr.update(interactive=cal.passes), w.split: gr.update(interactive=cal.passes),
            w.split_summary: split_text, w.split_table: split_rows(split)}


def _settings(w: JudgeWidgets, data: dict) -> tuple[int, str, float]:
    if data[w.evaluation] is None:
        raise TuneloopError("choose an evaluation first")
    threshold = data[w.threshold]
    if threshold is None or not -1 <= float(threshold) <= 1:
        raise TuneloopError("the threshold is a kappa between -1 and 1 (e.g. 0.4)")
    return data[w.evaluation], (data[w.judge] or DEFAULT_JUDGE).strip(), float(threshold)


def _judge_name(ws, w: JudgeWidgets, data: dict) -> str:
    """The stored name of the typed judge (an endpoint's URL without a trailing slash)."""
    text = (data[w.judge] or DEFAULT_JUDGE).strip()
    if text.startswith("endpoint:"):
        from evaluation.judge import open_judge
        return open_judge(ws, text, key_env=None).name
    return text


def show_judge(ws, w: JudgeWidgets, data: dict) -> dict:
    """The typed judge's figures on the chosen evaluation (nothing is judged)."""
    if data[w.evaluation] is None:
        return {w.summary: "", w.table: [], w.rest_summary: "", w.rest: gr.update(interactive=False),
                w.split: gr.update(interactive=False), w.split_summary: "", w.split_table: []}
    try:
        evaluation_id, _, threshold = _settings(w, data)
        return judge_view(ws, w, evaluation_id, _judge_name(ws, w, data), threshold)
    except TuneloopError as exc:
        return {w.summary: error_markdown(exc), w.rest: gr.update(interactive=False),
                w.split: gr.update(interactive=False)}


def _run(ws, w: JudgeWidgets, data: dict, request, progress, what: str) -> dict:
    from evaluation.judge import judge_evaluation, judge_rest, judge_test_split, open_judge
    cancel = JUDGING.start(request)
    message = w.split_summary if what == "split" else w.summary
    try:
        evaluation_id, spec, threshold = _settings(w, data)
        limit = _limit(data[w.limit]) if what == "split" else None
        judge = open_judge(ws, spec, key_env=(data[w.key_env] or "").strip() or None)
        report = lambda d, t, said: progress(d / max(t, 1), desc=said)  # noqa: E731
        if what == "rest":
            judge_rest(ws, evaluation_id, judge, threshold=threshold, progress=report, cancel=cancel)
        elif what == "split":
            judge_test_split(ws, evaluation_id, judge, threshold=threshold, limit=limit, progress=report,
                             cancel=cancel)
        else:
            judge_evaluation(ws, evaluation_id, judge, progress=report, cancel=cancel)
        return judge_view(ws, w, evaluation_id, judge.name, threshold)
    except TuneloopError as exc:
        shown = {message: error_markdown(exc)}
        try:        # what was read before a stop is kept: show it beside the message
            view = judge_view(ws, w, data[w.evaluation], _judge_name(ws, w, data), float(data[w.threshold]))
            view[message] = f"{error_markdown(exc)}  \n{view[message]}"
            return view
        except (TuneloopError, TypeError, ValueError):
            return shown
    finally:
        JUDGING.finish(request, cancel)


def _limit(value) -> int | None:
    if value in (None, ""):
        return None
    if float(value) < 1 or float(value) != int(float(value)):
        raise TuneloopError(f"the limit is a whole number of prompts, at least 1 (got {value}); leave it empty for "
                            f"all of them")
    return int(float(value))


def calibrate_clicked(ws, w: JudgeWidgets, data: dict, request: gr.Request = None, progress=gr.Progress()) -> dict:
    """Judge the rated pairs in both orders and show the agreement; Stop ends it after the current reading."""
    return _run(ws, w, data, request, progress, "rated")


def rest_clicked(ws, w: JudgeWidgets, data: dict, request: gr.Request = None, progress=gr.Progress()) -> dict:
    """Judge the pairs nobody rated (refused below the threshold) and show the judge's figures on them."""
    return _run(ws, w, data, request, progress, "rest")


def split_clicked(ws, w: JudgeWidgets, data: dict, request: gr.Request = None, progress=gr.Progress()) -> dict:
    """Answer the test prompts outside the evaluation with its arms and judge every pair in both orders (refused
    below the threshold); Cancel ends it after the current batch or reading, keeping what was read."""
    return _run(ws, w, data, request, progress, "split")


def stop_clicked(ws, w: JudgeWidgets, request: gr.Request = None) -> dict:
    """Stop this browser tab's judging after its current reading."""
    stopping = JUDGING.cancel(request)
    return {w.summary: "Stopping after the current reading…" if stopping else "Nothing is being judged."}


def cancel_clicked(ws, w: JudgeWidgets, request: gr.Request = None) -> dict:
    """Cancel this browser tab's judging of the rest of the test split (after its current batch or reading)."""
    stopping = JUDGING.cancel(request)
    return {w.split_summary: "Cancelling after the current batch or reading; what was read is kept…" if stopping
            else "Nothing is being judged."}


def wire_judge(ws, w: JudgeWidgets, tab, evaluation) -> None:
    """The buttons, Stop, and the figures shown whenever the evaluation, judge or threshold changes or ``tab``
    is shown; ``evaluation`` is the Results tab's evaluation picker."""
    w.evaluation = evaluation
    inputs = {evaluation, w.judge, w.threshold}
    for event in (evaluation.change, w.judge.submit, w.threshold.change, tab.select):
        event(bind(show_judge, ws, w), inputs, w.outputs)
    w.calibrate.click(bind(calibrate_clicked, ws, w), {*inputs, w.key_env}, w.outputs)
    w.rest.click(bind(rest_clicked, ws, w), {*inputs, w.key_env}, w.outputs)
    w.split.click(bind(split_clicked, ws, w), {*inputs, w.key_env, w.limit}, w.outputs)
    w.stop.click(bind(stop_clicked, ws, w), None, [w.summary])
    w.cancel.click(bind(cancel_clicked, ws, w), None, [w.split_summary])
