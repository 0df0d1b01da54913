"""Writing exported rows where other tools read them: JSONL, CSV, Parquet or a Hugging Face DatasetDict.

A split version (records carrying ``meta.split``) is written one file per split, named as ``datasets``
and trl name splits: ``train.jsonl``, ``validation.jsonl`` (Tuneloop's ``val``), ``test.jsonl``, in a
folder or in a ``.zip`` / ``.tar.gz`` of that folder. One file holding every split is written only
when asked for (``single_file``): ``load_dataset("json", data_files=FILE)`` reads such a file as one
``train`` split, test set included. A Hugging Face export is a DatasetDict with the same split names.

``meta`` keeps one shape: an object in JSONL, and in Parquet and the DatasetDict a struct column with
one field per key any record has (a record without a key reads back null for it; a key whose values
are of different kinds, say a number in one record and text in another, is written as text in every
record). CSV is flat: a conversation of one question and its answer becomes ``system``, ``prompt``,
``completion`` (a preference pair ``prompt``, ``chosen``, ``rejected``), each meta key its own column
``meta.KEY`` (text as is, anything else as JSON); a longer conversation is refused, since a CSV row
cannot hold it.

Example::

    export_rows([export_row(r) for r in records], "out/v4", "jsonl")          # out/v4/train.jsonl ...
    export_rows(rows, "out/v4.zip", "parquet")                                # a zip of train.parquet ...
    export_rows(rows, "out/v4.jsonl", "jsonl", single_file=True)              # every split in one file
"""
from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from core.errors import TuneloopError
from curation.data.records import SPLITS, canonical_json

EXPORT_FORMATS = ("jsonl", "csv", "parquet", "hf")
SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test"}   # Tuneloop's split → the exported name
ARCHIVES = {".zip": "zip", ".tar.gz": "gztar"}
SUFFIXES = {"jsonl": ".jsonl", "csv": ".csv", "parquet": ".parquet"}


@dataclass
class Export:
    """What an export wrote: the file, folder or archive, the rows per exported split name (``None``: the
    version has no splits), and the meta keys written as text because their values were of different kinds."""
    path: Path
    counts: dict[str | None, int]
    text_keys: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """What was written, for the tab: 'train 80 · validation 10 · test 10'."""
        shown = " · ".join(f"{name} {n:,}" for name, n in self.counts.items() if name) or \
            f"{sum(self.counts.values()):,} rows"
        if self.text_keys:
            shown += f" (meta {', '.join(self.text_keys)} written as text: its values differ in kind)"
        return shown

    def describe(self) -> str:
        """One line for the CLI: 'train 80 · validation 10 · test 10 → out/v4'."""
        return f"{self.summary()} → {self.path}"


def export_name(split: str | None) -> str:
    """The exported name of a Tuneloop split; a row without one trains (as Tuneloop's DPO reads it)."""
    return SPLIT_NAMES.get(split or "train", split or "train")


def rows_by_split(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Rows grouped under their exported split names, train / validation / test first."""
    unknown = sorted({r["meta"].get("split") for r in rows} - {None, *SPLITS}, key=str)
    if unknown:
        raise TuneloopError(f"meta.split is {unknown[0]!r} in some records; a split is one of {', '.join(SPLITS)}: "
                            f"rebuild the split (Splits tab) or correct those records")
    parts: dict[str, list[dict[str, Any]]] = {SPLIT_NAMES[s]: [] for s in SPLITS}
    for row in rows:
        parts[export_name(row["meta"].get("split"))].append(row)
    return {name: part for name, part in parts.items() if part}


def export_rows(rows: list[dict[str, Any]], out: str | Path, fmt: str, *, single_file: bool = False,
                progress: Callable[[float, str], None] | None = None) -> Export:
    """Write ``rows`` (each with a ``meta`` dict) to ``out`` in ``fmt``; see the module docstring for the layout.

    ``out`` named like a file of the format (``.jsonl``, ``.csv``, ``.parquet``) gets one file, which split
    rows are refused unless ``single_file``; otherwise ``out`` is a new (or empty) folder, or an archive named
    ``.zip`` or ``.tar.gz``, holding one file per split (rows without a split: ``train``).

    ``progress(fraction, text)`` is told before each file and before packing; raising from it stops the export
    there with nothing at ``out`` (files are staged beside it and moved into place only at the end)."""
    check_format(fmt)
    say = progress or (lambda f, d: None)
    out = Path(out)
    split = any(r["meta"].get("split") for r in rows)
    archive = next((kind for suffix, kind in ARCHIVES.items() if out.name.endswith(suffix)), None)
    one_file = fmt != "hf" and not archive and out.suffix in SUFFIXES.values()
    if one_file and (single_file or not split):
        say(0.5, f"writing {out.name}")
        write_file(rows, out, fmt)
        return Export(out, {None: len(rows)})
    if one_file:
        counts = ", ".join(f"{name} {len(part):,}" for name, part in rows_by_split(rows).items())
        raise TuneloopError(
            f"{out.name}: these records are a split ({counts}), and one {fmt} file would mix the test set into "
            f"training (load_dataset reads a single file as train). Give a folder or a .zip / .tar.gz to write "
            f"train{SUFFIXES[fmt]}, validation{SUFFIXES[fmt]} and test{SUFFIXES[fmt]}, or ask for one file on "
            f"purpose (--single-file; in the tab, 'one file, test set mixed in')")
    if out.exists() and not (out.is_file() if archive else out.is_dir() and not any(out.iterdir())):
        raise TuneloopError(f"{out} already exists; choose a new {'file' if archive else 'folder'} for the export")
    from core.workspace import atomic_path, temp_path
    staging = temp_path(out, tag="staging")
    try:
        folder = staging / _stem(out)
        folder.mkdir(parents=True)
        result = write_splits(rows, folder, fmt, progress=lambda f, d: say(0.5 + 0.4 * f, d))
        say(0.9, f"packing {out.name}")
        with atomic_path(out) as tmp:
            if archive:
                packed = shutil.make_archive(str(staging / "packed"), archive, root_dir=staging, base_dir=folder.name)
                Path(packed).replace(tmp)
            else:
                folder.replace(tmp)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result.path = out
    return result


def write_splits(rows: list[dict[str, Any]], folder: Path, fmt: str, *,
                 progress: Callable[[float, str], None] | None = None) -> Export:
    """One file per split in ``folder`` (``train.jsonl`` ...), or for ``hf`` the DatasetDict saved in it;
    ``progress`` is told before each file (raising from it stops there)."""
    check_format(fmt)
    say = progress or (lambda f, d: None)
    parts = rows_by_split(rows)
    text_keys = arrow_meta(rows)[1] if fmt in ("parquet", "hf") else []
    if fmt == "hf":
        say(0.0, "writing the dataset")
        write_dataset_dict(parts, folder)
    else:
        schema = arrow_schema(rows) if fmt == "parquet" else None
        for n, (name, part) in enumerate(parts.items()):
            say(n / len(parts), f"writing {name}{SUFFIXES[fmt]}")
            write_file(part, folder / f"{name}{SUFFIXES[fmt]}", fmt, schema=schema)
    return Export(folder, {name: len(part) for name, part in parts.items()}, text_keys)


def check_format(fmt: str) -> None:
    if fmt not in EXPORT_FORMATS:
        raise TuneloopError(f"unknown export format {fmt!r}; choose from {', '.join(EXPORT_FORMATS)}")


def write_file(rows: list[dict[str, Any]], path: Path, fmt: str, *, schema=None) -> None:
    """One JSONL, CSV or Parquet file of ``rows``, written atomically."""
    from core.workspace import atomic_path, atomic_write
    path = Path(path)
    if fmt == "jsonl":
        atomic_write(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8"))
    elif fmt == "csv":
        atomic_write(path, csv_text(rows).encode("utf-8"))
    elif fmt == "parquet":
        import pyarrow.parquet as pq
        table = arrow_table(rows, schema or arrow_schema(rows))
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
    else:
        raise TuneloopError(f"a {fmt} export is a folder, not one file; choose jsonl, csv or parquet")


def write_dataset_dict(parts: dict[str, list[dict[str, Any]]], folder: Path) -> None:
    """A ``datasets.DatasetDict`` (one key per split, one schema for all) saved into ``folder``."""
    from datasets import Dataset, DatasetDict
    from datasets.table import InMemoryTable
    schema = arrow_schema([row for part in parts.values() for row in part])
    dd = DatasetDict({name: Dataset(InMemoryTable(arrow_table(part, schema))) for name, part in parts.items()})
    dd.save_to_disk(str(folder))


# -- Arrow: meta as one struct ----------------------------------------------------------------

def arrow_meta(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Every row's meta with the same keys, ready to be one struct column, and the keys made text.

    Arrow holds one type per struct field, so a key whose values are of different kinds is written as
    text (JSON for what is not text) in every record."""
    import pyarrow as pa
    keys: dict[str, list[Any]] = {}
    for row in rows:
        for key, value in row["meta"].items():
            keys.setdefault(key, []).append(value)
    text_keys = []
    for key, values in keys.items():
        try:
            pa.array([v for v in values if v is not None])
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            text_keys.append(key)
    metas = [{key: _as_text(row["meta"].get(key)) if key in text_keys else row["meta"].get(key) for key in keys}
             for row in rows]
    return metas, text_keys


def arrow_schema(rows: list[dict[str, Any]]):
    """The one Arrow schema every split of an export is written with (meta a struct; no meta column when no
    record has a meta key, since Parquet cannot store a struct without fields)."""
    import pyarrow as pa
    metas, _ = arrow_meta(rows)
    try:
        return pa.Table.from_pylist(_with_meta(rows, metas)).schema
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise TuneloopError(f"the rows do not fit one Arrow schema ({exc}); export as JSONL, which keeps each "
                            f"record as it is") from None


def arrow_table(rows: list[dict[str, Any]], schema):
    import pyarrow as pa
    metas, _ = arrow_meta(rows) if "meta" in schema.names else ([None] * len(rows), [])
    return pa.Table.from_pylist(_with_meta(rows, metas, keep="meta" in schema.names), schema=schema)


def _with_meta(rows, metas, keep: bool | None = None) -> list[dict[str, Any]]:
    keep = any(metas) if keep is None else keep
    out = []
    for row, meta in zip(rows, metas):
        flat = {k: v for k, v in row.items() if k != "meta"}
        if keep:
            flat["meta"] = meta
        out.append(flat)
    return out


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return canonical_json(value)


# -- CSV: flat ---------------------------------------------------------------------------------

def csv_text(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV: text columns first, then ``meta.KEY`` columns in key order."""
    flat = [_csv_row(row) for row in rows]
    columns: dict[str, None] = {}
    for row in flat:
        columns.update(dict.fromkeys(k for k in row if not k.startswith("meta.")))
    columns.update(dict.fromkeys(sorted({k for row in flat for k in row if k.startswith("meta.")})))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return buf.getvalue()


def _csv_row(row: dict[str, Any]) -> dict[str, str]:
    rid = row.get("id", "")
    out: dict[str, str] = {}
    for key, value in row.items():
        if key == "meta":
            out.update({f"meta.{k}": "" if v is None else _as_text(v) for k, v in value.items()})
        elif key == "messages":
            out.update(_csv_turns(rid, value, ("user", "assistant"), ("prompt", "completion")))
        elif key == "prompt" and isinstance(value, list):
            out.update(_csv_turns(rid, value, ("user",), ("prompt",)))
        elif isinstance(value, list):
            out.update(_csv_turns(rid, value, ("assistant",), (key,)))
        else:
            out[key] = "" if value is None else str(value)
    return out


def _csv_turns(rid, turns: list[dict[str, Any]], roles: tuple[str, ...], columns: tuple[str, ...]) -> dict[str, str]:
    """A short conversation as text columns: an optional system turn, then one turn per role in order."""
    system = turns[:1] if turns and turns[0].get("role") == "system" else []
    rest = turns[len(system):]
    shape_ok = (len(rest) <= len(roles) and all(set(t) <= {"role", "content"} for t in turns)
                and [t["role"] for t in rest] == list(roles[:len(rest)]) and rest)
    if not shape_ok:
        raise TuneloopError(f"record {rid}: its {len(turns)} turns ({', '.join(str(t.get('role')) for t in turns)}) "
                            f"do not fit a CSV row, which holds one question and its answer; export it as JSONL or "
                            f"Parquet, which keep whole conversations")
    out = {"system": system[0]["content"]} if system else {}
    out.update({col: t["content"] for col, t in zip(columns, rest)})
    return out


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (*ARCHIVES, *SUFFIXES.values()):
        if name.endswith(suffix):
            return name[:-len(suffix)]
    return name
