"""The run registry: every training run, its config, data, base model, code, status and artefacts.

A run's job runs in its own process (``python -m training run ...``); the registry stores its pid
and start time, so a page reload or an app restart finds it again, and a process that died without
reporting (kill -9, the OOM killer) is shown as failed, never as running forever.

Example::

    run = launch_run(ws, config, name="first try")      # starts the job process, returns at once
    read_metrics(run)                                   # the metrics.jsonl lines so far
    request_stop(ws, run.id); resume_run(ws, run.id)
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import TuneloopError
from core.workspace import Workspace
from training.config import RunConfig, save_config

# created: registered, no job started yet (``python -m training create``, then ``run --run-id`` or accelerate;
# a run being resumed, until its new process exists). queued: waiting in line while another run trains (no
# process yet, ``queued_at`` set), or its process started and has not reported yet.
STATUSES = ("created", "queued", "running", "finished", "failed", "stopped")
ACTIVE = ("queued", "running")
ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets")
STOP_FILE = "STOP"
# A job on another machine is judged by its heartbeat: silent this long means it died.
REMOTE_HEARTBEAT_TIMEOUT_S = 15 * 60

_processes: dict[int, subprocess.Popen] = {}


@dataclass
class Run:
    id: int
    name: str
    status: str
    config: RunConfig
    output_dir: str
    dataset: str
    dataset_version: int | None
    dataset_hash: str | None
    base_model: str
    base_revision: str | None
    code_version: str | None
    packages: dict[str, str]
    pid: int | None
    pid_started: float | None
    host: str | None
    heartbeat_at: str | None
    stop_requested: bool
    attempts: int
    error: str | None
    metrics: dict[str, Any]
    artefacts: dict[str, str]
    created_at: str
    started_at: str | None
    finished_at: str | None
    parent_run_id: int | None = None         # DPO: the SFT run whose adapter it starts from
    preference_version: int | None = None    # DPO / KTO: the preference or KTO dataset version it trains on
    preference_hash: str | None = None
    queued_at: str | None = None             # when it joined the queue behind a training run
    queue_position: int | None = None        # 1 = starts next; filled in when read, not stored

    @classmethod
    def from_row(cls, row) -> "Run":
        d = dict(row)
        d["config"] = RunConfig.from_dict(json.loads(d["config"]))
        d["packages"] = json.loads(d["packages"] or "{}")
        d["metrics"] = json.loads(d["metrics"] or "{}")
        d["artefacts"] = json.loads(d["artefacts"] or "{}")
        d["stop_requested"] = bool(d["stop_requested"])
        return cls(**d)

    @property
    def label(self) -> str:
        return f"#{self.id} {self.name}"

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir)

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.jsonl"

    @property
    def log_path(self) -> Path:
        return self.run_dir / "train.log"

    @property
    def config_path(self) -> Path:
        return self.run_dir / "config.yaml"

    @property
    def checkpoints_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def adapter_dir(self) -> Path:
        return self.run_dir / "adapter"

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def waiting(self) -> bool:
        """Queued behind another run, with no process of its own yet."""
        return self.status == "queued" and self.pid is None

    @property
    def status_text(self) -> str:
        """The status in words: "queued, position 2" for a run waiting in line."""
        return f"queued, position {self.queue_position}" if self.waiting and self.queue_position else self.status


def code_version() -> str:
    """The git commit of this code (with +dirty when it has uncommitted changes), or 'unknown'."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha + ("+dirty" if dirty else "")) if sha else "unknown"


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "missing"
    return out


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# -- creating and reading runs ----------------------------------------------------------------------
def create_run(ws: Workspace, config: RunConfig, *, name: str | None = None) -> Run:
    """Validate the config and its data, and register a run with status created (nothing is started).

    A DPO or KTO run also records the SFT run it starts from and its data (version and hash), and is refused
    when that data holds nothing it may train on."""
    from training.data import load_split_data
    from training.models import check_base_model
    config.validate()
    check_base_model(config.base_model, ws)
    data = load_split_data(ws, config.datasets)
    if config.eval_steps and not data["val"]:
        raise TuneloopError(f"eval_steps: {data.source} has no validation records; make a split with a val part, "
                            f"or set eval_steps: 0")
    parent, preferences = None, None
    if config.stage in ("dpo", "kto"):
        from training.job import stage_for
        parent = get_run(ws, config.sft_run).id
        preferences, _ = stage_for(config).training_data(ws, config)
    with ws.transaction() as db:
        cur = db.execute(
            "insert into runs (name, status, config, output_dir, dataset, dataset_version, dataset_hash, base_model,"
            " code_version, packages, parent_run_id, preference_version, preference_hash)"
            " values (?, 'created', ?, '', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (name or "", json.dumps(config.to_dict()), config.datasets, data.version_id, data.content_hash,
             config.base_model, code_version(), json.dumps(package_versions()), parent,
             preferences.version_id if preferences else None, preferences.content_hash if preferences else None))
        run_id = cur.lastrowid
        output_dir = Path(config.output_dir).expanduser() if config.output_dir else ws.path("runs", f"run-{run_id}")
        output_dir = output_dir if output_dir.is_absolute() else ws.root / output_dir
        taken = name and db.execute("select 1 from runs where name=? and id<>?", (name, run_id)).fetchone()
        # a name already used gets the run id, so two runs never share one
        run_name = ((f"{name} #{run_id}" if taken else name)
                    or f"{config.base_model.split('/')[-1]} on {data.source} #{run_id}")
        stored = config.replace(output_dir=str(output_dir))
        db.execute("update runs set output_dir=?, name=?, config=? where id=?",
                   (str(output_dir), run_name, json.dumps(stored.to_dict()), run_id))
    output_dir.mkdir(parents=True, exist_ok=True)
    if any(output_dir.iterdir()):
        with ws.transaction() as db:
            db.execute("delete from runs where id=?", (run_id,))
        raise TuneloopError(f"output_dir: '{output_dir}' already holds files; choose an empty or new folder")
    save_config(stored, output_dir / "config.yaml")
    return get_run(ws, run_id)


def get_run(ws: Workspace, run_id: int | str) -> Run:
    rid = parse_run_id(run_id)
    row = ws.db.execute("select * from runs where id=?", (rid,)).fetchone()
    if row is None:
        raise TuneloopError(f"there is no run #{rid} in this workspace; `python -m training list` shows them")
    return _with_queue_positions(ws, [Run.from_row(row)])[0]


def parse_run_id(value: int | str) -> int:
    text = str(value).strip().lstrip("#").split(" ")[0]
    if text.lower().startswith("run-"):
        text = text[4:]
    if not text.isdigit():
        raise TuneloopError(f"'{value}' is not a run id; run ids look like 3 or #3")
    return int(text)


def list_runs(ws: Workspace) -> list[Run]:
    """All runs, newest first, with dead processes detected."""
    runs = [Run.from_row(r) for r in ws.db.execute("select * from runs order by id desc")]
    runs = [refresh_status(ws, run) if run.active else run for run in runs]
    if any(run.waiting for run in runs) and start_next_queued(ws) is not None:
        runs = [Run.from_row(r) for r in ws.db.execute("select * from runs order by id desc")]
    return _with_queue_positions(ws, runs)


def _waiting_ids(ws: Workspace) -> list[int]:
    """The runs waiting in line, first to start first."""
    return [r[0] for r in ws.db.execute("select id from runs where status='queued' and pid is null"
                                        " order by queued_at, id")]


def _with_queue_positions(ws: Workspace, runs: list[Run]) -> list[Run]:
    if any(run.waiting for run in runs):
        order = {rid: n for n, rid in enumerate(_waiting_ids(ws), start=1)}
        for run in runs:
            run.queue_position = order.get(run.id) if run.waiting else None
    return runs


def update_run(ws: Workspace, run_id: int, **values) -> None:
    for key in ("metrics", "artefacts", "packages"):
        if key in values and not isinstance(values[key], str):
            values[key] = json.dumps(values[key])
    if "config" in values and isinstance(values["config"], RunConfig):
        values["config"] = json.dumps(values["config"].to_dict())
    sets = ", ".join(f"{k}=?" for k in values)
    with ws.transaction() as db:
        db.execute(f"update runs set {sets} where id=?", (*values.values(), run_id))


def merge_run_json(ws: Workspace, run_id: int, column: str, values: dict[str, Any]) -> None:
    """Add keys to the run's metrics or artefacts summary."""
    assert column in ("metrics", "artefacts")
    with ws.transaction() as db:
        row = db.execute(f"select {column} from runs where id=?", (run_id,)).fetchone()
        merged = {**json.loads(row[0] or "{}"), **values}
        db.execute(f"update runs set {column}=? where id=?", (json.dumps(merged), run_id))


# -- processes --------------------------------------------------------------------------------------
def _process_start_time(pid: int) -> float | None:
    import psutil
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def process_alive(run: Run) -> bool:
    """Whether the run's job process is still there (same pid and same start time, not a zombie)."""
    if run.pid is None:
        return False
    held = _processes.get(run.id)
    if held is not None and held.pid == run.pid and held.poll() is not None:
        return False
    started = _process_start_time(run.pid)
    return started is not None and (run.pid_started is None or abs(started - run.pid_started) < 1.0)


def refresh_status(ws: Workspace, run: Run) -> Run:
    """A queued or running run whose process is gone is marked failed, with the last log lines."""
    if not run.active or run.waiting:
        return run
    if run.host and run.host != socket.gethostname():
        if run.heartbeat_at and time.time() - _parse_time(run.heartbeat_at) < REMOTE_HEARTBEAT_TIMEOUT_S:
            return run
    elif process_alive(run):
        return run
    current = get_run(ws, run.id)
    if not current.active:
        return current
    tail = log_tail(current, 15)
    message = ("the training process ended without reporting: it was killed from outside or by the system "
               "(running out of memory is the usual cause). Resume it from its last checkpoint, or lower "
               "micro_batch_size / sequence_len.")
    if tail:
        message += "\nLast log lines:\n" + tail
    update_run(ws, run.id, status="failed", error=message, finished_at=_now())
    return get_run(ws, run.id)


def _parse_time(text: str) -> float:
    import calendar
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


def get_run_status(ws: Workspace, run_id: int | str) -> Run:
    """The run, with a dead process detected."""
    return refresh_status(ws, get_run(ws, run_id))


def start_job_process(ws: Workspace, run: Run, *, resume: bool = False) -> Run:
    """Start ``python -m training run`` for a registered run in its own process; returns at once."""
    with ws.transaction() as db:
        _spawn(db, ws, run, resume=resume)
    return get_run(ws, run.id)


def _spawn(db, ws: Workspace, run: Run, *, resume: bool) -> None:
    """The job process of ``run``, recorded on its row within the caller's transaction."""
    cmd = [sys.executable, "-m", "training", "run", str(run.config_path), "--workspace", str(ws.root),
           "--run-id", str(run.id)]
    if resume:
        cmd.append("--resume")
    threads = str(run.config.cpu_threads)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
           "TOKENIZERS_PARALLELISM": "false"}
    run.run_dir.mkdir(parents=True, exist_ok=True)
    with run.log_path.open("ab") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
    _processes[run.id] = proc
    # queued once a process exists; a job that already reported "running" keeps its status
    db.execute("update runs set pid=?, pid_started=?, host=?, heartbeat_at=?,"
               " status=case when status in ('created', 'queued') then 'queued' else status end where id=?",
               (proc.pid, _process_start_time(proc.pid), socket.gethostname(), _now(), run.id))


def launch_run(ws: Workspace, config: RunConfig, *, name: str | None = None) -> Run:
    """Register a run and start its job process (the Launch button); while another run trains, the new one
    is queued and starts when the runs before it have ended."""
    return start_or_queue(ws, create_run(ws, config, name=name))


def training_run(ws: Workspace) -> Run | None:
    """The run whose job process holds this machine's cores now (running, or started and not yet reporting)."""
    for row in ws.db.execute("select * from runs where status in ('queued', 'running') and pid is not null"
                             " order by id").fetchall():
        run = refresh_status(ws, Run.from_row(row))
        if run.active and (run.host in (None, socket.gethostname())):
            return run
    return None


def start_or_queue(ws: Workspace, run: Run) -> Run:
    """Start the run's job now when no other run trains here, else queue it (status queued, no process)."""
    update_run(ws, run.id, status="queued", queued_at=_now_precise(), pid=None, pid_started=None)
    start_next_queued(ws)
    return get_run(ws, run.id)


def start_next_queued(ws: Workspace) -> Run | None:
    """Start the first queued run when no run trains on this machine; returns it (None when nothing started).

    Called by a job as it ends and whenever the runs are listed, so the queue moves on after a crash or a
    server restart too. The check and the start are one transaction, so two callers never start two runs.
    A run with a checkpoint resumes from it (a resumed run that waited in line)."""
    if training_run(ws) is not None:
        return None
    with ws.transaction() as db:
        busy = db.execute("select 1 from runs where status in ('queued', 'running') and pid is not null"
                          " and (host is null or host=?)", (socket.gethostname(),)).fetchone()
        first = None if busy else db.execute("select * from runs where status='queued' and pid is null"
                                             " order by queued_at, id limit 1").fetchone()
        if first is None:
            return None
        run = Run.from_row(first)
        _spawn(db, ws, run, resume=last_checkpoint(run) is not None)
    return get_run(ws, run.id)


def _now_precise() -> str:
    """A UTC timestamp with microseconds: the queue's order when runs join it in the same second."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1e6) % 1_000_000:06d}Z"


def request_stop(ws: Workspace, run_id: int | str) -> Run:
    """Ask a run to stop gracefully: it saves a checkpoint at the end of the current step, then stops."""
    run = get_run_status(ws, run_id)
    if not run.active:
        raise TuneloopError(f"run {run.label} is {run.status}, not running; there is nothing to stop")
    if run.waiting:
        # nothing has trained yet: it leaves the queue, and Resume puts it back in line
        update_run(ws, run.id, status="stopped", queued_at=None, finished_at=_now())
        return get_run(ws, run.id)
    (run.run_dir / STOP_FILE).write_text(_now())
    update_run(ws, run.id, stop_requested=1)
    return get_run(ws, run.id)


def last_checkpoint(run: Run) -> Path | None:
    """The newest complete checkpoint folder of a run, or None."""
    if not run.checkpoints_dir.is_dir():
        return None
    done = [p for p in run.checkpoints_dir.glob("checkpoint-*")
            if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[-1]), default=None)


def resume_run(ws: Workspace, run_id: int | str) -> Run:
    """Start a stopped or failed run again from its last checkpoint (from the start when it has none)."""
    run = get_run_status(ws, run_id)
    if run.status not in ("stopped", "failed"):
        raise TuneloopError(f"run {run.label} is {run.status}; only a stopped or failed run can be resumed")
    (run.run_dir / STOP_FILE).unlink(missing_ok=True)
    # created until its process exists (start_job_process queues it), so that a poll in between sees no failure
    update_run(ws, run.id, status="created", stop_requested=0, error=None, finished_at=None)
    return start_or_queue(ws, get_run(ws, run.id))


def wait_for_run(ws: Workspace, run_id: int | str, *, timeout: float = 600, poll: float = 0.5) -> Run:
    """Block until the run is no longer queued or running (or the timeout passes); returns it."""
    deadline = time.monotonic() + timeout
    while True:
        run = get_run_status(ws, run_id)
        if not run.active or time.monotonic() > deadline:
            return run
        time.sleep(poll)


# -- artefacts written by the job ---------------------------------------------------------------------
def read_metrics(run: Run) -> list[dict[str, Any]]:
    """The metrics lines written so far (a line being written is skipped)."""
    if not run.metrics_path.is_file():
        return []
    rows = []
    for line in run.metrics_path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def log_tail(run: Run, lines: int = 20) -> str:
    if not run.log_path.is_file():
        return ""
    with run.log_path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - 64_000))
        text = fh.read().decode("utf-8", errors="replace")
    # Progress bars redraw with carriage returns; keep the last state of each line.
    cleaned = [ln.split("\r")[-1] for ln in text.split("\n")]
    return "\n".join([ln for ln in cleaned if ln.strip()][-lines:])
