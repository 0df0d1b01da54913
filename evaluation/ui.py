"""The Rate and Results tabs: thin wiring from widgets to evaluation.arena, .stats and .feedback (preparing an
evaluation, at the top of the admin's Rate tab, is ``evaluation.prepare_ui``).

The house pattern: ``layout_rate`` / ``layout_results`` create the widgets (a ``RateWidgets`` /
``ResultsWidgets``), the module-level handlers take the workspace, the widgets and the page's values
(a dict keyed by component) and return outputs keyed by component, the presenters (``pair_view``,
``summary_markdown``, ``results_figures`` ...) are plain functions, and ``build_rate_tab`` /
``build_results_tab`` only wire them with ``ui.kit.bind``.

Blinding in the Rate tab: what goes to the browser before a vote is the prompt and two texts labelled
A and B. The issued assignment id lives in ``gr.State`` (kept on the server, per session); the side
mapping is read from the database only by ``record_vote``, after it has stored the vote.

Keyboard: 1 = A, 2 = B, 3 = tie, 4 = both bad, e = write a corrected answer, Esc leaves a text box.
The listener is ``ui/static/rate.js``, installed by a small ``gr.HTML`` in the tab (its ``js_on_load``),
so the tab needs nothing from the page head. The same script hides the reveal of the last vote (a banner above
the pair) the moment the next verdict is given, so the next pair starts clean.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from types import SimpleNamespace

import gradio as gr

from core.access import LOCAL_USER, caller
from core.errors import TuneloopError
from core.users import has_users
from curation.review.labels import label_field
from evaluation import arena
from evaluation.arena import BlindPair
from ui.kit import bind, caller_name, clear_on_input, error_markdown, remember_choice, show_errors, static_js

NO_EVALUATION = ("_No evaluation yet. An admin prepares one at the top of the Rate tab (Prepare an evaluation) or with "
                 "`python -m evaluation generate`._")
NO_NAME = "type your name first, so that your votes count once and as yours"
NOT_OPEN_YET = "No evaluation is open for rating yet. Ask your admin to prepare one, then press ↻ Evaluations."
NOT_OPEN_YET_ADMIN = ("No evaluation is open for rating yet: prepare one above (Prepare an evaluation), or with "
                      "`python -m evaluation generate`.")
RATE_INTRO = """### Which answer is better?
Read the question, then both answers. Press **1** if A is better, **2** if B is better, **3** for a tie,
**4** if both are bad, and **e** to write the answer you would have wanted (then press a verdict button).
You are told which model wrote which answer right after your vote. Which side each model is on is a fair
coin toss for every pair, so what you were told before says nothing about the next one; and you never get the
same question with the same two answers twice, not even in another evaluation."""
RESULTS_INTRO = """### What did the raters say?
The blind votes of an evaluation, in the fine-tuned model's terms: how often it won, with a 95% interval and
a test against a coin flip, whether raters favoured the left side, how much raters agree, and per label; how
many more votes would settle it, and when a sequential test says you can stop. With three arms or more, every
arm's Bradley–Terry rating against the base and the win matrix; for every evaluation, how far each rater can
be trusted. Below: turn the votes into data for the next round, and the rounds so far, side by side."""
VERDICT_BUTTONS = (("A", "A is better  [1]", "rate-a"), ("B", "B is better  [2]", "rate-b"),
                   ("tie", "Tie  [3]", "rate-tie"), ("both_bad", "Both bad  [4]", "rate-bad"))


# -- shared -----------------------------------------------------------------------------------

def evaluation_choices(ws, *, blind: bool = False) -> list[tuple[str, int]]:
    """Dropdown choices; ``blind`` leaves out the admin's name, which may name the run being compared."""
    return [((f"Evaluation #{e.id} · {e.num_pairs} pairs" if blind else f"#{e.id} {e.name} · {e.num_pairs} pairs"), e.id)
            for e in arena.list_evaluations(ws)]


def latest_evaluation(ws) -> int | None:
    """The newest evaluation's id (what the evaluation pickers show first), or None."""
    choices = evaluation_choices(ws)
    return choices[0][1] if choices else None


def evaluation_update(ws, current, *, blind: bool = False) -> dict:
    """Fresh choices for an evaluation picker; the chosen one stays while it exists, else the newest."""
    choices = evaluation_choices(ws, blind=blind)
    keep = current if current in [value for _, value in choices] else latest_evaluation(ws)
    return gr.update(choices=choices, value=keep)


def finished_note(done: int) -> str:
    """What a rater reads when nothing is left for them in an evaluation."""
    if done:
        return f"You have rated all {done} pairs open to you in this evaluation. Thank you!"
    return ("Nothing is left for you here: every pair of this evaluation already has all the raters it asked for, "
            "or you judged the same answers in another evaluation. Ask the admin for another evaluation, or for more "
            "raters per pair.")


def closed_to_rater(evaluation: arena.Evaluation) -> str:
    """What a rater reads when the admin closed the evaluation (when, by whom and why where stored, what to do);
    empty while it is open."""
    closed = evaluation.settings.get("closed")
    if not closed:
        return ""
    who = f" by {html.escape(closed['by'])}" if closed.get("by") else ""
    why = f" ({html.escape(closed['reason'])})" if closed.get("reason") else ""
    return (f"This evaluation was closed to new votes at {closed['at']}{who}{why}. The votes you cast are kept. "
            f"Ask the admin for a new evaluation to rate.")


# -- Rate tab: presenters ---------------------------------------------------------------------

def conversation_markdown(pair: BlindPair) -> str:
    """The pair's earlier turns and its question, as the rater reads them."""
    parts = []
    for m in pair.context:
        who = {"system": "System", "user": "Customer", "assistant": "Assistant"}[m["role"]]
        parts.append(f"<div style='color:#555'><b>{who}:</b> {html.escape(m['content'])}</div>")
    parts.append(f"<div style='font-size:1.1em'><b>Question:</b> {html.escape(pair.prompt)}</div>")
    return "\n".join(parts)


def response_html(text: str, side: str) -> str:
    """One blind answer in its box, labelled only by its side."""
    return (f"<div style='border:1px solid #c9d3e6;border-radius:8px;padding:12px;min-height:6em'>"
            f"<div style='font-weight:bold;font-size:1.3em;margin-bottom:6px'>{side}</div>"
            f"<div style='white-space:pre-wrap'>{html.escape(text)}</div></div>")


# -- Rate tab: widgets, handlers, wiring ------------------------------------------------------

class RateWidgets(SimpleNamespace):
    """The Rate tab's components by name (``layout_rate`` fills it), and the groups its handlers write."""

    @property
    def pair(self) -> list:
        """What shows one blind pair: the server-side assignment, the texts, the progress, the buttons.
        The order is what a script driving the tab over HTTP reads (tests/hosted_client.py)."""
        return [self.assignment, self.conversation, self.response_a, self.response_b, self.progress,
                *self.buttons, self.edit]

    @property
    def controls(self) -> list:
        return [*self.buttons, self.edit]


def layout_rate(ws, *, prepare: bool = False) -> RateWidgets:
    """The Rate tab's widgets, created inside the caller's Blocks; nothing is wired yet. With ``prepare`` (the
    admin's dashboard only: the raters' app never builds it) the "Prepare an evaluation" form comes first."""
    w = RateWidgets(prepare=None)
    with gr.Tab("Rate", id="rate") as w.tab:
        gr.HTML("", js_on_load=static_js("rate"), elem_id="rate-keys")
        if prepare:
            from evaluation.prepare_ui import layout_prepare
            w.prepare = layout_prepare(ws)
        gr.Markdown(RATE_INTRO)
        with gr.Row():
            w.evaluation = gr.Dropdown(evaluation_choices(ws, blind=True), value=latest_evaluation(ws),
                                       label="Evaluation", scale=3, elem_id="rate-evaluation")
            w.name = gr.Textbox(label="Your name (used when nobody is logged in)", scale=2, elem_id="rate-rater",
                                placeholder="e.g. ana", visible=not has_users(ws))  # hosted: the login names you
            with gr.Column(scale=1, min_width=160):
                w.start = gr.Button("Start / resume", variant="primary", elem_id="rate-start")
                w.refresh = gr.Button("↻ Evaluations", size="sm")
        w.reveal = gr.Markdown("", elem_id="rate-reveal")
        w.progress = gr.Markdown("", elem_id="rate-progress")
        with gr.Row():
            with gr.Column(scale=3):
                w.conversation = gr.Markdown("_Press Start to get your first pair._", elem_id="rate-prompt")
                with gr.Row(equal_height=True):
                    w.response_a = gr.HTML("", elem_id="rate-response-a", js_on_load=None)
                    w.response_b = gr.HTML("", elem_id="rate-response-b", js_on_load=None)
                with gr.Row():
                    w.buttons = [gr.Button(text, elem_id=eid, interactive=False) for _, text, eid in VERDICT_BUTTONS]
                    w.edit = gr.Button("✎ Correct it  [e]", elem_id="rate-edit", interactive=False)
                with gr.Column(visible=False) as w.correction_box:
                    w.corrected = gr.Textbox(label="The answer you would have wanted (sent with your verdict)",
                                             lines=4, elem_id="rate-correction")
                    w.comment = gr.Textbox(label="Comment (optional)", elem_id="rate-comment")
            with gr.Column(scale=1):
                w.guidelines = gr.Markdown("", elem_id="rate-guidelines")
        w.assignment = gr.State(None)
    return w


def pair_view(w: RateWidgets, pair: BlindPair | None, done_note: str = "", *, controls: bool = True) -> dict:
    """The blind pair on screen (or the note that none is left) — no model named. ``controls=False`` keeps the
    verdict buttons as they are (on: a vote just came from them) by sending their own labels: for every update
    Gradio builds a new component and its config on the server, which was most of a vote's time."""
    if pair is None:
        note = done_note or "Nothing left for you in this evaluation. Thank you!"
        return {w.assignment: None, w.conversation: f"**{note}**", w.response_a: "", w.response_b: "",
                w.progress: "", **{c: gr.update(interactive=False) for c in w.controls}}
    shown = {w.assignment: pair.assignment_id, w.conversation: conversation_markdown(pair),
             w.response_a: response_html(pair.response_a, "A"), w.response_b: response_html(pair.response_b, "B"),
             w.progress: f"**{pair.done} / {pair.total}** rated"}
    if not controls:
        return {**shown, **{c: c.value for c in w.controls}}
    return {**shown, **{c: gr.update(interactive=True) for c in w.controls}}


def rater(ws, request, typed) -> str:
    """Who is rating: the login, or in local mode the name typed in the tab (required)."""
    try:
        return caller_name(ws, request, typed, missing=NO_NAME)
    except TuneloopError as exc:
        raise arena.VoteRefused(str(exc)) from None


def start_clicked(ws, w: RateWidgets, data: dict, request: gr.Request = None) -> dict:
    """Start / resume: the rater's open pair, else their next one, and the evaluation's guidelines."""
    try:
        if data[w.evaluation] is None:
            if not arena.list_evaluations(ws):
                raise TuneloopError(NOT_OPEN_YET_ADMIN if w.prepare else NOT_OPEN_YET)
            raise TuneloopError("choose an evaluation first")
        who = rater(ws, request, data[w.name])
        evaluation = arena.get_evaluation(ws, data[w.evaluation])
        pair = arena.next_pair(ws, evaluation.id, who)
        done = "" if pair else (closed_to_rater(evaluation)
                                or finished_note(arena.rater_progress(ws, evaluation.id, who).done))
    except TuneloopError as exc:
        return {**pair_view(w, None), w.conversation: error_markdown(exc), w.reveal: ""}
    guidelines = evaluation.guidelines.strip() or "_No guidelines for this evaluation._"
    signed_in = caller(ws, request) != LOCAL_USER
    return {**pair_view(w, pair, done), w.reveal: "", w.guidelines: f"#### Guidelines\n{guidelines}",
            w.name: gr.update(value=who, interactive=False, label="Signed in as") if signed_in else gr.update()}


def vote_clicked(ws, w: RateWidgets, verdict: str, data: dict, request: gr.Request = None) -> dict:
    """A verdict: the next pair at once, and the reveal of the one just judged."""
    corrected = data[w.corrected] or ""
    try:
        if data[w.assignment] is None:
            raise arena.VoteRefused("there is no pair on screen; press Start")
        who = rater(ws, request, data[w.name])
        reveal = arena.record_vote(ws, data[w.assignment], who, verdict, comment=data[w.comment] or "",
                                   corrected_answer=corrected or None)
        try:
            pair, capped = arena.next_pair(ws, reveal.evaluation_id, who), ""
        except arena.VoteCapReached as exc:          # the vote counted; there is no next one
            pair, capped = None, str(exc)
        # the next pair carries the progress; only a rater who is done needs it counted
        rated = pair.done if pair else arena.rater_progress(ws, reveal.evaluation_id, who).done
        done = "" if pair else (capped or closed_to_rater(arena.get_evaluation(ws, reveal.evaluation_id))
                                or finished_note(rated))
    except TuneloopError as exc:
        return {w.reveal: error_markdown(exc)}
    return {**pair_view(w, pair, done, controls=pair is None),
            w.reveal: reveal_banner(reveal, rated, corrected, last=pair is None),
            w.comment: "", w.corrected: "", w.correction_box: gr.update(visible=False)}


def reveal_banner(reveal: arena.Reveal, rated: int, corrected: str = "", *, last: bool = False) -> str:
    """The banner above the pair after a vote: who wrote which answer of the pair just judged (the rater's
    ``rated``-th), said to be about that pair and not the one now on screen (``last``: no pair follows)."""
    saved = " Your corrected answer was saved." if corrected.strip() else ""
    which = "your last pair" if last else "the pair before the one below"
    return f"✅ **Your vote {rated}** ({which}): {html.escape(reveal.describe())}{saved}"


def refresh_choices(ws, w: RateWidgets, data: dict) -> dict:
    """The evaluations open for rating (names left out), the chosen one kept while it exists."""
    return {w.evaluation: evaluation_update(ws, data[w.evaluation], blind=True)}


def build_rate_tab(ws, *, prepare: bool = False) -> RateWidgets:
    """The Rate tab: one blind pair at a time, keyboard shortcuts, the reveal after each vote; with ``prepare``
    (the admin's dashboard) the form that prepares an evaluation, above it all."""
    w = layout_rate(ws, prepare=prepare)
    shown = w.pair + [w.reveal]
    # Not queued: a vote is a few milliseconds of SQLite, and the queue's round trips doubled its latency
    # with 50 raters at once (benchmarks/raters.py).
    w.start.click(bind(start_clicked, ws, w), {w.evaluation, w.name}, shown + [w.guidelines, w.name], queue=False)
    for (verdict, _, _), button in zip(VERDICT_BUTTONS, w.buttons):
        button.click(bind(vote_clicked, ws, w, verdict), {w.assignment, w.name, w.comment, w.corrected},
                     shown + [w.comment, w.corrected, w.correction_box], queue=False)
    w.edit.click(lambda: gr.update(visible=True), None, w.correction_box)
    for event in (w.tab.select, w.refresh.click):
        event(bind(refresh_choices, ws, w), {w.evaluation}, [w.evaluation])
    if w.prepare is not None:
        from evaluation.prepare_ui import wire_prepare
        wire_prepare(ws, w.prepare, w)
    return w


# -- Results tab: presenters ------------------------------------------------------------------

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
    """The two-arm figures as the tab shows them, the rough-interval caveat and how many votes would settle it
    included; before any vote, how many votes an evaluation needs."""
    from evaluation.ratings import decision_lines, sequential_test, votes_to_decide
    from evaluation.stats import notes_lines
    if not s:
        plan = decision_lines(votes_to_decide(0, 0), sequential_test([]), None, None)[0]
        return f"**{html.escape(evaluation.describe())}**\n\nNo votes yet. {html.escape(plan[0].upper() + plan[1:])}."

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
               f"(p = {p(s['position_p'])}); each pair's sides are a fair coin toss, so the win rate is still fair."
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
            f"- **Sides**: the fine-tuned answer was on the left in {s['finetuned_left']} of {s['votes']} votes "
            f"({f(s['finetuned_left_share'])}; a fair coin per pair, balance test p = {p(s['side_balance_p'])})\n"
            f"- **Agreement** (Krippendorff's alpha, nominal, {s['agreement_items']} prompts with ≥ 2 raters): "
            f"{f(s['krippendorff_alpha'])}\n\n{verdict}{bias}\n\n" + notes_markdown(notes_lines(s)))


def closed_note(evaluation: arena.Evaluation) -> str:
    """The line that says the evaluation was closed to new votes (when, by whom, why); empty while it is open."""
    closed = evaluation.settings.get("closed")
    if not closed:
        return ""
    who = f" by {html.escape(closed['by'])}" if closed.get("by") else ""
    why = f": {html.escape(closed['reason'])}" if closed.get("reason") else ""
    return f"\n\n🔒 **Closed to new votes** at {closed['at']}{who}{why}."


def notes_markdown(lines: list[str]) -> str:
    """Caveats and decisions as a list, a warning in bold."""
    return "\n".join(f"- **{html.escape(line)}**" if line.startswith("⚠️") else f"- {html.escape(line)}"
                      for line in lines)


ARM_HEADERS = ["arm", "rating (logit, reference 0)", "low", "high", "chance of beating the reference", "low", "high",
               "votes"]
QUALITY_HEADERS = ["rater", "votes", "gold right", "same verdict on swapped repeats", "left side won",
                   "position test p", "agrees with the others", "votes on flagged answers", "outlier"]


def _r(v, places: int = 3):
    return None if v is None else round(v, places)


def _of(part: int, whole: int) -> str:
    return "–" if not whole else f"{part}/{whole} ({part / whole:.0%})"


def arms_markdown(s: dict, *, rated: bool) -> str:
    """The multi-arm notes: how the ratings were made (when ``rated``), each arm against the reference with the
    votes it needs and the sequential test, the outlier rule and the votes on answers that name their model."""
    parts = []
    if rated:
        parts.append(f"### Arms: Bradley–Terry ratings ({html.escape(s['reference'])} at 0)\n"
                     + notes_markdown(s["notes"]))
        for a in s["against_reference"]:
            parts.append(f"**{html.escape(a['arm'])} vs {html.escape(s['reference'])}**: {a['wins']} of "
                         f"{a['decisive']} decisive votes\n" + notes_markdown(a["lines"]))
    elif s["duplicates_note"]:
        parts.append(notes_markdown([s["duplicates_note"]]))
    parts.append(f"**Rater quality** (outlier rule: {html.escape(s['outlier_rule'])})")
    if s["flagged"]:
        parts.append(f"**{len(s['flagged'])} vote(s) on pairs with an answer that names its model** (still counted):\n"
                     + "\n".join(f"- {html.escape(c['prompt_id'])} by {html.escape(c['rater'])} "
                                  f"({html.escape(c['left'])} vs {html.escape(c['right'])}: {c['outcome']}): "
                                  f"{html.escape(c['flagged'])}" for c in s["flagged"]))
    return "\n\n".join(parts)


def arm_rows(s: dict) -> list[list]:
    """One row per arm, best first: rating with interval and the same as a chance of beating the reference."""
    return [[r["arm"], _r(r["rating"]), _r(r["low"]), _r(r["high"]), *(_r(v) for v in r["against_reference"]),
             r["comparisons"]] for r in s["ratings"]]


def arm_plot(s: dict) -> str:
    """The arms' chance of beating the reference with its bootstrap interval, as the forest plot."""
    rows = [(r["arm"], *r["against_reference"], r["comparisons"]) for r in s["ratings"] if r["arm"] != s["reference"]]
    return interval_plot(rows, title=f"Chance of beating {s['reference']} (Bradley–Terry, bootstrap 95%)")


def win_table(s: dict):
    """The win matrix as a table: the row arm's wins against the column arm among decisive votes."""
    import pandas as pd
    arms = [r["arm"] for r in s["ratings"]]
    cells = {(t["first"], t["second"]): t for t in s["win_matrix"]}

    def cell(a, b):
        t = cells.get((a, b))
        if t is None:
            return "–"
        rate = "n/a" if t["win_rate"] is None else f"{t['win_rate']:.2f}"
        return f"{rate} ({t['wins']}–{t['losses']}, {t['ties']} ties, {t['both_bad']} both bad)"
    return pd.DataFrame([[a, *(cell(a, b) for b in arms)] for a in arms], columns=["row arm wins against", *arms])


def quality_rows(s: dict) -> list[list]:
    """One row per rater: gold accuracy, repeat consistency, position bias, agreement, flagged votes, outlier."""
    return [[q["rater"], q["votes"], _of(q["gold_correct"], q["gold_votes"]),
             _of(q["repeats_consistent"], q["repeats"]), _of(q["left_wins"], q["decisive"]), _r(q["position_p"]),
             _of(q["agreed"], q["shared"]), q["flagged_votes"], "; ".join(q["outlier"]) or "–"] for q in s["raters"]]


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


@dataclass
class ResultsFigures:
    """What the Results tab shows of one evaluation under one disagreement policy; computing it writes nothing."""
    summary: str
    plot: str
    per_rater: list
    by_label: list
    disagreements: list
    feedback: str
    queue: list                 # rows of the needs-an-answer queue
    queue_choices: list         # (label, record id) of the same queue, for the answer picker
    label_field: str | None = None   # the meta field the pairs' labels came from (Dolly's category)
    arms: str = ""                   # the multi-arm notes (arms_markdown)
    arm_plot: str = ""
    arm_table: list | None = None    # rows of arm_rows, with three arms or more
    win_table: object = None         # the win matrix (a DataFrame), with three arms or more
    quality: list | None = None      # rows of quality_rows, once there are votes


def results_figures(ws, evaluation_id, policy) -> ResultsFigures:
    """The summary, plot, tables, feedback counts and needs-an-answer queue of an evaluation; per-label figures
    are named after the label field of the version its prompts came from.

    Only computes: the policy changes what is shown, nothing is written."""
    from evaluation.feedback import collect_feedback, unanswered
    from evaluation.ratings import arms_summary
    from evaluation.stats import summarize, votes_from_rows

    if evaluation_id is None:
        return ResultsFigures(NO_EVALUATION, "", [], [], [], "", [], [])
    evaluation = arena.get_evaluation(ws, evaluation_id)
    field = label_field(ws, evaluation.dataset_version) if evaluation.dataset_version else None
    rows = [v.to_stats_row() for v in arena.evaluation_votes(ws, evaluation.id)]
    s = summarize(votes_from_rows(rows)) if rows else None
    arms = [a.name for a in arena.evaluation_arms(ws, evaluation.id)]
    comparisons = arena.evaluation_comparisons(ws, evaluation.id)
    multi = arms_summary(comparisons, reference=arms[0], arms=arms) if comparisons else None
    plot = ""
    if s:
        plot_rows = [("overall", s["win_rate"], s["wilson_low"], s["wilson_high"], s["decisive"])]
        plot_rows += [(f"{field or 'label'}: {g['label']}", g["win_rate"], g["wilson_low"], g["wilson_high"],
                       g["decisive"])
                      for g in s["by_label"]]
        plot_rows += [(f"rater: {g['rater']}", g["win_rate"], g["wilson_low"], g["wilson_high"], g["decisive"])
                      for g in s["per_rater"]]
        plot = interval_plot(plot_rows, title="Fine-tuned win rate among decisive votes (Wilson 95%)")
    fb = collect_feedback(ws, evaluation.id, policy=policy)
    c = fb.counts()
    feedback = (f"**Feedback ({policy})**: {c['preference_pairs']} preference pairs, {c['kto_examples']} judged "
                f"answers for KTO ({c['kto_desirable']} desirable), {c['corrected']} corrected "
                f"answers, {c['needs_answer']} prompts need an answer, {c['disagreements']} disagreements "
                f"({c['disagreements_excluded']} excluded)."
                + (f" {c['identical_answers']} voted pairs left out: both answers the same text."
                   if c["identical_answers"] else ""))
    disagreements = [[d["prompt_id"], d["prompt"][:120], ", ".join(f"{r}: {o}" for r, o in d["votes"].items()),
                      d["resolution"] + (f" → {d['chosen']}" if d["chosen"] else "")] for d in fb.disagreements]
    queue = unanswered(ws, fb)
    two = "" if len(arms) <= 2 else (f"_The two-arm figures here compare {html.escape(arms[0])} (as the base) with "
                                     f"{html.escape(arms[-1])} (as the fine-tuned model); the arms section below "
                                     f"rates every arm._\n\n")
    return ResultsFigures(
        summary=two + summary_markdown(evaluation, s) + closed_note(evaluation), plot=plot,
        per_rater=_figure_rows(s["per_rater"], "rater") if s else [],
        by_label=_figure_rows(s["by_label"], "label") if s else [], disagreements=disagreements, feedback=feedback,
        queue=[[q.id, q.meta["prompt_id"], q.prompt[:160], ", ".join(q.meta["raters"])] for q in queue],
        queue_choices=[(f"{q.meta['prompt_id']}: {q.prompt[:70]}", q.id) for q in queue], label_field=field,
        arms=arms_markdown(multi, rated=len(arms) > 2) if multi else "",
        arm_plot=arm_plot(multi) if multi and len(arms) > 2 else "",
        arm_table=arm_rows(multi) if multi and len(arms) > 2 else [],
        win_table=win_table(multi) if multi and len(arms) > 2 else None, quality=quality_rows(multi) if multi else [])


# -- Results tab: widgets ---------------------------------------------------------------------

class ResultsWidgets(SimpleNamespace):
    """The Results tab's components by name (``layout_results`` fills it), the rounds view's (``rounds``), and
    the groups its handlers write."""

    @property
    def figures(self) -> list:
        """What ``results_figures`` fills, with the message line under the feedback buttons."""
        return [self.summary, self.plot, self.per_rater, self.by_label, self.disagreements, self.feedback,
                self.queue, self.item, self.merged, self.arms, self.arm_plot, self.arm_table, self.win_table,
                self.quality]


def layout_results(ws) -> ResultsWidgets:
    """The Results tab's widgets (the rounds view's included), created inside the caller's Blocks."""
    from evaluation.judge_ui import layout_judge
    from evaluation.pii_leak_ui import layout_pii_leak
    from evaluation.rounds_ui import layout_rounds

    w = ResultsWidgets()
    latest = latest_evaluation(ws)
    with gr.Tab("Results", id="results") as w.tab:
        gr.Markdown(RESULTS_INTRO)
        with gr.Row():
            w.evaluation = remember_choice(gr.Dropdown(evaluation_choices(ws), value=latest, label="Evaluation",
                                                       scale=3, elem_id="results-evaluation"))
            w.policy = gr.Radio(["majority", "unanimous"], value="majority", scale=2,
                                label="When raters disagree on a pair: keep the majority side, or drop the pair")
            w.refresh = gr.Button("Refresh", scale=1, elem_id="results-refresh")
        w.summary = gr.Markdown(NO_EVALUATION, elem_id="results-summary")
        w.plot = gr.HTML("", elem_id="results-plot", js_on_load=None)
        with gr.Row():
            w.per_rater = gr.Dataframe(headers=RATER_HEADERS, label="Per rater", interactive=False)
            w.by_label = gr.Dataframe(headers=LABEL_HEADERS, label="By label", interactive=False)
        w.disagreements = gr.Dataframe(headers=DISAGREEMENT_HEADERS, label="Pairs where raters disagree",
                                       interactive=False)
        w.arms = gr.Markdown("", elem_id="results-arms")
        w.arm_plot = gr.HTML("", elem_id="results-arm-plot", js_on_load=None)
        with gr.Row():
            w.arm_table = gr.Dataframe(headers=ARM_HEADERS, label="Arms (Bradley–Terry, bootstrap 95%)",
                                       interactive=False, elem_id="results-arm-table")
            w.win_table = gr.Dataframe(label="Win matrix (decisive votes)", interactive=False,
                                       elem_id="results-win-matrix")
        w.quality = gr.Dataframe(headers=QUALITY_HEADERS, label="Rater quality", interactive=False,
                                 elem_id="results-rater-quality")
        with gr.Row():
            w.close = gr.Button("Close to new votes (stop early)", scale=0, elem_id="results-close")
            w.close_note = gr.Markdown("", elem_id="results-close-note")
        gr.Markdown("### Feed the votes back into the data")
        w.feedback = gr.Markdown("", elem_id="results-feedback")
        with gr.Row():
            w.export = gr.Button("Make the preference version (for DPO)", elem_id="results-preferences")
            w.export_kto = gr.Button("Make the KTO version (every judged answer)", elem_id="results-kto")
            w.merge = gr.Button("Merge corrected answers into a new dataset version", variant="primary",
                                elem_id="results-merge")
        w.download = gr.File(label="Preference pairs or KTO examples (JSONL in trl's shape)", visible=False)
        w.merged = gr.Markdown("", elem_id="results-merged")
        w.queue = gr.Dataframe(headers=QUEUE_HEADERS, label="Needs an answer: both answers were bad and nobody "
                                                            "corrected them", interactive=False)
        with gr.Row():
            w.item = gr.Dropdown([], label="Prompt to answer", scale=2)
            w.answer = gr.Textbox(label="The answer it should get", lines=3, scale=3)
            w.save_answer = gr.Button("Save answer", scale=1)
        with gr.Accordion("Guidelines shown to raters beside each pair", open=False):
            w.guidelines = gr.Textbox(arena.get_evaluation(ws, latest).guidelines if latest else "",
                                      label="Guidelines", lines=4, elem_id="results-guidelines")
            w.save_guidelines = gr.Button("Save guidelines")
        w.judge = layout_judge()
        w.rounds = layout_rounds()
        w.pii_leak = layout_pii_leak(ws)
    return w


# -- Results tab: handlers --------------------------------------------------------------------

def figures_view(w: ResultsWidgets, f: ResultsFigures) -> dict:
    """``results_figures`` keyed by the components that show it (the message line cleared)."""
    return {w.summary: f.summary, w.plot: f.plot, w.per_rater: f.per_rater,
            w.by_label: gr.update(value=f.by_label, label=f"By {f.label_field or 'label'}"),
            w.disagreements: f.disagreements, w.feedback: f.feedback, w.queue: f.queue,
            w.item: gr.update(choices=f.queue_choices, value=f.queue_choices[0][1] if f.queue_choices else None),
            w.merged: "", w.arms: f.arms, w.arm_plot: f.arm_plot, w.arm_table: f.arm_table or [],
            w.win_table: f.win_table if f.win_table is not None else [], w.quality: f.quality or []}


def show(ws, w: ResultsWidgets, data: dict) -> dict:
    """The chosen evaluation's figures under the chosen policy (an evaluation, policy or Refresh change)."""
    try:
        return figures_view(w, results_figures(ws, data[w.evaluation], data[w.policy]))
    except TuneloopError as exc:
        return {w.summary: error_markdown(exc)}


def select_results(ws, w: ResultsWidgets, data: dict) -> dict:
    """The tab shown: the evaluations as they are now, and the chosen one's figures; one the user never picked
    follows the newest (an evaluation prepared since is what the tab shows)."""
    shown = data[w.evaluation]
    picked = evaluation_update(ws, None if data.get(w.evaluation.tuneloop_chosen, shown) is None else shown)
    return {w.evaluation: picked, **show(ws, w, {**data, w.evaluation: picked["value"]})}


def _chosen(w: ResultsWidgets, data: dict) -> int:
    if data[w.evaluation] is None:
        raise TuneloopError("choose an evaluation first")
    return data[w.evaluation]


@show_errors
def make_preferences(ws, w: ResultsWidgets, data: dict, request: gr.Request = None) -> dict:
    """Make the evaluation's preference version (for DPO) and offer its pairs as a zip of JSONL, one per split."""
    from evaluation.feedback import export_preferences
    evaluation_id = _chosen(w, data)
    from core.workspace import export_folder
    out = export_folder(ws) / f"preferences-eval{evaluation_id}.zip"
    version = export_preferences(ws, evaluation_id, out, policy=data[w.policy], created_by=caller(ws, request))
    return {w.download: gr.update(value=str(out), visible=True),
            w.merged: f"✅ Made **{html.escape(version.describe())}**; a DPO run trains on it with "
                      f"`preferences: {version.name}`."}


@show_errors
def make_kto(ws, w: ResultsWidgets, data: dict, request: gr.Request = None) -> dict:
    """Make the evaluation's KTO version (every answer a vote judged) and offer it as a zip of JSONL, one per split."""
    from core.workspace import export_folder
    from evaluation.feedback import export_kto
    evaluation_id = _chosen(w, data)
    out = export_folder(ws) / f"kto-eval{evaluation_id}.zip"
    version = export_kto(ws, evaluation_id, out, policy=data[w.policy], created_by=caller(ws, request))
    return {w.download: gr.update(value=str(out), visible=True),
            w.merged: f"✅ Made **{html.escape(version.describe())}**; a KTO run trains on it with "
                      f"`stage: kto`, `kto_data: {version.name}` (examples from test prompts are left out)."}


def merge(ws, w: ResultsWidgets, data: dict, request: gr.Request = None) -> dict:
    """Merge the corrected answers (and the answers given to the queue) into a new current version."""
    from evaluation.feedback import merge_feedback
    try:
        version = merge_feedback(ws, _chosen(w, data), policy=data[w.policy], created_by=caller(ws, request))
    except TuneloopError as exc:
        return {w.merged: error_markdown(exc)}
    return {w.merged: f"✅ Made **{html.escape(version.describe())}** (now the current version; see the Data tab). "
                      f"{html.escape(version.note)}"}


def save_answer(ws, w: ResultsWidgets, data: dict, request: gr.Request = None) -> dict:
    """Store the answer typed for a needs-an-answer prompt; it becomes a training record at the next merge."""
    from evaluation.feedback import answer_needed
    try:
        if data[w.item] is None:
            raise TuneloopError("choose a prompt from the queue first")
        answer_needed(ws, data[w.evaluation], data[w.item], data[w.answer], answered_by=caller(ws, request))
        shown = figures_view(w, results_figures(ws, data[w.evaluation], data[w.policy]))
    except TuneloopError as exc:
        return {w.merged: error_markdown(exc)}
    return {**shown, w.merged: "✅ Saved; it becomes a training record at the next merge.", w.answer: ""}


def close_clicked(ws, w: ResultsWidgets, data: dict, request: gr.Request = None) -> dict:
    """Close the chosen evaluation to new votes (the sequential test has decided, or enough is enough)."""
    try:
        evaluation = arena.close_evaluation(ws, _chosen(w, data), closed_by=caller(ws, request),
                                            reason="stopped early from the Results tab")
        shown = figures_view(w, results_figures(ws, evaluation.id, data[w.policy]))
    except TuneloopError as exc:
        return {w.close_note: error_markdown(exc)}
    return {**shown, w.close_note: f"🔒 Evaluation #{evaluation.id} takes no new votes; raters get no further pair "
                                   f"(`python -m evaluation close {evaluation.id}` does the same)."}


def load_guidelines(ws, w: ResultsWidgets, data: dict) -> dict:
    """The chosen evaluation's guidelines, to edit."""
    chosen = data[w.evaluation]
    return {w.guidelines: arena.get_evaluation(ws, chosen).guidelines if chosen is not None else ""}


@show_errors
def store_guidelines(ws, w: ResultsWidgets, data: dict) -> dict:
    """Save the edited guidelines; raters see them at their next Start."""
    arena.set_guidelines(ws, _chosen(w, data), data[w.guidelines])
    gr.Info("Saved; raters see the new guidelines at their next Start.")
    return {}


# -- Results tab: wiring ----------------------------------------------------------------------

def build_results_tab(ws) -> ResultsWidgets:
    """The Results tab: figures with intervals, agreement, feedback into data, rounds, and the PII leak check."""
    from evaluation.judge_ui import wire_judge
    from evaluation.pii_leak_ui import wire_pii_leak
    from evaluation.rounds_ui import wire_rounds

    w = layout_results(ws)
    chosen = {w.evaluation, w.policy}
    w.tab.select(bind(select_results, ws, w), {*chosen, w.evaluation.tuneloop_chosen}, [w.evaluation] + w.figures)
    for trigger in (w.evaluation.change, w.policy.change, w.refresh.click):
        trigger(bind(show, ws, w), chosen, w.figures)
    w.export.click(bind(make_preferences, ws, w), chosen, [w.download, w.merged])
    w.export_kto.click(bind(make_kto, ws, w), chosen, [w.download, w.merged])
    w.merge.click(bind(merge, ws, w), chosen, [w.merged])
    w.save_answer.click(bind(save_answer, ws, w), {*chosen, w.item, w.answer}, w.figures + [w.answer])
    w.evaluation.change(bind(load_guidelines, ws, w), {w.evaluation}, [w.guidelines])
    w.save_guidelines.click(bind(store_guidelines, ws, w), {w.evaluation, w.guidelines}, None)
    w.close.click(bind(close_clicked, ws, w), chosen, w.figures + [w.close_note])
    clear_on_input([w.evaluation], [w.close_note])
    wire_judge(ws, w.judge, w.tab, w.evaluation)
    wire_rounds(ws, w.rounds, w.tab)
    wire_pii_leak(ws, w.pii_leak, w.tab)
    return w
