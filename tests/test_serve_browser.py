"""The Serve panel in a browser: make a run live, serve it in the background, call the endpoint, stop it."""
from __future__ import annotations

import shutil

import httpx
import pytest

from core.workspace import Workspace
from curation.data.records import Record
from curation.data.versions import create_version
from tests.browser import free_port
from tests.tiny_model import build_tiny_model, make_adapter
from training import registry as R
from training import serve as S
from training.config import RunConfig


@pytest.mark.browser
@pytest.mark.slow
def test_serve_a_run_from_the_train_tab(live_app, page, tmp_path):
    from playwright.sync_api import expect
    ws = Workspace.open(tmp_path / "workspace")
    records = [Record(f"r{i}", [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "ok"}],
                      {"split": split}) for i, split in enumerate(["train"] * 4 + ["val", "test"])]
    create_version(ws, records, parent=None, step="split")
    base = build_tiny_model(tmp_path / "tiny")
    run = R.create_run(ws, RunConfig(base_model=str(base), datasets="v1"), name="served")
    shutil.copytree(make_adapter(base, tmp_path / "adapter", seed=1), run.adapter_dir)
    R.update_run(ws, run.id, status="finished")
    port = free_port()

    app = live_app(workspace=tmp_path / "workspace")
    try:
        page.goto(app.url)
        page.get_by_role("tab", name="Train").click()
        page.get_by_text("Serve: an OpenAI-compatible endpoint").click()
        page.locator("#serve-make-live").click()
        expect(page.locator("#serve-message")).to_contain_text(f"Run #{run.id} is live (live-v1)")
        page.locator("#serve-port input").fill(str(port))
        page.locator("#serve-engine input").click()
        page.get_by_role("option", name="transformers").click()
        page.locator("#serve-start").click()
        expect(page.locator("#serve-message")).to_contain_text(f"Serving at http://127.0.0.1:{port}/v1",
                                                               timeout=180_000)
        expect(page.locator("#serve-status")).to_contain_text(f"curl http://127.0.0.1:{port}/v1/chat/completions")
        reply = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                           json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}, timeout=60)
        assert reply.json()["model"] == f"run-{run.id}"
        page.reload()
        page.get_by_role("tab", name="Train").click()
        page.get_by_text("Serve: an OpenAI-compatible endpoint").click()
        expect(page.locator("#serve-status")).to_contain_text(f"run #{run.id} at http://127.0.0.1:{port}/v1",
                                                              timeout=30_000)
        page.locator("#serve-stop").click()
        expect(page.locator("#serve-message")).to_contain_text("Stopped the server")
        expect(page.locator("#serve-status")).to_contain_text("No server is running")
    finally:                # a failed test must not leave its server running
        for process in S.server_processes(ws):
            S.stop_pid(process.pid)
