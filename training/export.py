"""Export a finished run: the LoRA adapter (loadable with ``PeftModel.from_pretrained`` and by
vLLM/TGI), a merged full-precision model folder, or a .tar.gz archive with the adapter, config and
metrics. Every export is written to a temp path and renamed, so a half-written export never exists.
"""
from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

from core.errors import TuneloopError
from core.workspace import Workspace, atomic_path
from training.registry import Run, get_run, merge_run_json

EXPORT_KINDS = ("adapter", "merged", "archive")


def require_adapter(run: Run) -> Path:
    if not (run.adapter_dir / "adapter_config.json").is_file():
        raise TuneloopError(f"run {run.label} has no adapter yet ({run.status}); only a finished run can be exported"
                            + ("; resume it to finish" if run.status in ("stopped", "failed") else ""))
    return run.adapter_dir


def _fresh_target(out: str | os.PathLike) -> Path:
    target = Path(out).expanduser().resolve()
    if target.exists():
        raise TuneloopError(f"'{target}' already exists; choose a new name for the export")
    return target


def export_adapter(run: Run, out: str | os.PathLike) -> Path:
    """Copy the adapter folder (adapter_config.json, adapter_model.safetensors, tokenizer)."""
    source = require_adapter(run)
    target = _fresh_target(out)
    with atomic_path(target) as tmp:
        shutil.copytree(source, tmp)
    return target


def export_merged(ws: Workspace, run: Run, out: str | os.PathLike) -> Path:
    """The base model in full precision with the adapter merged in: a plain transformers model folder."""
    import torch
    from peft import PeftModel
    from training.models import load_model_and_tokenizer, resolve_base_model
    source = require_adapter(run)
    target = _fresh_target(out)
    resolved = resolve_base_model(run.config.base_model, ws)
    base, tokenizer = load_model_and_tokenizer(resolved, load_in_4bit=False, device="cpu",
                                               dtype="bfloat16" if torch.cuda.is_available() else "float32")
    merged = PeftModel.from_pretrained(base, str(source)).merge_and_unload()
    with atomic_path(target) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return target


def export_archive(run: Run, out: str | os.PathLike) -> Path:
    """A .tar.gz of the adapter, config.yaml and metrics.jsonl (what to hand to a colleague or a server)."""
    source = require_adapter(run)
    target = _fresh_target(out)
    with atomic_path(target) as tmp:
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(source, arcname="adapter")
            for extra in (run.config_path, run.metrics_path):
                if extra.is_file():
                    tar.add(extra, arcname=extra.name)
    return target


def export_run(ws: Workspace, run_id: int | str, kind: str, out: str | os.PathLike) -> Path:
    """Export a run's adapter, merged model or archive to ``out``; recorded among the run's artefacts."""
    run = get_run(ws, run_id)
    if kind in EXPORT_KINDS and (run.adapter_dir / "adapter_config.json").is_file():
        from training.card import write_training_card
        write_training_card(ws, run.id)     # README.md beside the adapter (evaluation's, if it wrote one)
    if kind == "adapter":
        path = export_adapter(run, out)
    elif kind == "merged":
        path = export_merged(ws, run, out)
        shutil.copy2(run.adapter_dir / "README.md", path / "README.md")
    elif kind == "archive":
        path = export_archive(run, out)
    else:
        raise TuneloopError(f"unknown export '{kind}'; choose one of {', '.join(EXPORT_KINDS)}")
    merge_run_json(ws, run.id, "artefacts", {f"export_{kind}": str(path)})
    return path
