"""A block of JSONL lines read at once by pyarrow, for an import of a big file already in Tuneloop's own shape.

Reading a million lines one at a time costs a Python parse, check and encoding per record. Most big files are
records exactly as Tuneloop writes them (``{"id", "messages": [{"role", "content"}, ...], "meta": {...}}``), so an
import reads its JSONL in blocks of about ``BLOCK_BYTES``: pyarrow parses a block into columns, the checks the
per-line reader makes are made on the columns, and each row's ``messages`` and ``meta`` are written as canonical
JSON text (what ``canonical_json`` gives: sorted keys, no spaces, the same escapes) by Arrow's string kernels.

Exactness comes first: a row is read this way only when nothing about it can differ from the per-line reader,
and ``BlockColumns.slow`` marks every other row, which the reader then reads line by line as before (the same
record, problem, line and field). A row is slow when: its turns are not exactly ``{role, content}`` with a known
role and text that is not blank, or its text holds a control character other than newline, return or tab; its id
is neither text nor a whole number (a row without one gets the id derived from its turns, as the line reader
gives it); its meta is not an object of text, whole-number and boolean values (a float, a nested value, an ``id``
key); it has a key besides id, messages and meta; or (when the block holds the word ``null`` anywhere) a missing
key cannot be told from a null one. A block that is not valid UTF-8 or that pyarrow cannot read at all (bad JSON,
half a surrogate pair, a number too big for 64 bits next to text, two records on one line, a blank line) returns
None, and the reader halves it until the odd lines are found.
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from curation.data.records import ROLES

BLOCK_BYTES = 4 << 20      # about 20,000 short records; the reader's memory holds a few of these at once
SMALLEST_BLOCK = 64         # fewer lines than this are read one at a time
_CONTROL = "[\x00-\x08\x0b\x0c\x0e-\x1f]"     # escaped by json as \\u00XX (or \\b, \\f): left to the per-line path
_PRINTABLE = "[!-~]"                          # a visible ASCII character: the text is not blank
_WRITTEN = {"\\": (b"\\\\", b"\\u005c", b"\\u005C"), '"': (b'\\"', b"\\u0022"),
            "\n": (b"\\n", b"\\u000a", b"\\u000A"), "\r": (b"\\r", b"\\u000d", b"\\u000D"), "\t": (b"\\t", b"\\u0009")}
_ESCAPES = (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"))


@dataclass
class Block:
    """Whole JSONL lines read from ``path`` in one piece, the first being line ``first_line``."""
    first_line: int
    data: bytes
    done: float | None
    path: Path


class Lines:
    """Where each line of a block starts and stops (its newline included)."""

    def __init__(self, data: bytes):
        self.data = data
        self.bytes = np.frombuffer(data, np.uint8)
        stops = np.flatnonzero(self.bytes == 10) + 1
        if data and not data.endswith(b"\n"):
            stops = np.append(stops, len(data))
        self.stops = stops.astype(np.int64)
        self.starts = np.concatenate(([0], self.stops[:-1])).astype(np.int64)
        self.count = len(self.stops)

    def line(self, i: int) -> bytes:
        return self.data[self.starts[i]:self.stops[i]]

    def one_object_each(self, a: int, b: int) -> bool:
        """Whether each of lines a..b starts with ``{`` and ends with ``}`` (before its newline): then no record
        spans two lines (a line break inside one would sit between ``}`` and ``{``, which JSON never allows), so
        pyarrow's rows are the lines exactly when it reads as many rows as there are lines."""
        starts, last = self.starts[a:b], self.stops[a:b] - 1
        data = self.bytes
        last = last - (data[last] == 10)
        last = last - (data[last] == 13)
        return bool((last > starts).all() and (data[starts] == 123).all() and (data[last] == 125).all())


@dataclass
class BlockColumns:
    """Lines a..b of a block as columns: ``slow`` marks the rows to read one at a time; for the others, the id,
    ``messages`` and ``meta`` as canonical JSON text, and whether the conversation lacks an assistant turn."""
    slow: np.ndarray
    ids: pa.Array
    messages: pa.Array
    meta: pa.Array
    no_answer: np.ndarray
    derived: dict = field(default_factory=dict)     # {row: its id} for the rows that brought none
    derived_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))   # their rows, in order


def prepare(data: bytes) -> tuple[Lines, BlockColumns | None]:
    """A block's lines and the columns of all of them (None: pyarrow could not read them as one row per line)."""
    lines = Lines(data)
    return lines, block_columns(lines, 0, lines.count) if lines.count >= SMALLEST_BLOCK else None


def block_columns(lines: Lines, a: int, b: int) -> BlockColumns | None:
    """Lines a..b as columns, or None when pyarrow cannot read them as one row per line."""
    if not lines.one_object_each(a, b):
        return None
    lo, hi = int(lines.starts[a]), int(lines.stops[b - 1])
    try:
        str(memoryview(lines.data)[lo:hi], "utf-8")     # pyarrow keeps invalid UTF-8 inside a string as it is
        table = pj.read_json(pa.BufferReader(pa.py_buffer(lines.data)[lo:hi]))
    except Exception:   # invalid UTF-8; pyarrow's errors for bad JSON, types that change between rows
        return None
    n = b - a
    if table.num_rows != n:
        return None
    nulls = lines.data.find(b"null", lo, hi) >= 0    # only then can a null value be mistaken for a missing key
    slow = np.zeros(n, dtype=bool)
    for name in table.column_names:
        if name not in ("id", "messages", "meta"):
            slow |= _valid(table.column(name))
    if "messages" not in table.column_names:
        return _all_slow(n)
    escapes, controls = _escapes_in(lines.data, lo, hi)
    messages, no_answer = _messages(_array(table.column("messages")), slow, nulls, escapes, controls)
    if messages is None:
        return _all_slow(n)
    ids = _ids(_array(table.column("id")) if "id" in table.column_names else pa.nulls(n, pa.string()))
    if ids is None:
        return _all_slow(n)
    meta = _meta(_array(table.column("meta")) if "meta" in table.column_names else None, n, slow, nulls, escapes,
                 controls)
    ids, derived = _derived_ids(ids, messages, slow)
    return BlockColumns(slow=slow, ids=ids, messages=messages, meta=meta, no_answer=no_answer, derived=derived,
                        derived_rows=np.array(sorted(derived), dtype=np.int64))


def _all_slow(n: int) -> BlockColumns:
    empty = text_array([])
    return BlockColumns(slow=np.ones(n, dtype=bool), ids=empty, messages=empty, meta=empty,
                        no_answer=np.zeros(n, dtype=bool))


def _array(column: pa.ChunkedArray) -> pa.Array:
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _valid(values) -> np.ndarray:
    return _bits(pc.is_valid(values))


def _mask(values) -> np.ndarray:
    return _bits(pc.and_kleene(values, pc.is_valid(values)))


def _escaped(text: pa.Array, escapes) -> pa.Array:
    """Text as it sits inside a JSON string (the text holds no other control character: see _CONTROL), for the
    ``escapes`` the block's JSON holds."""
    if not escapes:
        return text
    pattern = "[" + "".join("\\" + old if old in '\\"' else old for old, _ in escapes) + "]"
    needs = pc.match_substring_regex(text, pattern)     # one pass; most texts need none
    needs = pc.and_kleene(needs, pc.is_valid(needs))
    if not pc.any(needs).as_py():
        return text
    some = text.filter(needs)
    for old, new in escapes:
        some = pc.replace_substring(some, old, new)
    return pc.replace_with_mask(text, needs, some)


def _escapes_in(data: bytes, lo: int, hi: int) -> tuple[list, bool]:
    """Which of _ESCAPES the JSON text data[lo:hi] may need, and whether its strings may hold another control
    character. A quote, a backslash and every control character inside a JSON string are written escaped, as
    ``\\"``, ``\\\\``, ``\\n``, ``\\r``, ``\\t``, ``\\b``, ``\\f`` or ``\\u`` and four hex digits: text without
    one of the ways to write a character holds none of it."""
    if data.find(b"\\", lo, hi) < 0:
        return [], False
    escapes = [(old, new) for old, new in _ESCAPES if any(data.find(way, lo, hi) >= 0 for way in _WRITTEN[old])]
    controls = any(data.find(way, lo, hi) >= 0 for way in (b"\\u000", b"\\u001", b"\\b", b"\\f"))
    return escapes, controls


def _messages(messages: pa.Array, slow: np.ndarray, nulls: bool, escapes, controls: bool):
    """Each row's turns as canonical JSON and whether it lacks an assistant turn; marks the rows whose turns
    the per-line reader must read; None when no row has turns of exactly {role, content} text."""
    kind = messages.type
    if not pa.types.is_list(kind) or not pa.types.is_struct(kind.value_type):
        return None, None
    fields = [kind.value_type.field(i) for i in range(kind.value_type.num_fields)]
    names = [f.name for f in fields]
    if ("role" not in names or "content" not in names or not pa.types.is_string(fields[names.index("role")].type)
            or not pa.types.is_string(fields[names.index("content")].type) or (nulls and len(names) > 2)):
        return None, None
    n = len(messages)
    offsets = _ints(messages.offsets)
    first = int(offsets[0])
    turns = messages.values.slice(first, int(offsets[-1]) - first)
    offsets -= first
    parts = turns.flatten()       # each field, null where the turn itself is null
    role, content = parts[names.index("role")], parts[names.index("content")]
    bad = ~_mask(pc.is_in(role, value_set=text_array(ROLES))) | ~_valid(content)
    if controls:
        bad |= _mask(pc.match_substring_regex(content, _CONTROL))
    for name, part in zip(names, parts):
        if name not in ("role", "content"):
            bad |= _valid(part)
    unseen = np.flatnonzero(~_mask(pc.match_substring_regex(content, _PRINTABLE)) & ~bad)
    for i in unseen.tolist():     # no visible ASCII character: the text may be blank (Python's isspace decides)
        text = content[i].as_py()
        if not text or text.isspace():
            bad[i] = True
    parent = np.repeat(np.arange(n), np.diff(offsets))
    slow |= ~_valid(messages) | (np.diff(offsets) == 0)
    slow[parent[bad]] = True
    answered = np.zeros(n, dtype=bool)
    answered[parent[_mask(pc.equal(role, literal("assistant")))]] = True
    turn = _join('{"content":"', _escaped(content, escapes), '","role":"', role, '"}', "")
    starts = pa.Array.from_buffers(pa.int32(), n + 1, [None, pa.py_buffer(offsets.astype(np.int32))])
    joined = pc.binary_join(pa.ListArray.from_arrays(starts, turn), literal(","))
    return _join("[", joined, "]", ""), ~answered


def _ids(ids: pa.Array) -> pa.Array | None:
    """The ids as text (a whole number as its digits, as ``str`` writes it; null or empty where a row has none)."""
    if pa.types.is_null(ids.type):
        return pa.nulls(len(ids), pa.string())
    if pa.types.is_integer(ids.type):
        return pc.cast(ids, pa.string())
    return ids if pa.types.is_string(ids.type) else None


def _derived_ids(ids: pa.Array, messages: pa.Array, slow: np.ndarray) -> tuple[pa.Array, dict[int, str]]:
    """A row without an id gets the one ``schemas.derived_id`` gives its turns ("r" and 15 hex digits of the SHA-256
    of their canonical JSON); returns the ids and {row: derived id} (the reader keeps a repeat apart, as it does)."""
    missing = ~_valid(ids) | _mask(pc.equal(ids, literal("")))
    rows = np.flatnonzero(missing & ~slow)
    if not len(rows):
        return ids, {}
    sha = hashlib.sha256
    texts = pc.cast(messages.take(pa.Array.from_buffers(pa.int64(), len(rows), [None, pa.py_buffer(rows.astype(
        np.int64))])), pa.binary()).to_pylist()
    made = ["r" + sha(text).hexdigest()[:15] for text in texts]
    packed = pa.py_buffer(np.packbits(missing & ~slow, bitorder="little"))
    ids = pc.replace_with_mask(ids, pa.Array.from_buffers(pa.bool_(), len(ids), [None, packed]), text_array(made))
    return ids, dict(zip(rows.tolist(), made))


def _meta(meta: pa.Array | None, n: int, slow: np.ndarray, nulls: bool, escapes, controls: bool) -> pa.Array:
    """Each row's meta as canonical JSON ({} for none); marks the rows whose meta the per-line reader must read."""
    if meta is None or pa.types.is_null(meta.type):
        return _constant("{}", n)
    if not pa.types.is_struct(meta.type):
        slow |= _valid(meta)
        return _constant("{}", n)
    present = _valid(meta)
    named = sorted((meta.type.field(i).name, part) for i, part in enumerate(meta.flatten()))
    pieces, gaps = [], False
    for name, part in named:
        if nulls:
            slow |= present & ~_valid(part)     # "key": null, or no key at all: only the line tells
        if name == "id":                        # the per-line reader takes an id from meta
            slow |= _valid(part)
            continue
        key = json.dumps(name, ensure_ascii=False) + ":"
        if pa.types.is_string(part.type):
            if controls:
                slow |= _mask(pc.match_substring_regex(part, _CONTROL))
            pieces += [key + '"', _escaped(part, escapes), '",']
        elif pa.types.is_integer(part.type) or pa.types.is_boolean(part.type):
            pieces += [key, pc.cast(part, pa.string()), ","]
        else:                                   # a float (json writes it its own way), a nested value, only nulls
            slow |= _valid(part)
            continue
        if part.null_count:                     # a key some rows lack: their piece is empty
            pieces[-3:] = [pc.fill_null(_join(*pieces[-3:], ""), literal(""))]
            gaps = True
    if not pieces:
        return _constant("{}", n)
    if not gaps:                                # every row has every key: one join makes the text
        return _join("{" + pieces[0], *pieces[1:-1], pieces[-1][:-1] + "}", "")
    # each piece ends with a comma (binary_join_element_wise's null_handling="skip" drops rows here, so no nulls)
    body = pc.utf8_rtrim(_join(*pieces, ""), characters=",")
    return _join("{", body, "}", "")


def text_array(texts) -> pa.Array:
    """Python text as an Arrow string column, made from its buffers (``pa.array`` and ``pa.scalar`` on Python
    values import pandas, a second or more of an import's start here)."""
    parts = [t.encode("utf-8") for t in texts]
    offsets = np.zeros(len(parts) + 1, dtype=np.int32)
    np.cumsum([len(p) for p in parts], out=offsets[1:])
    return pa.StringArray.from_buffers(len(parts), pa.py_buffer(offsets), pa.py_buffer(b"".join(parts)))


@functools.lru_cache(maxsize=256)
def literal(text: str, large: bool = False):
    """A text as an Arrow scalar (``large``: of type large_string), without ``pa.scalar`` (see text_array)."""
    array = text_array([text])
    return (array.cast(pa.large_string()) if large else array)[0]


def _join(*parts):
    """``pc.binary_join_element_wise`` with the literal texts among ``parts`` (the last is the separator) as scalars."""
    return pc.binary_join_element_wise(*[literal(p) if type(p) is str else p for p in parts])


def _ints(values: pa.Array) -> np.ndarray:
    """An int32 Arrow column without nulls as int64 NumPy values (see _bits)."""
    ints = np.frombuffer(values.buffers()[1], dtype=np.int32)
    return ints[values.offset:values.offset + len(values)].astype(np.int64)


def _bits(mask) -> np.ndarray:
    """A boolean Arrow column without nulls as a NumPy array (``to_numpy`` on one imports pandas)."""
    if isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks()
    n = len(mask)
    if mask.null_count:
        raise ValueError("a mask with nulls")
    packed = np.frombuffer(mask.buffers()[1], dtype=np.uint8)
    return np.unpackbits(packed, bitorder="little", count=mask.offset + n)[mask.offset:].astype(bool)


def _constant(text: str, n: int) -> pa.Array:
    data = text.encode("utf-8")
    offsets = np.arange(n + 1, dtype=np.int32) * len(data)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data * n))


def digests(bodies: pa.Array) -> bytes:
    """The first 16 bytes of each text's SHA-256, one after another (a record's content hash, as
    ``SnapshotWriter.add`` makes it from the same text)."""
    sha = hashlib.sha256
    whole = b"".join([sha(b).digest() for b in pc.cast(bodies, pa.binary()).to_pylist()])
    return np.frombuffer(whole, np.uint8).reshape(-1, 32)[:, :16].tobytes()
