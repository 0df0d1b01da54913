"""Responses from the base model and from a run's adapter, generated ahead of rating.

Both sides come from the process's one warm copy of the base model (``training.inference.warm_base``,
shared with the playground and the automatic metrics): the base responses with every adapter off, the
fine-tuned ones with the run's adapter on, so both use the same tokenizer, chat template and decoding
settings. Prompts go through in batches, shortest first (less padding), answered by the warm model's
engine (llama.cpp on a GGUF base such as the default model, a context per row; else transformers); every
finished batch is stored in the workspace's generation cache, keyed by the model (and the engine when it is
llama.cpp), the adapter, the decoding settings and the prompt, so a cancelled or repeated job picks up where
it was.

Example::

    items = prompts_from_version(ws, "v4", split="test")
    pairs = generate_pairs(ws, items, base_model="default", adapter="runs/3/adapter",
                           settings=DecodingSettings(max_new_tokens=128), progress=print)
    eid = prepare_evaluation(ws, run="3", version="v4", overlap=2)     # generate + create_evaluation
"""
from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from core.errors import TuneloopError
from core.workspace import Workspace
from curation.data.records import Record, canonical_json, new_record_id
from evaluation.arena import EvalItem, create_evaluation
from training.inference import DecodingSettings, WarmBase, adapter_fingerprint, default_pool

Progress = Callable[[int, int, str], None]      # (done, total, what is happening)


class GenerationCancelled(TuneloopError):
    """Generation was stopped; the batches finished before the stop are kept in the cache."""


@dataclass(frozen=True)
class PromptItem:
    """A prompt to answer: the conversation up to and including its last user turn."""
    prompt_id: str
    messages: list[dict[str, str]]
    label: str | None = None
    split: str | None = None


# -- prompts ----------------------------------------------------------------------------------

def record_label(record: Record, label_field: str | None = None) -> str | None:
    """The record's label for per-label results: its meta ``label_field`` (without one: ``label``, else
    ``intent``), as text; None when it has none."""
    label = record.meta.get(label_field) if label_field else record.meta.get("label", record.meta.get("intent"))
    return None if label is None else str(label)


def prompt_from_record(record: Record, label_field: str | None = None) -> PromptItem | None:
    """The record's conversation cut after its last user turn, labelled by ``record_label``; None when it has
    no user turn."""
    last_user = max((i for i, m in enumerate(record.messages) if m["role"] == "user"), default=None)
    if last_user is None:
        return None
    return PromptItem(record.id, record.messages[: last_user + 1], record_label(record, label_field),
                      record.meta.get("split"))


def prompts_from_records(records: Iterable[Record], *, split: str | None = "test", limit: int | None = None,
                         label_field: str | None = None) -> list[PromptItem]:
    records = list(records)
    if split:
        chosen = [r for r in records if r.meta.get("split") == split]
        if not chosen:
            raise TuneloopError(f"no record is in the '{split}' split; build a split first (Splits tab), or rate "
                                f"typed or uploaded prompts")
    else:
        chosen = records
    items = [p for p in (prompt_from_record(r, label_field) for r in chosen) if p is not None]
    return items[:limit] if limit else items


def prompts_from_version(ws: Workspace, version: int | str, *, split: str | None = "test",
                         limit: int | None = None) -> list[PromptItem]:
    """A version's prompts of one split (the test split by default), labelled by the version's label field."""
    from curation.data.versions import load_records
    from curation.review.labels import label_field
    return prompts_from_records(load_records(ws, version), split=split, limit=limit,
                                label_field=label_field(ws, version))


def prompts_from_texts(texts: Iterable[str]) -> list[PromptItem]:
    """Typed prompts, one per entry; blank entries are skipped; ids come from the text."""
    items, seen = [], set()
    for text in texts:
        if text.strip() and text.strip() not in seen:
            seen.add(text.strip())
            messages = [{"role": "user", "content": text.strip()}]
            items.append(PromptItem(new_record_id(messages, salt="typed"), messages))
    if not items:
        raise TuneloopError("no prompts given; type one prompt per line")
    return items


def prompts_from_file(path: str | Path, *, limit: int | None = None) -> list[PromptItem]:
    """Uploaded prompts: any format the importer reads; a test split is used when the file has one."""
    from curation.data.formats import read_records
    records = read_records(path).records
    has_test = any(r.meta.get("split") == "test" for r in records)
    return prompts_from_records(records, split="test" if has_test else None, limit=limit)


# -- runs -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunModels:
    """What a run's responses come from: its base model (as the user named it) and its adapter folder."""
    base_model: str
    adapter: str
    run_id: str | None


def resolve_adapter(ws: Workspace, run: str | Path) -> RunModels:
    """A run id from the run registry, a run folder holding ``adapter/``, or an adapter folder."""
    path = Path(str(run)).expanduser()
    for folder in (path, path / "adapter"):
        if (folder / "adapter_config.json").is_file():
            config = json.loads((folder / "adapter_config.json").read_text())
            base = config.get("base_model_name_or_path")
            if not base:
                raise TuneloopError(f"{folder} does not say which base model it was trained on; name it with --base")
            return RunModels(base_model=str(base), adapter=str(folder.resolve()), run_id=None)
    return _registry_run(ws, str(run))


def _registry_run(ws: Workspace, run_id: str) -> RunModels:
    if not run_id.strip().lstrip("#").removeprefix("run-").isdigit():
        raise TuneloopError(f"'{run_id}' is neither a run id (such as 3) nor a folder holding an adapter")
    from training import registry
    run = registry.get_run(ws, run_id)
    if not (run.adapter_dir / "adapter_config.json").is_file():
        raise TuneloopError(f"run {run.label} has no adapter yet (status: {run.status}); rate it once it has finished")
    return RunModels(base_model=run.base_model, adapter=str(run.adapter_dir), run_id=str(run.id))


# -- generation with the cache ----------------------------------------------------------------

def cache_key(model: WarmBase, settings: DecodingSettings, messages: list[dict[str, str]], *,
              adapter_identity: str | None) -> str:
    """Base responses (``adapter_identity`` None) do not depend on the adapter: every run of a base shares them."""
    parts = [model.identity, settings.to_dict(), messages, adapter_identity or "base"]
    return hashlib.sha256(canonical_json(parts).encode("utf-8")).hexdigest()


def generate_pairs(ws: Workspace, items: list[PromptItem], *, base_model: str, adapter: str | Path,
                   settings: DecodingSettings | None = None, batch_size: int = 8, load_in_4bit: bool = False,
                   progress: Progress | None = None, cancel: threading.Event | None = None) -> list[tuple[str, str]]:
    """(base response, fine-tuned response) for every prompt, from the cache where possible.

    Raises ``GenerationCancelled`` when ``cancel`` is set; the batches done so far stay cached.
    """
    settings = (settings or DecodingSettings()).validate()
    if batch_size < 1:
        raise TuneloopError(f"batch size must be at least 1 (got {batch_size})")
    fingerprint = adapter_fingerprint(adapter)
    with default_pool().hold(ws, base_model, load_in_4bit=load_in_4bit) as model:
        keys = {(i, side): cache_key(model, settings, item.messages,
                                     adapter_identity=fingerprint if side == "finetuned" else None)
                for i, item in enumerate(items) for side in ("base", "finetuned")}
        found = _cached(ws, list(keys.values()))
        todo = [(i, side) for (i, side), key in keys.items() if key not in found]
        total, done = len(keys), len(keys) - len(todo)
        if progress:
            progress(done, total, f"{done} of {total} responses cached")
        if todo:
            names = {"base": None, "finetuned": model.add_adapter(adapter)}
            lengths = model.prompt_lengths([items[i].messages for i, _ in todo])
            for side in ("base", "finetuned"):
                mine = sorted((lengths[n], i) for n, (i, s) in enumerate(todo) if s == side)
                for start in range(0, len(mine), batch_size):
                    if cancel is not None and cancel.is_set():
                        raise GenerationCancelled(f"generation stopped after {done} of {total} responses; "
                                                  f"they are kept, and a new start continues from there")
                    batch = [i for _, i in mine[start:start + batch_size]]
                    replies = model.answer([items[i].messages for i in batch], adapter=names[side], settings=settings)
                    rows = [(keys[(i, side)], reply) for i, reply in zip(batch, replies)]
                    with ws.transaction() as db:
                        db.executemany("insert or replace into generation_cache (key, response) values (?, ?)", rows)
                    found.update(rows)
                    done += len(batch)
                    if progress:
                        who = "fine-tuned" if side == "finetuned" else "base"
                        progress(done, total, f"{done} of {total} responses ({who} model)")
    return [(found[keys[(i, "base")]], found[keys[(i, "finetuned")]]) for i in range(len(items))]


def _cached(ws: Workspace, keys: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        rows = ws.db.execute(f"select key, response from generation_cache where key in ({','.join('?' * len(chunk))})",
                             chunk).fetchall()
        found.update((r[0], r[1]) for r in rows)
    return found


def prepare_evaluation(ws: Workspace, items: list[PromptItem], *, models: RunModels, name: str | None = None,
                       dataset_version: int | None = None, overlap: int = 1, guidelines: str = "",
                       settings: DecodingSettings | None = None, batch_size: int = 8, load_in_4bit: bool = False,
                       progress: Progress | None = None, cancel: threading.Event | None = None,
                       created_by: str | None = None) -> int:
    """Generate both responses for every prompt, then create the evaluation; returns its id."""
    if not items:
        raise TuneloopError("there are no prompts to rate")
    settings = (settings or DecodingSettings()).validate()
    pairs = generate_pairs(ws, items, base_model=models.base_model, adapter=models.adapter, settings=settings,
                           batch_size=batch_size, load_in_4bit=load_in_4bit, progress=progress, cancel=cancel)
    eval_items = [EvalItem(prompt_id=p.prompt_id, messages=p.messages, base_response=base, finetuned_response=tuned,
                           label=p.label, split=p.split) for p, (base, tuned) in zip(items, pairs)]
    from training.models import resolve_base_model
    title = name or (f"run {models.run_id} vs base" if models.run_id else f"{Path(models.adapter).parent.name} vs base")
    return create_evaluation(ws, title, eval_items, base_model=resolve_base_model(models.base_model, ws).name,
                             adapter=models.adapter,
                             run_id=models.run_id, dataset_version=dataset_version, overlap=overlap,
                             guidelines=guidelines, settings=settings.to_dict(), created_by=created_by)
