"""What the Train tab shows about runs, as plain data: the runs table, loss curves, a progress line,
and the config differences between runs. No gradio here, so the CLI and tests can use it too."""
from __future__ import annotations

from typing import Any

from core.options import options_fields
from training.config import RunConfig
from training.registry import Run, read_metrics

RUN_HEADERS = ["run", "name", "status", "step", "train loss", "eval loss (base → last)", "ROUGE-L (base → tuned)",
               "tokens/s", "peak MB", "dataset", "base model", "created (UTC)"]


def _fmt(value, digits=4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else ""


def progress_of(run: Run, rows: list[dict] | None = None) -> dict[str, Any]:
    """Where a run stands: step, max steps, last losses, tokens/s, ETA, peak memory."""
    rows = read_metrics(run) if rows is None else rows
    train = [r for r in rows if r.get("event") == "train"]
    evals = [r for r in rows if r.get("event") in ("eval", "final_eval")]
    base = next((r["eval_loss"] for r in rows if r.get("event") == "base_eval"), None)
    rouge = next((r for r in rows if r.get("event") == "rouge"), {})
    last = train[-1] if train else {}
    phase = next((r for r in reversed(rows) if r.get("event") == "phase"), {})
    return {"phase": phase.get("phase"), "phase_done": phase.get("done"), "phase_total": phase.get("total"),
            "step": last.get("step", 0), "max_steps": last.get("max_steps") or run.metrics.get("max_steps")
            or run.config.max_steps, "loss": last.get("loss"), "eval_loss": evals[-1]["eval_loss"] if evals else None,
            "base_eval_loss": base, "tokens_per_s": last.get("tokens_per_s"), "eta_s": last.get("eta_s"),
            "peak_rss_mb": max((r.get("peak_rss_mb") or 0 for r in rows), default=None) or None,
            "peak_gpu_mb": last.get("peak_gpu_mb"), "rouge_l_base": rouge.get("rouge_l_base"),
            "rouge_l_tuned": rouge.get("rouge_l_tuned"), "rouge_example": run.metrics.get("rouge_example")}


def phase_text(run: Run, p: dict[str, Any] | None = None) -> str:
    """What an active run is doing now, with the phase's own progress: "training: step 6/24 · ETA 2m 10s",
    "ROUGE-L answers 12/24", "loading the model"; a queued run's place in line; empty once it ended."""
    if run.waiting:
        return f"{run.status_text}: it starts when the runs before it have ended"
    if not run.active:
        return ""
    p = progress_of(run) if p is None else p
    if p["phase"] is None:
        return "starting the job"
    if p["phase"] == "training":
        return f"training: step {p['step']}/{p['max_steps'] or '?'} · ETA {describe_eta(p['eta_s'])}"
    return p["phase"] + (f" {p['phase_done']}/{p['phase_total']}" if p["phase_total"] else "")


def runs_table(runs: list[Run]) -> list[list]:
    out = []
    for run in runs:
        p = progress_of(run)
        eval_text = (f"{_fmt(p['base_eval_loss'])} → {_fmt(p['eval_loss'])}" if p["base_eval_loss"] is not None
                     else _fmt(p["eval_loss"]))
        rouge_text = (f"{_fmt(p['rouge_l_base'], 3)} → {_fmt(p['rouge_l_tuned'], 3)}"
                      if p["rouge_l_tuned"] is not None else "")
        out.append([run.id, run.name, run.status_text, f"{p['step']}/{p['max_steps']}", _fmt(p["loss"]), eval_text,
                    rouge_text, _fmt(p["tokens_per_s"], 0), _fmt(p["peak_rss_mb"], 0), run.dataset,
                    run.base_model, run.created_at.replace("T", " ").rstrip("Z")])
    return out


def loss_curves(runs: list[Run]) -> list[dict[str, Any]]:
    """Long-format rows (step, loss, series) for train and eval loss of each run, ready to overlay."""
    rows = []
    several = len(runs) > 1
    for run in runs:
        prefix = f"#{run.id} " if several else ""
        for r in read_metrics(run):
            if r.get("event") == "train" and r.get("loss") is not None:
                rows.append({"step": r["step"], "loss": r["loss"], "series": prefix + "train loss"})
            elif r.get("event") in ("eval", "base_eval") and r.get("eval_loss") is not None:
                rows.append({"step": r["step"], "loss": r["eval_loss"], "series": prefix + "eval loss"})
    return rows


def config_diff(runs: list[Run]) -> tuple[list[str], list[list]]:
    """(headers, rows): the config keys whose values differ between the runs, plus data and model."""
    headers = ["key"] + [run.label for run in runs]
    rows = []
    for key, values in (("dataset", [r.dataset for r in runs]), ("dataset hash", [(r.dataset_hash or "")[:12] for r in runs]),
                        ("base revision", [(r.base_revision or "")[:12] for r in runs])):
        if len(set(values)) > 1:
            rows.append([key, *values])
    for f in options_fields(RunConfig):
        if f.name in ("output_dir", "datasets"):
            continue
        values = [getattr(r.config, f.name) for r in runs]
        if len({repr(v) for v in values}) > 1:
            rows.append([f.name, *[str(v) for v in values]])
    for key in ("base_eval_loss", "best_eval_loss", "final_eval_loss", "rouge_l_base", "rouge_l_tuned", "train_loss"):
        values = [r.metrics.get(key) for r in runs]
        if any(v is not None for v in values):
            rows.append([f"result: {key}", *[_fmt(v) for v in values]])
    return headers, rows


def describe_eta(seconds) -> str:
    if not isinstance(seconds, (int, float)):
        return "—"
    seconds = int(seconds)
    return f"{seconds // 3600}h {seconds % 3600 // 60}m" if seconds >= 3600 else f"{seconds // 60}m {seconds % 60:02d}s"
