"""The rounds view on a real finished run of a tiny model: it reads the run's own figures, lists failed and
stopped runs apart, measures what is missing from its button, and shows the general-skills guard, which runs
by itself once a run has finished (and waits while one trains); the model card shows the guard too."""
from __future__ import annotations

import os
import socket
import time

import gradio as gr
import pytest

from core.workspace import Workspace
from evaluation import guard as G
from evaluation import rounds_ui
from evaluation.auto import latest_auto_evaluation, runs_without_figures
from evaluation.model_card import model_card
from evaluation.rounds import round_rows, rounds_table, runs_apart
from tests.test_train import split_version, tiny_config
from tests.tiny_model import build_tiny_model
from training import registry as R
from training.job import run_training

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    """A workspace with one finished run (trained here), one failed and one stopped."""
    model = str(build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama"))
    ws = Workspace.open(tmp_path_factory.mktemp("rounds-guard") / "ws")
    version = split_version(ws)
    done = run_training(ws, R.create_run(ws, tiny_config(model, version.name, rouge_test_samples=4)).id)
    assert done.status == "finished", done.error
    failed = R.create_run(ws, tiny_config(model, version.name), name="broke")
    R.update_run(ws, failed.id, status="failed", error="out of memory")
    stopped = R.create_run(ws, tiny_config(model, version.name), name="halted")
    R.update_run(ws, stopped.id, status="stopped")
    return ws, done, failed, stopped


def view(ws):
    with gr.Blocks():
        w = rounds_ui.layout_rounds()
    return w


def test_the_rounds_view_reads_the_runs_own_rouge_and_lists_failed_runs_apart(loop):
    ws, done, failed, stopped = loop
    rows = round_rows(ws)
    assert [r.run_id for r in rows] == [done.id]                       # a failed or stopped run is no round
    assert {r.id for r in runs_apart(ws)} == {failed.id, stopped.id}
    row = rows[0]
    assert row.measured_by == "the run itself"
    assert row.figures["rouge_l"] == done.metrics["rouge_l_tuned"]
    assert row.base_figures["rouge_l"] == done.metrics["rouge_l_base"]
    cell = rounds_table(rows)[0]["ROUGE-L"]
    assert cell == f"{done.metrics['rouge_l_base']:.3f} → {done.metrics['rouge_l_tuned']:.3f}"
    w = view(ws)
    shown = rounds_ui.show_rounds(ws, w)
    assert "1 run(s) over 1 round(s)" in shown[w.summary] and "is the run's own" in shown[w.summary]
    assert f"#{failed.id} broke (failed)" in shown[w.apart] and f"#{stopped.id} halted (stopped)" in shown[w.apart]
    points = shown[w.line]["value"]
    # one round still draws a line: from the base model's ROUGE-L to the run's (one point alone draws nothing)
    assert list(zip(points["run"], points["figure"], points["value"])) == [
        (rounds_ui.BASE_POINT, "ROUGE-L", done.metrics["rouge_l_base"]),
        (row.label, "ROUGE-L", done.metrics["rouge_l_tuned"])]
    assert shown[w.line]["sort"] == [rounds_ui.BASE_POINT, row.label]


def test_the_guard_waits_while_a_run_trains_then_checks_each_finished_run_once(loop):
    ws, done, *_ = loop
    assert [r.id for r in G.runs_without_guard(ws)] == [done.id]
    me = os.getpid()
    busy = R.create_run(ws, R.get_run(ws, done.id).config.replace(output_dir=""), name="training now")
    R.update_run(ws, busy.id, status="running", pid=me, pid_started=R._process_start_time(me),
                 host=socket.gethostname())
    assert G.guard_finished_runs(ws) == []                              # its cores belong to the training run
    # the app's watcher: runs that finished before it started are left alone, one that finishes later is checked
    watcher = G.GuardWatcher(ws, every=0.2)
    assert G.runs_without_guard(ws, skip=watcher.before) == []
    R.update_run(ws, done.id, finished_at="2099-01-01T00:00:00Z")      # finishes again (a resume) while watched
    watcher.start()
    time.sleep(1.5)
    assert G.guard_result(ws, done.id) is None                          # still waiting for the training run
    R.update_run(ws, busy.id, status="failed")
    deadline = time.monotonic() + 600
    while G.guard_result(ws, done.id) is None and time.monotonic() < deadline:
        time.sleep(0.5)
    watcher.stop()
    assert G.guard_finished_runs(ws) == [] and G.runs_without_guard(ws) == []
    result = G.guard_result(ws, done.id)
    assert result.total == len(G.guard_suite(ws).cases) == 12
    assert 0 <= result.tuned_passed <= 12 and 0 <= result.agreement <= 1
    assert set(result.lost) <= {c.name for c in G.guard_suite(ws).cases}
    row = next(r for r in round_rows(ws) if r.run_id == done.id)
    assert row.guard.text == result.text
    assert rounds_table([row])[0]["general skills (guard)"] == result.text
    assert "regression_total" not in row.figures                       # the guard is not one of the domain suites
    card = model_card(ws, done.id)
    assert "## General skills (guard)" in card and f"passes **{result.tuned_passed}/12**" in card
    assert f"| {G.GUARD_SUITE} |" not in card                           # not again in the regression table


def test_ctrl_c_during_auto_missing_stops_with_a_message_and_leaves_the_run_unmeasured(loop, capsys, monkeypatch):
    from evaluation import auto as A
    from evaluation.cli import main as evaluation_cli
    ws, done, *_ = loop

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(A, "auto_evaluate", interrupted)
    assert evaluation_cli(["auto", "--missing", "--workspace", str(ws.root)]) == 130
    err = capsys.readouterr().err
    assert "stopped; the runs measured so far keep their figures, 1 run(s) still lack them" in err
    assert "Traceback" not in err
    assert [r.id for r in runs_without_figures(ws)] == [done.id]


def test_measure_automatically_fills_bleu_and_perplexity_for_runs_lacking_them(loop):
    ws, done, *_ = loop
    assert [r.id for r in runs_without_figures(ws)] == [done.id]
    w = view(ws)
    told = []
    shown = rounds_ui.measure(ws, w, None, progress=lambda value, desc=None: told.append(desc))
    assert shown[w.measured] == f"Measured run #{done.id}."
    assert any(text and text.startswith(f"run #{done.id}") for text in told)
    auto = latest_auto_evaluation(ws, done.id)
    assert auto.dataset_version == done.dataset_version and auto.metrics["finetuned"]["answers"] == 6
    row = next(r for r in round_rows(ws) if r.run_id == done.id)
    assert row.measured_by == "automatic evaluation" and row.figures["bleu"] is not None
    assert not shown[w.bars]["value"].empty                              # perplexity bars, base and fine-tuned
    assert runs_without_figures(ws) == []
    assert rounds_ui.measure(ws, w, None, progress=lambda *a, **k: None)[w.measured].startswith("Every finished")


def test_the_cli_measures_what_the_button_measures(loop, capsys):
    from evaluation.cli import main as evaluation_cli
    ws, done, *_ = loop
    assert evaluation_cli(["auto", "--missing", "--workspace", str(ws.root)]) == 0
    printed = capsys.readouterr()
    # measured here, or already by the button (the test before)
    assert f"run {done.id} on v" in printed.out or "every finished run already has" in printed.err
    assert runs_without_figures(ws) == []
    assert evaluation_cli(["auto", "--workspace", str(ws.root)]) != 0
    assert "auto needs --run RUN and --split VERSION, or --missing" in capsys.readouterr().err
