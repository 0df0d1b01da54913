"""Prepare an evaluation: the form at the top of the admin's Rate tab (never built in the raters' app).

The admin says why the evaluation is made (rate to measure, rate to improve), where its prompts come from
(each source serves one purpose, said in one sentence beside it), which arms answer them (the base, the
prompted base, any runs, an OpenAI-compatible endpoint) and how, and the base model the base and prompted
base answer with when no run is picked (a run carries its own base, which wins); Generate answers every prompt
with every arm ahead of rating (``evaluation.generate``; progress in the page, Stop after the current batch) and opens
the evaluation in the Rate tab's picker.

The house pattern: ``layout_prepare`` creates the widgets inside the Rate tab, the module-level handlers take
the workspace, the widgets and the page's values and return outputs keyed by component, ``wire_prepare``
binds them.
"""
from __future__ import annotations

import html
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from core.access import caller, check_role
from core.errors import TuneloopError
from evaluation.arena import RaterChecks, read_gold_items
from evaluation.generate import PROMPT_SOURCES, PURPOSES, ArmRequest
from training.inference import DecodingSettings
from training.models import DEFAULT_MODEL
from ui.forms import form_values, options_form, options_from_form
from ui.kit import (CancelRegistry, bind, clear_on_input, default_run, error_markdown, picked_value, refresh_on_select,
                    run_picker, version_picker)

# The decoding settings a rating round is generated with (the rest keep their defaults).
DECODING_FIELDS = ("max_new_tokens", "do_sample", "temperature", "seed")
DEFAULT_GUIDELINES = ("Prefer the answer that is correct, complete and follows our support policy. "
                      "Choose 'both bad' when neither could be sent to a customer.")
SOURCE_NAMES = {"test": "Test split", "train": "Train split", "typed": "Typed here", "file": "Uploaded file",
                "served": "Served requests"}
GENERATIONS = CancelRegistry()      # the Stop button of the form, per browser session
BASE_MODEL_NOTE = ("*Base model:* runs carry their own base, and the base and the prompted base answer with it; "
                   "with no run among the arms (e.g. the base against the prompted base: is prompting alone "
                   "enough?) they answer with the base model named here.")


def sources_for(purpose: str) -> list[tuple[str, str]]:
    """The prompt sources that serve ``purpose``, as (label, value) radio choices."""
    return [(SOURCE_NAMES[k], k) for k, (serves, _) in PROMPT_SOURCES.items() if serves == purpose]


def purpose_note(purpose: str) -> str:
    """What the chosen purpose means, and what each of its prompt sources is: one sentence each."""
    lines = [f"**{html.escape(PURPOSES[purpose])}**"]
    lines += [f"- *{SOURCE_NAMES[value]}*: {html.escape(PROMPT_SOURCES[value][1])}"
              for _, value in sources_for(purpose)]
    return "\n".join(lines)


class PrepareWidgets(SimpleNamespace):
    """The form's components by name (``layout_prepare`` fills it)."""

    @property
    def inputs(self) -> set:
        """Everything Generate reads (the pickers' states say whether the user picked their values)."""
        return {self.purpose, self.source, self.version, self.version.tuneloop_chosen, self.runs.tuneloop_chosen,
                self.typed, self.upload, self.limit, self.overlap,
                self.base, self.runs, self.base_model, self.prompted, self.system_prompt, self.examples, self.seed,
                self.endpoint_url, self.endpoint_model, self.endpoint_key_env, *self.decoding.values(), self.name,
                self.guidelines, self.pairs_per_prompt, self.gold, self.gold_from_references, *self.checks.values()}


def layout_prepare(ws) -> PrepareWidgets:
    """The "Prepare an evaluation" accordion, created where the caller is (the top of the admin's Rate tab)."""
    w = PrepareWidgets()
    with gr.Accordion("Prepare an evaluation (admins): answers are generated ahead of rating", open=False,
                      elem_id="prepare"):
        with gr.Row():
            w.purpose = gr.Radio([("Rate to measure", "measure"), ("Rate to improve", "improve")], value="measure",
                                 label="Why rate", scale=1, elem_id="prepare-purpose")
            w.source = gr.Radio(sources_for("measure"), value="test", label="Prompts from", scale=2,
                                elem_id="prepare-source")
        w.note = gr.Markdown(purpose_note("measure"), elem_id="prepare-note")
        with gr.Row():
            w.version = version_picker(ws, "Dataset version (its test or train split; the prompted base's examples)",
                                       splits_only=True, scale=2, elem_id="prepare-version")
            w.limit = gr.Number(value=40, precision=0, label="At most this many prompts", scale=1)
            w.overlap = gr.Number(value=1, precision=0, minimum=1, label="Raters per pair", scale=1)
        with gr.Row():
            w.typed = gr.Textbox(label="Typed prompts, one per line", lines=3, scale=2, elem_id="prepare-typed")
            w.upload = gr.File(label="Uploaded prompts", scale=1)
        gr.Markdown("**Arms**: what answers each prompt. Every pair of arms is compared, blind.")
        with gr.Row():
            w.base = gr.Checkbox(True, label="The base model", scale=1, elem_id="prepare-base")
            newest = default_run(ws, with_adapter=True)
            w.runs = run_picker(ws, "Runs (round 1, round 2, …)", with_adapter=True, multiselect=True, scale=3,
                                value=[newest] if newest else [], elem_id="prepare-runs")
            w.base_model = gr.Textbox(DEFAULT_MODEL, scale=2, elem_id="prepare-base-model",
                                      label="Base model when no run is picked ('default', a folder, a .gguf file or "
                                            "a hub id)")
        w.base_note = gr.Markdown(BASE_MODEL_NOTE, elem_id="prepare-base-note")
        with gr.Row():
            w.prompted = gr.Checkbox(False, label="The base with a prompt", scale=1, elem_id="prepare-prompted")
            w.system_prompt = gr.Textbox(label="Its system prompt", lines=2, scale=3, elem_id="prepare-system")
            w.examples = gr.Number(value=3, precision=0, minimum=0, label="Examples from the train split", scale=1)
            w.seed = gr.Number(value=0, precision=0, label="Seed that draws them", scale=1)
        with gr.Row():
            w.endpoint_url = gr.Textbox(label="OpenAI-compatible endpoint (optional)", scale=2,
                                        placeholder="http://127.0.0.1:8000/v1", elem_id="prepare-endpoint-url")
            w.endpoint_model = gr.Textbox(label="Its model name", scale=1, elem_id="prepare-endpoint-model")
            w.endpoint_key_env = gr.Textbox(label="Environment variable holding its API key (never stored)", scale=1,
                                            placeholder="OPENAI_API_KEY")
        with gr.Row():
            w.decoding = options_form(DecodingSettings, only=DECODING_FIELDS, elem_prefix="prepare-decoding")
            w.name = gr.Textbox(label="Name (optional)")
        w.guidelines = gr.Textbox(label="Guidelines shown to raters", lines=3, value=DEFAULT_GUIDELINES)
        gr.Markdown("**Rater checks**, never shown to the raters: gold pairs (a known better answer) mixed in, pairs "
                    "shown again with the sides swapped, a cap on one rater's votes.")
        with gr.Row():
            w.checks = options_form(RaterChecks, elem_prefix="prepare-checks")
            w.gold = gr.File(label="Gold pairs (JSONL: prompt, better, worse per line)", elem_id="prepare-gold")
            w.gold_from_references = gr.Checkbox(False, elem_id="prepare-gold-references",
                                                 label="Also gold pairs from the split's reference answers (each "
                                                       "prompt's own answer against another prompt's)")
            # 0, not empty: an empty Number reaches the server as 0, which a minimum of 1 would refuse
            w.pairs_per_prompt = gr.Number(value=0, precision=0, minimum=0, elem_id="prepare-pairs-per-prompt",
                                           label="Pairs of arms per prompt (0: every pair)")
        with gr.Row():
            w.go = gr.Button("Generate and create the evaluation", variant="primary", elem_id="prepare-go")
            w.stop = gr.Button("Stop", variant="stop")
        w.status = gr.Markdown("", elem_id="prepare-status")
    return w


# -- handlers ---------------------------------------------------------------------------------

def purpose_changed(ws, w: PrepareWidgets, data: dict) -> dict:
    """The sources that serve the chosen purpose (the chosen one kept when it serves it) and their sentences."""
    purpose = data[w.purpose] or "measure"
    choices = sources_for(purpose)
    keep = data[w.source] if data[w.source] in [v for _, v in choices] else choices[0][1]
    return {w.source: gr.update(choices=choices, value=keep), w.note: purpose_note(purpose)}


def arm_requests(w: PrepareWidgets, data: dict) -> list[ArmRequest]:
    """The arms the form asks for, in the order the evaluation lists them (the base first)."""
    arms = [ArmRequest("base")] if data[w.base] else []
    if data[w.prompted]:
        arms.append(ArmRequest("prompted", examples=int(data[w.examples] or 0),
                               system_prompt=data[w.system_prompt] or "", seed=int(data[w.seed] or 0)))
    arms += [ArmRequest("run", run=str(run)) for run in picked_value(w.runs, data) or []]
    url, model = (data[w.endpoint_url] or "").strip(), (data[w.endpoint_model] or "").strip()
    if url or model:
        if not (url and model):
            raise TuneloopError("an endpoint arm needs both its URL (ending in /v1) and its model name")
        arms.append(ArmRequest("endpoint", url=url, model=model, api_key_env=data[w.endpoint_key_env] or ""))
    return arms


def _same_model(a: str, b: str) -> bool:
    """Whether two names of a base model name the same one ('default' in any case, a folder by its full path)."""
    def key(name: str) -> str:
        text = name.strip()
        if text.lower() == DEFAULT_MODEL:
            return DEFAULT_MODEL
        path = Path(text).expanduser()
        return str(path.resolve()) if path.exists() else text
    return key(a) == key(b)


def base_choice(ws, w: PrepareWidgets, requests: list[ArmRequest], data: dict) -> tuple[str | None, str]:
    """(the base model to hand ``resolve_arms``, a line saying what the local arms answer with). Runs carry their
    own base, which wins over the box (None is handed on, and the line says so when the box names another);
    with no run the box's model is checked (a clear error when it cannot be found) and used."""
    from evaluation.generate import resolve_adapter
    from training.models import check_base_model
    typed = (data[w.base_model] or "").strip() or DEFAULT_MODEL
    if not requests:
        return None, BASE_MODEL_NOTE
    if not any(r.kind != "endpoint" for r in requests):
        return None, "*Base model:* only the endpoint answers; no local model is loaded."
    bases = sorted({resolve_adapter(ws, r.run).base_model for r in requests if r.kind == "run"})
    if len(bases) > 1:
        return None, (f"*Base model:* the runs are on different base models ({html.escape(', '.join(bases))}); "
                      f"rate runs of one base together.")
    if bases:
        if _same_model(bases[0], typed):
            return None, f"*Base model:* **{html.escape(bases[0])}**, the runs' own base."
        return None, (f"*Base model:* **{html.escape(bases[0])}**, the runs' own base: the base and the prompted base "
                      f"answer with it, not with '{html.escape(typed)}' from the box (used only when no run is "
                      f"picked).")
    check_base_model(typed, ws)
    return typed, (f"*Base model:* **{html.escape(typed)}**: no run is among the arms, so the base and the prompted "
                   f"base answer with the model named in the box.")


def base_note(ws, w: PrepareWidgets, data: dict) -> dict:
    """What the local arms will answer with, as the arms and the base model box stand (an error when the box's
    model cannot be found); the general explanation while the arms are incomplete."""
    try:
        return {w.base_note: base_choice(ws, w, arm_requests(w, data), data)[1]}
    except TuneloopError as exc:
        return {w.base_note: f"{BASE_MODEL_NOTE}  \n{error_markdown(exc)}"}


def generate_clicked(ws, w: PrepareWidgets, rate, data: dict, request: gr.Request = None,
                     progress=gr.Progress()) -> dict:
    """Answer the chosen prompts with every chosen arm and create the evaluation raters then rate (admins
    only); Stop ends it after the current batch. ``rate`` is the Rate tab's widgets (its picker shows it)."""
    from curation.data.versions import get_version
    from evaluation.arena import get_evaluation
    from evaluation.generate import prepare_evaluation, prompts_for, resolve_arms
    from evaluation.gold import reference_gold
    from evaluation.ui import evaluation_choices
    cancel = GENERATIONS.start(request)
    try:
        check_role(ws, request, ("admin",))
        source, n, chosen = data[w.source], int(data[w.limit] or 0) or None, picked_value(w.version, data)
        needs_version = source in ("test", "train") or data[w.prompted]
        if needs_version and not chosen:
            raise TuneloopError("choose the dataset version (its splits hold the prompts and the prompted base's "
                                "examples)")
        version = get_version(ws, chosen).id if chosen else None
        items = prompts_for(ws, source, purpose=data[w.purpose], version=version,
                            texts=(data[w.typed] or "").splitlines(), path=data[w.upload], limit=n)
        requests = arm_requests(w, data)
        chosen_base, base_said = base_choice(ws, w, requests, data)
        base_model, arms = resolve_arms(ws, requests, items=items, version=version, base_model=chosen_base)
        settings = options_from_form(DecodingSettings, form_values(w.decoding, data))
        checks = options_from_form(RaterChecks, form_values(w.checks, data))
        gold = read_gold_items(data[w.gold]) if data[w.gold] else []
        if data[w.gold_from_references]:
            gold += reference_gold(ws, source, version, items, len(arms), int(data[w.pairs_per_prompt] or 0) or None,
                                   checks.gold_rate)
        eid = prepare_evaluation(ws, items, arms=arms, base_model=base_model, name=data[w.name] or None,
                                 purpose=data[w.purpose], prompt_source=source,
                                 dataset_version=version if source in ("test", "train") else None,
                                 overlap=int(data[w.overlap] or 1), guidelines=data[w.guidelines], settings=settings,
                                 cancel=cancel, created_by=caller(ws, request), gold=gold, checks=checks,
                                 pairs_per_prompt=int(data[w.pairs_per_prompt]) if data[w.pairs_per_prompt] else None,
                                 progress=lambda d, t, what: progress(d / max(t, 1), desc=what))
    except TuneloopError as exc:
        return {w.status: error_markdown(exc)}
    finally:
        GENERATIONS.finish(request, cancel)
    said = "the votes feed the statistics only" if data[w.purpose] == "measure" else \
        "the votes and corrections become training data at the next merge"
    checks_said = "".join(f" With {html.escape(c)}." for c in get_evaluation(ws, eid).checks_text())
    return {w.status: f"✅ Evaluation #{eid} is ready: {len(items)} prompts, {len(arms)} arms "
                      f"({html.escape(', '.join(a.name for a in arms))}); {said}.{checks_said} Raters can start below."
                      f"  \n{base_said}",
            rate.evaluation: gr.update(choices=evaluation_choices(ws, blind=True), value=eid)}


def stop_clicked(ws, w: PrepareWidgets, request: gr.Request = None) -> dict:
    """Stop this browser tab's generation after its current batch."""
    stopping = GENERATIONS.cancel(request)
    return {w.status: "Stopping after the current batch…" if stopping else "Nothing is being generated."}


def wire_prepare(ws, w: PrepareWidgets, rate) -> None:
    """Bind the form's handlers; the version and run pickers re-read the workspace whenever the Rate tab is shown."""
    refresh_on_select(rate.tab, ws, [w.version, w.runs])
    w.purpose.change(bind(purpose_changed, ws, w), {w.purpose, w.source}, [w.source, w.note])
    w.go.click(bind(generate_clicked, ws, w, rate), w.inputs, [w.status, rate.evaluation])
    w.stop.click(bind(stop_clicked, ws, w), None, [w.status])
    clear_on_input([w.purpose, w.source, w.version, w.runs, w.base_model], [w.status])
    # the box is checked when the user leaves it, not at every keystroke of a path being typed
    for event in (w.base_model.blur, w.base_model.submit, w.runs.change, w.base.change, w.prompted.change):
        event(bind(base_note, ws, w), {w.base_model, w.runs, w.runs.tuneloop_chosen, w.base, w.prompted,
                                       w.system_prompt, w.examples, w.seed, w.endpoint_url, w.endpoint_model,
                                       w.endpoint_key_env}, [w.base_note])
