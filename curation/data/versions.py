"""Dataset versions: immutable snapshots of records with their lineage.

Every curation step reads a version and writes a new one (``create_version``) whose parent is
the version it read, naming the step with its parameters and counts. The records live in a
Parquet snapshot under ``workspace/versions/``; the database row points at it. A version never
changes once made, so loaded records are cached by id. "Current" is a pointer: rolling back is
pointing it at an older version (a new version is never needed for that).

A version has a ``kind``: ``sft`` (chat records, what every curation step works on),
``preference`` (prompt, chosen and rejected answers, made from rated pairs, what DPO trains on) or
``kto`` (prompt, one answer and whether it was desirable, made from one-sided votes and thumbs, what
KTO trains on). The Parquet snapshot holds the columns ``id``, ``messages`` and ``meta`` (canonical
JSON text); a preference snapshot also holds ``chosen`` and ``rejected`` (JSON lists of assistant
turns), a KTO snapshot ``completion`` (JSON) and ``desirable`` ("true"/"false"), and in both
``messages`` is the prompt. Only an sft version becomes the current version.

Example::

    v = create_version(ws, records, parent=None, step="import", params={"file": "a.jsonl"})
    load_records(ws, v.id); diff_versions(ws, v.id, v2.id); set_current(ws, v.id)
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import sqlite3
import threading
from array import array
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import orjson

from core.errors import TuneloopError
from core.workspace import Workspace, temp_path
from curation.data.export import Export, export_rows
from curation.data.records import Record, canonical_json

_CACHE_SIZE = 4
BACKGROUND_INDEX_FROM = 20_000   # a new version this big has its search index built in a thread at once
_cache: "OrderedDict[tuple[str, int], list[Record]]" = OrderedDict()
_cache_lock = threading.Lock()


@dataclass
class Version:
    id: int
    parent_id: int | None
    step: str
    params: dict[str, Any]
    counts: dict[str, Any]
    note: str
    content_hash: str
    num_records: int
    path: str
    created_by: str | None
    created_at: str
    kind: str = "sft"

    @property
    def name(self) -> str:
        return f"v{self.id}"

    @classmethod
    def from_row(cls, row) -> "Version":
        d = dict(row)
        d["params"] = json.loads(d["params"])
        d["counts"] = json.loads(d["counts"])
        return cls(**d)

    def describe(self) -> str:
        """One line a user can read: 'v3 ← v2 · dedup · 540 records · removed 60'."""
        counts = ", ".join(f"{k} {v}" for k, v in self.counts.items() if k != "records" and v)
        parent = f" ← v{self.parent_id}" if self.parent_id else ""
        what = {"preference": "preference pairs", "kto": "KTO examples"}.get(self.kind, "records")
        return f"{self.name}{parent} · {self.step} · {self.num_records} {what}" + (f" · {counts}" if counts else "")


@dataclass
class VersionDiff:
    a: int
    b: int
    added: list[Record] = field(default_factory=list)
    removed: list[Record] = field(default_factory=list)
    changed: list[tuple[Record, Record]] = field(default_factory=list)
    unchanged: int = 0

    def summary(self) -> dict[str, int]:
        return {"added": len(self.added), "removed": len(self.removed), "changed": len(self.changed),
                "unchanged": self.unchanged}


def parse_version_id(value: str | int) -> int:
    """Accepts 3, '3' or 'v3'."""
    text = str(value).strip().lower().lstrip("v")
    if not text.isdigit():
        raise TuneloopError(f"'{value}' is not a version; versions look like v3")
    return int(text)


def content_hash(records: Iterable[Record]) -> str:
    """Same records (by id and content, in any order) → same hash."""
    h = hashlib.sha256()
    for rid, rhash in sorted((r.id, r.content_hash()) for r in records):
        h.update(f"{rid}\t{rhash}\n".encode("utf-8"))
    return h.hexdigest()


class SnapshotWriter:
    """A version's Parquet snapshot written a batch of records at a time, so that an import of a million
    records never holds them all: it keeps only each record's id and content hash (for the version's hash
    and the unique-id check). ``create_version(ws, writer, ...)`` puts the finished snapshot in place;
    ``discard()`` drops a half-written one (an import that found a bad record).

    Example::

        writer = SnapshotWriter(ws)
        for record in records: writer.add(record)
        create_version(ws, writer, parent=None, step="import")
    """

    def __init__(self, ws: Workspace, *, batch: int = 10_000):
        self.ws, self.batch = ws, batch
        self.tmp = temp_path(ws.path("versions") / "snapshot.parquet", tag=f"{threading.get_ident()}_{id(self)}")
        self.kind: str | None = None
        self.count = 0
        self._keys: list[tuple[str, bytes]] = []
        self._key_columns: list[tuple[Any, bytes]] = []   # (ids as an Arrow column, their 16-byte hashes joined)
        self._ids: set[str] = set()
        self._pending: list[list] = []      # per column: the ids, then each JSON column as UTF-8 bytes
        self._writer = None

    def add(self, record: Record) -> None:
        kind = record.kind
        if self.kind is None:
            self.kind = kind
        elif kind != self.kind:
            raise _mixed_kinds(record, self.kind)
        if record.id in self._ids:
            raise TuneloopError("a version cannot hold two records with the same id")
        self._ids.add(record.id)
        # each part is encoded once: the same text makes the row and (joined as record_hash joins it) the hash
        parts = [_canonical(record.messages), _canonical(record.meta)]
        if kind == "preference":
            parts += [_canonical(record.chosen), _canonical(record.rejected)]
            body = b"[" + parts[0] + b"," + parts[1] + b",[" + parts[2] + b"," + parts[3] + b"]]"
        elif kind == "kto":
            parts += [_canonical(record.completion), _canonical(record.desirable)]
            body = b"[" + parts[0] + b"," + parts[1] + b",[" + parts[2] + b"," + parts[3] + b"]]"
        else:
            body = b"[" + parts[0] + b"," + parts[1] + b"]"
        self._keys.append((record.id, hashlib.sha256(body).digest()[:16]))
        if not self._pending:
            self._pending = [[] for _ in range(len(parts) + 1)]
        self._pending[0].append(record.id)
        for column, part in zip(self._pending[1:], parts):
            column.append(part)
        self.count += 1
        if len(self._pending[0]) >= self.batch:
            self._flush()

    def extend(self, records: Iterable[Record]) -> None:
        for record in records:
            self.add(record)

    def add_columns(self, ids, messages, meta) -> None:
        """Chat records given as Arrow string columns, ``messages`` and ``meta`` as canonical JSON text (what
        ``add`` would encode; ``curation.data.jsonl_blocks`` makes them): written after what was added before,
        hashed as ``add`` hashes a record. Their ids are checked for repeats once, by ``content_hash``."""
        from curation.data.jsonl_blocks import _join, digests
        import pyarrow as pa
        if not len(ids):
            return
        if self.kind is None:
            self.kind = "sft"
        elif self.kind != "sft":
            raise _mixed_kinds(Record(id=ids[0].as_py(), messages=orjson.loads(messages[0].as_py())), self.kind)
        hashes = digests(_join("[", messages, ",", meta, "]", ""))
        if len(ids) < _SMALL_RUN:     # a few rows between odd ones: kept with the rows ``add`` takes, not a row group
            import pyarrow.compute as pc
            id_list = ids.to_pylist()
            if not self._pending:
                self._pending = [[], [], []]
            self._pending[0].extend(id_list)
            self._pending[1].extend(pc.cast(messages, pa.binary()).to_pylist())
            self._pending[2].extend(pc.cast(meta, pa.binary()).to_pylist())
            self._keys.extend(zip(id_list, (hashes[i:i + 16] for i in range(0, len(hashes), 16))))
            self._ids.update(id_list)
            self.count += len(id_list)
            if len(self._pending[0]) >= self.batch:
                self._flush()
            return
        self._key_columns.append((ids, hashes))
        self._flush()
        table = pa.table({"id": ids, "messages": messages, "meta": meta})
        if self._writer is None:
            self.tmp.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq_writer(self.tmp, table.schema)
        self._writer.write_table(table, row_group_size=self.batch)
        self.count += len(ids)

    def content_hash(self) -> str:
        """The same hash ``content_hash(records)`` gives for these records: SHA-256 over each record's line
        ``id<tab>hash<newline>`` in the order of the ids."""
        if not self._key_columns:
            h = hashlib.sha256()
            for rid, rhash in sorted(self._keys):
                h.update(f"{rid}\t{rhash.hex()}\n".encode("utf-8"))
            return h.hexdigest()
        return _sorted_keys_hash(self._key_columns + ([(None, self._keys)] if self._keys else []))

    def finish(self) -> None:
        """Write what is pending and close the file (an empty version still gets its columns)."""
        self._flush(final=True)
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._pending = []
        self.tmp.unlink(missing_ok=True)

    def _flush(self, final: bool = False) -> None:
        if not self._pending and not final:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq
        batch, self._pending = self._pending, []
        names = ["id", "messages", "meta"] + {"preference": ["chosen", "rejected"],
                                              "kto": ["completion", "desirable"]}.get(self.kind, [])
        columns = {name: batch[i] if batch else [] for i, name in enumerate(names)}
        table = pa.table({k: _text_array([i.encode("utf-8") for i in v] if k == "id" else v)
                          for k, v in columns.items()})
        if self._writer is None:
            self.tmp.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq_writer(self.tmp, table.schema)
        if batch or self.count == 0:
            self._writer.write_table(table)


_SMALL_RUN = 1_000


def pq_writer(path: Path, schema):
    import pyarrow.parquet as pq
    return pq.ParquetWriter(path, schema, compression="zstd")


def _sorted_keys_hash(parts: list) -> str:
    """``SnapshotWriter.content_hash`` from key columns (ids, joined 16-byte hashes) and (None, [(id, hash)]):
    the lines sorted by id in Arrow (UTF-8 byte order is code point order, the order Python sorts text in; ids are
    unique) and hashed a chunk at a time."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from curation.data.jsonl_blocks import literal, text_array
    ids, hashes = [], []
    for column, joined in parts:
        if column is None:
            column = text_array([rid for rid, _ in joined])
            joined = b"".join(rhash for _, rhash in joined)
        ids.append(column.cast(pa.large_string()))
        hashes.append(joined)
    ids = pa.concat_arrays(ids)
    n = len(ids)
    hexes = b"".join(hashes).hex().encode("ascii")
    hexes = pa.LargeStringArray.from_buffers(n, pa.py_buffer(np.arange(n + 1, dtype=np.int64) * 32),
                                             pa.py_buffer(hexes))
    order = pc.sort_indices(ids)
    ordered = ids.take(order)
    if n > 1 and pc.any(pc.equal(ordered.slice(1), ordered.slice(0, n - 1))).as_py():
        raise TuneloopError("a version cannot hold two records with the same id")
    del ordered
    tab, newline, empty = (literal(text, large=True) for text in ("\t", "\n", ""))
    h = hashlib.sha256()
    step = 200_000
    for start in range(0, n, step):
        take = order.slice(start, step)
        lines = pc.binary_join_element_wise(ids.take(take), tab, hexes.take(take), newline, empty)
        offsets = np.frombuffer(lines.buffers()[1], np.int64)[lines.offset:lines.offset + len(lines) + 1]
        h.update(memoryview(lines.buffers()[2])[int(offsets[0]):int(offsets[-1])])
    return h.hexdigest()


def _text_array(parts: list[bytes]):
    """UTF-8 texts (canonical JSON, valid by construction) as an Arrow string column, from one joined buffer:
    what ``pa.array`` does a value at a time, about fifty times faster."""
    import pyarrow as pa
    data = b"".join(parts)
    if len(data) >= 2**31:       # past a string column's 32-bit offsets: Arrow splits it itself
        return pa.array([p.decode("utf-8") for p in parts], type=pa.string())
    offsets = array("i", itertools.accumulate(map(len, parts), initial=0))
    return pa.StringArray.from_buffers(len(parts), pa.py_buffer(offsets), pa.py_buffer(data))


def _canonical(value: Any) -> bytes:
    """``canonical_json(value)`` as UTF-8 bytes, by orjson when the value holds only what it writes the same way
    (text, whole numbers, booleans, null, lists and objects with text keys; floats are formatted differently), else
    by ``canonical_json`` itself, which also raises the same error for a value JSON cannot hold."""
    if _orjson_safe(value):
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except TypeError:        # a lone surrogate, an integer past 64 bits, a key that is not text
            pass
    return canonical_json(value).encode("utf-8")


def _orjson_safe(value: Any) -> bool:
    kind = type(value)
    if kind is dict:
        value = value.values()
    elif kind is not list:
        return kind is str or kind is int or kind is bool or value is None
    for item in value:
        kind = type(item)
        if not (kind is str or kind is int or kind is bool or item is None
                or ((kind is dict or kind is list) and _orjson_safe(item))):
            return False
    return True


KIND_WORDS = {"sft": ("a chat record", "chat records"),
              "preference": ("a preference pair (chosen/rejected answers)", "preference pairs"),
              "kto": ("a KTO example (one answer, desirable or not)", "KTO examples")}


def _mixed_kinds(record: Record, kind: str) -> TuneloopError:
    return TuneloopError(f"record '{record.id}' is {KIND_WORDS[record.kind][0]} while the records before it are "
                         f"{KIND_WORDS[kind][1]}; a version holds one kind only: either chat records or preference "
                         f"pairs or KTO examples")


def create_version(ws: Workspace, records: "list[Record] | SnapshotWriter", *, parent: int | None, step: str,
                   params: dict[str, Any] | None = None, counts: dict[str, Any] | None = None,
                   note: str = "", created_by: str | None = None, make_current: bool = True,
                   also: Callable[[sqlite3.Connection, int], None] | None = None) -> Version:
    """Write a new immutable version; returns it. The snapshot is written before the row exists.

    ``records`` is a list, or a ``SnapshotWriter`` that has written them already (a big import). Its kind
    follows the records: preference or KTO records make a version of that kind, which is never made current.
    ``also(db, version_id)`` runs the caller's own statements inside the same transaction (a row that
    points at the new version): if it raises, no version is left behind."""
    if parent is not None:
        get_version(ws, parent)
    if isinstance(records, SnapshotWriter):
        writer, cached = records, None
    else:
        kind = version_kind(records)
        writer, cached = SnapshotWriter(ws, batch=max(len(records), 1)), list(records)
        writer.kind = kind
        try:
            writer.extend(records)
        except BaseException:
            writer.discard()
            raise
    try:
        writer.finish()
        kind = writer.kind or "sft"
        make_current = make_current and kind == "sft"
        digest = writer.content_hash()
        rel = Path("versions") / f"{digest[:16]}-{writer.count}.parquet"
        target = ws.path(str(rel))

        def write(path: Path) -> None:
            raise TuneloopError(f"the snapshot of {rel.name} went missing while it was written; import again")

        vid = _insert_version(ws, target, writer.tmp, write, make_current=make_current, also=also, row=(
            parent, step, json.dumps(params or {}), json.dumps({"records": writer.count, **(counts or {})}), note,
            digest, writer.count, str(rel), created_by, kind))
    finally:
        writer.discard()
    if cached is not None:
        with _cache_lock:
            _cache[(str(ws.root), vid)] = cached
            _trim_cache()
    if writer.count >= BACKGROUND_INDEX_FROM:
        from curation.data.index import build_in_background
        build_in_background(ws, vid)
    return get_version(ws, vid)


def _insert_version(ws: Workspace, target: Path, tmp: Path, write: Callable[[Path], None], *, row: tuple,
                    make_current: bool, also: Callable[[sqlite3.Connection, int], None] | None) -> int:
    """Put the snapshot in place as ``target`` (the one written to ``tmp``, unless an identical one is there)
    and insert its row, in one transaction: the start-up sweep, which removes a snapshot no row names, lists
    both inside a transaction too, so it never sees one without the other. If the transaction fails, a
    snapshot placed here goes again."""
    placed = False
    with ws.transaction() as db:
        try:
            if not target.exists():
                if not tmp.exists():
                    write(tmp)   # the identical snapshot seen before was swept as unreferenced meanwhile
                os.replace(tmp, target)
                placed = True
            vid = db.execute(
                "insert into dataset_versions (parent_id, step, params, counts, note, content_hash, num_records,"
                " path, created_by, kind) values (?,?,?,?,?,?,?,?,?,?)", row).lastrowid
            db.execute("insert into version_events (version_id, event, actor) values (?, 'created', ?)",
                       (vid, row[8]))
            if make_current:
                db.execute("insert into settings (key, value) values ('current_version', ?) "
                           "on conflict(key) do update set value=excluded.value", (str(vid),))
            if also is not None:
                also(db, vid)
        except BaseException:
            if placed:
                target.unlink(missing_ok=True)
            raise
    return vid


def version_kind(records: list[Record]) -> str:
    """The records' one kind: ``preference`` (chosen/rejected answers), ``kto`` (one answer, desirable or not)
    or ``sft`` (chat records); mixed kinds are refused, naming the first record that differs."""
    if not records:
        return "sft"
    kind = records[0].kind
    odd = next((r for r in records if r.kind != kind), None)
    if odd is not None:
        raise _mixed_kinds(odd, kind)
    return kind


def get_version(ws: Workspace, version: int | str) -> Version:
    vid = parse_version_id(version)
    row = ws.db.execute("select * from dataset_versions where id=?", (vid,)).fetchone()
    if row is None:
        raise TuneloopError(f"there is no version v{vid} in this workspace; `versions` lists them")
    return Version.from_row(row)


def list_versions(ws: Workspace) -> list[Version]:
    return [Version.from_row(r) for r in ws.db.execute("select * from dataset_versions order by id")]


def current_version(ws: Workspace) -> Version | None:
    row = ws.db.execute("select value from settings where key='current_version'").fetchone()
    return get_version(ws, row[0]) if row else None


def require_current(ws: Workspace) -> Version:
    v = current_version(ws)
    if v is None:
        raise TuneloopError("this workspace has no dataset yet; import a file first (Data tab, or `import FILE`)")
    return v


def set_current(ws: Workspace, version: int | str, actor: str | None = None) -> Version:
    """Roll back (or forward): make ``version`` the one every step starts from."""
    v = get_version(ws, version)
    with ws.transaction() as db:
        db.execute("insert into settings (key, value) values ('current_version', ?) "
                   "on conflict(key) do update set value=excluded.value", (str(v.id),))
        db.execute("insert into version_events (version_id, event, actor) values (?, 'rollback', ?)", (v.id, actor))
    return v


def lineage(ws: Workspace, version: int | str) -> list[Version]:
    """The version and its ancestors, newest first."""
    chain = [get_version(ws, version)]
    while chain[-1].parent_id is not None:
        chain.append(get_version(ws, chain[-1].parent_id))
    return chain


def chat_records(ws: Workspace, version: int | str, *, step: str) -> list[Record]:
    """The records of an SFT version, for a step that works on chat records (scrub, dedup, filter, split,
    review); a preference version is refused with a message naming it, since those steps would read only
    its prompts and drop or leave its chosen/rejected answers untouched."""
    v = get_version(ws, version)
    if v.kind == "preference":
        raise TuneloopError(f"{v.name} holds preference pairs (prompt, chosen, rejected), and {step} works on chat "
                            f"records; choose a chat version (a DPO run names a preference version as it is)")
    if v.kind == "kto":
        raise TuneloopError(f"{v.name} holds KTO examples (prompt, one answer, desirable or not), and {step} works "
                            f"on chat records; choose a chat version (a KTO run names a KTO version as it is)")
    return load_records(ws, v.id)


def load_records(ws: Workspace, version: int | str) -> list[Record]:
    """The records of a version (a fresh list; the Record objects are shared, do not mutate them)."""
    v = get_version(ws, version)
    key = (str(ws.root), v.id)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return list(_cache[key])
    import pyarrow.parquet as pq
    path = ws.path(v.path)
    if not path.exists():
        raise TuneloopError(f"the snapshot of {v.name} ({v.path}) is missing from the workspace folder")
    table = pq.read_table(path)
    ids = table.column("id").to_pylist()
    msgs = table.column("messages").to_pylist()
    metas = table.column("meta").to_pylist()
    if "completion" in table.column_names:
        records = [Record(id=i, messages=json.loads(m), meta=json.loads(t), completion=json.loads(c),
                          desirable=json.loads(d))
                   for i, m, t, c, d in zip(ids, msgs, metas, table.column("completion").to_pylist(),
                                            table.column("desirable").to_pylist())]
    elif "chosen" in table.column_names:
        records = [Record(id=i, messages=json.loads(m), meta=json.loads(t), chosen=json.loads(c),
                          rejected=json.loads(r))
                   for i, m, t, c, r in zip(ids, msgs, metas, table.column("chosen").to_pylist(),
                                            table.column("rejected").to_pylist())]
    else:
        records = [Record(id=i, messages=json.loads(m), meta=json.loads(t)) for i, m, t in zip(ids, msgs, metas)]
    with _cache_lock:
        _cache[key] = records
        _trim_cache()
    return list(records)


def _trim_cache() -> None:
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)


def diff_versions(ws: Workspace, a: int | str, b: int | str) -> VersionDiff:
    """What changed from version a to version b, matched by record id."""
    ra = {r.id: r for r in load_records(ws, a)}
    rb = {r.id: r for r in load_records(ws, b)}
    diff = VersionDiff(a=parse_version_id(a), b=parse_version_id(b))
    for rid, rec in rb.items():
        old = ra.get(rid)
        if old is None:
            diff.added.append(rec)
        elif old.content_hash() != rec.content_hash():
            diff.changed.append((old, rec))
        else:
            diff.unchanged += 1
    diff.removed = [r for rid, r in ra.items() if rid not in rb]
    return diff


def search_records(records: list[Record], query: str = "", *, split: str | None = None,
                   field_filters: dict[str, str] | None = None) -> list[Record]:
    """Records whose text (or id) contains every word of ``query``, case-insensitive."""
    words = [w.lower() for w in query.split()]
    out = []
    for r in records:
        if split and r.meta.get("split") != split:
            continue
        if field_filters and any(str(r.meta.get(k)) != v for k, v in field_filters.items()):
            continue
        if words:
            hay = (r.id + "\n" + r.text() + "\n" + canonical_json(r.meta)).lower()
            if not all(w in hay for w in words):
                continue
        out.append(r)
    return out


def export_version(ws: Workspace, version: int | str, out: str | Path, fmt: str = "jsonl", *,
                   single_file: bool = False, progress: Callable[[float, str], None] | None = None) -> Export:
    """Write a version as JSONL, CSV, Parquet or a Hugging Face DatasetDict folder; returns the ``Export``.

    A split version becomes one file per split (train, validation, test) in a folder or a .zip / .tar.gz,
    or one file when ``single_file`` is asked for (see ``curation.data.export``). A preference version is
    written in trl's preference shape: prompt, chosen, rejected (plus id, meta); a KTO version in trl's
    unpaired shape: prompt, completion, label (plus id, meta).

    ``progress(fraction, text)`` is told every 1,000 records and before each file; raising from it stops the
    export with nothing written at ``out``."""
    from curation.data.formats import export_row
    say = progress or (lambda f, d: None)
    records = load_records(ws, version)
    rows = []
    for i, record in enumerate(records):
        if i % 1000 == 0:
            say(0.5 * i / max(len(records), 1), f"shaping records ({i:,} of {len(records):,})")
        rows.append(export_row(record))
    return export_rows(rows, out, fmt, single_file=single_file, progress=say)
