"""Reading and writing records in the formats people bring.

Readers accept the public schemas by name (``curation.data.schemas``: chat/OpenAI messages with tool calls,
Alpaca, Dolly, ShareGPT with tool turns, prompt/completion, OASST trees, and preference pairs in trl's and
LLaMA-Factory's shapes) from JSONL, a JSON array, Parquet, CSV or a Hugging Face ``save_to_disk`` folder.
The schema is detected from the first record and can be forced; a column mapping (``prompt=question,
completion=answer``) renames a file's columns to the fields a schema reads, for every file type.

Every problem is reported with the file, the line (or row) and the field; by default an import with any
error imports nothing. With ``skip_bad`` the good records are read and every bad one is listed in
``ImportResult.skipped`` with where it was and why. Warnings (a conversation without an assistant turn)
do not block it. Input past a reader's limits (the size cap, JSON nested deeper than Python can read, a
CSV field over csv's field limit) is refused with one line naming the file, the line and the limit; a
pipe or device is read only up to the size cap. JSONL, Parquet and dataset folders are read a row at a
time, so memory holds the records made, not the file's text as well.

Example::

    result = read_records("tickets.jsonl")          # raises InputProblem listing every bad line
    result.records[0].messages, result.format, result.warnings
    read_records("alpaca_data.json", skip_bad=True).skipped   # [("item 17", "output is empty"), ...]
"""
from __future__ import annotations

import csv
import functools
import io
import json
import os
import re
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import orjson

from core.errors import InputProblem, TuneloopError
from curation.data.records import ROLES, Record
from curation.data.schemas import (CONSUMED, EXPECTED, SCHEMAS, OasstTrees, Parsed, Problems, convert_row,
                                   derived_id, detect_schema)

FORMATS = SCHEMAS + ("csv",)
DEFAULT_MAX_MB = float(os.environ.get("TUNELOOP_MAX_IMPORT_MB", "500"))
# The fields a column mapping can fill, and the CSV columns recognised for them without one.
CSV_ALIASES = {
    "id": ("id", "record_id", "uid"),
    "system": ("system", "system_prompt"),
    "prompt": ("prompt", "question", "user", "query", "instruction", "input_text"),
    "input": ("input", "context"),
    "completion": ("completion", "answer", "response", "assistant", "output", "reply"),
    "messages": (),
    "chosen": (),
    "rejected": (),
}
_PROGRESS_EVERY = 5000
_UNMADE = object()    # a block's columns not made yet
_NO_ANSWER = "the conversation has no assistant turn; it cannot teach an answer until one is added"
PREVIEW_RECORDS = 20


@dataclass
class ImportResult:
    """What a file holds: its records (chat records, or preference pairs), the schema read, warnings,
    and the records left out with ``skip_bad`` as (where, reason)."""
    records: list[Record]
    format: str
    warnings: list[str] = field(default_factory=list)
    source: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    count: int | None = None    # records read; with a ``sink``, ``records`` holds only the first PREVIEW_RECORDS

    def __post_init__(self):
        if self.count is None:
            self.count = len(self.records)

    @property
    def kind(self) -> str:
        """``preference`` for prompt/chosen/rejected pairs, else ``sft``."""
        return "preference" if self.records and self.records[0].is_preference else "sft"


class _InBlock(str):
    """Where an id derived in a block was read ("line 17"): the id is among the block's columns too."""


class ReadAgain(Exception):
    """Raised by ``read_records`` with a ``batch_sink`` when an id read in a block repeats another: what the sinks
    took is void; read the file again without ``batch_sink`` (a line at a time), which reports the repeat exactly."""


@dataclass
class _Row:
    where: str          # "line 17", "item 17" or "row 17"
    data: Any
    error: str | None = None     # the row could not even be parsed
    done: float | None = None    # the fraction of the input read once this row was
    raw: bytes | None = None     # the line, when orjson read it: a float in ``data`` may be an integer past 64 bits


# -- entry points -----------------------------------------------------------------------------

def read_records(path: str | os.PathLike, *, format: str | None = None,
                 column_map: dict[str, str] | None = None, max_mb: float | None = None,
                 limit: int | None = None, progress=None, skip_bad: bool = False, sink=None,
                 batch_sink=None) -> ImportResult:
    """Read and validate every record in ``path``; raise ``InputProblem`` listing all problems.

    ``format`` forces one of FORMATS; ``column_map`` maps fields (id, system, prompt, input, completion,
    messages, chosen, rejected) to the file's column names; ``limit`` reads only the first rows (for
    previews); ``skip_bad`` reads the good records and lists the bad ones in ``skipped`` instead of
    refusing the file; ``progress(fraction, text)`` is called as rows are read. ``sink(record)``, if given,
    takes each good record as it is read (an import writes them out in batches), and the result keeps only
    the first ``PREVIEW_RECORDS``; a problem found later still raises, so the caller drops what it wrote.
    ``batch_sink(ids, messages, meta)``, given beside ``sink``, takes a run of good records of a JSONL file
    already in Tuneloop's own shape as Arrow columns (the ids, and ``messages`` and ``meta`` as canonical JSON text),
    read a block of lines at a time by pyarrow (``curation.data.jsonl_blocks``);
    every other line still goes to ``sink``, in file order. If an id read so repeats another, ``ReadAgain`` is
    raised at the end: the caller drops what it wrote and reads again without ``batch_sink``.
    """
    path = Path(path)
    name = path.name
    if not path.exists():
        raise TuneloopError(f"{path}: no such file or folder")
    if format is not None and format not in FORMATS:
        raise TuneloopError(f"unknown format '{format}'; choose one of {', '.join(FORMATS)}")
    max_mb = DEFAULT_MAX_MB if max_mb is None else max_mb
    _check_size(path, max_mb)
    is_csv = path.suffix.lower() in (".csv", ".tsv")
    csv_mode = format == "csv" or is_csv
    reader = _Reader(None if format in (None, "csv") else format, skip_bad=skip_bad, source=name, sink=sink,
                     batch_sink=batch_sink if sink is not None else None)
    blocks = None
    if reader.batch_sink is not None and not column_map and not csv_mode and limit is None:
        blocks = reader.wants_block
    rows = _iter_rows(path, column_map=column_map, limit=limit, max_mb=max_mb, csv_mode=csv_mode, blocks=blocks)
    if column_map and not csv_mode:
        rows = _mapped(rows, column_map, name)
    reported = 0
    for row in rows:
        if type(row) is _Row:
            reader.add(row)
        else:
            reader.add_block(row)
        if progress and reader.rows - reported >= _PROGRESS_EVERY:
            reported = reader.rows - reader.rows % _PROGRESS_EVERY
            progress(0.9 * (row.done or 0.0), f"read {reader.rows:,} records")
    return reader.finish("csv" if is_csv else None)


def detect_format(first: Any, *, where: str = "line 1", source: str = "") -> str:
    """The schema of a row, from its keys."""
    if not isinstance(first, dict):
        raise InputProblem([f"{where}: expected a JSON object per record, got {type(first).__name__}"],
                           source=source)
    schema = detect_schema(set(first))
    if schema is None:
        raise InputProblem([
            f"{where}: cannot tell the format from the fields {sorted(first)}; expected {EXPECTED}; choose the "
            f"format explicitly, or map your columns (e.g. prompt=question,completion=answer)"], source=source)
    return schema


class _Reader:
    """Turns rows into records one at a time: detects the schema from the first good row, checks each row,
    keeps ids unique, and either collects every problem or (``skip_bad``) the bad rows as skipped."""

    def __init__(self, schema: str | None, *, skip_bad: bool, source: str, sink=None, batch_sink=None):
        self.schema = "messages" if schema == "openai" else schema
        self.forced = schema
        self.skip_bad, self.source = skip_bad, source
        self.problems = Problems()
        self.records: list[Record] = []
        self.sink, self.batch_sink, self.count = sink, batch_sink, 0
        self.skipped: list[tuple[str, str]] = []
        self.seen_ids: dict[str, str] = {}       # id -> where it was first read (not those read in blocks)
        self.block_ids: list = []                # the ids read in blocks, as Arrow columns
        self.next_suffix: dict[str, int] = {}    # a derived id seen again: the suffix to try first next time
        self.trees: OasstTrees | None = None
        self.rows = 0

    def add(self, row: _Row) -> None:
        self.rows += 1
        before = len(self.problems.errors)
        if row.error:
            self.problems.error(row.where, row.error)
        elif self.schema is None and not isinstance(row.data, dict):
            raise InputProblem([f"{row.where}: expected a JSON object per record, got {type(row.data).__name__}"],
                               source=self.source)
        elif not isinstance(row.data, dict):
            self.problems.error(row.where, f"expected a JSON object, got {type(row.data).__name__}")
        else:
            if self.schema is None:
                self.schema = detect_format(row.data, where=row.where, source=self.source)
            self._convert(row)
        self._settle(before)

    def _convert(self, row: _Row) -> None:
        where, data = row.where, row.data
        plain = _plain_messages(data.get("messages")) if self.schema == "messages" else None
        if row.raw is not None and _holds_float(data, skip="messages" if plain is not None else None):
            data = json.loads(row.raw)   # orjson reads 2**64 as a float; json keeps such integers exact
            plain = _plain_messages(data.get("messages")) if self.schema == "messages" else None
        if plain is not None:
            self._record(where, data, Parsed(plain))
            return
        if self.schema == "oasst":
            if self.trees is None:
                self.trees = OasstTrees()
            if isinstance(data.get("prompt"), dict):
                self.trees.add_tree(data, where, self.problems)
            else:
                self.trees.add(data, where, self.problems)
            return
        before = len(self.problems.errors)
        parsed = convert_row(self.schema, data, where, self.problems)
        if parsed is None or len(self.problems.errors) > before:
            return
        self._record(where, data, parsed)

    def _record(self, where: str, data: dict, parsed: Parsed) -> None:
        """The record of a row whose turns have been read: its meta and id checked, kept."""
        meta = self._meta(data, where)
        if meta is None:
            return
        rid = data.get("id", meta.pop("id", None))
        if rid is not None and rid != "" and (not isinstance(rid, (str, int)) or isinstance(rid, bool)):
            self.problems.error(where, f"id must be a string or a number, got {type(rid).__name__}")
            return
        if parsed.chosen is None and not any(m["role"] == "assistant" for m in parsed.messages):
            self.problems.warn(where, _NO_ANSWER)
        record = Record(id="" if rid in (None, "") else str(rid), messages=parsed.messages, meta=meta,
                        chosen=parsed.chosen, rejected=parsed.rejected)
        self._keep(record, where, derived=rid in (None, ""))

    def _meta(self, data: dict, where: str) -> dict | None:
        """The row's ``meta`` object (or its JSON text) with every key the schema does not read."""
        meta = data.get("meta") if data.get("meta") is not None else {}
        if isinstance(meta, str):
            try:
                meta = json.loads(meta)
            except (json.JSONDecodeError, RecursionError):
                pass
        if not isinstance(meta, dict):
            self.problems.error(where, f"meta must be an object, got {type(data.get('meta')).__name__}")
            return None
        consumed = _consumed(self.schema)
        extra = [k for k in data if k not in consumed]
        merged = {**{k: data[k] for k in extra if data[k] is not None}, **meta} if extra else meta
        return {sys.intern(k): v for k, v in merged.items()}   # one key string for a million records, not a million

    def _keep(self, record: Record, where: str, *, derived: bool) -> None:
        if derived:
            record.id = derived_id(record.messages, record.chosen)
        if record.id in self.seen_ids:
            if not derived:
                self.problems.error(where, f"id '{record.id}' repeats {self.seen_ids[record.id]}; ids must be unique")
                return
            # The same content twice without ids: keep both (dedup decides), with distinct stable ids.
            # The smallest free suffix: those below the last one given for this id are taken (ids are never freed).
            base = record.id
            k = self.next_suffix.get(base, 2)
            while f"{base}-{k}" in self.seen_ids:
                k += 1
            self.next_suffix[base] = k + 1
            record.id = f"{base}-{k}"
        self.seen_ids[record.id] = where
        self.count += 1
        if self.sink is None or len(self.records) < PREVIEW_RECORDS:
            self.records.append(record)
        if self.sink is not None:
            self.sink(record)

    # -- blocks of JSONL lines read by pyarrow ---------------------------------------------------

    def wants_block(self) -> bool:
        """Whether the next lines may come as a block: the file is chat records (detected from the rows read one by
        one so far) and the preview is full, so that a block's records are needed only as columns."""
        return self.schema == "messages" and len(self.records) >= PREVIEW_RECORDS and self.batch_sink is not None

    def add_block(self, block) -> None:
        """The lines of a ``jsonl_blocks.Block``: runs of rows already in Tuneloop's shape go to ``batch_sink`` as
        columns, every other line is read as ``add`` reads it (the same record, problem or warning, in file order)."""
        from curation.data.jsonl_blocks import prepare
        lines, columns = prepare(block.data)
        self._add_lines(block, lines, 0, lines.count, columns)

    def _add_lines(self, block, lines, a: int, b: int, columns=_UNMADE) -> None:
        from curation.data.jsonl_blocks import SMALLEST_BLOCK, block_columns
        if columns is _UNMADE:
            columns = block_columns(lines, a, b) if b - a >= SMALLEST_BLOCK else None
        if columns is None:
            if b - a >= 2 * SMALLEST_BLOCK:   # one odd line spoils pyarrow's read of its block: halve it
                middle = (a + b) // 2
                self._add_lines(block, lines, a, middle)
                self._add_lines(block, lines, middle, b)
            else:
                self._add_slow(block, lines, a, b)
            return
        slow = columns.slow
        i = a
        while i < b:
            if slow[i - a]:
                j = i + 1
                while j < b and slow[j - a]:
                    j += 1
                self._add_slow(block, lines, i, j)
            else:
                j = i + 1
                while j < b and not slow[j - a]:
                    j += 1
                self._add_fast(block, lines, columns, i, j, a)
            i = j

    def _add_slow(self, block, lines, a: int, b: int) -> None:
        for i in range(a, b):
            row = _line_row(lines.line(i), block.first_line + i, block.done, block.path)
            if row is not None:
                self.add(row)

    def _add_fast(self, block, lines, columns, a: int, b: int, base: int) -> None:
        """Rows a..b of the block, each a good record, kept as columns. Their ids are not checked against the others
        here (a dict of a million ids costs more than reading them): ``finish`` checks them all at once. An id derived
        from the turns is kept in ``seen_ids``, as the line reader keeps it; one that repeats an id seen is read by
        the line reader, which tells it apart (``-2``)."""
        import numpy as np
        start = a
        rows = columns.derived_rows
        for k in rows[np.searchsorted(rows, a - base):np.searchsorted(rows, b - base)].tolist() if len(rows) else ():
            i, rid = k + base, columns.derived[k]
            if rid in self.seen_ids:
                if start < i:
                    self._emit(block, columns, start, i, base)
                self._add_slow(block, lines, i, i + 1)
                start = i + 1
            else:
                self.seen_ids[rid] = _InBlock(f"line {block.first_line + i}")
        if start < b:
            self._emit(block, columns, start, b, base)

    def _emit(self, block, columns, a: int, b: int, base: int) -> None:
        first_line = block.first_line
        for k in columns.no_answer[a - base:b - base].nonzero()[0].tolist():
            self.problems.warn(f"line {first_line + a + k}", _NO_ANSWER)
        self.rows += b - a
        self.count += b - a
        ids = columns.ids[a - base:b - base]
        self.block_ids.append(ids)
        self.batch_sink(ids, columns.messages[a - base:b - base], columns.meta[a - base:b - base])

    def _check_block_ids(self) -> None:
        """Every id read in blocks differs from every other id kept; if one repeats, the file is read again a line
        at a time (``ReadAgain``), which names the line it repeats."""
        if not self.block_ids:
            return
        import pyarrow as pa
        import pyarrow.compute as pc
        from curation.data.jsonl_blocks import text_array
        kept = [rid for rid, where in self.seen_ids.items() if type(where) is not _InBlock]
        ids = pa.chunked_array(self.block_ids + [text_array(kept)], pa.string())
        if pc.count_distinct(ids).as_py() != len(ids):
            raise ReadAgain("an id repeats")

    def _settle(self, before: int) -> None:
        """With ``skip_bad``, the problems found since ``before`` become skipped records, one per place."""
        if not self.skip_bad or len(self.problems.errors) == before:
            return
        found = self.problems.errors[before:]
        del self.problems.errors[before:]
        by_place: dict[str, list[str]] = {}
        for problem in found:
            where, _, reason = problem.partition(": ")
            by_place.setdefault(where, []).append(reason)
        self.skipped += [(where, "; ".join(reasons)) for where, reasons in by_place.items()]

    def finish(self, shown_format: str | None) -> ImportResult:
        self._check_block_ids()
        if self.rows == 0:
            raise InputProblem([f"{self.source} holds no records (the file is empty)"], source=self.source)
        if self.trees is not None:
            before = len(self.problems.errors)
            for where, rid, messages, meta in self.trees.conversations(self.problems):
                self._keep(Record(id=rid, messages=messages, meta=meta), where, derived=False)
            self._settle(before)
        if self.problems.errors:
            raise InputProblem(self.problems.errors, source=self.source)
        if not self.count:
            reasons = [f"{where}: {reason}" for where, reason in self.skipped]
            raise InputProblem(reasons or [f"{self.source} holds no records"], source=self.source)
        return ImportResult(records=self.records, format=shown_format or self.forced or self.schema,
                            warnings=self.problems.warnings, source=self.source, skipped=self.skipped,
                            count=self.count)


_TURN_ROLES = {role: role for role in ROLES}


@functools.lru_cache(maxsize=None)
def _consumed(schema: str) -> frozenset[str]:
    """The keys of a row the schema reads (the others go to meta)."""
    return frozenset(CONSUMED.get(schema, set()) | {"id", "meta", "system"})


def _plain_messages(value) -> list[dict[str, str]] | None:
    """The turns of a row already in Tuneloop's own shape (every turn exactly {role, content} with a known role and
    text that is not blank), as ``messages_field`` would give them; None for anything else, which
    ``messages_field`` then reads, reporting what is wrong as always. Most big files are this shape, and the
    check is a fraction of the general one."""
    if type(value) is not list or not value:
        return None
    turns = []
    for msg in value:
        if type(msg) is not dict or len(msg) != 2:
            return None
        role, content = msg.get("role"), msg.get("content")
        if type(role) is not str or type(content) is not str or not content or content.isspace():
            return None
        role = _TURN_ROLES.get(role)
        if role is None:
            return None
        turns.append({"role": role, "content": content})
    return turns


def _holds_float(value, skip: str | None = None) -> bool:
    """Whether a value read from JSON holds a float anywhere (but under the key ``skip`` of an object)."""
    kind = type(value)
    if kind is float:
        return True
    if kind is dict:
        value = [v for k, v in value.items() if k != skip] if skip else value.values()
    elif kind is not list:
        return False
    for item in value:
        kind = type(item)
        if kind is float or ((kind is dict or kind is list) and _holds_float(item)):
            return True
    return False


def parse_column_map(text: str | None) -> dict[str, str] | None:
    """``"prompt=question,completion=answer"`` → ``{"prompt": "question", "completion": "answer"}``."""
    if not text:
        return None
    mapping = {}
    for part in text.split(","):
        if "=" not in part:
            raise TuneloopError(f"column mapping '{part}' must look like field=column, e.g. prompt=question")
        role, column = (s.strip() for s in part.split("=", 1))
        if role not in CSV_ALIASES:
            raise TuneloopError(f"column mapping: unknown field '{role}'; use {', '.join(CSV_ALIASES)}")
        mapping[role] = column
    return mapping


def map_columns(data: dict, mapping: dict[str, str]) -> tuple[dict, str | None]:
    """The row with its mapped columns renamed to the fields they fill (an ``input`` column joins the prompt
    after a blank line), and the problem if a mapped column is missing from it."""
    missing = [column for column in mapping.values() if column not in data]
    if missing:
        return data, f"column(s) {missing} of the column mapping are missing here; the record has {sorted(data)}"
    out = {k: v for k, v in data.items() if k not in mapping.values()}
    for role, column in mapping.items():
        out[role] = data[column]
    if "input" in mapping and "prompt" in out:   # without a prompt, Alpaca's own 'input' field reads it
        extra = out.pop("input")
        if isinstance(extra, str) and extra.strip() and isinstance(out["prompt"], str):
            out["prompt"] = f"{out['prompt']}\n\n{extra}"
    return out, None


def _mapped(rows: Iterable[_Row], mapping: dict[str, str], source: str) -> Iterator[_Row]:
    """Rows with the column mapping applied; a mapped column the first record lacks refuses the file."""
    checked = False
    for row in rows:
        if row.error is None and isinstance(row.data, dict):
            if not checked:
                unknown = [column for column in mapping.values() if column not in row.data]
                if unknown:
                    raise InputProblem([f"{row.where}: the column mapping names {unknown}, not among the columns "
                                        f"{sorted(row.data)}; map fields to these columns"], source=source)
                checked = True
            row.data, row.error = map_columns(row.data, mapping)
        yield row


# -- containers -------------------------------------------------------------------------------

_RAISE_LIMIT = "split the file, or raise the limit (--max-mb, or TUNELOOP_MAX_IMPORT_MB)"


def _check_size(path: Path, max_mb: float) -> None:
    """Refuse a file or folder over the cap before reading it (a pipe or device has no size: see _read_capped)."""
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
    if size > max_mb * 1024 * 1024:
        raise TuneloopError(f"{path.name} is {size / 1024 / 1024:.1f} MB, over the import limit of {max_mb:g} MB; "
                            f"{_RAISE_LIMIT}")


def _over_cap(path: Path, max_mb: float) -> TuneloopError:
    return TuneloopError(f"{path.name} holds more than the import limit of {max_mb:g} MB (reading stopped at the "
                         f"limit; nothing was imported); {_RAISE_LIMIT}")


def _read_capped(fh, path: Path, max_mb: float) -> bytes:
    """The rest of ``fh``, reading no more than the cap: a pipe or device (whose size is unknown until it
    ends, or never ends) is refused as soon as it passes the cap."""
    cap = int(max_mb * 1024 * 1024)
    raw = fh.read(cap + 1)
    if len(raw) > cap:
        raise _over_cap(path, max_mb)
    return raw


def _iter_rows(path: Path, *, column_map, limit, max_mb, csv_mode, blocks=None) -> Iterator[_Row]:
    if path.is_dir():
        yield from _iter_hf_folder(path, limit)
        return
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _iter_parquet(path, limit)
    elif csv_mode:
        yield from _iter_csv(path, column_map, limit, max_mb)
    else:
        yield from _iter_json(path, limit, max_mb, blocks)


def _utf8_problem(raw: bytes, exc: UnicodeDecodeError, first_line: int = 1) -> str:
    line = first_line + raw.count(b"\n", 0, exc.start)
    col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
    return (f"line {line}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {col}); save the file as UTF-8 "
            "and import it again")


def _decode(raw: bytes, path: Path) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputProblem([_utf8_problem(raw, exc)], source=path.name) from None
    return text.lstrip("\ufeff")


def _too_deep(source: str, where: str = "") -> TuneloopError:
    return TuneloopError(f"{source}{' ' + where if where else ''}: JSON nested deeper than Python reads (about "
                         f"{sys.getrecursionlimit():,} levels of [ and {{); a record is a few levels deep, so the "
                         f"line is damaged or not a record; nothing was imported")


def _iter_json(path: Path, limit, max_mb, blocks=None) -> Iterator[_Row]:
    """A JSON array (read whole), or JSONL read a line at a time; while ``blocks()`` says so (the reader takes
    them), the lines after the first come as ``jsonl_blocks.Block``s of about ``BLOCK_BYTES`` instead."""
    size = path.stat().st_size if stat.S_ISREG(path.stat().st_mode) else None
    with path.open("rb") as fh:
        if fh.peek(4096)[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
            yield from _iter_json_array(_decode(_read_capped(fh, path, max_mb), path), path, limit)
            return
        cap = int(max_mb * 1024 * 1024)
        read = count = lineno = 0
        while True:
            if blocks is not None and lineno and blocks():
                yield from _iter_blocks(fh, path, lineno, read, size, cap, max_mb)
                return
            raw = fh.readline()
            if not raw:
                return
            lineno += 1
            read += len(raw)
            if read > cap:
                raise _over_cap(path, max_mb)
            row = _line_row(raw, lineno, read / size if size else None, path)
            if row is None:
                continue
            yield row
            count += 1
            if limit and count >= limit:
                return


def _iter_blocks(fh, path: Path, lineno: int, read: int, size: int | None, cap: int, max_mb: float):
    """The rest of a JSONL file as ``jsonl_blocks.Block``s. (Making a block's columns in a second thread while the
    reader takes the one before was measured here: no faster on this loaded 2-core machine, so it is not done.)"""
    from curation.data.jsonl_blocks import BLOCK_BYTES, Block
    while True:
        data = fh.read(min(BLOCK_BYTES, cap - read + 1))    # a pipe is read no further than the cap
        if not data:
            return
        if not data.endswith(b"\n"):
            data += fh.readline(max(cap - read - len(data) + 1, 0))
        read += len(data)
        if read > cap:
            raise _over_cap(path, max_mb)
        yield Block(lineno + 1, data, read / size if size else None, path)
        lineno += data.count(b"\n") + (not data.endswith(b"\n"))


def _line_row(raw: bytes, lineno: int, done: float | None, path: Path) -> _Row | None:
    """A JSONL line as a row (orjson reads it; json what orjson refuses), or None for a blank line."""
    try:
        return _Row(f"line {lineno}", orjson.loads(raw), done=done, raw=raw)
    except orjson.JSONDecodeError:
        return _json_line(raw, lineno, done, path)   # json's own message, or what orjson refuses and json reads


def _json_line(raw: bytes, lineno: int, done: float | None, path: Path) -> _Row | None:
    """A line orjson refused, read by json as before: its record, or its problem (json's own message: invalid UTF-8,
    bad JSON), or None for a blank line; NaN and a BOM on the first line are read as json reads them."""
    where = f"line {lineno}"
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _Row(where, None, error=_utf8_problem(raw, exc, lineno).partition(": ")[2], done=done)
    if lineno == 1:
        line = line.lstrip("\ufeff")
    if not line.strip():
        return None
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        return _Row(where, None, error=f"not valid JSON ({exc.msg} at column {exc.colno})", done=done)
    except RecursionError:
        raise _too_deep(path.name, where) from None
    problem = _surrogate_problem(data) if _SURROGATE_ESCAPE.search(line) else None
    return _Row(where, None if problem else data, error=problem, done=done)


# A \uD800-\uDFFF escape: JSON allows one alone, but it is half of a character that cannot be stored as text.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _surrogate_problem(value, field: str = "") -> str | None:
    """What to tell the user when a string in ``value`` holds half of a UTF-16 surrogate pair (JSON's
    ``\\ud800`` alone), naming the field; None when every string is whole text."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return (f"{field or 'the value'} holds an unpaired UTF-16 surrogate (\\u{ord(value[exc.start]):04x} at "
                    f"character {exc.start + 1}), half of a character: the text was cut or mis-encoded where the "
                    f"file was made; remove the escape or write the whole character")
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        problem = _surrogate_problem(item, f"{field}[{key}]" if isinstance(key, int) else
                                     f"{field}.{key}" if field else str(key))
        if problem:
            return problem
    return None


def _iter_json_array(text: str, path: Path, limit) -> Iterator[_Row]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputProblem([f"line {exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno})"],
                           source=path.name) from None
    except RecursionError:
        raise _too_deep(path.name) from None   # one document: no line to name
    total = len(items)
    halves = bool(_SURROGATE_ESCAPE.search(text))
    for i in range(min(total, limit or total)):
        item, items[i] = items[i], None   # let each item go once it is read
        problem = _surrogate_problem(item) if halves else None
        yield _Row(f"item {i + 1}", None if problem else item, error=problem, done=(i + 1) / total)


def _iter_parquet(path: Path, limit) -> Iterator[_Row]:
    if not stat.S_ISREG(path.stat().st_mode):
        raise TuneloopError(f"{path.name}: a Parquet file must be a regular file (it is read by seeking), not a "
                            f"pipe or device; copy it to a file first")
    import pyarrow.parquet as pq
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise TuneloopError(f"{path.name}: not a readable Parquet file ({exc})") from None
    total = max(1, parquet.metadata.num_rows)
    i = 0
    for batch in parquet.iter_batches(batch_size=10_000):
        for item in batch.to_pylist():
            i += 1
            yield _Row(f"row {i}", item, done=i / total)
            if limit and i >= limit:
                return


def _iter_hf_folder(path: Path, limit) -> Iterator[_Row]:
    if not any(path.glob("**/dataset_info.json")) and not (path / "dataset_dict.json").exists():
        raise TuneloopError(f"{path.name}: a folder must be a Hugging Face dataset saved with save_to_disk")
    from datasets import Dataset, DatasetDict, load_from_disk
    loaded = load_from_disk(str(path))
    parts = loaded.items() if isinstance(loaded, DatasetDict) else [(None, loaded)]
    total = max(1, sum(len(ds) for _, ds in parts))
    count = 0
    for split_name, ds in parts:
        assert isinstance(ds, Dataset)
        for i, item in enumerate(ds, start=1):
            if split_name:
                item = dict(item)
                item.setdefault("meta", {})
                if isinstance(item["meta"], dict):
                    item["meta"] = {**item["meta"], "split": item["meta"].get("split") or split_name}
            count += 1
            yield _Row(f"{split_name + ' ' if split_name else ''}row {i}", item, done=count / total)
            if limit and count >= limit:
                return


def _csv_refusal(path: Path, line: int, exc: csv.Error) -> TuneloopError:
    """csv's own error as one line naming the file, the line and, for an oversized field, the limit."""
    if "field larger than field limit" in str(exc):
        limit = csv.field_size_limit()
        return TuneloopError(f"{path.name} line {line}: a field is longer than csv's limit of {limit:,} characters "
                             f"({limit // 1024} KiB); shorten it, or import the data as JSONL (no field limit); "
                             f"nothing was imported")
    return TuneloopError(f"{path.name} line {line}: not readable as CSV ({exc}); nothing was imported")


def _iter_csv(path: Path, column_map, limit, max_mb) -> Iterator[_Row]:
    """CSV rows with the columns renamed to the fields they fill: the mapping given, then the usual column
    names (CSV_ALIASES) for the fields it leaves out; empty cells of other columns are not kept in meta."""
    with path.open("rb") as fh:
        text = _decode(_read_capped(fh, path, max_mb), path)
    if not text.strip():
        return
    dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    try:
        columns = reader.fieldnames or []
    except csv.Error as exc:
        raise _csv_refusal(path, 1, exc) from None
    mapping = dict(column_map or {})
    lowered = {c.lower().strip(): c for c in columns}
    for role, aliases in CSV_ALIASES.items():
        if role not in mapping:
            found = next((lowered[a] for a in aliases if a in lowered and lowered[a] not in mapping.values()), None)
            if found:
                mapping[role] = found
    missing_cols = [c for c in mapping.values() if c not in columns]
    if missing_cols:
        raise InputProblem([f"line 1: column(s) {missing_cols} not in the header {columns}"], source=path.name)
    if detect_schema(set(mapping)) is None:
        raise InputProblem([f"line 1: cannot tell which columns hold the question and the answer among "
                            f"{columns}; give a column mapping such as prompt=question,completion=answer"],
                           source=path.name)
    lines = max(1, text.count("\n"))
    for i, row in enumerate(_csv_rows(path, reader), start=2):
        if None in row:
            raise InputProblem([f"line {i}: more fields than the header has columns"], source=path.name)
        item, _ = map_columns(row, mapping)
        item = {k: v for k, v in item.items() if k in mapping or v not in (None, "")}
        yield _Row(f"line {i}", _meta_columns(item), done=min(1.0, reader.line_num / lines))
        if limit and i - 1 >= limit:
            break


def _meta_columns(item: dict) -> dict:
    """``meta.KEY`` columns (what Tuneloop's CSV export writes) back into ``meta``: a cell that reads as a JSON
    number, boolean, list or object becomes that value, any other cell stays text (so "42" comes back as 42)."""
    keys = [k for k in item if k.startswith("meta.") and len(k) > 5]
    if not keys or "meta" in item:
        return item
    meta = {}
    for key in keys:
        cell = item.pop(key)
        try:
            value = json.loads(cell)
        except (TypeError, ValueError, RecursionError):
            value = cell
        meta[key[5:]] = cell if isinstance(value, str) or value is None else value
    item["meta"] = meta
    return item


def _csv_rows(path: Path, reader: csv.DictReader) -> Iterator[dict]:
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise _csv_refusal(path, reader.line_num + 1, exc) from None  # the line the bad record starts on
        yield row


# -- writers ----------------------------------------------------------------------------------

def export_row(record: Record) -> dict:
    """A record as an exported row: id, messages, meta; a preference record in trl's shape instead
    (id, prompt, chosen, rejected, meta), what DPOTrainer and ``preferences: FILE.jsonl`` read; a KTO
    record in trl's unpaired shape (id, prompt, completion, label, meta), what KTOTrainer reads."""
    if record.is_preference:
        return {"id": record.id, "prompt": record.messages, "chosen": record.chosen, "rejected": record.rejected,
                "meta": record.meta}
    if record.is_kto:
        return {"id": record.id, "prompt": record.messages, "completion": record.completion,
                "label": record.desirable, "meta": record.meta}
    return record.to_dict()


def records_to_jsonl(records: Iterable[Record]) -> bytes:
    return "".join(json.dumps(export_row(r), ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def write_jsonl(records: Iterable[Record], path: str | os.PathLike) -> Path:
    from core.workspace import atomic_write
    atomic_write(Path(path), records_to_jsonl(records))
    return Path(path)
