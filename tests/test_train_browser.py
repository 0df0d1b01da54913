"""The Train tab in a browser: launch a run on a tiny model, watch the curve move, stop, resume."""
from __future__ import annotations

import pytest

from core.workspace import Workspace
from curation.data.demo import demo_records
from curation.data.versions import create_version
from tests.tiny_model import build_tiny_model


@pytest.mark.browser
@pytest.mark.slow
def test_launch_watch_stop_resume(live_app, page, tmp_path):
    from playwright.sync_api import expect
    ws = Workspace.open(tmp_path / "workspace")
    records = demo_records(40, seed=2)
    for i, r in enumerate(records):
        r.meta["split"] = "train" if i < 28 else ("val" if i < 34 else "test")
    create_version(ws, records, parent=None, step="split")
    model = build_tiny_model(tmp_path / "tiny")

    app = live_app(workspace=tmp_path / "workspace")
    page.goto(app.url)
    page.get_by_role("tab", name="Train").click()
    page.locator("#train-split input").click()
    page.get_by_role("option", name="split").first.click()
    page.locator("#train-base-model textarea").fill(str(model))
    page.get_by_text("Config (axolotl-style keys)").click()
    # Picking a preset fills the form; what is typed afterwards is kept (the launch below trains 30 steps, not
    # the preset's 24).
    page.locator("#train-preset input").click()
    page.get_by_role("option", name="7B QLoRA on one 24 GB GPU").click()
    expect(page.locator("#train-cfg-max_steps input")).to_have_value("-1")
    page.locator("#train-preset input").click()
    page.get_by_role("option", name="Quick CPU demo").click()
    expect(page.locator("#train-cfg-max_steps input")).to_have_value("24")
    for key, value in (("max_steps", "30"), ("save_steps", "2"), ("eval_steps", "2"), ("rouge_test_samples", "0")):
        page.locator(f"#train-cfg-{key} input").fill(value)
    page.locator("#train-preflight-btn").click()
    expect(page.locator("#train-preflight")).to_contain_text("fits", timeout=120_000)
    expect(page.locator("#train-preflight")).to_contain_text("30 in all")
    expect(page.locator("#train-example")).to_contain_text("trained")

    page.locator("#train-launch-btn").click()
    expect(page.locator("#train-message")).to_contain_text("Launched", timeout=60_000)
    expect(page.locator("#train-status-box[data-status='running']")).to_be_visible(timeout=180_000)
    # The curve and the progress update by themselves while the job runs.
    page.wait_for_function("() => +document.querySelector('#train-status-box')?.dataset.step >= 2", timeout=180_000)

    page.locator("#train-stop-btn").click()
    expect(page.locator("#train-status-box[data-status='stopped']")).to_be_visible(timeout=180_000)
    expect(page.locator("#train-status-box")).to_contain_text("Resume continues from there")
    stopped_at = int(page.locator("#train-status-box").get_attribute("data-step"))
    assert 2 <= stopped_at < 30

    page.reload()                       # a reload reattaches to the run
    page.get_by_role("tab", name="Train").click()
    expect(page.locator("#train-status-box[data-status='stopped']")).to_be_visible(timeout=60_000)
    page.locator("#train-resume-btn").click()
    expect(page.locator("#train-message")).to_contain_text("Resumed", timeout=60_000)
    expect(page.locator("#train-status-box[data-status='finished']")).to_be_visible(timeout=300_000)
    expect(page.locator("#train-status-box")).to_contain_text("step 30/30")
    expect(page.locator("#train-status-box")).to_contain_text("eval loss: base model")
    expect(page.locator("#train-runs")).to_contain_text("finished")


@pytest.mark.browser
def test_template_preview_shows_what_the_base_model_sees(live_app, page, tmp_path):
    from playwright.sync_api import expect
    ws = Workspace.open(tmp_path / "workspace")
    records = demo_records(20, seed=3)
    for i, r in enumerate(records):
        r.meta["split"] = "train" if i < 14 else ("val" if i < 17 else "test")
    create_version(ws, records, parent=None, step="split")
    model = build_tiny_model(tmp_path / "tiny")

    app = live_app(workspace=tmp_path / "workspace")
    page.goto(app.url)
    page.get_by_role("tab", name="Train").click()
    page.locator("#train-base-model textarea").fill(str(model))
    page.get_by_text("Template preview: what the base model sees").click()
    page.locator("#train-preview-btn").click()
    expect(page.locator("#train-preview-counts")).to_contain_text("(test) rendered for tiny", timeout=120_000)
    expect(page.locator("#train-preview-counts")).to_contain_text("trained")
    expect(page.locator("#train-preview")).to_contain_text("<|im_start|>assistant")
    page.locator("#train-lengths-btn").click()
    expect(page.locator("#train-lengths")).to_contain_text("20 conversations for tiny", timeout=120_000)
