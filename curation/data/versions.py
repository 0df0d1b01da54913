"""Dataset versions: immutable snapshots of records with their lineage.

Every curation step reads a version and writes a new one (``create_version``) whose parent is
the version it read, naming the step with its parameters and counts. The records live in a
Parquet snapshot under ``workspace/versions/``; the database row points at it. A version never
changes once made, so loaded records are cached by id. "Current" is a pointer: rolling back is
pointing it at an older version (a new version is never needed for that).

A version has a ``kind``: ``sft`` (chat records, what every curation step works on) or
``preference`` (prompt, chosen and rejected answers, made from rated pairs, what DPO trains on).
The Parquet snapshot holds the columns ``id``, ``messages`` and ``meta`` (canonical JSON text);
a preference snapshot also holds ``chosen`` and ``rejected`` (JSON lists of assistant turns), and
its ``messages`` is the prompt. A preference version never becomes the current version.

Example::

    v = create_version(ws, records, parent=None, step="import", params={"file": "a.jsonl"})
    load_records(ws, v.id); diff_versions(ws, v.id, v2.id); set_current(ws, v.id)
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from core.errors import TuneloopError
from core.workspace import Workspace, temp_path
from curation.data.export import Export, export_rows
from curation.data.records import Record, canonical_json

_CACHE_SIZE = 4
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
        what = "preference pairs" if self.kind == "preference" else "records"
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


def create_version(ws: Workspace, records: list[Record], *, parent: int | None, step: str,
                   params: dict[str, Any] | None = None, counts: dict[str, Any] | None = None,
                   note: str = "", created_by: str | None = None, make_current: bool = True,
                   also: Callable[[sqlite3.Connection, int], None] | None = None) -> Version:
    """Write a new immutable version; returns it. The snapshot is written before the row exists.

    Its kind follows the records: preference records make a preference version, which is never
    made current. ``also(db, version_id)`` runs the caller's own statements inside the same transaction
    (a row that points at the new version): if it raises, no version is left behind."""
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        raise TuneloopError("a version cannot hold two records with the same id")
    kind = version_kind(records)
    make_current = make_current and kind == "sft"
    if parent is not None:
        get_version(ws, parent)
    import pyarrow as pa
    import pyarrow.parquet as pq

    digest = content_hash(records)
    columns = {
        "id": [r.id for r in records],
        "messages": [canonical_json(r.messages) for r in records],
        "meta": [canonical_json(r.meta) for r in records],
    }
    if kind == "preference":
        columns.update(chosen=[canonical_json(r.chosen) for r in records],
                       rejected=[canonical_json(r.rejected) for r in records])
    table = pa.table(columns)
    rel = Path("versions") / f"{digest[:16]}-{len(records)}.parquet"
    target = ws.path(str(rel))
    tmp = temp_path(target, tag=str(threading.get_ident()))   # two threads may write the same snapshot

    def write(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, compression="zstd")

    try:
        if not target.exists():
            write(tmp)   # outside the transaction: the slow part
        vid = _insert_version(ws, target, tmp, write, make_current=make_current, also=also, row=(
            parent, step, json.dumps(params or {}), json.dumps({"records": len(records), **(counts or {})}), note,
            digest, len(records), str(rel), created_by, kind))
    finally:
        tmp.unlink(missing_ok=True)
    with _cache_lock:
        _cache[(str(ws.root), vid)] = list(records)
        _trim_cache()
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
    """``preference`` when every record carries chosen/rejected answers, ``sft`` when none does."""
    preference = sum(1 for r in records if r.is_preference)
    if preference and preference != len(records):
        first = next(r for r in records if not r.is_preference)
        raise TuneloopError(f"record '{first.id}' has no chosen/rejected answers while {preference} others do; a "
                            f"version holds either chat records or preference pairs, not both")
    return "preference" if preference else "sft"


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
    if v.kind != "sft":
        raise TuneloopError(f"{v.name} holds preference pairs (prompt, chosen, rejected), and {step} works on chat "
                            f"records; choose a chat version (a DPO run names a preference version as it is)")
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
    if "chosen" in table.column_names:
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
                   single_file: bool = False) -> Export:
    """Write a version as JSONL, CSV, Parquet or a Hugging Face DatasetDict folder; returns the ``Export``.

    A split version becomes one file per split (train, validation, test) in a folder or a .zip / .tar.gz,
    or one file when ``single_file`` is asked for (see ``curation.data.export``). A preference version is
    written in trl's preference shape: prompt, chosen, rejected (plus id, meta)."""
    from curation.data.formats import export_row
    return export_rows([export_row(r) for r in load_records(ws, version)], out, fmt, single_file=single_file)
