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
"""
from __future__ import annotations

import contextlib
import importlib
import os
import sqlite3
import tempfile
import threading
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
        ws = cls(workspace_path(path))
        ws.root.mkdir(parents=True, exist_ok=True)
        ws.migrate()
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


def atomic_write(target: Path, data: bytes) -> None:
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
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
    tmp = target.parent / f".{target.name}.tmp{os.getpid()}"
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            if tmp.is_dir():
                import shutil
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink()
