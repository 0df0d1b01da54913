"""The Train tab: choose a split, a base model and a preset, edit the config, preflight, launch; watch
live loss curves and progress; stop, resume, compare and export runs; preview how the base model's chat
template renders a record and which tokens are trained. Module-level handlers (they take the workspace
and return the outputs) and presenters; ``build_train_tab`` only creates the widgets and wires them. The
logic lives in training.config, training.registry, training.preflight, training.run_views,
training.export and training.template_preview."""
from __future__ import annotations

import html
import json
import tempfile
from functools import lru_cache
from pathlib import Path

import gradio as gr
import pandas as pd

from core.errors import TuneloopError
from training import registry as R
from training.config import PRESETS, RunConfig, config_fields, preset_config
from training.run_views import RUN_HEADERS, config_diff, describe_eta, loss_curves, progress_of, runs_table
from training.template_preview import (CONTEXT, CUT, TRAINED, default_sequence_len, load_preview_tokenizer,
                                       preview_record, token_length_stats)
from ui.kit import (bind, default_run, error_markdown, refresh_on_select, run_choices, run_picker,
                    version_picker)

FORM_SKIP = ("base_model", "datasets")
POLL_SECONDS = 2.0
INTRO = """### Fine-tune a model on a frozen split
Pick a split version, a base model and a preset, check the plan with **Preflight**, then **Launch**. The run
trains in its own process: you can reload this page or restart the app and it keeps going. **Stop** saves a
checkpoint first; **Resume** continues from it."""


COLORS = {TRAINED: "#16a34a", CONTEXT: "#e5e7eb", CUT: "#f87171"}


def form_fields() -> list:
    """The config fields the form shows (the split and the base model have their own widgets)."""
    return [f for f in config_fields() if f.name not in FORM_SKIP]


def form_config(split_value, base_value, values) -> RunConfig:
    """The run config the form describes."""
    data = {f.name: v for f, v in zip(form_fields(), values)}
    return RunConfig.from_dict({**data, "base_model": base_value or "default", "datasets": split_value or ""})


def status_html(run: R.Run | None) -> str:
    if run is None:
        return "<div id='train-status-box' data-status='none'><em>No run selected. Launch one above.</em></div>"
    p = progress_of(run)
    step, max_steps = p["step"], max(p["max_steps"] or 0, 0)
    memory = f"{p['peak_rss_mb']:,.0f} MB RAM" if p["peak_rss_mb"] else "—"
    if p["peak_gpu_mb"]:
        memory += f", {p['peak_gpu_mb']:,.0f} MB GPU"
    parts = [f"<b>{html.escape(run.label)}</b> · <span class='train-status'>{run.status}</span>",
             f"step {step}/{max_steps or '?'}", f"ETA {describe_eta(p['eta_s']) if run.active else '—'}",
             f"{p['tokens_per_s'] or 0:,.0f} tokens/s", f"peak {memory}"]
    body = [f"<progress value='{step}' max='{max_steps or 1}' style='width:100%'></progress>",
            "<div>" + " · ".join(parts) + "</div>"]
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
    return f"<div id='train-status-box' data-status='{run.status}' data-step='{step}'>" + "".join(body) + "</div>"


def curves_frame(runs: list[R.Run]) -> pd.DataFrame:
    rows = loss_curves(runs)
    return pd.DataFrame(rows, columns=["step", "loss", "series"])


def preflight_markdown(report) -> str:
    """The preflight report: base model, memory against what is available, tokens, steps, warnings."""
    m = report.memory.as_dict()
    stats = report.token_stats
    lines = [f"**Base model:** {report.base_model}",
             f"**Memory:** about **{m['total_gb']} GB** needed (weights {m['weights_gb']}, adapter + optimizer "
             f"{m['adapter_and_optimizer_gb']}, activations {m['activations_gb']}) · **{m['available_gb']} GB** "
             f"available on {m['device']} → {'✅ fits' if m['fits'] else '❌ does not fit'}",
             f"**Tokens:** {stats['conversations']} conversations, {stats['tokens']:,} tokens "
             f"({stats['trained_tokens']:,} trained), mean {stats['mean_len']}, p95 {stats['p95_len']}, "
             f"longest {stats['max_len']}; {stats['cut_at_sequence_len']} cut at sequence_len",
             f"**Steps:** {report.steps_per_epoch} per epoch, {report.total_steps} in all"]
    lines += [f"- ⚠️ {html.escape(w)}" for w in report.warnings]
    return "\n\n".join(lines)


# -- handlers ---------------------------------------------------------------------------------------

def apply_preset(name) -> list:
    """The form's values for a preset."""
    config = preset_config(name)
    return [gr.update(value=getattr(config, f.name)) for f in form_fields()]


def run_preflight(ws, split_value, base_value, *values) -> tuple:
    """(message, report, one example with its trained tokens) for the form's config."""
    from training.preflight import preflight
    try:
        report = preflight(ws, form_config(split_value, base_value, values))
    except TuneloopError as exc:
        return error_markdown(exc), "", gr.update(visible=False)
    spans = [(text, "trained" if on else None) for text, on in report.example]
    return "", preflight_markdown(report), gr.update(value=spans, visible=True)


def launch(ws, split_value, base_value, name, *values) -> tuple:
    """Launch a run of the form's config; the run picker then shows it."""
    try:
        run = R.launch_run(ws, form_config(split_value, base_value, values), name=name or None)
    except TuneloopError as exc:
        return error_markdown(exc), gr.update()
    return (f"Launched **{html.escape(run.label)}**; it loads the model, then the curve starts moving.",
            gr.update(choices=run_choices(ws), value=str(run.id)))


def stop(ws, run_id) -> str:
    try:
        run = R.request_stop(ws, run_id or "")
    except TuneloopError as exc:
        return error_markdown(exc)
    return f"Stop requested for {html.escape(run.label)}: it saves a checkpoint at the end of this step."


def resume(ws, run_id) -> str:
    try:
        run = R.resume_run(ws, run_id or "")
    except TuneloopError as exc:
        return error_markdown(exc)
    ckpt = R.last_checkpoint(run)
    return f"Resumed {html.escape(run.label)} from {ckpt.name if ckpt else 'the start'}."


def poll(ws, run_id, seen) -> tuple:
    """(status, curve, runs table, run picker, compare picker, run ids seen): the selected run (or a running
    one) as it stands; the pickers change only when the runs do."""
    choices = run_choices(ws)
    run = None
    if run_id:
        try:
            run = R.get_run_status(ws, run_id)
        except TuneloopError:
            run = None
    if run is None and not run_id:
        picked = default_run(ws)
        run = R.get_run_status(ws, picked) if picked else None
    changed = [c[1] for c in choices] != seen
    pick_update = gr.update(choices=choices, value=str(run.id) if run else None) if changed or (
        run and not run_id) else gr.update()
    compare_update = gr.update(choices=choices) if changed else gr.update()
    return (status_html(run), curves_frame([run] if run else []), runs_table(R.list_runs(ws)),
            pick_update, compare_update, [c[1] for c in choices])


def compare(ws, run_ids) -> tuple:
    """(overlaid curves, what differs, message) for two or more runs."""
    if not run_ids or len(run_ids) < 2:
        return gr.update(), gr.update(), "Choose two or more runs to compare."
    runs = [R.get_run(ws, rid) for rid in run_ids]
    headers, rows = config_diff(runs)
    return (curves_frame(runs), gr.update(value=pd.DataFrame(rows, columns=headers)),
            "" if rows else "These runs have the same config.")


def export(ws, run_id, kind) -> tuple:
    """(message, download) for a run exported as an adapter folder, a merged model or an archive."""
    from training.export import export_run
    if not run_id:
        return "Choose a run first.", gr.update(visible=False)
    try:
        run = R.get_run(ws, run_id)
        if kind == "archive":
            out = Path(tempfile.mkdtemp(prefix="tuneloop-export-")) / f"run-{run.id}.tar.gz"
        else:
            stamp = len(list(run.run_dir.glob(f"export-{kind}*")))
            out = run.run_dir / (f"export-{kind}" + (f"-{stamp}" if stamp else ""))
        path = export_run(ws, run.id, kind, out)
    except TuneloopError as exc:
        return error_markdown(exc), gr.update(visible=False)
    if kind == "archive":
        return f"Archive of {html.escape(run.label)} ready.", gr.update(value=str(path), visible=True)
    return f"{kind.capitalize()} written to `{path}`.", gr.update(visible=False)


@lru_cache(maxsize=2)
def _tokenizer(model: str, root: str):
    from core.workspace import Workspace
    return load_preview_tokenizer(model, Workspace.open(root))


def split_records(ws, version) -> list:
    """The records of a split version; a version without train/val/test is refused."""
    from curation.data.records import SPLITS
    from curation.data.versions import load_records
    if not version:
        raise TuneloopError("there is no split version yet; build a split in the Splits tab first")
    records = load_records(ws, version)
    if any(r.split not in SPLITS for r in records):
        raise TuneloopError(f"{version} has records without a train/val/test split; build a split first")
    return records


def template_preview(ws, version, model_name, length, rid) -> tuple:
    """(counts, highlighted text): one record rendered with the base model's chat template, the tokens
    training learns from marked, those past the sequence length marked as cut off."""
    try:
        records = split_records(ws, version)
        record = (next((r for r in records if r.id == rid.strip()), None) if rid and rid.strip()
                  else next((r for r in records if r.split == "test"), records[0]))
        if record is None:
            raise TuneloopError(f"there is no record '{rid}' in {version}")
        tokenizer, name = _tokenizer((model_name or "").strip() or "default", str(ws.root))
        preview = preview_record(tokenizer, record, int(length or default_sequence_len()))
    except Exception as exc:
        return error_markdown(exc), gr.update()
    counts = preview.counts()
    md = (f"**{record.id}** ({record.split}) rendered for **{name}**: {counts['tokens']} tokens, "
          f"**{counts['trained']} trained** (assistant turns), {counts['context']} context"
          + (f", ⚠️ {counts['cut off']} cut off past {preview.sequence_len}" if counts["cut off"] else ""))
    return md, [(text, kind) for text, kind in preview.segments]


def token_lengths(ws, version, model_name, length, progress=gr.Progress()) -> tuple:
    """(summary, histogram) of the split's conversations in tokens, against the sequence length."""
    try:
        records = split_records(ws, version)
        tokenizer, name = _tokenizer((model_name or "").strip() or "default", str(ws.root))
        stats = token_length_stats(tokenizer, records, int(length or default_sequence_len()),
                                   progress=lambda f, d: progress(f, desc=d))
    except Exception as exc:
        return error_markdown(exc), gr.update()
    s = stats.summary()
    md = (f"{s['records']:,} conversations for **{name}**: median {s['median']} tokens, p95 {s['p95']}, "
          f"max {s['max']}; **{s['cut off']} ({s['cut off %']}%) longer than the sequence length "
          f"{s['sequence length']}** (red: their ends are cut off in training)")
    return md, pd.DataFrame(stats.histogram())


# -- wiring -----------------------------------------------------------------------------------------

def build_train_tab(ws) -> None:
    """The Train tab, inside the caller's Blocks."""
    fields = form_fields()
    first_preset = next(iter(PRESETS))
    start = preset_config(first_preset)
    quiet = dict(api_name=False)
    with gr.Tab("Train", id="train") as tab:
        gr.Markdown(INTRO)
        with gr.Row():
            split = version_picker(ws, "Split (dataset version with train/val/test)", splits_only=True,
                                   elem_id="train-split", scale=2)
            base_model = gr.Textbox(value="default", label="Base model ('default', a folder, a .gguf file or a hub id)",
                                    elem_id="train-base-model", scale=2)
            preset = gr.Dropdown(list(PRESETS), value=first_preset, label="Preset", elem_id="train-preset", scale=1)
            refresh_splits = gr.Button("↻ splits", scale=0, size="sm")
        with gr.Accordion("Config (axolotl-style keys)", open=False):
            widgets = []
            for chunk in range(0, len(fields), 4):
                with gr.Row():
                    for f in fields[chunk:chunk + 4]:
                        widgets.append(_field_widget(f, getattr(start, f.name)))
        with gr.Accordion("Template preview: what the base model sees, and what it learns from", open=False):
            with gr.Row():
                seq_len = gr.Number(value=default_sequence_len(), precision=0, minimum=16,
                                    label="Sequence length (tokens; training cuts there)", elem_id="train-preview-len")
                record_id = gr.Textbox(label="Record id (empty: the first test record)", elem_id="train-record")
                preview_btn = gr.Button("Preview", elem_id="train-preview-btn")
                lengths_btn = gr.Button("Token lengths of the split", elem_id="train-lengths-btn")
            preview_md = gr.Markdown(elem_id="train-preview-counts")
            preview_hl = gr.HighlightedText(label="Exactly what the model sees (green: trained on)",
                                            color_map=COLORS, show_legend=True, combine_adjacent=True,
                                            elem_id="train-preview")
            tokens_md = gr.Markdown(elem_id="train-lengths")
            tokens_plot = gr.BarPlot(x="tokens", y="records", color="part", title="Tokens per conversation",
                                     color_map={"fits": "#2563eb", CUT: "#f87171"}, x_title="tokens (bin start)")
        with gr.Row():
            run_name = gr.Textbox(label="Run name (optional)", elem_id="train-run-name", scale=3)
            preflight_btn = gr.Button("Preflight", elem_id="train-preflight-btn", scale=1)
            launch_btn = gr.Button("Launch", variant="primary", elem_id="train-launch-btn", scale=1)
        message = gr.Markdown(elem_id="train-message")
        preflight_md = gr.Markdown(elem_id="train-preflight")
        example = gr.HighlightedText(label="One training example: green is what the loss sees", visible=False,
                                     color_map={"trained": "#86efac"}, combine_adjacent=True, elem_id="train-example")

        gr.Markdown("### Runs")
        with gr.Row():
            selected = run_picker(ws, "Run", elem_id="train-run", scale=3)
            stop_btn = gr.Button("Stop (checkpoint, then stop)", elem_id="train-stop-btn", scale=1)
            resume_btn = gr.Button("Resume from last checkpoint", elem_id="train-resume-btn", scale=1)
        status = gr.HTML(status_html(None), elem_id="train-status")
        curve = gr.LinePlot(curves_frame([]), x="step", y="loss", color="series", title="Loss", elem_id="train-curve")
        table = gr.Dataframe(headers=RUN_HEADERS, value=runs_table(R.list_runs(ws)), interactive=False,
                             label="All runs", elem_id="train-runs")
        with gr.Accordion("Compare runs", open=False):
            with gr.Row():
                compare_pick = run_picker(ws, "Runs to compare (two or more)", multiselect=True,
                                          elem_id="train-compare-runs", scale=3)
                compare_btn = gr.Button("Compare", elem_id="train-compare-btn", scale=1)
            compare_plot = gr.LinePlot(curves_frame([]), x="step", y="loss", color="series", title="Loss, overlaid",
                                       elem_id="train-compare-plot")
            compare_diff = gr.Dataframe(label="What differs", interactive=False, elem_id="train-compare-diff")
        with gr.Accordion("Export", open=False):
            with gr.Row():
                export_kind = gr.Radio(["adapter", "merged", "archive"], value="archive", elem_id="train-export-kind",
                                       label="adapter: PEFT folder (PeftModel, vLLM, TGI) · merged: full model "
                                             "folder · archive: .tar.gz download")
                export_btn = gr.Button("Export selected run", elem_id="train-export-btn")
            export_msg = gr.Markdown(elem_id="train-export-msg")
            export_file = gr.File(label="Download", visible=False, elem_id="train-export-file")
        timer = gr.Timer(POLL_SECONDS)
        choices_seen = gr.State([])

    inputs = [split, base_model, *widgets]
    splits_refresh = refresh_on_select(tab, ws, [split])
    refresh_splits.click(splits_refresh, [split], [split], **quiet)
    preset.change(apply_preset, [preset], widgets, **quiet)
    preflight_btn.click(bind(run_preflight, ws), inputs, [message, preflight_md, example], **quiet)
    launch_btn.click(bind(launch, ws), [split, base_model, run_name, *widgets], [message, selected], **quiet)
    stop_btn.click(bind(stop, ws), [selected], [message], **quiet)
    resume_btn.click(bind(resume, ws), [selected], [message], **quiet)
    refresh_outputs = [status, curve, table, selected, compare_pick, choices_seen]
    timer.tick(bind(poll, ws), [selected, choices_seen], refresh_outputs, show_progress="hidden", **quiet)
    selected.change(bind(poll, ws), [selected, choices_seen], refresh_outputs, show_progress="hidden", **quiet)
    compare_btn.click(bind(compare, ws), [compare_pick], [compare_plot, compare_diff, message], **quiet)
    export_btn.click(bind(export, ws), [selected, export_kind], [export_msg, export_file], **quiet)
    preview_btn.click(bind(template_preview, ws), [split, base_model, seq_len, record_id], [preview_md, preview_hl],
                      **quiet)
    lengths_btn.click(bind(token_lengths, ws), [split, base_model, seq_len], [tokens_md, tokens_plot], **quiet)


def _field_widget(f, value):
    meta = f.metadata
    label = f"{f.name}"
    common = {"label": label, "info": meta.get("help"), "elem_id": f"train-cfg-{f.name}"}
    if isinstance(value, bool):
        return gr.Checkbox(value=value, **common)
    if "choices" in meta:
        return gr.Dropdown(list(meta["choices"]), value=value, **common)
    if isinstance(value, int):
        return gr.Number(value=value, precision=0, **common)
    if isinstance(value, float):
        return gr.Number(value=value, **common)
    return gr.Textbox(value=json.dumps(value) if not isinstance(value, str) else value, **common)
