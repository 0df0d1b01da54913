"""The Train tab: choose a split, a base model and a preset, edit the config, preflight, launch; watch
live loss curves and progress; stop, resume, compare and export runs; preview how the base model's chat
template renders a record and which tokens are trained.

In the house pattern (see ``curation.ui.review``): ``layout`` creates the widgets (a ``TrainWidgets``; the
config form comes from ``RunConfig``), the module-level handlers take the workspace, the widgets and the
values the page sent and return a dict keyed by component, the presenters (``status_html``,
``preflight_markdown`` ...) are plain functions, and ``build_train_tab`` only wires them with
``ui.kit.bind``. The work is training.config, training.registry, training.preflight, training.run_views,
training.export and training.template_preview."""
from __future__ import annotations

import html
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pandas as pd

from core.errors import TuneloopError
from core.workspace import export_folder
from core.options import options_fields
from curation.splits.build import split_records
from training import registry as R
from training import serve_ui
from training.config import PRESETS, RunConfig, preset_config
from training.run_views import (RUN_HEADERS, config_diff, describe_eta, loss_curves, phase_text, progress_of,
                                runs_table)
from training.template_preview import (CONTEXT, CUT, TRAINED, default_sequence_len, load_preview_tokenizer,
                                       preview_record, token_length_stats)
from ui.forms import form_values, options_form, options_from_form
from ui.kit import (CancelRegistry, bind, clear_on_input, default_run, error_markdown, picked_value, picker_updates,
                    run_choices, run_picker, version_picker)

FORM_SKIP = ("base_model", "datasets", "output_dir")  # the split and base model pickers; the registry's run folder
FORM_ROW = 4
POLL_SECONDS = 2.0
LOG_TAIL_LINES = 20
INTRO = """### Fine-tune a model on a frozen split
Pick a split version, a base model and a preset, check the plan with **Preflight**, then **Launch**. The run
trains in its own process: you can reload this page or restart the app and it keeps going. **Stop** saves a
checkpoint first; **Resume** continues from it."""


COLORS = {TRAINED: "#16a34a", CONTEXT: "#e5e7eb", CUT: "#f87171"}


# -- presenters -----------------------------------------------------------------------------------

def status_html(run: R.Run | None) -> str:
    if run is None:
        return "<div id='train-status-box' data-status='none'><em>No run selected. Launch one above.</em></div>"
    p = progress_of(run)
    step, max_steps = p["step"], max(p["max_steps"] or 0, 0)
    memory = f"{p['peak_rss_mb']:,.0f} MB RAM" if p["peak_rss_mb"] else "—"
    if p["peak_gpu_mb"]:
        memory += f", {p['peak_gpu_mb']:,.0f} MB GPU"
    parts = [f"<b>{html.escape(run.label)}</b> · <span class='train-status'>{html.escape(run.status_text)}</span>",
             f"step {step}/{max_steps or '?'}", f"ETA {describe_eta(p['eta_s']) if run.active else '—'}",
             f"{p['tokens_per_s'] or 0:,.0f} tokens/s", f"peak {memory}"]
    body = [f"<progress value='{step}' max='{max_steps or 1}' style='width:100%'></progress>",
            "<div>" + " · ".join(parts) + "</div>"]
    now = phase_text(run, p)
    if now:
        body.append(f"<div class='train-phase'><b>now</b>: {html.escape(now)}</div>")
    if p["base_eval_loss"] is not None and p["eval_loss"] is not None:
        body.append(f"<div>eval loss: base model {p['base_eval_loss']:.4f} → tuned {p['eval_loss']:.4f}</div>")
    if p["rouge_l_tuned"] is not None:
        body.append(f"<div>ROUGE-L on the test split: base model {p['rouge_l_base']:.3f} → tuned "
                    f"{p['rouge_l_tuned']:.3f}</div>")
        example = p["rouge_example"] or {}
        if example.get("prompt"):
            body.append("<details><summary>one test answer, base vs tuned</summary>"
                        f"<p><b>prompt</b>: {html.escape(example['prompt'])}</p>"
                        f"<p><b>reference</b>: {html.escape(example['reference'])}</p>"
                        f"<p><b>base</b>: {html.escape(example['base'])}</p>"
                        f"<p><b>tuned</b>: {html.escape(example['tuned'])}</p></details>")
    if run.status == "stopped":
        ckpt = R.last_checkpoint(run)
        body.append(f"<div>Stopped at {ckpt.name if ckpt else 'the start'}; Resume continues from there.</div>")
    if run.error:
        body.append(f"<pre class='train-error'>{html.escape(run.error)}</pre>")
    if run.artefacts.get("adapter"):
        body.append(f"<div>adapter: <code>{html.escape(run.artefacts['adapter'])}</code></div>")
    tail = R.log_tail(run, LOG_TAIL_LINES)
    if tail:
        body.append(f"<details{' open' if run.active else ''}><summary>log (last {LOG_TAIL_LINES} lines of "
                    f"train.log)</summary><pre class='train-log'>{html.escape(tail)}</pre></details>")
    return f"<div id='train-status-box' data-status='{run.status}' data-step='{step}'>" + "".join(body) + "</div>"


def curves_frame(runs: list[R.Run]) -> pd.DataFrame:
    rows = loss_curves(runs)
    return pd.DataFrame(rows, columns=["step", "loss", "series"])


def preflight_markdown(report) -> str:
    """The preflight report: base model, memory against what is available, tokens, steps, warnings."""
    m = report.memory.as_dict()
    stats = report.token_stats
    lines = [f"**Split:** {html.escape(report.config.datasets)}", f"**Base model:** {report.base_model}",
             f"**Memory:** about **{m['total_gb']} GB** needed (weights {m['weights_gb']}, adapter + optimizer "
             f"{m['adapter_and_optimizer_gb']}, activations {m['activations_gb']}) · **{m['available_gb']} GB** "
             f"available on {m['device']} → {'✅ fits' if m['fits'] else '❌ does not fit'}",
             f"**Tokens:** {stats['conversations']} conversations, {stats['tokens']:,} tokens "
             f"({stats['trained_tokens']:,} trained), mean {stats['mean_len']}, p95 {stats['p95_len']}, "
             f"longest {stats['max_len']}; {stats['cut_at_sequence_len']} cut at sequence_len",
             f"**Steps:** {report.steps_per_epoch} per epoch, {report.total_steps} in all",
             f"**Trains on:** {report.coverage}", f"**System prompt:** {html.escape(report.system_prompt)}"]
    lines += [f"- **Choice:** {html.escape(c)}" for c in report.choices]
    lines += [f"- ⚠️ {html.escape(w)}" for w in report.warnings]
    return "\n\n".join(lines)




# -- widgets --------------------------------------------------------------------------------------

class TrainWidgets(SimpleNamespace):
    """The Train tab's components by name (``layout`` fills it); ``form`` holds the ``RunConfig`` keys rendered
    by ``ui.forms`` (the split, the base model and the run folder have their own widgets or none)."""

    @property
    def config(self) -> set:
        """What the run config is read from (the split picker's state says whether the user picked it)."""
        return {self.split, self.split.tuneloop_chosen, self.base_model, *self.form.values()}

    @property
    def run_pickers(self) -> list:
        """What shows the runs to choose from (and the choices the poll last showed)."""
        return [self.selected, self.compare_pick, self.seen]

    @property
    def polled(self) -> list:
        """What a poll of the chosen run fills."""
        return [self.status, self.curve, self.table, *self.run_pickers]


def layout(ws) -> TrainWidgets:
    """The Train tab's widgets (the form showing the first preset), inside the caller's Blocks; nothing is
    wired yet."""
    first_preset = next(iter(PRESETS))
    start = preset_config(first_preset)
    keys = [f.name for f in options_fields(RunConfig) if f.name not in FORM_SKIP]
    w = TrainWidgets(form={})
    with gr.Tab("Train", id="train") as w.tab:
        gr.Markdown(INTRO)
        with gr.Row():
            w.split = version_picker(ws, "Split (dataset version with train/val/test)", splits_only=True,
                                     elem_id="train-split", scale=2)
            w.base_model = gr.Textbox(value="default", label="Base model ('default', a folder, a .gguf file or a hub id)",
                                      elem_id="train-base-model", scale=2)
            w.preset = gr.Dropdown(list(PRESETS), value=first_preset, label="Preset", elem_id="train-preset", scale=1)
            w.refresh_splits = gr.Button("↻ splits", scale=0, size="sm")
        with gr.Accordion("Config (axolotl-style keys)", open=False):
            for chunk in range(0, len(keys), FORM_ROW):
                with gr.Row():
                    w.form.update(options_form(RunConfig, start, only=tuple(keys[chunk:chunk + FORM_ROW]),
                                               elem_prefix="train-cfg", as_keys=True))
        with gr.Accordion("Template preview: what the base model sees, and what it learns from", open=False):
            with gr.Row():
                w.seq_len = gr.Number(value=default_sequence_len(), precision=0, minimum=16,
                                      label="Sequence length (tokens; training cuts there)", elem_id="train-preview-len")
                w.record_id = gr.Textbox(label="Record id (empty: the first test record)", elem_id="train-record")
                w.preview_btn = gr.Button("Preview", elem_id="train-preview-btn")
                w.lengths_btn = gr.Button("Token lengths of the split", elem_id="train-lengths-btn")
                w.lengths_stop_btn = gr.Button("Stop counting", variant="stop", elem_id="train-lengths-stop")
            w.preview_md = gr.Markdown(elem_id="train-preview-counts")
            w.preview_hl = gr.HighlightedText(label="Exactly what the model sees (green: trained on)",
                                              color_map=COLORS, show_legend=True, combine_adjacent=True,
                                              elem_id="train-preview")
            w.tokens_md = gr.Markdown(elem_id="train-lengths")
            w.tokens_plot = gr.BarPlot(x="tokens", y="records", color="part", title="Tokens per conversation",
                                       color_map={"fits": "#2563eb", CUT: "#f87171"}, x_title="tokens (bin start)")
        with gr.Row():
            w.run_name = gr.Textbox(label="Run name (optional)", elem_id="train-run-name", scale=3)
            w.preflight_btn = gr.Button("Preflight", elem_id="train-preflight-btn", scale=1)
            w.launch_btn = gr.Button("Launch", variant="primary", elem_id="train-launch-btn", scale=1)
        w.message = gr.Markdown(elem_id="train-message")
        w.preflight_md = gr.Markdown(elem_id="train-preflight")
        w.example = gr.HighlightedText(label="One training example: green is what the loss sees", visible=False,
                                       color_map={"trained": "#86efac"}, combine_adjacent=True, elem_id="train-example")

        gr.Markdown("### Runs")
        with gr.Row():
            w.selected = run_picker(ws, "Run", elem_id="train-run", scale=3)
            w.stop_btn = gr.Button("Stop (checkpoint, then stop)", elem_id="train-stop-btn", scale=1)
            w.resume_btn = gr.Button("Resume from last checkpoint", elem_id="train-resume-btn", scale=1)
        w.status = gr.HTML(status_html(None), elem_id="train-status")
        w.curve = gr.LinePlot(curves_frame([]), x="step", y="loss", color="series", title="Loss", elem_id="train-curve")
        w.table = gr.Dataframe(headers=RUN_HEADERS, value=runs_table(R.list_runs(ws)), interactive=False,
                               label="All runs", elem_id="train-runs")
        with gr.Accordion("Compare runs", open=False):
            with gr.Row():
                w.compare_pick = run_picker(ws, "Runs to compare (two or more)", multiselect=True,
                                            elem_id="train-compare-runs", scale=3)
                w.compare_btn = gr.Button("Compare", elem_id="train-compare-btn", scale=1)
            w.compare_plot = gr.LinePlot(curves_frame([]), x="step", y="loss", color="series",
                                         title="Loss, overlaid", elem_id="train-compare-plot")
            w.compare_diff = gr.Dataframe(label="What differs", interactive=False, elem_id="train-compare-diff")
        with gr.Accordion("Export", open=False):
            with gr.Row():
                w.export_kind = gr.Radio(["adapter", "merged", "archive", "gguf f16", "gguf q8_0", "gguf q4_k_m"],
                                         value="archive", elem_id="train-export-kind",
                                         label="adapter: PEFT folder (PeftModel, vLLM, TGI) · merged: full model "
                                               "folder · archive: .tar.gz download · gguf: llama.cpp file + Ollama "
                                               "Modelfile (q4_k_m smallest)")
                w.export_btn = gr.Button("Export selected run", elem_id="train-export-btn")
                w.export_cancel = gr.Button("Cancel export", elem_id="train-export-cancel")
            gr.Markdown("A merged or GGUF export takes a minute or more (merging, llama.cpp's conversion, "
                        "quantizing); **Cancel export** ends the conversion under way and leaves no partial file.")
            w.export_msg = gr.Markdown(elem_id="train-export-msg")
            w.export_file = gr.File(label="Download", visible=False, elem_id="train-export-file")
        w.serve = serve_ui.layout(ws)
        w.timer = gr.Timer(POLL_SECONDS)
        w.seen = gr.State([])
    return w


# -- handlers: pickers ----------------------------------------------------------------------------

def run_pickers(ws, w: TrainWidgets, data: dict, pick: str | None = None) -> dict:
    """The run pickers on the runs as they stand (each label says its run's status), the chosen runs kept
    while they exist; ``pick`` becomes the chosen run."""
    selected, compared = picker_updates([w.selected, w.compare_pick],
                                        [pick or data[w.selected], data[w.compare_pick]])
    return {w.selected: selected, w.compare_pick: compared, w.seen: [list(c) for c in selected["choices"]]}


def split_picker(ws, w: TrainWidgets, data: dict) -> dict:
    """The split picker on the versions as they stand: the split the user picked kept while it exists, a
    preselected one following the newest split (so round 2 is offered the version round 1's votes made)."""
    chosen = [data[w.split.tuneloop_chosen]] if w.split.tuneloop_chosen in data else None
    return {w.split: picker_updates([w.split], [data[w.split]], chosen)[0]}


def show_tab(ws, w: TrainWidgets, data: dict) -> dict:
    """Opening the tab: the split and run pickers on the versions and runs as they stand."""
    return {**split_picker(ws, w, data), **run_pickers(ws, w, data)}


# -- handlers: config and launch ------------------------------------------------------------------

def config_of(w: TrainWidgets, data: dict) -> RunConfig:
    """The run config the page describes (validated; every bad key named); a split nobody picked is the default
    split as it stands, even when the tab's refresh has not reached the page yet."""
    return options_from_form(RunConfig, {**form_values(w.form, data), "base_model": data[w.base_model] or "default",
                                         "datasets": picked_value(w.split, data) or ""})


def apply_preset(ws, w: TrainWidgets, data: dict) -> dict:
    """The form showing the chosen preset's values."""
    config = preset_config(data[w.preset])
    return {component: getattr(config, key) for key, component in w.form.items()}


def run_preflight(ws, w: TrainWidgets, data: dict) -> dict:
    """The plan for the page's config: memory, tokens, steps, warnings, and one example with its trained tokens."""
    from training.preflight import preflight
    try:
        report = preflight(ws, config_of(w, data))
    except TuneloopError as exc:
        return {w.message: error_markdown(exc), w.preflight_md: "", w.example: gr.update(visible=False)}
    spans = [(text, "trained" if on else None) for text, on in report.example]
    return {w.message: "", w.preflight_md: preflight_markdown(report), w.example: gr.update(value=spans, visible=True)}


def launch(ws, w: TrainWidgets, data: dict) -> dict:
    """Launch a run of the page's config; the run picker then shows it."""
    try:
        run = R.launch_run(ws, config_of(w, data), name=data[w.run_name] or None)
    except TuneloopError as exc:
        return {w.message: error_markdown(exc)}
    if run.waiting:
        message = (f"Queued **{html.escape(run.label)}** ({run.status_text}): another run is training; it starts "
                   f"when the runs before it have ended.")
    else:
        message = f"Launched **{html.escape(run.label)}**; it loads the model, then the curve starts moving."
    return {w.message: message, w.run_name: "", **run_pickers(ws, w, data, pick=str(run.id))}


# -- handlers: runs -------------------------------------------------------------------------------

def stop(ws, w: TrainWidgets, data: dict) -> dict:
    """Ask the chosen run to save a checkpoint and stop."""
    try:
        run = R.request_stop(ws, data[w.selected] or "")
    except TuneloopError as exc:
        return {w.message: error_markdown(exc)}
    return {w.message: f"Stop requested for {html.escape(run.label)}: it saves a checkpoint at the end of this step.",
            **run_pickers(ws, w, data)}


def resume(ws, w: TrainWidgets, data: dict) -> dict:
    """Continue the chosen (stopped or failed) run from its last checkpoint."""
    try:
        run = R.resume_run(ws, data[w.selected] or "")
    except TuneloopError as exc:
        return {w.message: error_markdown(exc)}
    ckpt = R.last_checkpoint(run)
    return {w.message: f"Resumed {html.escape(run.label)} from {ckpt.name if ckpt else 'the start'}.",
            **run_pickers(ws, w, data)}


def poll(ws, w: TrainWidgets, data: dict) -> dict:
    """The chosen run (with none chosen, a running or the newest one) as it stands: status, curve, the runs
    table. The run pickers are re-read when a run has come, gone or changed its status since the last poll
    (so a finished run no longer says running), and left alone otherwise (an open dropdown stays open). A run the
    user never picked follows the default: a poll sent before Launch's answer reached the page shows the new run."""
    shown = data[w.selected]
    chosen = picked_value(w.selected, data) or default_run(ws)
    run = None
    if chosen:
        try:
            run = R.get_run_status(ws, chosen)
        except TuneloopError:
            run = None
    out = {w.status: status_html(run), w.curve: curves_frame([run] if run else []),
           w.table: runs_table(R.list_runs(ws))}
    if [list(c) for c in run_choices(ws)] != [list(c) for c in data[w.seen] or []] or (run and str(run.id) != shown):
        out.update(run_pickers(ws, w, data, pick=str(run.id) if run else None))
    return out


def compare(ws, w: TrainWidgets, data: dict) -> dict:
    """The chosen runs' curves overlaid, and what differs between their configs."""
    run_ids = data[w.compare_pick]
    if not run_ids or len(run_ids) < 2:
        return {w.message: "Choose two or more runs to compare."}
    runs = [R.get_run(ws, rid) for rid in run_ids]
    headers, rows = config_diff(runs)
    return {w.compare_plot: curves_frame(runs), w.compare_diff: pd.DataFrame(rows, columns=headers),
            w.message: "" if rows else "These runs have the same config."}


EXPORTS = CancelRegistry()     # per browser tab: the Cancel export button of an export under way


def export(ws, w: TrainWidgets, data: dict, request: gr.Request = None, progress=gr.Progress()) -> dict:
    """The chosen run exported as an adapter folder, a merged model, a GGUF folder or a downloadable archive.
    **Cancel export** stops it at its next progress report: a llama.cpp conversion or quantization under way
    is ended (it reports every quarter second) and nothing is left behind."""
    from training.export import export_run
    from training.gguf import ExportCancelled
    run_id, (kind, _, quant) = data[w.selected], data[w.export_kind].partition(" ")
    hidden = gr.update(visible=False)
    if not run_id:
        return {w.export_msg: "Choose a run first.", w.export_file: hidden}
    stop = EXPORTS.start(request)

    def report(fraction: float, text: str) -> None:
        if stop.is_set():
            raise ExportCancelled(f"the {kind} export was cancelled: what was under way was stopped and no "
                                  f"partial file was left")
        progress(fraction, desc=text)

    try:
        run = R.get_run(ws, run_id)
        if kind == "archive":
            out = export_folder(ws) / f"run-{run.id}.tar.gz"
        else:
            name = f"export-{kind}" + (f"-{quant}" if quant else "")
            stamp = len(list(run.run_dir.glob(f"{name}*")))
            out = run.run_dir / (name + (f"-{stamp}" if stamp else ""))
        path = export_run(ws, run.id, kind, out, quant=quant or "f16", progress=report)
    except ExportCancelled as exc:
        return {w.export_msg: f"⏹ {str(exc)[0].upper()}{str(exc)[1:]}.", w.export_file: hidden}
    except TuneloopError as exc:
        return {w.export_msg: error_markdown(exc), w.export_file: hidden}
    finally:
        EXPORTS.finish(request, stop)
    if kind == "archive":
        return {w.export_msg: f"Archive of {html.escape(run.label)} ready.",
                w.export_file: gr.update(value=str(path), visible=True)}
    return {w.export_msg: f"{kind.capitalize()} written to `{path}`.", w.export_file: hidden}


def cancel_export(ws, w: TrainWidgets, request: gr.Request = None) -> dict:
    """Stop this browser tab's export."""
    return {w.export_msg: "Cancelling…" if EXPORTS.cancel(request) else "No export of yours is running."}


# -- handlers: template preview -------------------------------------------------------------------

@lru_cache(maxsize=2)
def _tokenizer(model: str, root: str):
    from core.workspace import Workspace
    return load_preview_tokenizer(model, Workspace.open(root))


LOADING_TOKENIZER = "loading the base model's tokenizer (converting the model, the first time only)"


def template_preview(ws, w: TrainWidgets, data: dict, progress=gr.Progress()) -> dict:
    """One record of the split rendered with the base model's chat template: the tokens training learns from
    marked, those past the sequence length marked as cut off, and the counts."""
    version, rid = data[w.split], data[w.record_id]
    progress(None, desc=LOADING_TOKENIZER)
    try:
        records = split_records(ws, version)
        record = (next((r for r in records if r.id == rid.strip()), None) if rid and rid.strip()
                  else next((r for r in records if r.split == "test"), records[0]))
        if record is None:
            raise TuneloopError(f"there is no record '{rid}' in {version}")
        tokenizer, name = _tokenizer((data[w.base_model] or "").strip() or "default", str(ws.root))
        preview = preview_record(tokenizer, record, int(data[w.seq_len] or default_sequence_len()))
    except Exception as exc:
        return {w.preview_md: error_markdown(exc)}
    counts = preview.counts()
    md = (f"**{record.id}** ({record.split}) rendered for **{name}**: {counts['tokens']} tokens, "
          f"**{counts['trained']} trained** (assistant turns), {counts['context']} context"
          + (f", ⚠️ {counts['cut off']} cut off past {preview.sequence_len}" if counts["cut off"] else ""))
    return {w.preview_md: md, w.preview_hl: [(text, kind) for text, kind in preview.segments]}


LENGTHS = CancelRegistry()     # per browser tab: Stop counting (the token lengths of a split)


def token_lengths(ws, w: TrainWidgets, data: dict, request: gr.Request = None, progress=gr.Progress()) -> dict:
    """The split's conversations in tokens against the sequence length: a summary and a histogram. **Stop
    counting** ends it at its next progress report (the chart keeps what it showed before)."""
    stop = LENGTHS.start(request)

    def report(fraction, text: str) -> None:
        if stop.is_set():
            raise TuneloopError("counting the token lengths was stopped; nothing was changed (the chart still "
                                "shows the previous count, if any)")
        progress(fraction, desc=text)

    try:
        records = split_records(ws, data[w.split])
        report(None, LOADING_TOKENIZER)
        tokenizer, name = _tokenizer((data[w.base_model] or "").strip() or "default", str(ws.root))
        stats = token_length_stats(tokenizer, records, int(data[w.seq_len] or default_sequence_len()),
                                   progress=report)
        report(1.0, "counted")
    except Exception as exc:
        return {w.tokens_md: error_markdown(exc)}
    finally:
        LENGTHS.finish(request, stop)
    s = stats.summary()
    md = (f"{s['records']:,} conversations for **{name}**: median {s['median']} tokens, p95 {s['p95']}, "
          f"max {s['max']}; **{s['cut off']} ({s['cut off %']}%) longer than the sequence length "
          f"{s['sequence length']}** (red: their ends are cut off in training)")
    return {w.tokens_md: md, w.tokens_plot: length_chart(stats.histogram())}


def stop_token_lengths(ws, w: TrainWidgets, request: gr.Request = None) -> dict:
    """Stop this browser tab's token-length count at its next progress report."""
    return {w.tokens_md: "Stopping…" if LENGTHS.cancel(request) else "No count of yours is running."}


def length_chart(rows: list[dict]) -> dict:
    """The token-length bars: bins as labels in numeric order (on a number axis the bars are hairlines)."""
    frame = pd.DataFrame(rows, columns=["tokens", "records", "part"])
    frame["tokens"] = frame["tokens"].astype(str)
    return gr.update(value=frame, sort=list(dict.fromkeys(frame["tokens"])))


# -- wiring ---------------------------------------------------------------------------------------

def build_train_tab(ws) -> TrainWidgets:
    """The Train tab inside the caller's Blocks: ``layout``'s widgets wired to the handlers above."""
    w = layout(ws)

    def on(event, handler, inputs, outputs, **kw):
        return event(bind(handler, ws, w), inputs, outputs, api_name=False, **kw)

    on(w.tab.select, show_tab, {w.split, w.split.tuneloop_chosen, *w.run_pickers}, [w.split, *w.run_pickers],
       show_progress="hidden")
    on(w.refresh_splits.click, split_picker, {w.split, w.split.tuneloop_chosen}, [w.split])
    # ``input``, not ``change``: only a preset the user picks fills the form; a change fired while the page
    # mounts would overwrite what the user has typed into it since.
    on(w.preset.input, apply_preset, {w.preset}, list(w.form.values()))
    on(w.preflight_btn.click, run_preflight, w.config, [w.message, w.preflight_md, w.example])
    on(w.launch_btn.click, launch, {*w.config, w.run_name, *w.run_pickers}, [w.message, w.run_name, *w.run_pickers])
    on(w.stop_btn.click, stop, set(w.run_pickers), [w.message, *w.run_pickers])
    on(w.resume_btn.click, resume, set(w.run_pickers), [w.message, *w.run_pickers])
    for event in (w.timer.tick, w.selected.change):
        on(event, poll, {*w.run_pickers, w.selected.tuneloop_chosen}, w.polled, show_progress="hidden")
    on(w.compare_btn.click, compare, {w.compare_pick}, [w.compare_plot, w.compare_diff, w.message])
    on(w.export_btn.click, export, {w.selected, w.export_kind}, [w.export_msg, w.export_file])
    on(w.export_cancel.click, cancel_export, None, [w.export_msg])
    on(w.preview_btn.click, template_preview, {w.split, w.base_model, w.seq_len, w.record_id},
       [w.preview_md, w.preview_hl])
    on(w.lengths_btn.click, token_lengths, {w.split, w.base_model, w.seq_len}, [w.tokens_md, w.tokens_plot])
    on(w.lengths_stop_btn.click, stop_token_lengths, None, [w.tokens_md])
    clear_on_input([w.selected], [w.message, w.export_msg])
    clear_on_input([w.split], [w.message, w.preview_md, w.tokens_md])
    serve_ui.wire(ws, w.serve, w.tab)
    return w
