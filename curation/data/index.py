"""A version's record index: what browsing, searching, filtering and the review queue read, so that their cost
grows with the page asked for, not with the version.

The Parquet snapshot stays the version's record of truth. Its index is a SQLite file beside the workspace's
database, ``index/<snapshot name>.sqlite``, built from the snapshot once (on first use, a batch at a time) and
never changed after, as the version never changes; versions with the same records share one, since the snapshot
is named by its content hash. It is a cache: deleting it costs one rebuild, and one built by an older Tuneloop (its
``user_version`` below ``FORMAT``) is built anew on first use, with a message. It lives in its own file rather than
in the workspace database so that building a million records' index never holds the database's write lock, and
so that it goes with its snapshot.

It holds:

- ``records``: each record's position in the version (its row), id, the record as JSON, and the meta values the
  review queue filters on (source, flagged, needs an answer, approved in an earlier review);
- ``hay``: an FTS5 table with the trigram tokenizer over the text a search looks at (id, every message, meta as
  JSON; lower-cased as ``versions.search_records`` does), contentless: it keeps where each three-character
  sequence is, not the text. A word of three characters or more is found as a substring through the index
  (its trigrams in a row). The text is indexed with two line breaks at its end, which no search word holds
  (words are split at white space), so a word of one or two characters is always the start of a trigram: it is
  searched as any of the index's trigrams that start with it (read from ``hay_terms``, FTS5's vocabulary).

A search therefore finds exactly what the full scan ``versions.search_records`` finds, in the same order.

Example::

    index = record_index(ws, "v3")
    index.count; index.page(0, 20); total, rows = index.search("refund ORD-", start=0, limit=20)
"""
from __future__ import annotations

import atexit
import json
import os
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import orjson

from core.errors import TuneloopError
from core.workspace import Workspace, temp_path
from curation.data import versions as V
from curation.data.records import Record, canonical_json

INDEX_FOLDER = "index"
BUILD_BATCH = 5_000
COMMIT_EVERY = 20_000         # records between the build's commits: each writes one FTS5 segment (about 30 MB held)
DISTINCT_KEPT = 1_000         # a meta field with more distinct values (ids, numbers) has them read from the records
SHORTEST_INDEXED = 3          # the trigram tokenizer finds substrings of three characters or more
END = "\n\n"                 # ends every indexed text: each word of one or two characters starts a trigram
FORMAT = 2                    # the index's layout (pragma user_version); an older file is built anew on first use

_open: dict[Path, "RecordIndex"] = {}
_open_lock = threading.Lock()
_build_locks: dict[Path, threading.Lock] = {}
_builds: dict[Path, "IndexBuild"] = {}
_partial: dict[Path, tuple[Path, int]] = {}   # an index being built: its temp file, how many records it holds


class BuildCancelled(TuneloopError):
    """A background build was told to stop."""


@dataclass
class IndexBuild:
    """An index being built in the background: how far it has got, whether it ended badly, how to stop it."""
    version: str
    fraction: float = 0.0
    error: str | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


def build_in_background(ws: Workspace, version: int | str) -> IndexBuild | None:
    """Start building the index of ``version`` in a thread of this process (the one already running, if any),
    so that the first search does not wait for it; None when the index exists. ``index_status`` tells how far
    it is, ``cancel_build`` stops it (the next first use builds it then)."""
    v = V.get_version(ws, version)
    path = index_path(ws, v)
    if _is_current(path):
        return None
    with _open_lock:
        build = _builds.get(path)
        if build is not None and build.running:
            return build
        build = _builds[path] = IndexBuild(v.name)
        build.thread = threading.Thread(target=_build_quietly, args=(ws, v, build), daemon=True,
                                        name=f"index {v.name}")
    build.thread.start()
    return build


def _build_quietly(ws: Workspace, v: V.Version, build: IndexBuild) -> None:
    """The background thread: the build, its progress and its end kept in ``build`` (nobody waits to hear it)."""
    def report(fraction: float, text: str) -> None:
        if build.stop.is_set():
            raise BuildCancelled(f"the search index of {v.name} was cancelled")
        build.fraction = fraction
    try:
        _index_of(ws, v, report)
    except Exception as exc:
        build.error = str(exc)


@atexit.register
def _stop_builds() -> None:
    """At exit (a CLI import that started one), stop the builds under way so that each removes its temp file."""
    for build in list(_builds.values()):
        if build.running:
            build.stop.set()
            build.thread.join()


def cancel_build(ws: Workspace, version: int | str) -> bool:
    """Stop the background build of ``version``'s index (at its next batch); False when none is running."""
    build = _builds.get(index_path(ws, V.get_version(ws, version)))
    if build is None or not build.running:
        return False
    build.stop.set()
    build.thread.join()
    return True


def index_status(ws: Workspace, version: int | str) -> str:
    """One line on ``version``'s search index, for the Data tab and the CLI: "" once built, else how far its
    build is ("search index: 40% built"), or that it stopped and why."""
    v = V.get_version(ws, version)
    path = index_path(ws, v)
    if _is_current(path):
        return ""
    build = _builds.get(path)
    if build is not None and build.running:
        return (f"search index: {build.fraction:.0%} built (a search reads the part built and the rest of the "
                f"version from its snapshot)")
    if build is not None and build.error:
        return f"search index: not built ({build.error}); it is built on the next search"
    if path.exists():
        return "search index: built by an older Tuneloop; it is built anew on the next search"
    return "search index: not built yet; it is built on the first search"


def snapshot_search(ws: Workspace, version: int | str, query: str, *, start: int = 0, limit: int = 20
                    ) -> tuple[int, list[Record]]:
    """What ``RecordIndex.search`` gives while the index is still being built: the records the build has indexed
    so far (up to a row group of the snapshot) through the part of the index written, the rest read from the
    snapshot a batch at a time (never held)."""
    import pyarrow.parquet as pq
    v = V.get_version(ws, version)
    words = search_words(query)
    snapshot = ws.path(v.path)
    if not snapshot.exists():
        raise TuneloopError(f"the snapshot of {v.name} ({v.path}) is missing from the workspace folder")
    groups = pq.ParquetFile(snapshot)
    total, page, skip, first_group = 0, [], 0, 0
    partial = _partial.get(index_path(ws, v))
    if partial and words:
        tmp, indexed = partial
        while (first_group < groups.num_row_groups
               and skip + groups.metadata.row_group(first_group).num_rows <= indexed):
            skip += groups.metadata.row_group(first_group).num_rows
            first_group += 1
        if skip:
            try:
                part = RecordIndex(tmp)
                try:
                    total, page = part.search(query, start=start, limit=limit, below=skip)
                finally:
                    part.db.close()
            except sqlite3.Error:       # the build ended (its file renamed or removed) meanwhile: read it all
                total, page, skip, first_group = 0, [], 0, 0
    for batch in groups.iter_batches(batch_size=BUILD_BATCH, row_groups=range(first_group, groups.num_row_groups)):
        ids, metas = batch.column("id").to_pylist(), batch.column("meta").to_pylist()
        for i, (rid, messages, meta_text) in enumerate(zip(ids, batch.column("messages").to_pylist(), metas)):
            # haystack(record) from the columns as stored (meta is canonical JSON there); a record is made only
            # for the page
            hay = (rid + "\n" + "\n".join(m["content"] for m in orjson.loads(messages)) + "\n" + meta_text).lower()
            if all(word in hay for word in words):
                if start <= total < start + limit:
                    page.append(_record(_rows_of(batch.slice(i, 1))[0][1]))
                total += 1
    return total, page


def record_index(ws: Workspace, version: int | str, progress: Callable[[float, str], None] | None = None
                 ) -> "RecordIndex":
    """The index of ``version``, built first when it has none (``progress(fraction, text)`` hears how far)."""
    return _index_of(ws, V.get_version(ws, version), progress)


def _index_of(ws: Workspace, v: V.Version, progress: Callable[[float, str], None] | None = None) -> "RecordIndex":
    path = index_path(ws, v)
    with _open_lock:
        found = _open.get(path)
        lock = _build_locks.setdefault(path, threading.Lock())
    if found is not None and path.exists():
        return found
    with lock:
        if not _is_current(path):
            if path.exists():
                with _open_lock:
                    _open.pop(path, None)
                if progress:
                    progress(0.0, f"the search index of {v.name} was built by an older Tuneloop: building it anew")
            build_index(ws, v, path, progress)
        with _open_lock:
            index = _open.get(path)
            if index is None:
                index = _open[path] = RecordIndex(path)
    return index


def built_index(ws: Workspace, version: int | str) -> "RecordIndex | None":
    """The index of ``version`` when it has been built, else None (nothing is built)."""
    v = V.get_version(ws, version)
    return record_index(ws, v.id) if _is_current(index_path(ws, v)) else None


def index_path(ws: Workspace, version: V.Version) -> Path:
    return ws.path(INDEX_FOLDER) / (Path(version.path).stem + ".sqlite")


_formats: dict[tuple[Path, int, int], int] = {}


def _is_current(path: Path) -> bool:
    """Whether ``path`` is an index of this ``FORMAT`` (False when missing, or built by an older Tuneloop)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return False
    key = (path, stat.st_mtime_ns, stat.st_ino)
    if key not in _formats:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            _formats[key] = db.execute("pragma user_version").fetchone()[0]
        finally:
            db.close()
    return _formats[key] == FORMAT


def snapshot_record(ws: Workspace, version: int | str, record_id: str) -> Record | None:
    """One record read straight from the snapshot (the id column, then the row that matches): a record shown
    before the version's index is built."""
    import pyarrow.parquet as pq
    v = V.get_version(ws, version)
    path = ws.path(v.path)
    if not path.exists():
        raise TuneloopError(f"the snapshot of {v.name} ({v.path}) is missing from the workspace folder")
    found = _rows_of(pq.read_table(path, filters=[("id", "=", record_id)]))
    return _record(found[0][1]) if found else None


def snapshot_page(ws: Workspace, version: int | str, start: int, limit: int) -> list[Record]:
    """The records at positions start … start+limit-1 read straight from the snapshot, only the row groups that
    hold them: a version's first page before its index is built."""
    import pyarrow.parquet as pq
    v = V.get_version(ws, version)
    path = ws.path(v.path)
    if not path.exists():
        raise TuneloopError(f"the snapshot of {v.name} ({v.path}) is missing from the workspace folder")
    snapshot = pq.ParquetFile(path)
    out: list[Record] = []
    first = 0
    for group in range(snapshot.num_row_groups):
        rows = snapshot.metadata.row_group(group).num_rows
        if first + rows > start and len(out) < limit:
            batch = snapshot.read_row_group(group)
            skip = max(0, start - first)
            part = batch.slice(skip, limit - len(out))
            out += [_record(raw) for _, raw in _rows_of(part)]
        first += rows
    return out


def haystack(record: Record) -> str:
    """The text a search looks at in a record, lower-cased: its id, every message and its meta."""
    return (record.id + "\n" + record.text() + "\n" + canonical_json(record.meta)).lower()


def search_words(query: str) -> list[str]:
    """The words of a search, lower-cased; a record matches when its haystack contains every one."""
    return [w.lower() for w in (query or "").split()]


def _snapshot_batches(ws: Workspace, version: V.Version):
    """The snapshot's records a batch at a time, as Arrow batches."""
    import pyarrow.parquet as pq
    path = ws.path(version.path)
    if not path.exists():
        raise TuneloopError(f"the snapshot of {version.name} ({version.path}) is missing from the workspace folder")
    yield from pq.ParquetFile(path).iter_batches(batch_size=BUILD_BATCH)


def _rows_of(batch) -> list[tuple[str, str]]:
    """An Arrow batch of a snapshot as (id, the record as JSON) rows."""
    columns = {name: batch.column(name).to_pylist() for name in batch.schema.names}
    ids = columns.pop("id")
    # every column but the id holds canonical JSON text; a plain value (a flag) is written as JSON here
    keys = [f",{json.dumps(name)}:" for name in columns]
    values = [[value if isinstance(value, str) else json.dumps(value) for value in column]
              for column in columns.values()]
    return [(rid, '{"id":' + orjson.dumps(rid).decode() + "".join(k + v[i] for k, v in zip(keys, values)) + "}")
            for i, rid in enumerate(ids)]


def build_index(ws: Workspace, version: V.Version, path: Path,
                progress: Callable[[float, str], None] | None = None) -> None:
    """Write the index of ``version`` to ``path`` (a temp file renamed into place when complete)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path, tag=f"{threading.get_ident()}")
    tmp.unlink(missing_ok=True)
    db = sqlite3.connect(tmp, isolation_level=None)
    try:
        db.execute("pragma journal_mode=off")
        db.execute("pragma synchronous=off")
        db.execute("pragma cache_size=-65536")     # 64 MB of pages: FTS5's segment writes stay in memory
        db.execute("create table records (position integer primary key, id text not null, record text not null,"
                   " source text not null, flagged integer not null, needs_answer integer not null,"
                   " approved integer not null)")
        db.execute("create virtual table hay using fts5(text, content='', tokenize='trigram case_sensitive 1')")
        db.execute("create virtual table hay_terms using fts5vocab(hay, row)")
        # FTS5 writes what it holds as one segment at each commit, and never merges them while the rows go in
        # (50 segments at a million records; a search reads each). Merging them at the end ('optimize') cost a
        # fifth of the build and left the pages it freed in the file (a fifth of its size).
        db.execute("insert into hay (hay, rank) values ('automerge', 0)")
        db.execute("insert into hay (hay, rank) values ('crisismerge', 64)")
        try:
            db.execute("insert into hay (hay, rank) values ('hashsize', 1073741824)")   # not by size: by commit
        except sqlite3.Error:
            pass        # an SQLite before 3.41 flushes every megabyte: a bigger file, the same results
        db.execute("create table meta_values (field text not null, value text not null)")
        db.execute("create table meta_many (field text primary key)")
        db.execute("begin")
        position = committed = 0
        distinct: dict[str, set[str] | None] = {}     # per meta field its values' JSON, None past DISTINCT_KEPT
        for batch in _snapshot_batches(ws, version):
            table, text = [], []
            metas = batch.column("meta").to_pylist()
            for (rid, raw), meta_text in zip(_rows_of(batch), metas):
                record = orjson.loads(raw)
                meta = json.loads(meta_text)    # json: orjson would read an integer past 64 bits as a float
                table.append((position, rid, raw, str(meta.get("source", "")), int(bool(meta.get("flags"))),
                              int(bool(meta.get("needs_answer"))),
                              int((meta.get("review") or {}).get("status") == "approved")))
                # haystack(record) from the row as stored: its meta column is canonical_json(meta) already
                text.append((position, (rid + "\n" + "\n".join(m["content"] for m in record["messages"]) + "\n"
                                        + meta_text).lower() + END))
                position += 1
                for name, value in meta.items():
                    seen = distinct.setdefault(name, set())
                    if seen is not None and value is not None:
                        seen.add(canonical_json(value))
                        if len(seen) > DISTINCT_KEPT:
                            distinct[name] = None
            db.executemany("insert into records values (?,?,?,?,?,?,?)", table)
            db.executemany("insert into hay (rowid, text) values (?,?)", text)
            if position - committed >= COMMIT_EVERY:
                committed = position
                db.execute("commit")        # what is written so far can be searched (snapshot_search) meanwhile
                _partial[path] = (tmp, position)
                db.execute("begin")
            if progress and version.num_records:
                progress(position / version.num_records, f"indexing {version.name}: {position:,} records")
        db.execute("create unique index records_id on records (id)")
        db.execute("create index records_source on records (source)")
        db.executemany("insert into meta_values values (?, ?)",
                       ((name, value) for name, seen in distinct.items() if seen for value in seen))
        db.executemany("insert into meta_many values (?)", ((name,) for name, seen in distinct.items() if seen is None))
        db.execute(f"pragma user_version = {FORMAT}")
        db.execute("commit")
    except BaseException:
        _partial.pop(path, None)
        db.close()
        tmp.unlink(missing_ok=True)
        raise
    _partial.pop(path, None)
    db.close()
    os.replace(tmp, path)


class RecordIndex:
    """An open index file (read only). Connections are per thread; every method is a handful of queries."""

    def __init__(self, path: Path):
        self.path = path
        self._local = threading.local()
        self.count = self.db.execute("select count(*) from records").fetchone()[0]

    @property
    def db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                                      check_same_thread=False)
        return conn

    # -- records -------------------------------------------------------------------------------------
    def page(self, start: int, limit: int) -> list[Record]:
        """The records at positions start … start+limit-1."""
        return [_record(raw) for (raw,) in self.db.execute(
            "select record from records where position >= ? order by position limit ?", (start, limit))]

    def at(self, positions: Iterable[int]) -> list[Record]:
        """The records at these positions, in the order given."""
        wanted = list(positions)
        found: dict[int, Record] = {}
        for chunk in _chunks(wanted):
            found.update((p, _record(raw)) for p, raw in self.db.execute(
                f"select position, record from records where position in ({','.join('?' * len(chunk))})", chunk))
        return [found[p] for p in wanted]

    def record(self, record_id: str) -> Record | None:
        row = self.db.execute("select record from records where id = ?", (record_id,)).fetchone()
        return _record(row[0]) if row else None

    def position(self, record_id: str) -> int | None:
        row = self.db.execute("select position from records where id = ?", (record_id,)).fetchone()
        return row[0] if row else None

    def positions(self, record_ids: Iterable[str]) -> dict[str, int]:
        """{id: position} for the ids the version holds (the others are left out)."""
        out: dict[str, int] = {}
        for chunk in _chunks(list(record_ids)):
            out.update(self.db.execute(
                f"select id, position from records where id in ({','.join('?' * len(chunk))})", chunk))
        return out

    def id_at(self, position: int) -> str:
        return self.db.execute("select id from records where position = ?", (position,)).fetchone()[0]

    def ids_at(self, positions: Iterable[int]) -> dict[int, str]:
        out: dict[int, str] = {}
        for chunk in _chunks(list(positions)):
            out.update(self.db.execute(
                f"select position, id from records where position in ({','.join('?' * len(chunk))})", chunk))
        return out

    # -- filters -------------------------------------------------------------------------------------
    def where(self, column: str, value: object) -> list[int]:
        """Positions whose ``column`` (source, flagged, needs_answer, approved) equals ``value``, in order."""
        if column not in ("source", "flagged", "needs_answer", "approved"):
            raise ValueError(f"the index has no filter column '{column}'")
        return [p for (p,) in self.db.execute(f"select position from records where {column} = ? order by position",
                                              (value,))]

    def meta_values(self, name: str) -> Iterator[tuple[int, object]]:
        """(position, meta[name]) for every record that has the field, in order."""
        path = "$.meta." + json.dumps(name)
        for position, value in self.db.execute(
                "select position, json_quote(json_extract(record, ?1)) from records"
                " where json_type(record, ?1) is not null and json_type(record, ?1) != 'null' order by position",
                (path,)):
            yield position, json.loads(value)

    def distinct_values(self, name: str) -> list[object]:
        """The distinct values records hold in meta field ``name`` (null and missing left out), in no set order:
        from the values the build kept when the field has at most ``DISTINCT_KEPT`` of them, else read from
        every record."""
        if self.db.execute("select 1 from meta_many where field = ?", (name,)).fetchone() is None:
            return [json.loads(v) for (v,) in self.db.execute("select value from meta_values where field = ?", (name,))]
        path = "$.meta." + json.dumps(name)
        return [json.loads(v) for (v,) in self.db.execute(
            "select distinct json_quote(json_extract(record, ?1)) from records"
            " where json_type(record, ?1) is not null and json_type(record, ?1) != 'null'", (path,))]

    def has_value(self, name: str) -> bool:
        """Whether any record has a value (not null, not "") in meta field ``name``."""
        path = "$.meta." + json.dumps(name)
        return self.db.execute("select 1 from records where json_extract(record, ?1) is not null"
                               " and json_extract(record, ?1) != '' limit 1", (path,)).fetchone() is not None

    def sources(self) -> list[str]:
        """Every source the records name (meta.source), sorted."""
        return [s for (s,) in self.db.execute("select distinct source from records where source not in ('', 'None')"
                                              " order by source")]

    def matches(self, words: list[str]) -> list[int]:
        """Positions whose haystack contains every one of ``words`` (lower-cased), in order."""
        found = self._match(words)
        if found is None:
            return []
        return [p for (p,) in self.db.execute("select rowid from hay where hay match ? order by rowid", (found,))]

    def search(self, query: str, *, start: int = 0, limit: int = 20, below: int | None = None
               ) -> tuple[int, list[Record]]:
        """(how many records match every word of ``query``, the page of them from ``start``); with ``below``,
        of the records at positions below it only."""
        words = search_words(query)
        end = self.count if below is None else below
        if not words:
            return end, self.page(start, max(0, min(limit, end - start)))
        found = self._match(words)
        if found is None:
            return 0, []
        total = self.db.execute("select count(*) from hay where hay match ? and rowid < ?", (found, end)).fetchone()[0]
        page = [p for (p,) in self.db.execute("select rowid from hay where hay match ? and rowid < ? order by rowid"
                                              " limit ? offset ?", (found, end, limit, start))]
        return total, self.at(page)

    def _match(self, words: list[str]) -> str | None:
        """The FTS5 query of the records whose haystack holds every word: a word of three characters or more as its
        trigrams in a row, a shorter one as any trigram that starts with it; None when a short word starts none."""
        parts = []
        for word in dict.fromkeys(words):
            if len(word) >= SHORTEST_INDEXED:
                parts.append(_quoted(word))
                continue
            top = word + "\U0010ffff" * (SHORTEST_INDEXED - len(word))
            terms = [t for (t,) in self.db.execute("select term from hay_terms where term between ? and ?",
                                                   (word, top)) if t.startswith(word)]
            if not terms:
                return None
            parts.append("(" + " OR ".join(_quoted(t) for t in terms) + ")")
        return " AND ".join(parts)


def _quoted(text: str) -> str:
    """``text`` as an FTS5 string: with the trigram tokenizer, its trigrams in a row."""
    return '"' + text.replace('"', '""') + '"'


def _record(raw: str) -> Record:
    return Record.from_dict(json.loads(raw))


def _chunks(items: list, size: int = 900) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
