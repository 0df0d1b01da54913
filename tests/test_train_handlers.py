"""The Train tab's handlers without a browser: the page's values in, outputs keyed by component out; a real
run of a tiny model launched, stopped, resumed and polled to the end."""
from __future__ import annotations

import gradio as gr
import pytest

from curation.data.demo import demo_records
from curation.data.versions import create_version
from training import registry as R
from training import ui as train
from training.config import PRESETS, RunConfig, preset_config
from tests.tab_page import page
from tests.tiny_model import build_tiny_model


@pytest.fixture
def tab(ws):
    with gr.Blocks():
        with gr.Tabs():
            w = train.build_train_tab(ws)
    return ws, w


def split_version(ws, n=24):
    records = demo_records(n, seed=4)
    for i, r in enumerate(records):
        r.meta["split"] = "train" if i < n * 0.7 else ("val" if i < n * 0.85 else "test")
    return create_version(ws, records, parent=None, step="split")


def test_the_form_is_rendered_from_run_config_key_by_key(tab):
    ws, w = tab
    assert set(w.form) == set(RunConfig().to_dict()) - {"base_model", "datasets", "output_dir"}
    first = preset_config(next(iter(PRESETS)))
    assert all(component.value == getattr(first, key) for key, component in w.form.items())
    steps = w.form["max_steps"]
    assert steps.elem_id == "train-cfg-max_steps" and steps.label == "max_steps" and "optimizer steps" in steps.info
    # a learning rate must not snap to a slider's steps
    assert isinstance(w.form["learning_rate"], gr.Number) and isinstance(w.form["lr_scheduler"], gr.Dropdown)


def test_a_preset_fills_the_form(tab):
    ws, w = tab
    name = list(PRESETS)[1]
    shown = train.apply_preset(ws, w, page(w, preset=name))
    config = preset_config(name)
    assert set(shown) == set(w.form.values())
    assert {key: shown[component] for key, component in w.form.items()} == {
        key: getattr(config, key) for key in w.form}
    assert shown[w.form["sequence_len"]] == 2048 != preset_config(next(iter(PRESETS))).sequence_len


def test_preflight_of_a_bad_value_names_the_key_and_launches_nothing(tab):
    ws, w = tab
    version = split_version(ws)
    bad = page(w, split=version.name, form={"lora_dropout": 0.9, "save_steps": 0})
    out = train.run_preflight(ws, w, bad)
    assert "lora_dropout: 0.9 is too large; it must be at most 0.5" in out[w.message]
    assert "save_steps: 0 is too small" in out[w.message]
    assert out[w.example]["visible"] is False
    assert "lora_dropout" in train.launch(ws, w, bad)[w.message] and R.list_runs(ws) == []


def test_showing_the_tab_offers_the_versions_and_runs_made_since(tab, tmp_path):
    ws, w = tab
    assert w.split.value is None and w.selected.value is None
    version = split_version(ws)
    run = R.create_run(ws, preset_config(next(iter(PRESETS)), base_model=str(build_tiny_model(tmp_path / "tiny")),
                                         datasets=version.name), name="waiting")
    shown = train.show_tab(ws, w, page(w))
    assert shown[w.split]["value"] == version.name and shown[w.split]["choices"][0][1] == version.name
    assert shown[w.selected]["value"] == str(run.id) and "created" in shown[w.selected]["choices"][0][0]
    assert shown[w.compare_pick]["choices"] == shown[w.selected]["choices"] and shown[w.compare_pick]["value"] == []
    assert shown[w.seen] == [list(c) for c in shown[w.selected]["choices"]]


@pytest.mark.slow
def test_launch_registers_a_run_stop_resume_and_the_poll_follows_it_to_the_end(tab, tmp_path):
    ws, w = tab
    version = split_version(ws)
    model = build_tiny_model(tmp_path / "tiny")
    form = {"max_steps": 3, "save_steps": 1, "eval_steps": 0, "rouge_test_samples": 0, "micro_batch_size": 4,
            "gradient_checkpointing": False}
    launched = train.launch(ws, w, page(w, split=version.name, base_model=str(model), run_name="handler run",
                                        form=form))
    assert "Launched **" in launched[w.message]
    (run,) = R.list_runs(ws)
    assert run.name == "handler run" and run.config.max_steps == 3 and run.base_model == str(model)
    assert launched[w.selected]["value"] == str(run.id) and launched[w.seen][0][1] == str(run.id)
    chosen = page(w, selected=str(run.id), seen=launched[w.seen])
    assert "Stop requested" in train.stop(ws, w, chosen)[w.message]
    assert R.wait_for_run(ws, run.id, timeout=600).status == "stopped"
    polled = train.poll(ws, w, chosen)
    assert "data-status='stopped'" in polled[w.status] and "Resume continues from there" in polled[w.status]
    assert "stopped" in polled[w.selected]["choices"][0][0]

    resumed = train.resume(ws, w, page(w, selected=str(run.id), seen=polled[w.seen]))
    assert "Resumed" in resumed[w.message] and "checkpoint-1" in resumed[w.message]
    assert R.wait_for_run(ws, run.id, timeout=600).status == "finished"
    done = train.poll(ws, w, page(w, selected=str(run.id), seen=resumed[w.seen]))
    assert "data-status='finished'" in done[w.status] and "step 3/3" in done[w.status]
    label = done[w.selected]["choices"][0][0]
    assert "finished" in label and "running" not in label and "queued" not in label
    assert done[w.selected]["value"] == str(run.id)
    again = train.poll(ws, w, page(w, selected=str(run.id), seen=done[w.seen]))
    assert w.selected not in again and "data-status='finished'" in again[w.status]


def test_launch_while_a_run_trains_queues_it_and_clears_the_name(tab, tmp_path):
    import os
    import socket
    ws, w = tab
    version = split_version(ws)
    model = str(build_tiny_model(tmp_path / "tiny"))
    form = {"max_steps": 3, "eval_steps": 0, "rouge_test_samples": 0}
    # a run that holds the cores (this process stands in for its job)
    busy = R.create_run(ws, preset_config(next(iter(PRESETS)), base_model=model, datasets=version.name, max_steps=3,
                                          eval_steps=0), name="busy")
    R.update_run(ws, busy.id, status="running", pid=os.getpid(), pid_started=R._process_start_time(os.getpid()),
                 host=socket.gethostname())
    shown = page(w, split=version.name, base_model=model, run_name="busy", form=form)
    launched = train.launch(ws, w, shown)
    queued = R.get_run(ws, launched[w.selected]["value"])
    assert queued.waiting and queued.name == f"busy #{queued.id}" and launched[w.run_name] == ""
    assert f"Queued **#{queued.id} busy #{queued.id}** (queued, position 1)" in launched[w.message]
    assert any("queued, position 1" in label for label, _ in launched[w.selected]["choices"])
    polled = train.poll(ws, w, page(w, selected=str(queued.id), seen=launched[w.seen]))
    assert "queued, position 1: it starts when the runs before it have ended" in polled[w.status]
    assert polled[w.table][0][2] == "queued, position 1"
    train.stop(ws, w, page(w, selected=str(queued.id)))
    assert R.get_run(ws, queued.id).status == "stopped"
    R.update_run(ws, busy.id, status="failed")


def test_the_template_preview_says_it_may_convert_the_model_first(tab, tmp_path):
    ws, w = tab
    version = split_version(ws)
    said = []
    out = train.template_preview(ws, w, page(w, split=version.name, base_model=str(build_tiny_model(tmp_path / "t")),
                                             seq_len=64, record_id=""),
                                 progress=lambda value, desc=None: said.append(desc))
    assert said == [train.LOADING_TOKENIZER] and "converting the model, the first time only" in said[0]
    assert "rendered for" in out[w.preview_md]
