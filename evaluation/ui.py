"""The Rate and Results tabs: thin wiring from widgets to evaluation.arena, .stats, .feedback, .generate.

Blinding in the Rate tab: what goes to the browser before a vote is the prompt and two texts labelled
A and B. The issued assignment id lives in ``gr.State`` (kept on the server, per session); the side
mapping is read from the database only by ``record_vote``, after it has stored the vote.

Keyboard: 1 = A, 2 = B, 3 = tie, 4 = both bad, e = write a corrected answer, Esc leaves a text box.
The listener is installed by a small ``gr.HTML`` in the tab (its ``js_on_load``), so the tab needs
nothing from the page head.
"""
from __future__ import annotations

import html
import tempfile
import threading
from pathlib import Path

import gradio as gr

from core.access import LOCAL_USER, caller
from core.errors import TuneloopError
from evaluation import arena
from evaluation.arena import BlindPair

NO_EVALUATION = "_No evaluation yet. An admin prepares one in the Results tab (or `python -m evaluation generate`)._"
RATE_INTRO = """### Which answer is better?
Read the question, then both answers. Press **1** if A is better, **2** if B is better, **3** for a tie,
**4** if both are bad, and **e** to write the answer you would have wanted (then press a verdict button).
You are told which model wrote which answer right after your vote."""
RESULTS_INTRO = """### What did the raters say?
The blind votes of an evaluation, in the fine-tuned model's terms: how often it won, with a 95% interval and
a test against a coin flip, whether raters favoured the left side, how much raters agree, and per label.
Below: turn the votes into data for the next round, and the rounds so far, side by side."""
VERDICT_BUTTONS = (("A", "A is better  [1]", "rate-a"), ("B", "B is better  [2]", "rate-b"),
                   ("tie", "Tie  [3]", "rate-tie"), ("both_bad", "Both bad  [4]", "rate-bad"))
KEYS_JS = """
if (!window.__tuneloopRateKeys) {
  window.__tuneloopRateKeys = true;
  const ids = {"1": "rate-a", "2": "rate-b", "3": "rate-tie", "4": "rate-bad", "e": "rate-edit"};
  const shown = (el) => el && el.offsetParent !== null;
  document.addEventListener("keydown", (ev) => {
    const t = ev.target;
    const typing = t && (t.tagName === "TEXTAREA" || t.tagName === "INPUT" || t.isContentEditable);
    if (typing) { if (ev.key === "Escape") t.blur(); return; }
    if (ev.ctrlKey || ev.metaKey || ev.altKey || !ids[ev.key]) return;
    const host = document.getElementById(ids[ev.key]);
    const button = host && (host.tagName === "BUTTON" ? host : host.querySelector("button"));
    if (!shown(button) || button.disabled) return;
    ev.preventDefault();
    button.click();
    if (ev.key === "e") {
      // the box appears after the server's reply; wait for it, then type straight into it
      let tries = 0;
      const focusBox = () => {
        const box = document.querySelector("#rate-correction textarea");
        if (shown(box)) box.focus(); else if (tries++ < 40) setTimeout(focusBox, 50);
      };
      focusBox();
    }
  });
}
"""


# -- shared -----------------------------------------------------------------------------------

def evaluation_choices(ws, *, blind: bool = False) -> list[tuple[str, int]]:
    """Dropdown choices; ``blind`` leaves out the admin's name, which may name the run being compared."""
    return [((f"Evaluation #{e.id} · {e.num_pairs} pairs" if blind else f"#{e.id} {e.name} · {e.num_pairs} pairs"), e.id)
            for e in arena.list_evaluations(ws)]


def _finished_note(done: int) -> str:
    if done:
        return f"You have rated all {done} pairs open to you in this evaluation. Thank you!"
    return ("Nothing is left for you here: every pair of this evaluation already has all the raters it asked for. "
            "Ask the admin for another evaluation, or for more raters per pair.")


def _latest(ws) -> int | None:
    choices = evaluation_choices(ws)
    return choices[0][1] if choices else None


def _error(exc: Exception) -> str:
    if isinstance(exc, TuneloopError):
        return f"**⚠️ {html.escape(str(exc))}**"
    return f"**⚠️ Something went wrong: {html.escape(type(exc).__name__)}: {html.escape(str(exc))}**"


def rater_name(ws, request: gr.Request | None, typed: str | None) -> str:
    """The logged-in user; in local mode (no logins) the name typed in the tab."""
    name = caller(ws, request)
    if name != LOCAL_USER:
        return name
    typed = (typed or "").strip()
    if not typed:
        raise arena.VoteRefused("type your name first, so that your votes count once and as yours")
    return typed


# -- Rate tab ---------------------------------------------------------------------------------

def conversation_markdown(pair: BlindPair) -> str:
    parts = []
    for m in pair.context:
        who = {"system": "System", "user": "Customer", "assistant": "Assistant"}[m["role"]]
        parts.append(f"<div style='color:#555'><b>{who}:</b> {html.escape(m['content'])}</div>")
    parts.append(f"<div style='font-size:1.1em'><b>Question:</b> {html.escape(pair.prompt)}</div>")
    return "\n".join(parts)


def _response_html(text: str, side: str) -> str:
    return (f"<div style='border:1px solid #c9d3e6;border-radius:8px;padding:12px;min-height:6em'>"
            f"<div style='font-weight:bold;font-size:1.3em;margin-bottom:6px'>{side}</div>"
            f"<div style='white-space:pre-wrap'>{html.escape(text)}</div></div>")


def pair_view(pair: BlindPair | None, done_note: str = "") -> tuple:
    """(assignment state, conversation, A, B, progress, buttons enabled) for the blind pair — no models named."""
    if pair is None:
        note = done_note or "Nothing left for you in this evaluation. Thank you!"
        return None, f"**{note}**", "", "", "", *[gr.update(interactive=False)] * 5
    progress = f"**{pair.done} / {pair.total}** rated"
    return (pair.assignment_id, conversation_markdown(pair), _response_html(pair.response_a, "A"),
            _response_html(pair.response_b, "B"), progress, *[gr.update(interactive=True)] * 5)


def start_rating(ws, evaluation_id, typed_name, request: gr.Request | None) -> tuple:
    """Outputs for Start / resume: the rater's open pair, else their next one."""
    try:
        if evaluation_id is None:
            raise TuneloopError("choose an evaluation first")
        rater = rater_name(ws, request, typed_name)
        evaluation = arena.get_evaluation(ws, evaluation_id)
        pair = arena.next_pair(ws, evaluation.id, rater)
        progress = arena.rater_progress(ws, evaluation.id, rater)
        done = _finished_note(progress.done)
        guidelines = evaluation.guidelines.strip() or "_No guidelines for this evaluation._"
        signed_in = caller(ws, request) != LOCAL_USER
        name_box = gr.update(value=rater, interactive=False, label="Signed in as") if signed_in else gr.update()
        return (*pair_view(pair, done), "", f"#### Guidelines\n{guidelines}", name_box)
    except TuneloopError as exc:
        return (None, _error(exc), "", "", "", *[gr.update(interactive=False)] * 5, "", gr.update(), gr.update())


def cast_vote(ws, verdict, assignment_id, typed_name, comment, corrected, request: gr.Request | None) -> tuple:
    """Outputs after a vote: the next pair at once, and the reveal of the one just judged."""
    try:
        if assignment_id is None:
            raise arena.VoteRefused("there is no pair on screen; press Start")
        rater = rater_name(ws, request, typed_name)
        reveal = arena.record_vote(ws, assignment_id, rater, verdict, comment=comment or "",
                                   corrected_answer=corrected or None)
        pair = arena.next_pair(ws, reveal.evaluation_id, rater)
        progress = arena.rater_progress(ws, reveal.evaluation_id, rater)
        done = _finished_note(progress.done)
        saved = " Your corrected answer was saved." if (corrected or "").strip() else ""
        return (*pair_view(pair, done), f"✅ {html.escape(reveal.describe())}{saved}", "", "",
                gr.update(visible=False))
    except TuneloopError as exc:
        return (gr.update(), gr.update(), gr.update(), gr.update(), gr.update(), *[gr.update()] * 5,
                _error(exc), gr.update(), gr.update(), gr.update())


def build_rate_tab(ws) -> None:
    """The Rate tab: one blind pair at a time, keyboard shortcuts, the reveal after each vote."""
    with gr.Tab("Rate", id="rate") as tab:
        gr.HTML("", js_on_load=KEYS_JS, elem_id="rate-keys")
        gr.Markdown(RATE_INTRO)
        with gr.Row():
            evaluation = gr.Dropdown(evaluation_choices(ws, blind=True), value=_latest(ws), label="Evaluation",
                                     scale=3, elem_id="rate-evaluation")
            name = gr.Textbox(label="Your name (used when nobody is logged in)", scale=2, elem_id="rate-rater",
                              placeholder="e.g. ana")
            with gr.Column(scale=1, min_width=160):
                start = gr.Button("Start / resume", variant="primary", elem_id="rate-start")
                refresh = gr.Button("↻ Evaluations", size="sm")
        progress = gr.Markdown("", elem_id="rate-progress")
        with gr.Row():
            with gr.Column(scale=3):
                conversation = gr.Markdown("_Press Start to get your first pair._", elem_id="rate-prompt")
                with gr.Row(equal_height=True):
                    response_a = gr.HTML("", elem_id="rate-response-a", js_on_load=None)
                    response_b = gr.HTML("", elem_id="rate-response-b", js_on_load=None)
                with gr.Row():
                    buttons = [gr.Button(text, elem_id=eid, interactive=False) for _, text, eid in VERDICT_BUTTONS]
                    edit = gr.Button("✎ Correct it  [e]", elem_id="rate-edit", interactive=False)
                with gr.Column(visible=False) as correction_box:
                    corrected = gr.Textbox(label="The answer you would have wanted (sent with your verdict)", lines=4,
                                           elem_id="rate-correction")
                    comment = gr.Textbox(label="Comment (optional)", elem_id="rate-comment")
                reveal = gr.Markdown("", elem_id="rate-reveal")
            with gr.Column(scale=1):
                guidelines = gr.Markdown("", elem_id="rate-guidelines")
        assignment = gr.State(None)

        view = [assignment, conversation, response_a, response_b, progress, *buttons, edit]

        def start_clicked(evaluation_id, typed_name, request: gr.Request):
            return start_rating(ws, evaluation_id, typed_name, request)

        def voter(verdict):
            def vote_clicked(assignment_id, typed_name, comment_text, corrected_text, request: gr.Request):
                return cast_vote(ws, verdict, assignment_id, typed_name, comment_text, corrected_text, request)
            return vote_clicked

        # Not queued: a vote is a few milliseconds of SQLite, and the queue's round trips doubled its latency
        # with 50 raters at once (benchmarks/raters.py).
        start.click(start_clicked, [evaluation, name], view + [reveal, guidelines, name], queue=False)
        for (verdict, _, _), button in zip(VERDICT_BUTTONS, buttons):
            button.click(voter(verdict), [assignment, name, comment, corrected],
                         view + [reveal, comment, corrected, correction_box], queue=False)
        edit.click(lambda: gr.update(visible=True), None, correction_box)
        def refresh_choices(current):
            choices = evaluation_choices(ws, blind=True)
            keep = current if current in [value for _, value in choices] else _latest(ws)
            return gr.update(choices=choices, value=keep)

        tab.select(refresh_choices, [evaluation], evaluation)
        refresh.click(refresh_choices, [evaluation], evaluation)


# -- Results tab ------------------------------------------------------------------------------

def interval_plot(rows: list[tuple[str, float | None, float | None, float | None, int]], *, title: str) -> str:
    """An SVG forest plot: one row per group, the point and its 95% interval on a 0–1 axis, 0.5 marked."""
    rows = [r for r in rows if r[1] is not None]
    if not rows:
        return "<p><i>No decisive votes yet.</i></p>"
    left, width, row_h = 190, 420, 26
    height = 40 + row_h * len(rows)
    x = lambda v: left + v * width  # noqa: E731
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{left + width + 120}' height='{height}' "
             f"role='img' aria-label='{html.escape(title)}' style='font: 12px sans-serif'>",
             f"<text x='{left}' y='14' font-weight='bold'>{html.escape(title)}</text>",
             f"<line x1='{x(0.5)}' y1='20' x2='{x(0.5)}' y2='{height - 14}' stroke='#999' stroke-dasharray='4 3'/>"]
    for tick in (0, 0.25, 0.5, 0.75, 1):
        parts.append(f"<text x='{x(tick)}' y='{height - 2}' text-anchor='middle' fill='#666'>{tick:g}</text>")
    for i, (name, point, low, high, n) in enumerate(rows):
        y = 34 + i * row_h
        parts.append(f"<text x='{left - 8}' y='{y + 4}' text-anchor='end'>{html.escape(name)} (n={n})</text>")
        if low is not None and high is not None:
            parts.append(f"<line x1='{x(low)}' y1='{y}' x2='{x(high)}' y2='{y}' stroke='#3b6fd8' stroke-width='3'/>")
        parts.append(f"<circle cx='{x(point)}' cy='{y}' r='5' fill='#1d3f8f'/>")
        interval = f" [{low:.2f}, {high:.2f}]" if low is not None else ""
        parts.append(f"<text x='{left + width + 8}' y='{y + 4}'>{point:.2f}{interval}</text>")
    parts.append("</svg>")
    return "".join(parts)


def summary_markdown(evaluation: arena.Evaluation, s: dict | None) -> str:
    if not s:
        return f"**{html.escape(evaluation.describe())}**\n\nNo votes yet."

    def f(v):
        return "n/a" if v is None else f"{v:.3f}"

    def p(v):
        return "n/a" if v is None else (f"{v:.3f}" if v >= 0.001 else f"{v:.1e}")

    verdict = ""
    if s["sign_test_p"] is not None and s["sign_test_p"] < 0.05:
        better = "fine-tuned" if s["win_rate"] > 0.5 else "base"
        verdict = f"The **{better}** model is preferred (sign test p = {p(s['sign_test_p'])})."
    elif s["decisive"]:
        verdict = (f"No clear winner yet: the interval still includes 50% "
                   f"(sign test p = {p(s['sign_test_p'])}); more votes would settle it.")
    bias = ""
    if s["position_p"] is not None and s["position_p"] < 0.05:
        bias = f"\n\n⚠️ **Position bias**: the left answer won {f(s['left_win_rate'])} of decisive votes " \
               f"(p = {p(s['position_p'])}); sides are balanced per rater, so the win rate is still fair."
    return (f"**{html.escape(evaluation.describe())}**\n\n"
            "| fine-tuned wins | base wins | ties | both bad | votes | prompts | raters |\n"
            "|---|---|---|---|---|---|---|\n"
            f"| {s['wins']} | {s['losses']} | {s['ties']} | {s['both_bad']} | {s['votes']} | {s['prompts']} | "
            f"{s['raters']} |\n\n"
            f"- **Win rate** (decisive votes, n={s['decisive']}): **{f(s['win_rate'])}**, Wilson 95% "
            f"[{f(s['wilson_low'])}, {f(s['wilson_high'])}], exact sign test p = {p(s['sign_test_p'])}\n"
            f"- **Ties as half**: {f(s['win_rate_ties_half'])}, bootstrap over prompts 95% "
            f"[{f(s['bootstrap_low'])}, {f(s['bootstrap_high'])}]\n"
            f"- **Left side won** {f(s['left_win_rate'])} of decisive votes (position test p = {p(s['position_p'])})\n"
            f"- **Agreement** (Krippendorff's alpha, nominal, {s['agreement_items']} prompts with ≥ 2 raters): "
            f"{f(s['krippendorff_alpha'])}\n\n{verdict}{bias}")


RATER_HEADERS = ["rater", "votes", "fine-tuned wins", "base wins", "ties", "both bad", "win rate", "Wilson low",
                 "Wilson high", "left side won"]
LABEL_HEADERS = ["label"] + RATER_HEADERS[1:]
DISAGREEMENT_HEADERS = ["prompt id", "question", "votes", "resolution"]
QUEUE_HEADERS = ["record", "prompt id", "question", "raters"]


def _figure_rows(groups: list[dict], key: str) -> list[list]:
    def r(v):
        return None if v is None else round(v, 3)
    return [[g[key], g["votes"], g["wins"], g["losses"], g["ties"], g["both_bad"], r(g["win_rate"]),
             r(g["wilson_low"]), r(g["wilson_high"]), r(g["left_win_rate"])] for g in groups]


def results_view(ws, evaluation_id, policy) -> tuple:
    """Outputs of the Results tab for one evaluation: summary, plot, tables, feedback and queue.

    Only computes: the policy changes what is shown, nothing is written."""
    from evaluation.feedback import collect_feedback, unanswered
    from evaluation.stats import summarize, votes_from_rows

    if evaluation_id is None:
        return NO_EVALUATION, "", [], [], [], "", [], gr.update(choices=[], value=None), ""
    evaluation = arena.get_evaluation(ws, evaluation_id)
    rows = [v.to_stats_row() for v in arena.evaluation_votes(ws, evaluation.id)]
    s = summarize(votes_from_rows(rows)) if rows else None
    plot = ""
    if s:
        plot_rows = [("overall", s["win_rate"], s["wilson_low"], s["wilson_high"], s["decisive"])]
        plot_rows += [(f"label: {g['label']}", g["win_rate"], g["wilson_low"], g["wilson_high"], g["decisive"])
                      for g in s["by_label"]]
        plot_rows += [(f"rater: {g['rater']}", g["win_rate"], g["wilson_low"], g["wilson_high"], g["decisive"])
                      for g in s["per_rater"]]
        plot = interval_plot(plot_rows, title="Fine-tuned win rate among decisive votes (Wilson 95%)")
    fb = collect_feedback(ws, evaluation.id, policy=policy)
    c = fb.counts()
    feedback = (f"**Feedback ({policy})**: {c['preference_pairs']} preference pairs, {c['corrected']} corrected "
                f"answers, {c['needs_answer']} prompts need an answer, {c['disagreements']} disagreements "
                f"({c['disagreements_excluded']} excluded).")
    disagreements = [[d["prompt_id"], d["prompt"][:120], ", ".join(f"{r}: {o}" for r, o in d["votes"].items()),
                      d["resolution"] + (f" → {d['chosen']}" if d["chosen"] else "")] for d in fb.disagreements]
    queue = unanswered(ws, fb)
    queue_rows = [[q.id, q.meta["prompt_id"], q.prompt[:160], ", ".join(q.meta["raters"])] for q in queue]
    queue_choices = [(f"{q.meta['prompt_id']}: {q.prompt[:70]}", q.id) for q in queue]
    return (summary_markdown(evaluation, s), plot,
            _figure_rows(s["per_rater"], "rater") if s else [], _figure_rows(s["by_label"], "label") if s else [],
            disagreements, feedback, queue_rows,
            gr.update(choices=queue_choices, value=queue_choices[0][1] if queue_choices else None), "")


def build_results_tab(ws) -> None:
    """The Results tab: figures with intervals, agreement, feedback into data, and preparing evaluations."""
    from evaluation.feedback import answer_needed, export_preferences, merge_feedback

    from evaluation.rounds_ui import build_rounds_view

    with gr.Tab("Results", id="results") as tab:
        gr.Markdown(RESULTS_INTRO)
        with gr.Row():
            evaluation = gr.Dropdown(evaluation_choices(ws), value=_latest(ws), label="Evaluation", scale=3,
                                     elem_id="results-evaluation")
            policy = gr.Radio(["majority", "unanimous"], value="majority", scale=2,
                              label="When raters disagree on a pair: keep the majority side, or drop the pair")
            refresh = gr.Button("Refresh", scale=1, elem_id="results-refresh")
        summary = gr.Markdown(NO_EVALUATION, elem_id="results-summary")
        plot = gr.HTML("", elem_id="results-plot", js_on_load=None)
        with gr.Row():
            per_rater = gr.Dataframe(headers=RATER_HEADERS, label="Per rater", interactive=False)
            by_label = gr.Dataframe(headers=LABEL_HEADERS, label="By label", interactive=False)
        disagreements = gr.Dataframe(headers=DISAGREEMENT_HEADERS, label="Pairs where raters disagree",
                                     interactive=False)
        gr.Markdown("### Feed the votes back into the data")
        feedback = gr.Markdown("", elem_id="results-feedback")
        with gr.Row():
            export = gr.Button("Make the preference version (for DPO)", elem_id="results-preferences")
            merge = gr.Button("Merge corrected answers into a new dataset version", variant="primary",
                              elem_id="results-merge")
        download = gr.File(label="Preference pairs (JSONL, trl's prompt/chosen/rejected)", visible=False)
        merged = gr.Markdown("", elem_id="results-merged")
        queue = gr.Dataframe(headers=QUEUE_HEADERS, label="Needs an answer: both answers were bad and nobody "
                                                          "corrected them", interactive=False)
        with gr.Row():
            item = gr.Dropdown([], label="Prompt to answer", scale=2)
            answer = gr.Textbox(label="The answer it should get", lines=3, scale=3)
            save_answer = gr.Button("Save answer", scale=1)
        with gr.Accordion("Guidelines shown to raters beside each pair", open=False):
            latest = _latest(ws)
            guidelines = gr.Textbox(arena.get_evaluation(ws, latest).guidelines if latest else "", label="Guidelines",
                                    lines=4, elem_id="results-guidelines")
            save_guidelines = gr.Button("Save guidelines")
        prepare_evaluation_section(ws, evaluation)
        rounds = build_rounds_view(ws)
        tab.select(rounds.refresh, None, rounds.outputs)

        outputs = [summary, plot, per_rater, by_label, disagreements, feedback, queue, item, merged]

        def show(evaluation_id, chosen_policy):
            try:
                return results_view(ws, evaluation_id, chosen_policy)
            except TuneloopError as exc:
                return (_error(exc), *[gr.update()] * 8)

        def on_select(chosen_policy):
            latest = _latest(ws)
            return (gr.update(choices=evaluation_choices(ws), value=latest), *show(latest, chosen_policy))

        tab.select(on_select, [policy], [evaluation] + outputs)
        for trigger in (evaluation.change, policy.change, refresh.click):
            trigger(show, [evaluation, policy], outputs)

        def do_export(evaluation_id, chosen_policy, request: gr.Request):
            if evaluation_id is None:
                raise gr.Error("choose an evaluation first")
            out = Path(tempfile.mkdtemp(prefix="tuneloop-prefs-")) / f"preferences-eval{evaluation_id}.jsonl"
            try:
                version = export_preferences(ws, evaluation_id, out, policy=chosen_policy,
                                             created_by=caller(ws, request))
            except TuneloopError as exc:
                raise gr.Error(str(exc)) from None
            return (gr.update(value=str(out), visible=True),
                    f"✅ Made **{html.escape(version.describe())}**; a DPO run trains on it with "
                    f"`preferences: {version.name}`.")

        export.click(do_export, [evaluation, policy], [download, merged])

        def do_merge(evaluation_id, chosen_policy, request: gr.Request):
            try:
                if evaluation_id is None:
                    raise TuneloopError("choose an evaluation first")
                version = merge_feedback(ws, evaluation_id, policy=chosen_policy, created_by=caller(ws, request))
                return f"✅ Made **{html.escape(version.describe())}** (now the current version; see the Data tab)."
            except TuneloopError as exc:
                return _error(exc)

        merge.click(do_merge, [evaluation, policy], merged)

        def do_answer(evaluation_id, chosen_policy, record_id, text, request: gr.Request):
            try:
                if record_id is None:
                    raise TuneloopError("choose a prompt from the queue first")
                answer_needed(ws, evaluation_id, record_id, text, answered_by=caller(ws, request))
                return (*results_view(ws, evaluation_id, chosen_policy)[:-1],
                        "✅ Saved; it becomes a training record at the next merge.", "")
            except TuneloopError as exc:
                return (*[gr.update()] * 8, _error(exc), gr.update())

        save_answer.click(do_answer, [evaluation, policy, item, answer], outputs + [answer])

        def load_guidelines(evaluation_id):
            return arena.get_evaluation(ws, evaluation_id).guidelines if evaluation_id is not None else ""

        def store_guidelines(evaluation_id, text):
            if evaluation_id is None:
                raise gr.Error("choose an evaluation first")
            arena.set_guidelines(ws, evaluation_id, text)
            gr.Info("Saved; raters see the new guidelines at their next Start.")

        evaluation.change(load_guidelines, evaluation, guidelines)
        save_guidelines.click(store_guidelines, [evaluation, guidelines], None)


# -- preparing an evaluation ------------------------------------------------------------------

_stops: dict[str, threading.Event] = {}


def prepare_evaluation_section(ws, evaluation_dropdown) -> None:
    """Generate both models' responses for a split's test prompts (or typed/uploaded ones), then rate them."""
    from training.inference import DecodingSettings

    with gr.Accordion("Prepare a new evaluation (generates the responses ahead of rating)", open=False):
        with gr.Row():
            run = gr.Dropdown(run_choices(ws), label="Run (or an adapter folder on the server)",
                              allow_custom_value=True, scale=2)
            version = gr.Dropdown(version_choices(ws), label="Prompts from the test split of", scale=2)
            limit = gr.Number(value=40, precision=0, label="At most this many prompts", scale=1)
            overlap = gr.Number(value=1, precision=0, minimum=1, label="Raters per pair", scale=1)
        with gr.Row():
            typed = gr.Textbox(label="…or type prompts, one per line", lines=3, scale=2)
            upload = gr.File(label="…or upload prompts (any format the Data tab imports)", scale=1)
        with gr.Row():
            max_new = gr.Number(value=DecodingSettings.max_new_tokens, precision=0, label="Max new tokens")
            sample = gr.Checkbox(value=False, label="Sample (default: greedy, so only the adapter differs)")
            temperature = gr.Number(value=DecodingSettings.temperature, label="Temperature (sampling)")
            name = gr.Textbox(label="Name (optional)")
        guidelines = gr.Textbox(label="Guidelines shown to raters", lines=3,
                                value="Prefer the answer that is correct, complete and follows our support policy. "
                                      "Choose 'both bad' when neither could be sent to a customer.")
        with gr.Row():
            go = gr.Button("Generate and create the evaluation", variant="primary")
            stop = gr.Button("Stop", variant="stop")
        status = gr.Markdown("")

        def generate(run_ref, version_ref, max_prompts, k, typed_text, uploaded, tokens, do_sample, temp, title,
                     guide, request: gr.Request, progress=gr.Progress()):
            from evaluation.generate import (prepare_evaluation, prompts_from_file, prompts_from_texts,
                                             prompts_from_version, resolve_adapter)
            key = getattr(request, "session_hash", None) or "local"
            cancel = _stops[key] = threading.Event()
            try:
                if not run_ref:
                    raise TuneloopError("choose a run (or give an adapter folder)")
                models = resolve_adapter(ws, str(run_ref))
                n = int(max_prompts or 0) or None
                dataset_version = None
                if (typed_text or "").strip():
                    items = prompts_from_texts(typed_text.splitlines())[:n]
                elif uploaded:
                    items = prompts_from_file(uploaded, limit=n)
                else:
                    if not version_ref:
                        raise TuneloopError("choose a dataset version with a test split, or type or upload prompts")
                    from curation.data.versions import get_version
                    dataset_version = get_version(ws, version_ref).id
                    items = prompts_from_version(ws, dataset_version, limit=n)
                settings = DecodingSettings(max_new_tokens=int(tokens), do_sample=bool(do_sample),
                                            temperature=float(temp))
                eid = prepare_evaluation(ws, items, models=models, name=title or None,
                                         dataset_version=dataset_version, overlap=int(k or 1), guidelines=guide,
                                         settings=settings, cancel=cancel, created_by=caller(ws, request),
                                         progress=lambda d, t, what: progress(d / max(t, 1), desc=what))
                return (f"✅ Evaluation #{eid} is ready: {len(items)} pairs. Raters can start in the Rate tab.",
                        gr.update(choices=evaluation_choices(ws), value=eid))
            except TuneloopError as exc:
                return _error(exc), gr.update()
            finally:
                _stops.pop(key, None)

        def stop_generation(request: gr.Request):
            event = _stops.get(getattr(request, "session_hash", None) or "local")
            if event is not None:
                event.set()
            return "Stopping after the current batch…" if event else "Nothing is being generated."

        go.click(generate, [run, version, limit, overlap, typed, upload, max_new, sample, temperature, name,
                            guidelines], [status, evaluation_dropdown])
        stop.click(stop_generation, None, status)


def run_choices(ws) -> list[tuple[str, str]]:
    """Finished runs with an adapter, newest first."""
    from training.registry import list_runs
    return [(f"{r.label} · {r.status}", str(r.id)) for r in list_runs(ws)
            if (r.adapter_dir / "adapter_config.json").is_file()]


def version_choices(ws) -> list[tuple[str, str]]:
    from curation.data.versions import list_versions
    return [(v.describe(), v.name) for v in reversed(list_versions(ws))]
