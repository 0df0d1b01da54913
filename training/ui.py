"""The Train tab: choose a split, a base model and a preset, edit the config, preflight, launch; watch
live loss curves and progress; stop, resume, compare and export runs. Only wiring: the logic lives in
training.config, training.registry, training.preflight, training.run_views and training.export."""
from __future__ import annotations

import html
import json
import tempfile
from pathlib import Path

import gradio as gr
import pandas as pd

from core.errors import TuneloopError
from training import registry as R
from training.config import PRESETS, RunConfig, config_fields, preset_config
from training.run_views import RUN_HEADERS, config_diff, describe_eta, loss_curves, progress_of, runs_table

FORM_SKIP = ("base_model", "datasets")
POLL_SECONDS = 2.0
INTRO = """### Fine-tune a model on a frozen split
Pick a split version, a base model and a preset, check the plan with **Preflight**, then **Launch**. The run
trains in its own process: you can reload this page or restart the app and it keeps going. **Stop** saves a
checkpoint first; **Resume** continues from it."""


def _error(exc: Exception) -> str:
    if isinstance(exc, TuneloopError):
        lines = str(exc).splitlines()
        rest = "\n".join(f"- {html.escape(line.strip())}" for line in lines[1:] if line.strip())
        return f"**⚠️ {html.escape(lines[0])}**" + (f"\n\n{rest}" if rest else "")
    return f"**⚠️ Something went wrong: {html.escape(type(exc).__name__)}: {html.escape(str(exc))}**"


def split_choices(ws) -> list[tuple[str, str]]:
    """Dataset versions, split versions first (those are what training needs)."""
    from curation.data.versions import list_versions
    versions = list(reversed(list_versions(ws)))
    ordered = [v for v in versions if v.step == "split"] + [v for v in versions if v.step != "split"]
    return [(v.describe(), v.name) for v in ordered]


def run_choices(ws) -> list[tuple[str, str]]:
    return [(f"{r.label} · {r.status}", str(r.id)) for r in R.list_runs(ws)]


def default_run(ws) -> str | None:
    runs = R.list_runs(ws)
    active = [r for r in runs if r.active]
    pick = active[0] if active else (runs[0] if runs else None)
    return str(pick.id) if pick else None


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


def build_train_tab(ws) -> None:
    """The Train tab, inside the caller's Blocks."""
    fields = [f for f in config_fields() if f.name not in FORM_SKIP]
    first_preset = next(iter(PRESETS))
    start = preset_config(first_preset)
    with gr.Tab("Train", id="train"):
        gr.Markdown(INTRO)
        with gr.Row():
            split = gr.Dropdown(split_choices(ws), label="Split (dataset version with train/val/test)",
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
            selected = gr.Dropdown(run_choices(ws), value=default_run(ws), label="Run", elem_id="train-run", scale=3)
            stop_btn = gr.Button("Stop (checkpoint, then stop)", elem_id="train-stop-btn", scale=1)
            resume_btn = gr.Button("Resume from last checkpoint", elem_id="train-resume-btn", scale=1)
        status = gr.HTML(status_html(None), elem_id="train-status")
        curve = gr.LinePlot(curves_frame([]), x="step", y="loss", color="series", title="Loss", elem_id="train-curve")
        table = gr.Dataframe(headers=RUN_HEADERS, value=runs_table(R.list_runs(ws)), interactive=False,
                             label="All runs", elem_id="train-runs")
        with gr.Accordion("Compare runs", open=False):
            with gr.Row():
                compare_pick = gr.Dropdown(run_choices(ws), multiselect=True, label="Runs to compare (two or more)",
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

        def form_config(split_value, base_value, *values) -> RunConfig:
            data = {f.name: v for f, v in zip(fields, values)}
            return RunConfig.from_dict({**data, "base_model": base_value or "default", "datasets": split_value or ""})

        def apply_preset(name):
            config = preset_config(name)
            return [gr.update(value=getattr(config, f.name)) for f in fields]

        def do_preflight(split_value, base_value, *values):
            from training.preflight import preflight
            try:
                report = preflight(ws, form_config(split_value, base_value, *values))
            except TuneloopError as exc:
                return _error(exc), "", gr.update(visible=False)
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
            spans = [(text, "trained" if on else None) for text, on in report.example]
            return "", "\n\n".join(lines), gr.update(value=spans, visible=True)

        def do_launch(split_value, base_value, name, *values):
            try:
                run = R.launch_run(ws, form_config(split_value, base_value, *values), name=name or None)
            except TuneloopError as exc:
                return _error(exc), gr.update()
            return (f"Launched **{html.escape(run.label)}**; it loads the model, then the curve starts moving.",
                    gr.update(choices=run_choices(ws), value=str(run.id)))

        def do_stop(run_id):
            try:
                run = R.request_stop(ws, run_id or "")
            except TuneloopError as exc:
                return _error(exc)
            return f"Stop requested for {html.escape(run.label)}: it saves a checkpoint at the end of this step."

        def do_resume(run_id):
            try:
                run = R.resume_run(ws, run_id or "")
            except TuneloopError as exc:
                return _error(exc)
            ckpt = R.last_checkpoint(run)
            return f"Resumed {html.escape(run.label)} from {ckpt.name if ckpt else 'the start'}."

        def refresh(run_id, seen):
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

        def do_compare(run_ids):
            if not run_ids or len(run_ids) < 2:
                return gr.update(), gr.update(), "Choose two or more runs to compare."
            runs = [R.get_run(ws, rid) for rid in run_ids]
            headers, rows = config_diff(runs)
            return (curves_frame(runs), gr.update(value=pd.DataFrame(rows, columns=headers)),
                    "" if rows else "These runs have the same config.")

        def do_export(run_id, kind):
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
                return _error(exc), gr.update(visible=False)
            if kind == "archive":
                return f"Archive of {html.escape(run.label)} ready.", gr.update(value=str(path), visible=True)
            return f"{kind.capitalize()} written to `{path}`.", gr.update(visible=False)

        inputs = [split, base_model, *widgets]
        preset.change(apply_preset, [preset], widgets)
        refresh_splits.click(lambda: gr.update(choices=split_choices(ws)), None, [split])
        preflight_btn.click(do_preflight, inputs, [message, preflight_md, example])
        launch_btn.click(do_launch, [split, base_model, run_name, *widgets], [message, selected])
        stop_btn.click(do_stop, [selected], [message])
        resume_btn.click(do_resume, [selected], [message])
        refresh_outputs = [status, curve, table, selected, compare_pick, choices_seen]
        timer.tick(refresh, [selected, choices_seen], refresh_outputs, show_progress="hidden")
        selected.change(refresh, [selected, choices_seen], refresh_outputs, show_progress="hidden")
        compare_btn.click(do_compare, [compare_pick], [compare_plot, compare_diff, message])
        export_btn.click(do_export, [selected, export_kind], [export_msg, export_file])


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
