"""Exporting a split in the shapes trl reads: JSONL, CSV, Parquet or a Hugging Face DatasetDict folder.

Example::

    export_split(records, "out/", formats=("jsonl", "parquet", "hf"), shape="prompt_completion")
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

from core.errors import TuneloopError
from curation.data.export import EXPORT_FORMATS, SUFFIXES, check_format, write_splits
from curation.data.records import SPLITS, Record
from curation.splits.fields import field_value

SHAPES = ("messages", "prompt_completion", "input_label")


def training_row(record: Record, shape: str = "messages", *, label_field: str | None = None) -> dict[str, Any]:
    """One row in a trl-readable shape; ``id`` and ``meta`` ride along (trl ignores extra columns).

    messages: ``{"messages": [...]}`` (conversational language modelling);
    prompt_completion: ``{"prompt": [turns before the last answer], "completion": [the last answer]}``;
    input_label: ``{"input": last question, "label": meta[label_field] or the answer}`` (classification,
    extraction).
    """
    if shape == "messages":
        row: dict[str, Any] = {"messages": record.messages}
    elif shape == "prompt_completion":
        last = max((i for i, m in enumerate(record.messages) if m["role"] == "assistant"), default=None)
        if last is None:
            raise TuneloopError(f"record {record.id} has no assistant turn, so it has no completion to train on")
        row = {"prompt": record.messages[:last], "completion": [record.messages[last]]}
    elif shape == "input_label":
        label = field_value(record, label_field) if label_field else record.answer
        row = {"input": record.prompt, "label": "" if label is None else str(label)}
    else:
        raise TuneloopError(f"unknown export shape '{shape}'; choose one of {', '.join(SHAPES)}")
    return {"id": record.id, **row, "meta": record.meta}


def export_split(records: list[Record], outdir: str | Path, *, formats: Iterable[str] = ("jsonl",),
                 shape: str = "messages", label_field: str | None = None,
                 progress: Callable[[float, str], None] | None = None) -> list[Path]:
    """Write each split into ``outdir``: ``train.jsonl``, ``validation.jsonl``, ``test.jsonl`` (likewise
    ``.csv``, ``.parquet``) and/or an HF DatasetDict folder ``hf/`` with those split names.

    ``meta`` is an object in JSONL and a struct in Parquet and the DatasetDict (see ``curation.data.export``).
    ``progress(fraction, text)`` is told every 1,000 rows and before each format; raising from it stops the
    export there (the caller removes ``outdir``: each file is written atomically, so none is half-written)."""
    formats = list(formats)
    for fmt in formats:
        check_format(fmt)
    say = progress or (lambda f, d: None)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, r in enumerate(records):
        if i % 1000 == 0:
            say(0.5 * i / max(len(records), 1), f"shaping records ({i:,} of {len(records):,})")
        if r.split in SPLITS:
            rows.append(training_row(r, shape, label_field=label_field))
    written: list[Path] = []
    chosen = [f for f in EXPORT_FORMATS if f in formats]
    for n, fmt in enumerate(f for f in chosen if f != "hf"):
        say(0.5 + 0.5 * n / len(chosen), f"writing {fmt}")
        written += [outdir / f"{name}{SUFFIXES[fmt]}" for name in write_splits(rows, outdir, fmt).counts]
    if "hf" in formats:
        say(0.5 + 0.5 * (len(chosen) - 1) / len(chosen), "writing hf")
        import shutil

        from core.workspace import atomic_path
        target = outdir / "hf"
        if target.exists():  # a re-export replaces the folder (a folder cannot be renamed over another)
            shutil.rmtree(target)
        with atomic_path(target) as tmp:
            write_splits(rows, tmp, "hf")
        written.append(target)
    return written
