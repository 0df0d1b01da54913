"""What a run is doing and when it starts: the phases a tiny run reports (metrics, train.log, the CLI, the Train
tab's status), and runs launched while another trains waiting in line, in order, across a restart."""
from __future__ import annotations

import os
import signal
import time

import pytest

from core.workspace import Workspace
from tests.test_train import split_version, tiny_config
from tests.tiny_model import build_tiny_model
from training import registry as R
from training.config import save_config
from training.run_views import phase_text, progress_of, runs_table


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama"))


def test_a_run_reports_each_phase_in_order_with_its_progress(ws, tiny_model, tmp_path, capsys):
    from training.cli import main as training_cli
    from training.ui import status_html
    version = split_version(ws)
    config = save_config(tiny_config(tiny_model, version.name, rouge_test_samples=3), tmp_path / "run.yaml")
    assert training_cli(["run", str(config), "--workspace", str(ws.root)]) == 0
    printed = capsys.readouterr().out
    run = R.list_runs(ws)[0]
    phases = [r for r in R.read_metrics(run) if r.get("event") == "phase"]
    order = [p["phase"] for p in phases]
    assert [name for n, name in enumerate(order) if n == 0 or order[n - 1] != name] == [
        "loading the model", "base-model evaluation", "training", "saving the adapter", "ROUGE-L answers"]
    base_eval = [(p["done"], p["total"]) for p in phases if p["phase"] == "base-model evaluation"]
    assert base_eval == [(0, 6), (4, 6), (6, 6)]                  # 6 val conversations, 4 per batch
    assert [(p["done"], p["total"]) for p in phases if p["phase"] == "training"] == [(0, 4)]
    assert [(p["done"], p["total"]) for p in phases if p["phase"] == "ROUGE-L answers"][-1] == (6, 6)
    # the CLI prints the same phases as lines
    assert "[tuneloop] phase: loading the model" in printed and "[tuneloop] phase: ROUGE-L answers 6/6" in printed
    assert phase_text(run) == ""                                   # a finished run is doing nothing
    # while it ran, the tab said what it was doing: the same rows, cut where each phase began
    rows = R.read_metrics(run)
    at = {name: next(i for i, r in enumerate(rows) if r.get("phase") == name) for name in order}
    running = R.Run(**{**run.__dict__, "status": "running"})
    assert phase_text(running, progress_of(running, rows[:at["loading the model"] + 1])) == "loading the model"
    assert phase_text(running, progress_of(running, rows[:at["ROUGE-L answers"] + 1])) == "ROUGE-L answers 0/6"
    mid = next(i for i, r in enumerate(rows) if r.get("event") == "train" and r["step"] == 2)
    assert phase_text(running, progress_of(running, rows[:mid + 1])).startswith("training: step 2/4 · ETA ")
    assert "<b>now</b>: ROUGE-L answers 6/6" in status_html(running)


def wait_until(condition, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)


def test_runs_launched_while_one_trains_wait_in_line_and_start_in_order(ws, tiny_model):
    from training.ui import status_html
    version = split_version(ws)
    long = tiny_config(tiny_model, version.name, max_steps=500, rouge_test_samples=0)
    first = R.launch_run(ws, long, name="first")
    second = R.launch_run(ws, tiny_config(tiny_model, version.name, max_steps=2, rouge_test_samples=0), name="first")
    third = R.launch_run(ws, long, name="third")
    assert first.pid and not first.waiting
    assert second.waiting and second.pid is None and second.status_text == "queued, position 1"
    assert second.name == f"first #{second.id}"                   # a name already taken gets the run id
    assert R.get_run(ws, third.id).status_text == "queued, position 2"
    assert "queued, position 2: it starts when the runs before it have ended" in status_html(R.get_run(ws, third.id))
    assert [row[2] for row in runs_table(R.list_runs(ws))][:2] == ["queued, position 2", "queued, position 1"]

    # a restart (a fresh view of the workspace) keeps the line; the first run's own job starts the next
    fresh = Workspace.open(ws.root)
    listed = R.list_runs(fresh)
    assert [r.status_text for r in listed[:2]] == ["queued, position 2", "queued, position 1"]
    assert listed[2].id == first.id and listed[2].status in ("queued", "running")
    R.request_stop(fresh, first.id)
    wait_until(lambda: R.get_run(fresh, second.id).pid is not None)
    assert R.get_run_status(fresh, first.id).status == "stopped"
    assert R.get_run(fresh, third.id).status_text == "queued, position 1"
    assert R.wait_for_run(fresh, second.id, timeout=300).status == "finished"
    shown = status_html(R.get_run(fresh, second.id))       # the tail of the job's log, with its phase lines
    assert "class='train-log'" in shown and "[tuneloop] phase: saving the adapter" in shown

    # the third starts when the second ends; killed from outside, the next poll moves the queue on
    wait_until(lambda: R.get_run(fresh, third.id).pid is not None)
    fourth = R.launch_run(fresh, long, name="fourth")
    assert fourth.waiting and fourth.status_text == "queued, position 1"
    os.kill(R.get_run(fresh, third.id).pid, signal.SIGKILL)
    wait_until(lambda: not R.process_alive(R.get_run(fresh, third.id)))
    wait_until(lambda: R.list_runs(Workspace.open(ws.root)) and R.get_run(fresh, fourth.id).pid is not None)
    assert R.get_run(fresh, third.id).status == "failed"
    R.request_stop(fresh, fourth.id)
    assert R.wait_for_run(fresh, fourth.id, timeout=300).status in ("stopped", "finished")


def test_a_queued_run_stopped_leaves_the_line_and_resume_puts_it_back(ws, tiny_model, tmp_path, capsys):
    from training.cli import main as training_cli
    version = split_version(ws)
    long = tiny_config(tiny_model, version.name, max_steps=500, rouge_test_samples=0)
    first = R.launch_run(ws, long)
    assert training_cli(["launch", str(save_config(long, tmp_path / "run.yaml")), "--workspace", str(ws.root)]) == 0
    waiting = R.list_runs(ws)[0]
    assert f"run #{waiting.id} queued, position 1: another run is training" in capsys.readouterr().out
    stopped = R.request_stop(ws, waiting.id)
    assert stopped.status == "stopped" and stopped.pid is None and not R.last_checkpoint(stopped)
    back = R.resume_run(ws, waiting.id)
    assert back.status_text == "queued, position 1"
    R.request_stop(ws, back.id)
    R.request_stop(ws, first.id)
    assert training_cli(["wait", str(first.id), "--workspace", str(ws.root)]) == 0
    printed = capsys.readouterr().out        # the phases it went through while the CLI waited, then how it ended
    assert f"run #{first.id}: " in printed and printed.rstrip().endswith(f"run #{first.id} stopped")
    assert R.get_run(ws, back.id).pid is None and R.get_run(ws, back.id).status == "stopped"
