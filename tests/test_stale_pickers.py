"""An action clicked right after a tab opens, before the tab's picker refresh reached the page: the page still
sends the value it was built with. The handlers act on what the user picked, else on the picker's default as
it stands (the current split, the newest run, the newest evaluation), never on a stale preselection."""
from __future__ import annotations

import gradio as gr
import pytest

from curation.data.demo import demo_records
from curation.data.versions import create_version
from evaluation import prepare_ui, ui
from evaluation.arena import EvalItem, create_evaluation
from tests.tab_page import page
from tests.test_arena_ui import seed_evaluation
from tests.tiny_model import build_tiny_model
from training import registry as R
from training import ui as train
from training.config import PRESETS, preset_config
from ui.kit import picked_value


def split_version(ws, seed: int, n: int = 12):
    records = demo_records(n, seed=seed)
    for i, r in enumerate(records):
        r.id = f"s{seed}-{i}"
        r.meta["split"] = "train" if i < n * 0.7 else ("val" if i < n * 0.85 else "test")
    return create_version(ws, records, parent=None, step="split")


def with_adapter(ws, run) -> None:
    run.adapter_dir.mkdir(parents=True, exist_ok=True)
    (run.adapter_dir / "adapter_config.json").write_text("{}")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    return str(build_tiny_model(tmp_path_factory.mktemp("stale") / "tiny"))


@pytest.fixture
def train_tab(ws):
    with gr.Blocks(), gr.Tabs():
        w = train.build_train_tab(ws)
    return w


def test_preflight_before_the_refresh_plans_the_current_split_and_a_picked_split_stays(ws, train_tab, tiny):
    w = train_tab
    first = split_version(ws, 1)
    second = split_version(ws, 2, n=20)                      # made after the page got its values
    stale = {**page(w, split=first.name, base_model=tiny), w.split.tuneloop_chosen: None}
    planned = train.run_preflight(ws, w, stale)[w.preflight_md]
    assert f"**Split:** {second.name}" in planned and "14 conversations" in planned
    picked = {**stale, w.split.tuneloop_chosen: first.name}
    kept = train.run_preflight(ws, w, picked)[w.preflight_md]
    assert f"**Split:** {first.name}" in kept and "9 conversations" in kept


def test_a_poll_sent_before_launch_answered_shows_the_new_run_unless_the_user_picked_one(ws, train_tab, tiny):
    w = train_tab
    version = split_version(ws, 1)
    config = preset_config(next(iter(PRESETS)), base_model=tiny, datasets=version.name)
    old = R.create_run(ws, config, name="round 1")
    R.update_run(ws, old.id, status="finished")
    seen = train.run_pickers(ws, w, page(w, selected=str(old.id)))[w.seen]
    new = R.create_run(ws, config, name="round 2")              # Launch made it; the page still shows round 1
    stale = {**page(w, selected=str(old.id), seen=seen), w.selected.tuneloop_chosen: None}
    polled = train.poll(ws, w, stale)
    assert polled[w.selected]["value"] == str(new.id) and "round 2" in polled[w.status]
    picked = {**stale, w.selected.tuneloop_chosen: str(old.id)}
    polled = train.poll(ws, w, picked)
    assert polled[w.selected]["value"] == str(old.id) and "round 1" in polled[w.status]


def test_generate_before_the_refresh_answers_with_the_newest_run_and_the_current_split(ws, tiny):
    with gr.Blocks(), gr.Tabs():
        rate = ui.build_rate_tab(ws, prepare=True)
    w = rate.prepare
    version = split_version(ws, 1)
    config = preset_config(next(iter(PRESETS)), base_model=tiny, datasets=version.name)
    first, second = (R.create_run(ws, config, name=name) for name in ("round 1", "round 2"))
    for run in (first, second):
        with_adapter(ws, run)
    stale = {**page(w, runs=[str(first.id)], version=None), w.runs.tuneloop_chosen: None,
             w.version.tuneloop_chosen: None}
    assert [a.run for a in prepare_ui.arm_requests(w, stale)[1:]] == [str(second.id)]
    assert picked_value(w.version, stale) == version.name
    picked = {**stale, w.runs.tuneloop_chosen: [str(first.id), str(second.id)]}
    assert [a.run for a in prepare_ui.arm_requests(w, picked)[1:]] == [str(first.id)]     # what the page shows
    assert picked_value(w.version, page(w, version=None)) is None        # no state sent: the shown value


def test_the_results_tab_shown_again_follows_the_newest_evaluation_unless_one_was_picked(ws):
    first = seed_evaluation(ws)
    with gr.Blocks(), gr.Tabs():
        w = ui.build_results_tab(ws)
    item = EvalItem("q", [{"role": "user", "content": "Where is my parcel?"}], base_response="At the depot.",
                    finetuned_response="Out for delivery.", label=None, split="test")
    second = create_evaluation(ws, "round 2 check", [item], base_model="SmolLM2", run_id="7", overlap=1)
    shown = ui.select_results(ws, w, {**page(w, evaluation=first), w.evaluation.tuneloop_chosen: None})
    assert shown[w.evaluation]["value"] == second
    kept = ui.select_results(ws, w, {**page(w, evaluation=first), w.evaluation.tuneloop_chosen: first})
    assert kept[w.evaluation]["value"] == first
