"""Exporting a split in the shapes trl reads: JSONL, Parquet or a Hugging Face DatasetDict folder.

Example::

    export_split(records, "out/", formats=("jsonl", "parquet", "hf"), shape="prompt_completion")
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from core.errors import TuneloopError
from curation.data.records import SPLITS, Record, canonical_json
from curation.splits.fields import field_value

SHAPES = ("messages", "prompt_completion", "input_label")
EXPORT_FORMATS = ("jsonl", "parquet", "hf")


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
                 shape: str = "messages", label_field: str | None = None) -> list[Path]:
    """Write each split: ``{split}.jsonl``, ``{split}.parquet`` and/or an HF DatasetDict folder ``hf/``.

    JSONL keeps ``meta`` as an object; Parquet and the DatasetDict keep it as a JSON string, since
    records' meta keys differ and Arrow needs one schema per column.
    """
    from core.workspace import atomic_path, atomic_write

    formats = list(formats)
    unknown = [f for f in formats if f not in EXPORT_FORMATS]
    if unknown:
        raise TuneloopError(f"unknown export format {unknown[0]!r}; choose from {', '.join(EXPORT_FORMATS)}")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    rows = {s: [training_row(r, shape, label_field=label_field) for r in records if r.split == s] for s in SPLITS}
    written: list[Path] = []
    if "jsonl" in formats:
        for s, part in rows.items():
            target = outdir / f"{s}.jsonl"
            atomic_write(target, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in part).encode("utf-8"))
            written.append(target)
    flat = {s: [{**row, "meta": canonical_json(row["meta"])} for row in part] for s, part in rows.items()}
    if "parquet" in formats:
        import pyarrow as pa
        import pyarrow.parquet as pq
        for s, part in flat.items():
            target = outdir / f"{s}.parquet"
            with atomic_path(target) as tmp:
                pq.write_table(pa.Table.from_pylist(part), tmp)
            written.append(target)
    if "hf" in formats:
        import shutil

        from datasets import Dataset, DatasetDict
        target = outdir / "hf"
        dd = DatasetDict({s: Dataset.from_list(part) for s, part in flat.items() if part})
        if target.exists():  # a re-export replaces the folder (a folder cannot be renamed over another)
            shutil.rmtree(target)
        with atomic_path(target) as tmp:
            dd.save_to_disk(str(tmp))
        written.append(target)
    return written
