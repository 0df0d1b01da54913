"""A SIGKILL at any moment of a large import leaves no version without its complete snapshot, and opening the
workspace again removes what the killed process left (issue #20, item 6): temp files whose writer is gone, and
snapshots no version row names. A temp file of a writer that is still running is left alone."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from core.workspace import Workspace, sweep_leftovers, temp_path
from curation.data.versions import content_hash, create_version, list_versions, load_records
from curation.data.records import Record

ROOT = Path(__file__).resolve().parent.parent
RECORDS = 50_000


def ticket_lines(n: int) -> str:
    return "".join(json.dumps({"messages": [
        {"role": "user", "content": f"Where is parcel {i * 7919 % 100_003}? I ordered it on day {i % 28 + 1}."},
        {"role": "assistant", "content": f"Parcel {i * 7919 % 100_003} left the depot; it arrives in {i % 5 + 1} days."},
    ]}) + "\n" for i in range(n))


def leftovers(ws_root: Path) -> dict[str, list[str]]:
    """Temp files anywhere in versions/, and snapshots no row names (read straight from the folder and the
    database, without opening the workspace, which would sweep them)."""
    import sqlite3
    folder = ws_root / "versions"
    names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    named = set()
    if (ws_root / "tuneloop.sqlite").exists():
        with sqlite3.connect(ws_root / "tuneloop.sqlite") as db:
            if db.execute("select 1 from sqlite_master where name='dataset_versions'").fetchone():
                named = {Path(r[0]).name for r in db.execute("select path from dataset_versions")}
    return {"temp": [n for n in names if ".tmp" in n],
            "unreferenced": [n for n in names if n.endswith(".parquet") and not n.startswith(".") and n not in named]}


def assert_every_version_complete(ws: Workspace) -> None:
    for v in list_versions(ws):
        path = ws.path(v.path)
        assert path.is_file(), f"{v.name} has no snapshot"
        assert pq.ParquetFile(path).metadata.num_rows == v.num_records
        assert content_hash(load_records(ws, v.id)) == v.content_hash


def start_import(ws_root: Path, data: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "curation", "--workspace", str(ws_root), "import", str(data)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill_when(proc: subprocess.Popen, ws_root: Path, *, after_start: float | None, after_temp: float | None) -> str:
    """SIGKILL ``proc`` ``after_start`` seconds after it started, or ``after_temp`` seconds after its snapshot
    temp file appeared; returns when it was killed (or that it finished first)."""
    started = time.monotonic()
    folder = ws_root / "versions"
    while proc.poll() is None:
        if after_start is not None and time.monotonic() - started >= after_start:
            break
        if after_temp is not None and folder.is_dir() and any(".tmp" in n for n in os.listdir(folder)):
            time.sleep(after_temp)
            break
        time.sleep(0.002)
    if proc.poll() is not None:
        return "finished"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return "killed"


def test_sigkill_at_many_moments_of_a_50k_import_leaves_no_partial_version_and_no_orphan_after_reopening(tmp_path):
    ws_root = tmp_path / "ws"
    base = ticket_lines(RECORDS)
    Workspace.open(ws_root)
    # Two kills while it reads the file, eight from the moment its snapshot write begins to after the commit.
    moments = [dict(after_start=0.3, after_temp=None), dict(after_start=1.5, after_temp=None)] + [
        dict(after_start=None, after_temp=t) for t in (0.0, 0.01, 0.03, 0.06, 0.1, 0.2, 0.4, 0.8)]
    outcomes, garbage_seen = [], 0
    for n, moment in enumerate(moments):
        data = tmp_path / f"tickets-{n}.jsonl"   # each import has its own records, so each writes a snapshot
        data.write_text(base.replace("Where is parcel", f"Batch {n}: where is parcel"))
        outcomes.append(kill_when(start_import(ws_root, data), ws_root, **moment))
        before = leftovers(ws_root)
        garbage_seen += len(before["temp"]) + len(before["unreferenced"])
        ws = Workspace.open(ws_root)
        assert leftovers(ws_root) == {"temp": [], "unreferenced": []}, (n, moment, before)
        assert_every_version_complete(ws)
    assert outcomes.count("killed") >= 8, outcomes
    assert garbage_seen, "no kill landed during a snapshot write, so the sweep was not exercised"


def test_the_sweep_leaves_a_live_writers_temp_and_removes_a_dead_or_replaced_ones(ws):
    folder = ws.path("versions")
    folder.mkdir()
    live = temp_path(folder / "a.parquet")
    live.write_bytes(b"being written")
    dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout.strip()
    dead = folder / f".b.parquet.tmp{dead_pid}"
    dead.write_bytes(b"half")
    dead_folder = ws.path("runs", "3", f".adapter.tmp{dead_pid}")
    dead_folder.mkdir(parents=True)
    (dead_folder / "adapter_model.safetensors").write_bytes(b"half")
    # This process's own pid on a temp written before this process started: a pid reused after a restart.
    replaced = folder / f".c.parquet.tmp{os.getpid()}.x1"
    replaced.write_bytes(b"old")
    os.utime(replaced, (time.time() - 86_400, time.time() - 86_400))
    assert sweep_leftovers(ws) == {"temp": 3, "unreferenced": 0}
    assert live.exists() and not dead.exists() and not dead_folder.exists() and not replaced.exists()


def test_the_sweep_removes_only_snapshots_no_version_names(ws):
    kept = create_version(ws, [Record(id="r1", messages=[{"role": "user", "content": "hi"}])], parent=None,
                          step="import")
    orphan = ws.path("versions", "0123456789abcdef-7.parquet")
    orphan.write_bytes(b"PAR1")
    other = ws.path("versions", "notes.txt")
    other.write_text("a user's file, not a snapshot")
    assert sweep_leftovers(ws) == {"temp": 0, "unreferenced": 1}
    assert ws.path(kept.path).exists() and not orphan.exists() and other.exists()
