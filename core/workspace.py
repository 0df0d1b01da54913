"""The workspace: one folder holding one SQLite database and the artefacts it points at.

Each package owns its tables and declares them as an ordered list of migrations in its
``schema`` module (``curation.schema``, ``training.schema``, ``evaluation.schema``). A migration is
applied once, in order, and recorded in ``_migrations``; applied migrations are never edited, the
next one is added instead.

Example::

    ws = Workspace.open("./workspace")
    with ws.transaction() as db:
        db.execute("insert into ...")
    ws.write_bytes("versions/v3.parquet", data)   # atomic: temp file + rename

Opening a workspace also sweeps what a killed process left behind (``sweep_leftovers``): temp files whose
writer is gone, and artefacts a package declared (``referenced_files``) that no row points at.
"""
from __future__ import annotations

import contextlib
import fnmatch
import importlib
import os
import re
import shutil
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from core.errors import TuneloopError

DEFAULT_WORKSPACE = "./workspace"
SCHEMA_MODULES = ("core.schema", "curation.schema", "training.schema", "evaluation.schema")

Migration = Callable[[sqlite3.Connection], None]


def migrations(package: str) -> Callable[..., Migration]:
    """Decorator factory: ``migration = migrations("curation")``, then ``@migration`` on each step.

    A step that rebuilds a table (create the new one, copy, drop the old, rename) is declared
    ``@migration(foreign_keys=False)``: it runs with foreign keys off, as SQLite requires for a rebuild,
    and every key is checked before its transaction commits.
    """
    registry = _REGISTRY.setdefault(package, [])

    def register(fn: Migration | None = None, *, foreign_keys: bool = True):
        def add(step: Migration) -> Migration:
            step.foreign_keys = foreign_keys
            registry.append(step)
            return step

        return add(fn) if fn is not None else add

    return register


_REGISTRY: dict[str, list[Migration]] = {}
# (folder, file pattern, table, column): files a package writes under the workspace and points at from a row.
_REFERENCED: list[tuple[str, str, str, str]] = []


def referenced_files(folder: str, pattern: str, *, table: str, column: str) -> None:
    """Declare that files matching ``pattern`` in ``folder`` exist only for the rows of ``table`` whose
    ``column`` holds their workspace-relative path; on opening the workspace one that no row names is removed.

    The writer must put such a file in place and insert its row inside one ``transaction()``: the sweep lists
    the folder and the rows inside a transaction too, so it never sees a file between rename and insert."""
    entry = (folder, pattern, table, column)
    if entry not in _REFERENCED:
        _REFERENCED.append(entry)


def workspace_path(path: str | os.PathLike | None = None) -> Path:
    """The workspace folder: an explicit path, else $TUNELOOP_WORKSPACE, else ./workspace."""
    return Path(path or os.environ.get("TUNELOOP_WORKSPACE") or DEFAULT_WORKSPACE).expanduser().resolve()


class Workspace:
    """A workspace folder and its database. Cheap to create; connections are per thread."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.db_path = self.root / "tuneloop.sqlite"
        self._local = threading.local()

    @classmethod
    def open(cls, path: str | os.PathLike | None = None) -> "Workspace":
        """The workspace at ``path`` (made if missing), migrated and swept of what killed processes left."""
        ws = cls(workspace_path(path))
        ws.root.mkdir(parents=True, exist_ok=True)
        ws.migrate()
        sweep_leftovers(ws)
        return ws

    # -- database -------------------------------------------------------------------------
    def connect(self) -> sqlite3.Connection:
        """A new connection with the house settings: WAL, foreign keys, busy timeout, Row rows."""
        db = sqlite3.connect(self.db_path, timeout=30, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.execute("pragma journal_mode=wal")
        db.execute("pragma foreign_keys=on")
        db.execute("pragma busy_timeout=30000")
        db.execute("pragma synchronous=normal")
        return db

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection (autocommit; use ``transaction()`` for several statements)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.connect()
        return conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``begin immediate`` … commit, or rollback on any exception."""
        db = self.db
        db.execute("begin immediate")
        try:
            yield db
        except BaseException:
            db.execute("rollback")
            raise
        db.execute("commit")

    def migrate(self) -> list[str]:
        """Apply every pending migration of every package; returns the names applied."""
        for module in SCHEMA_MODULES:
            importlib.import_module(module)
        db = self.db
        db.execute("create table if not exists _migrations (package text, name text, applied_at text"
                   " default (datetime('now')), primary key (package, name))")
        applied = []
        for package, steps in _REGISTRY.items():
            done = {r[0] for r in db.execute("select name from _migrations where package=?", (package,))}
            for step in steps:
                if step.__name__ in done:
                    continue
                self._apply(package, step)
                applied.append(f"{package}.{step.__name__}")
        return applied

    def _apply(self, package: str, step: Migration) -> None:
        """One step in one transaction; a rebuild step with foreign keys off, checked before commit."""
        rebuild = not getattr(step, "foreign_keys", True)
        db = self.db
        if rebuild:
            db.execute("pragma foreign_keys=off")     # has no effect inside a transaction, so set it first
        try:
            with self.transaction() as tx:
                step(tx)
                broken = tx.execute("pragma foreign_key_check").fetchall() if rebuild else []
                if broken:
                    table, rowid, parent = broken[0][0], broken[0][1], broken[0][2]
                    raise TuneloopError(f"migration {package}.{step.__name__} left {len(broken)} row(s) pointing at "
                                        f"nothing (first: {table} row {rowid} → {parent}); the database is unchanged, "
                                        f"report this with a copy of the workspace")
                tx.execute("insert into _migrations (package, name) values (?, ?)", (package, step.__name__))
        finally:
            if rebuild:
                db.execute("pragma foreign_keys=on")

    # -- artefacts ------------------------------------------------------------------------
    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def write_bytes(self, relpath: str | Path, data: bytes) -> Path:
        """Write a file under the workspace atomically (temp file in the same folder, then rename)."""
        target = self.root / relpath
        atomic_write(target, data)
        return target


def temp_path(target: Path, *, tag: str = "") -> Path:
    """Where a writer of ``target`` puts its temp file or folder: beside it, hidden, named after this
    process (``.NAME.tmpPID``, or ``.NAME.tmpPID.TAG`` for writers within one process that must not
    share one), which is how ``sweep_leftovers`` tells whether its writer is still running."""
    target = Path(target)
    return target.parent / (f".{target.name}.tmp{os.getpid()}" + (f".{tag}" if tag else ""))


def atomic_write(target: Path, data: bytes) -> None:
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_path(target).name + ".", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """For writers that want a path (pyarrow, save_to_disk): yields a temp path, renamed on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(target)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink()


def served_files_folder(ws: Workspace) -> Path:
    """Where the app's server process keeps the files it serves: Gradio's uploads and cache (the app points
    ``GRADIO_TEMP_DIR`` here) and the exports made for download. Named like a temp folder of this process, so
    that opening the workspace after the server has ended removes it (``sweep_leftovers``): the records in
    those files stay in the workspace, never in the machine's shared temp folder."""
    return temp_path(ws.path("served"))


EXPORT_KEEP_S = 3600   # an export is downloaded (and copied into Gradio's cache) long before this


def export_folder(ws: Workspace) -> Path:
    """A new, empty folder for one export to download, in ``served_files_folder``; this process's exports
    older than EXPORT_KEEP_S go as it is made."""
    parent = served_files_folder(ws) / "exports"
    parent.mkdir(parents=True, exist_ok=True)
    for old in parent.iterdir():
        with contextlib.suppress(FileNotFoundError):
            if old.stat().st_mtime < time.time() - EXPORT_KEEP_S:
                shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=parent))


# -- start-up sweep -----------------------------------------------------------------------------------

_TEMP_NAME = re.compile(r"\..+\.tmp(\d+)(\.[A-Za-z0-9_]+)?")
SWEEP_DEPTH = 2   # the root, its folders and theirs: versions/, exports/, runs/<id>/ (where temp files are made)


def sweep_leftovers(ws: Workspace) -> dict[str, int]:
    """Remove what a killed process left in the workspace; returns how many of each kind went.

    - A temp file or folder (``.NAME.tmpPID``, see ``temp_path``) goes once no running process can be its
      writer: the process PID is gone, or the process now holding that PID started after the temp was last
      written (a PID reused after a restart, as in a container where the app is always PID 1). A temp of a
      live writer (an import in another process, mid-write) is left alone however old it is. This assumes
      the processes writing a workspace share one machine's process table, as SQLite in WAL mode does.
    - A file declared with ``referenced_files`` goes when no row names it, checked inside a transaction.
    """
    removed = {"temp": 0, "unreferenced": 0}
    for entry in _temp_entries(ws.root):
        if not _writer_may_be_running(entry):
            with contextlib.suppress(FileNotFoundError):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed["temp"] += 1
    for folder, pattern, table, column in _REFERENCED:
        removed["unreferenced"] += _sweep_unreferenced(ws, folder, pattern, table, column)
    return removed


def _temp_entries(root: Path) -> list[Path]:
    found, level = [], [str(root)]
    for _ in range(SWEEP_DEPTH + 1):
        below = []
        for folder in level:
            with contextlib.suppress(OSError), os.scandir(folder) as entries:
                for entry in entries:
                    if ".tmp" in entry.name and _TEMP_NAME.fullmatch(entry.name):
                        found.append(Path(entry.path))
                    elif entry.is_dir(follow_symlinks=False):
                        below.append(entry.path)
        level = below
    return found


def _writer_may_be_running(temp: Path) -> bool:
    pid = int(_TEMP_NAME.fullmatch(temp.name).group(1))
    try:
        written = temp.lstat().st_mtime
    except FileNotFoundError:
        return True           # gone already: its writer renamed it into place
    if os.name == "nt":
        return True           # os.kill there ends the process instead of asking about it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass                  # alive, another user's
    started = _process_start(pid)
    return started is None or started <= written + 1


def _process_start(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), where /proc tells; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
    except (OSError, StopIteration, IndexError, ValueError):
        return None
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _sweep_unreferenced(ws: Workspace, folder: str, pattern: str, table: str, column: str) -> int:
    base = ws.root / folder
    if not base.is_dir():
        return 0

    def orphans(db) -> list[Path]:
        named = {row[0].replace("\\", "/") for row in db.execute(f"select {column} from {table}")}
        with os.scandir(base) as entries:
            return [Path(e.path) for e in entries if fnmatch.fnmatch(e.name, pattern) and e.is_file()
                    and f"{folder}/{e.name}" not in named]

    if not orphans(ws.db):    # the usual case, without taking the write lock
        return 0
    with ws.transaction() as db:
        found = orphans(db)
        for f in found:
            f.unlink(missing_ok=True)
    return len(found)
