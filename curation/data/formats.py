"""Reading and writing records in the formats people bring.

Readers accept chat/messages, Alpaca (instruction/input/output), ShareGPT (conversations/from/value),
prompt/completion, and CSV with a column mapping, from JSONL, a JSON array, Parquet, CSV or a
Hugging Face ``save_to_disk`` folder. The format is detected from the first row and can be forced.

Every problem is reported with the file, the line (or row) and the field; an import with any
error imports nothing. Warnings (a conversation without an assistant turn) do not block it.
Input past a reader's limits (the size cap, JSON nested deeper than Python can read, a CSV field
over csv's field limit) is refused with one line naming the file, the line and the limit; a pipe
or device is read only up to the size cap.

Example::

    result = read_records("tickets.jsonl")          # raises InputProblem listing every bad line
    result.records[0].messages, result.format, result.warnings
"""
from __future__ import annotations

import csv
import io
import json
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from core.errors import InputProblem, TuneloopError
from curation.data.records import ROLES, Record, new_record_id

FORMATS = ("messages", "alpaca", "sharegpt", "prompt_completion", "csv")
DEFAULT_MAX_MB = float(os.environ.get("TUNELOOP_MAX_IMPORT_MB", "500"))
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bing": "assistant", "bard": "assistant", "model": "assistant",
                  "system": "system"}
# CSV columns recognised without a mapping, by what they hold.
CSV_ALIASES = {
    "id": ("id", "record_id", "uid"),
    "system": ("system", "system_prompt"),
    "prompt": ("prompt", "question", "user", "query", "instruction", "input_text"),
    "input": ("input", "context"),
    "completion": ("completion", "answer", "response", "assistant", "output", "reply"),
}


@dataclass
class ImportResult:
    records: list[Record]
    format: str
    warnings: list[str] = field(default_factory=list)
    source: str = ""


@dataclass
class _Row:
    where: str          # "line 17" or "row 17"
    data: Any
    error: str | None = None   # the row could not even be parsed


class _Problems:
    def __init__(self):
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def error(self, where: str, text: str) -> None:
        self.errors.append(f"{where}: {text}")

    def warn(self, where: str, text: str) -> None:
        self.warnings.append(f"{where}: {text}")


# -- entry points -----------------------------------------------------------------------------

def read_records(path: str | os.PathLike, *, format: str | None = None,
                 column_map: dict[str, str] | None = None, max_mb: float | None = None,
                 limit: int | None = None, progress=None) -> ImportResult:
    """Read and validate every record in ``path``; raise ``InputProblem`` listing all problems.

    ``format`` forces one of FORMATS; ``column_map`` maps CSV roles (id, system, prompt, input,
    completion) to column names; ``limit`` reads only the first rows (for previews);
    ``progress(fraction, text)`` is called as rows are checked.
    """
    path = Path(path)
    name = path.name
    if not path.exists():
        raise TuneloopError(f"{path}: no such file or folder")
    if format is not None and format not in FORMATS:
        raise TuneloopError(f"unknown format '{format}'; choose one of {', '.join(FORMATS)}")
    max_mb = DEFAULT_MAX_MB if max_mb is None else max_mb
    _check_size(path, max_mb)
    rows = list(_iter_rows(path, column_map=column_map, limit=limit, max_mb=max_mb,
                           csv_mode=(format == "csv" or path.suffix.lower() in (".csv", ".tsv"))))
    if not rows:
        raise InputProblem([f"{name} holds no records (the file is empty)"], source=name)
    first = next((r for r in rows if r.error is None), None)
    if first is None:
        raise InputProblem([f"{r.where}: {r.error}" for r in rows], source=name)
    fmt = format or detect_format(first.data, where=first.where, source=name)
    if fmt == "csv":
        fmt = "prompt_completion"
    problems = _Problems()
    records: list[Record] = []
    seen_ids: dict[str, str] = {}
    for n, row in enumerate(rows):
        if progress and n % 2000 == 0:
            progress(n / len(rows), f"checking {n:,} of {len(rows):,} records")
        converted = _to_record(row, fmt, problems)
        if converted is None:
            continue
        record, derived_id = converted
        if record.id in seen_ids:
            if not derived_id:
                problems.error(row.where, f"id '{record.id}' repeats {seen_ids[record.id]}; ids must be unique")
                continue
            # The same content twice without ids: keep both (dedup decides), with distinct stable ids.
            k = 2
            while f"{record.id}-{k}" in seen_ids:
                k += 1
            record.id = f"{record.id}-{k}"
        seen_ids[record.id] = row.where
        records.append(record)
    if problems.errors:
        raise InputProblem(problems.errors, source=name)
    shown_format = "csv" if path.suffix.lower() in (".csv", ".tsv") else fmt
    return ImportResult(records=records, format=shown_format, warnings=problems.warnings, source=name)


def detect_format(first: Any, *, where: str = "line 1", source: str = "") -> str:
    """The schema of a row, from its keys."""
    if not isinstance(first, dict):
        raise InputProblem([f"{where}: expected a JSON object per record, got {type(first).__name__}"],
                           source=source)
    keys = set(first)
    if "messages" in keys:
        return "messages"
    if "conversations" in keys:
        return "sharegpt"
    if "instruction" in keys and "output" in keys:
        return "alpaca"
    if "prompt" in keys and "completion" in keys:
        return "prompt_completion"
    raise InputProblem([
        f"{where}: cannot tell the format from the fields {sorted(keys)}; expected 'messages' (chat), "
        "'conversations' (ShareGPT), 'instruction'+'output' (Alpaca) or 'prompt'+'completion'; "
        "choose the format explicitly"], source=source)


# -- containers -------------------------------------------------------------------------------

_RAISE_LIMIT = "split the file, or raise the limit (--max-mb, or TUNELOOP_MAX_IMPORT_MB)"


def _check_size(path: Path, max_mb: float) -> None:
    """Refuse a file or folder over the cap before reading it (a pipe or device has no size: see _read_capped)."""
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
    if size > max_mb * 1024 * 1024:
        raise TuneloopError(f"{path.name} is {size / 1024 / 1024:.1f} MB, over the import limit of {max_mb:g} MB; "
                            f"{_RAISE_LIMIT}")


def _read_capped(path: Path, max_mb: float) -> bytes:
    """The bytes of ``path``, reading no more than the cap: a pipe or device (whose size is unknown until it
    ends, or never ends) is refused as soon as it passes the cap."""
    cap = int(max_mb * 1024 * 1024)
    with path.open("rb") as fh:
        raw = fh.read(cap + 1)
    if len(raw) > cap:
        raise TuneloopError(f"{path.name} holds more than the import limit of {max_mb:g} MB (reading stopped at the "
                            f"limit; nothing was imported); {_RAISE_LIMIT}")
    return raw


def _iter_rows(path: Path, *, column_map, limit, max_mb, csv_mode) -> Iterator[_Row]:
    if path.is_dir():
        yield from _iter_hf_folder(path, limit)
        return
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _iter_parquet(path, limit)
    elif csv_mode:
        yield from _iter_csv(path, column_map, limit, max_mb)
    else:
        yield from _iter_json(path, limit, max_mb)


def _decode(path: Path, max_mb: float) -> str:
    raw = _read_capped(path, max_mb)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InputProblem([f"line {line}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {col}); "
                            "save the file as UTF-8 and import it again"], source=path.name) from None
    return text.lstrip("\ufeff")


def _too_deep(source: str, where: str = "") -> TuneloopError:
    return TuneloopError(f"{source}{' ' + where if where else ''}: JSON nested deeper than Python reads (about "
                         f"{sys.getrecursionlimit():,} levels of [ and {{); a record is a few levels deep, so the "
                         f"line is damaged or not a record; nothing was imported")


def _iter_json(path: Path, limit, max_mb) -> Iterator[_Row]:
    text = _decode(path, max_mb)
    if not text.strip():
        return
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputProblem([f"line {exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno})"],
                               source=path.name) from None
        except RecursionError:
            raise _too_deep(path.name) from None   # one document: no line to name
        for i, item in enumerate(items[:limit] if limit else items, start=1):
            yield _Row(f"item {i}", item)
        return
    count = 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            yield _Row(f"line {lineno}", None, error=f"not valid JSON ({exc.msg} at column {exc.colno})")
        except RecursionError:
            raise _too_deep(path.name, f"line {lineno}") from None
        else:
            yield _Row(f"line {lineno}", item)
        count += 1
        if limit and count >= limit:
            break


def _iter_parquet(path: Path, limit) -> Iterator[_Row]:
    if not stat.S_ISREG(path.stat().st_mode):
        raise TuneloopError(f"{path.name}: a Parquet file must be a regular file (it is read by seeking), not a "
                            f"pipe or device; copy it to a file first")
    import pyarrow.parquet as pq
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise TuneloopError(f"{path.name}: not a readable Parquet file ({exc})") from None
    for i, item in enumerate(table.slice(0, limit).to_pylist() if limit else table.to_pylist(), start=1):
        yield _Row(f"row {i}", item)


def _iter_hf_folder(path: Path, limit) -> Iterator[_Row]:
    if not any(path.glob("**/dataset_info.json")) and not (path / "dataset_dict.json").exists():
        raise TuneloopError(f"{path.name}: a folder must be a Hugging Face dataset saved with save_to_disk")
    from datasets import Dataset, DatasetDict, load_from_disk
    loaded = load_from_disk(str(path))
    parts = loaded.items() if isinstance(loaded, DatasetDict) else [(None, loaded)]
    count = 0
    for split_name, ds in parts:
        assert isinstance(ds, Dataset)
        for i, item in enumerate(ds, start=1):
            if split_name:
                item = dict(item)
                item.setdefault("meta", {})
                if isinstance(item["meta"], dict):
                    item["meta"] = {**item["meta"], "split": item["meta"].get("split") or split_name}
            yield _Row(f"{split_name + ' ' if split_name else ''}row {i}", item)
            count += 1
            if limit and count >= limit:
                return


def parse_column_map(text: str | None) -> dict[str, str] | None:
    """``"prompt=question,completion=answer"`` → ``{"prompt": "question", "completion": "answer"}``."""
    if not text:
        return None
    mapping = {}
    for part in text.split(","):
        if "=" not in part:
            raise TuneloopError(f"column mapping '{part}' must look like role=column, e.g. prompt=question")
        role, column = (s.strip() for s in part.split("=", 1))
        if role not in CSV_ALIASES:
            raise TuneloopError(f"column mapping: unknown role '{role}'; use {', '.join(CSV_ALIASES)}")
        mapping[role] = column
    return mapping


def _csv_refusal(path: Path, line: int, exc: csv.Error) -> TuneloopError:
    """csv's own error as one line naming the file, the line and, for an oversized field, the limit."""
    if "field larger than field limit" in str(exc):
        limit = csv.field_size_limit()
        return TuneloopError(f"{path.name} line {line}: a field is longer than csv's limit of {limit:,} characters "
                             f"({limit // 1024} KiB); shorten it, or import the data as JSONL (no field limit); "
                             f"nothing was imported")
    return TuneloopError(f"{path.name} line {line}: not readable as CSV ({exc}); nothing was imported")


def _iter_csv(path: Path, column_map, limit, max_mb) -> Iterator[_Row]:
    text = _decode(path, max_mb)
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
    if "prompt" not in mapping or "completion" not in mapping:
        raise InputProblem([f"line 1: cannot tell which columns hold the question and the answer among "
                            f"{columns}; give a column mapping such as prompt=question,completion=answer"],
                           source=path.name)
    used = set(mapping.values())
    for i, row in enumerate(_csv_rows(path, reader), start=2):
        if None in row:
            raise InputProblem([f"line {i}: more fields than the header has columns"], source=path.name)
        prompt = row[mapping["prompt"]] or ""
        if mapping.get("input") and row.get(mapping["input"]):
            prompt = f"{prompt}\n\n{row[mapping['input']]}"
        item: dict[str, Any] = {"prompt": prompt, "completion": row[mapping["completion"]]}
        if mapping.get("id") and row.get(mapping["id"]):
            item["id"] = row[mapping["id"]]
        if mapping.get("system") and row.get(mapping["system"]):
            item["system"] = row[mapping["system"]]
        item["meta"] = {k: v for k, v in row.items() if k not in used and v not in (None, "")}
        yield _Row(f"line {i}", item)
        if limit and i - 1 >= limit:
            break


def _csv_rows(path: Path, reader: csv.DictReader) -> Iterator[dict]:
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise _csv_refusal(path, reader.line_num + 1, exc) from None  # the line the bad record starts on
        yield row


# -- schemas ----------------------------------------------------------------------------------

def _to_record(row: _Row, fmt: str, problems: _Problems) -> tuple[Record, bool] | None:
    """The row as a record, and whether its id was derived from the content."""
    data, where = row.data, row.where
    if row.error:
        problems.error(where, row.error)
        return None
    if not isinstance(data, dict):
        problems.error(where, f"expected a JSON object, got {type(data).__name__}")
        return None
    before = len(problems.errors)
    if fmt == "messages":
        messages = _messages_field(data.get("messages"), "messages", where, problems)
    elif fmt == "sharegpt":
        messages = _sharegpt(data, where, problems)
    elif fmt == "alpaca":
        messages = _alpaca(data, where, problems)
    else:
        messages = _prompt_completion(data, where, problems)
    if len(problems.errors) > before or messages is None:
        return None
    if not any(m["role"] == "assistant" for m in messages):
        problems.warn(where, "the conversation has no assistant turn; it cannot teach an answer until one is added")
    meta = data.get("meta") if data.get("meta") is not None else {}
    if not isinstance(meta, dict):
        if isinstance(meta, str):
            try:
                meta = json.loads(meta)
            except (json.JSONDecodeError, RecursionError):
                meta = None
        if not isinstance(meta, dict):
            problems.error(where, f"meta must be an object, got {type(data.get('meta')).__name__}")
            return None
    consumed = {"id", "meta", "messages", "conversations", "instruction", "input", "output", "prompt",
                "completion", "system"}
    extras = {k: v for k, v in data.items() if k not in consumed and v is not None}
    meta = {**extras, **meta}
    rid = data.get("id", meta.pop("id", None))
    if rid is None or rid == "":
        return Record(id=new_record_id(messages), messages=messages, meta=meta), True
    if not isinstance(rid, (str, int)) or isinstance(rid, bool):
        problems.error(where, f"id must be a string or a number, got {type(rid).__name__}")
        return None
    return Record(id=str(rid), messages=messages, meta=meta), False


def _messages_field(value, name, where, problems, *, allow_empty=False) -> list[dict[str, str]] | None:
    if value is None:
        problems.error(where, f"'{name}' is missing")
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            problems.error(where, f"'{name}' must be a list of {{role, content}}, got a string")
            return None
    if not isinstance(value, (list, tuple)):
        problems.error(where, f"'{name}' must be a list of {{role, content}}, got {type(value).__name__}")
        return None
    if not value and not allow_empty:
        problems.error(where, f"'{name}' is an empty list; a record needs at least one turn")
        return None
    out = []
    for i, msg in enumerate(value):
        field_name = f"{name}[{i}]"
        if not isinstance(msg, dict):
            problems.error(where, f"{field_name} must be an object with role and content, got {type(msg).__name__}")
            continue
        role, content = msg.get("role"), msg.get("content")
        if role not in ROLES:
            shown = "missing" if role is None else f"'{role}'"
            problems.error(where, f"{field_name}.role is {shown}; expected system, user or assistant")
            continue
        if not _content_ok(content, f"{field_name}.content", where, problems):
            continue
        out.append({"role": role, "content": content})
    return out


def _content_ok(content, field_name, where, problems) -> bool:
    if content is None:
        problems.error(where, f"{field_name} is missing")
        return False
    if not isinstance(content, str):
        problems.error(where, f"{field_name} must be text, got {type(content).__name__}")
        return False
    if not content.strip():
        problems.error(where, f"{field_name} is empty")
        return False
    return True


def _sharegpt(data, where, problems):
    turns = data.get("conversations")
    if not isinstance(turns, list) or not turns:
        problems.error(where, "'conversations' must be a non-empty list of {from, value}")
        return None
    messages = []
    if isinstance(data.get("system"), str) and data["system"].strip():
        messages.append({"role": "system", "content": data["system"]})
    for i, turn in enumerate(turns):
        field_name = f"conversations[{i}]"
        if not isinstance(turn, dict):
            problems.error(where, f"{field_name} must be an object with from and value")
            continue
        speaker = turn.get("from")
        role = SHAREGPT_ROLES.get(str(speaker).lower()) if speaker is not None else None
        if role is None:
            problems.error(where, f"{field_name}.from is {'missing' if speaker is None else repr(speaker)}; "
                                  f"expected human, gpt or system")
            continue
        if _content_ok(turn.get("value"), f"{field_name}.value", where, problems):
            messages.append({"role": role, "content": turn["value"]})
    return messages


def _alpaca(data, where, problems):
    ok = _content_ok(data.get("instruction"), "instruction", where, problems)
    ok = _content_ok(data.get("output"), "output", where, problems) and ok
    extra = data.get("input")
    if extra is not None and not isinstance(extra, str):
        problems.error(where, f"input must be text, got {type(extra).__name__}")
        ok = False
    if not ok:
        return None
    prompt = data["instruction"] if not (extra or "").strip() else f"{data['instruction']}\n\n{extra}"
    messages = []
    if isinstance(data.get("system"), str) and data["system"].strip():
        messages.append({"role": "system", "content": data["system"]})
    return messages + [{"role": "user", "content": prompt}, {"role": "assistant", "content": data["output"]}]


def _prompt_completion(data, where, problems):
    prompt, completion = data.get("prompt"), data.get("completion")
    messages: list[dict[str, str]] = []
    if isinstance(data.get("system"), str) and data["system"].strip():
        messages.append({"role": "system", "content": data["system"]})
    if isinstance(prompt, list):  # trl's conversational prompt/completion
        part = _messages_field(prompt, "prompt", where, problems)
        messages += part or []
    elif _content_ok(prompt, "prompt", where, problems):
        messages.append({"role": "user", "content": prompt})
    if isinstance(completion, list):
        part = _messages_field(completion, "completion", where, problems)
        messages += part or []
    elif _content_ok(completion, "completion", where, problems):
        messages.append({"role": "assistant", "content": completion})
    return messages


# -- writers ----------------------------------------------------------------------------------

def export_row(record: Record) -> dict:
    """A record as an exported row: id, messages, meta; a preference record in trl's shape instead
    (id, prompt, chosen, rejected, meta), what DPOTrainer and ``preferences: FILE.jsonl`` read."""
    if record.is_preference:
        return {"id": record.id, "prompt": record.messages, "chosen": record.chosen, "rejected": record.rejected,
                "meta": record.meta}
    return record.to_dict()


def records_to_jsonl(records: Iterable[Record]) -> bytes:
    return "".join(json.dumps(export_row(r), ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def write_jsonl(records: Iterable[Record], path: str | os.PathLike) -> Path:
    from core.workspace import atomic_write
    atomic_write(Path(path), records_to_jsonl(records))
    return Path(path)
