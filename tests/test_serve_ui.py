"""The Serve panel's handlers without a browser: live and rollback from the Train tab, the request plots and the
feedback counts from the request log, and what the panel says when it is asked for something it cannot do."""
from __future__ import annotations

import shutil

import gradio as gr
import pytest

from curation.data.records import Record
from curation.data.versions import create_version
from tests.tab_page import page
from tests.tiny_model import build_tiny_model, make_adapter
from training import registry as R
from training import serve_ui
from training import ui as train
from training.config import RunConfig


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-ui")
    base = build_tiny_model(root / "base")
    return base, make_adapter(base, root / "adapter", seed=1)


@pytest.fixture
def tab(ws, adapter):
    base, folder = adapter
    records = [Record(f"r{i}", [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "ok"}],
                      {"split": split}) for i, split in enumerate(["train"] * 4 + ["val", "test"])]
    create_version(ws, records, parent=None, step="split")
    runs = []
    for name in ("first", "second"):
        run = R.create_run(ws, RunConfig(base_model=str(base), datasets="v1"), name=name)
        shutil.copytree(folder, run.adapter_dir)
        runs.append(run)
    with gr.Blocks():
        with gr.Tabs():
            w = train.build_train_tab(ws)
    return ws, w.serve, runs


def _log(ws, rid, run_id, at, status=200, latency=120.0, tokens=(9, 5)):
    ws.db.execute("insert into serve_requests (id, created_at, run_id, engine, latency_ms, prompt_tokens,"
                  " completion_tokens, status, error) values (?,?,?,?,?,?,?,?,?)",
                  (rid, at, run_id, "transformers", latency, *tokens, status, None if status == 200 else "refused"))


def test_live_and_rollback_from_the_panel_show_in_the_history(tab):
    ws, w, (first, second) = tab
    shown = serve_ui.make_live(ws, w, page(w, run=str(first.id)))
    assert f"Run #{first.id} is live (live-v1)" in shown[w.message]
    assert f"**Live:** run #{first.id} (live-v1)" in shown[w.status] and "No server is running" in shown[w.status]
    serve_ui.make_live(ws, w, page(w, run=str(second.id)))
    back = serve_ui.roll_back(ws, w, page(w))
    assert f"run #{first.id} is live again (live-v3)" in back[w.message]
    assert back[w.history].values.tolist()[0][:3] == ["live-v3", f"#{first.id}", "rollback"]
    assert "nothing before it" in serve_ui.roll_back(ws, w, page(w))[w.message]
    assert "choose a run" in serve_ui.start(ws, w, page(w, run=None, live=False))[w.message]


def test_the_plots_show_latency_tokens_and_the_error_rate_per_minute(tab):
    ws, w, (first, second) = tab
    _log(ws, "c1", first.id, "2026-12-01T10:00:05.000Z", latency=100.0)
    _log(ws, "c2", second.id, "2026-12-01T10:00:40.000Z", latency=300.0, tokens=(11, 7))
    _log(ws, "c3", None, "2026-12-01T10:00:50.000Z", status=400)
    _log(ws, "c4", first.id, "2026-12-01T10:01:10.000Z", latency=80.0)
    ws.db.execute("insert into serve_feedback (request_id, run_id, rating, correction) values"
                  " ('c1', ?, 'down', 'better'), ('c2', ?, 'up', null)", (first.id, second.id))
    shown = serve_ui.refresh(ws, w, page(w))
    latency = shown[w.latency]
    assert latency["latency (ms)"].tolist() == [100.0, 300.0, 80.0]
    assert latency["run"].tolist() == [f"run #{first.id}", f"run #{second.id}", f"run #{first.id}"]
    tokens = shown[w.tokens]
    assert tokens[tokens["part"] == "completion"]["tokens"].tolist() == [5, 7, 5]
    assert shown[w.errors]["error rate"].round(3).tolist() == [0.333, 0.0]
    feedback = shown[w.feedback]
    assert "👍 1 · 👎 1 · 1 corrected answers" in feedback and "over 4 logged requests" in feedback


def test_the_rounds_view_merges_the_feedback_from_use(tab):
    from evaluation.served_feedback_ui import layout_served_feedback, merge_clicked, show_served
    ws, _, (first, _) = tab
    with gr.Blocks():
        w = layout_served_feedback()
    assert "nothing new to merge" in merge_clicked(ws, w)[w.message]
    _log(ws, "c1", first.id, "2026-12-01T10:00:05.000Z")
    ws.db.execute("insert into serve_feedback (request_id, run_id, rating, correction, messages) values"
                  " ('c1', ?, 'down', 'Press Reset password.', ?)",
                  (first.id, '[{"role": "user", "content": "How do I reset it?"}]'))
    assert "1 corrections" in show_served(ws, w)[w.summary]
    merged = merge_clicked(ws, w)
    assert "v2 ← v1 · served feedback · 7 records" in merged[w.message]
