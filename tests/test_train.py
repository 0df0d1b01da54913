"""QLoRA runs with a tiny model built in the test: config, data masks, the job, the registry, stop,
resume, dead-process detection, export, preflight and the CLI. Real SQLite, real subprocesses."""
from __future__ import annotations

import json
import os
import signal
import tarfile
import time

import pytest

from core.errors import TuneloopError
from core.workspace import Workspace
from curation.data.demo import demo_records
from curation.data.versions import create_version
from tests.tiny_model import build_tiny_model
from training import registry as R
from training.config import RunConfig, config_from_yaml, config_to_yaml, load_config, preset_config, save_config
from training.data import assistant_token_mask, load_split_data, render_loss_mask
from training.job import failure_message, run_training


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama"))


def split_version(ws, n=40):
    records = demo_records(n, seed=1)
    for i, r in enumerate(records):
        r.meta["split"] = "train" if i < n * 0.7 else ("val" if i < n * 0.85 else "test")
    return create_version(ws, records, parent=None, step="split")


def tiny_config(model, datasets, **changes) -> RunConfig:
    base = dict(base_model=model, datasets=datasets, micro_batch_size=4, max_steps=4, learning_rate=5e-3,
                eval_steps=2, save_steps=2, rouge_test_samples=2, gradient_checkpointing=False, warmup_ratio=0.0,
                lr_scheduler="constant")
    return preset_config("Quick CPU demo", **{**base, **changes})


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_model):
    """One run trained to the end in this process (shared by the export and registry tests)."""
    ws = Workspace.open(tmp_path_factory.mktemp("finished") / "ws")
    version = split_version(ws)
    run = R.create_run(ws, tiny_config(tiny_model, version.name), name="tiny finished")
    return ws, run_training(ws, run.id)


# -- config --------------------------------------------------------------------------------------------
def test_config_problems_name_the_key_and_why():
    problems = RunConfig(datasets="v1", lora_r=0, lr_scheduler="sawtooth", adapter="qlora",
                         load_in_4bit=False).problems()
    text = "\n".join(problems)
    assert "lora_r: 0 is too small; it must be at least 1" in text
    assert "lr_scheduler: 'sawtooth' is not one of cosine" in text
    assert "load_in_4bit: qlora trains over a 4-bit base" in text
    with pytest.raises(TuneloopError, match="learning_rate: 'fast' is not a valid number"):
        RunConfig.from_dict({"learning_rate": "fast"})
    with pytest.raises(TuneloopError, match="loraR: not a key of the run config; did you mean lora_r"):
        RunConfig.from_dict({"loraR": 8})
    with pytest.raises(TuneloopError, match="datasets: choose a split dataset version"):
        RunConfig().validate()


def test_config_round_trips_through_yaml_and_presets_are_valid(tmp_path):
    for preset in ("Quick CPU demo", "7B QLoRA on one 24 GB GPU"):
        config = preset_config(preset, datasets="v3")
        assert config.validate() is config
        assert config_from_yaml(config_to_yaml(config)) == config
    path = save_config(preset_config("Quick CPU demo", datasets="v3", lora_target="q_proj, v_proj"), tmp_path / "c.yaml")
    loaded = load_config(path)
    assert loaded.lora_target_modules == ["q_proj", "v_proj"] and loaded.datasets == "v3"
    with pytest.raises(TuneloopError, match="is not valid YAML"):
        config_from_yaml("a: [1, 2")


# -- data ----------------------------------------------------------------------------------------------
def test_loss_mask_covers_exactly_the_assistant_turns(tiny_model):
    from training.models import load_tokenizer, resolve_base_model
    tokenizer = load_tokenizer(resolve_base_model(tiny_model))
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is my order?"},
                {"role": "assistant", "content": "It ships today."}, {"role": "user", "content": "Thanks"},
                {"role": "assistant", "content": "You are welcome!"}]
    ids, mask = assistant_token_mask(tokenizer, messages)
    assert len(ids) == len(mask)
    trained = [text for text, on in render_loss_mask(tokenizer, messages) if on]
    assert [t.replace("<|im_end|>", "").strip() for t in trained] == ["It ships today.", "You are welcome!"]
    assert all(t.rstrip().endswith("<|im_end|>") for t in trained)


def test_split_from_version_and_from_folder(ws, tmp_path):
    version = split_version(ws)
    data = load_split_data(ws, version.name)
    assert data.counts() == {"train": 28, "val": 6, "test": 6} and data.version_id == version.id
    from curation.data.formats import write_jsonl
    write_jsonl(data["train"], tmp_path / "split" / "train.jsonl")
    write_jsonl(data["val"], tmp_path / "split" / "val.jsonl")
    folder = load_split_data(ws, str(tmp_path / "split"))
    assert folder.counts() == {"train": 28, "val": 6, "test": 0} and folder.version_id is None
    unsplit = create_version(ws, demo_records(5), parent=None, step="import")
    with pytest.raises(TuneloopError, match="has no records marked as training data; make a split first"):
        load_split_data(ws, unsplit.name)
    with pytest.raises(TuneloopError, match="neither a dataset version"):
        load_split_data(ws, "my-data")


def test_bad_run_is_refused_before_anything_starts(ws, tiny_model):
    version = split_version(ws)
    with pytest.raises(TuneloopError, match="base model folder './missing' does not exist"):
        R.create_run(ws, tiny_config("./missing", version.name))
    with pytest.raises(TuneloopError, match="there is no version v99"):
        R.create_run(ws, tiny_config(tiny_model, "v99"))
    no_val = create_version(ws, [r for r in demo_records(10) if r.meta.update(split="train") is None],
                            parent=None, step="split")
    with pytest.raises(TuneloopError, match="eval_steps: v.* has no validation records"):
        R.create_run(ws, tiny_config(tiny_model, no_val.name))
    assert R.list_runs(ws) == []


# -- the job, in this process --------------------------------------------------------------------------
def test_finished_run_has_metrics_adapter_and_provenance(finished):
    ws, run = finished
    assert run.status == "finished", run.error
    rows = R.read_metrics(run)
    train = [r for r in rows if r["event"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    assert all(r["tokens_per_s"] > 0 and r["peak_rss_mb"] > 0 and "learning_rate" in r for r in train)
    assert train[-1]["eta_s"] == 0
    evals = [r for r in rows if r["event"] == "eval"]
    assert [r["step"] for r in evals] == [2, 4]
    base = next(r for r in rows if r["event"] == "base_eval")["eval_loss"]
    assert run.metrics["final_eval_loss"] < base          # a high learning rate on a tiny model: the loss falls
    assert {"rouge_l_base", "rouge_l_tuned"} <= set(run.metrics)
    assert (run.adapter_dir / "adapter_config.json").is_file()
    assert (run.adapter_dir / "adapter_model.safetensors").is_file()
    assert run.dataset_hash and run.dataset_version and run.base_revision and run.code_version
    assert run.packages["peft"] and run.packages["trl"] and run.attempts == 1
    assert load_config(run.config_path).output_dir == run.output_dir


def test_out_of_memory_failure_says_what_to_change(finished):
    _, run = finished
    message = failure_message(MemoryError("DefaultCPUAllocator: can't allocate memory"),
                              run.config.replace(gradient_checkpointing=False), run)
    assert "ran out of memory" in message
    assert "lower micro_batch_size (now 4; try 2" in message and "gradient_checkpointing" in message
    assert "lower sequence_len (now 512; try 256)" in message


# -- export --------------------------------------------------------------------------------------------
def test_export_adapter_merged_and_archive(finished, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    from training.export import export_run
    ws, run = finished
    adapter = export_run(ws, run.id, "adapter", tmp_path / "adapter")
    merged = export_run(ws, run.id, "merged", tmp_path / "merged")
    archive = export_run(ws, run.id, "archive", tmp_path / "run.tar.gz")
    base = AutoModelForCausalLM.from_pretrained(run.config.base_model, dtype=torch.float32)
    with_adapter = PeftModel.from_pretrained(base, str(adapter))
    plain = AutoModelForCausalLM.from_pretrained(str(merged), dtype=torch.float32)
    ids = torch.tensor([[1, 5, 9, 40, 7]])
    with torch.no_grad():
        assert torch.allclose(with_adapter(ids).logits, plain(ids).logits, atol=1e-4)
    names = tarfile.open(archive).getnames()
    assert "adapter/adapter_model.safetensors" in names and "config.yaml" in names and "metrics.jsonl" in names
    with pytest.raises(TuneloopError, match="already exists"):
        export_run(ws, run.id, "adapter", tmp_path / "adapter")
    assert set(R.get_run(ws, run.id).artefacts) >= {"adapter", "export_adapter", "export_merged", "export_archive"}


# -- processes: launch, stop, resume, death ------------------------------------------------------------
def test_launch_stop_then_resume_from_the_checkpoint(ws, tiny_model):
    version = split_version(ws)
    run = R.launch_run(ws, tiny_config(tiny_model, version.name, max_steps=4, save_steps=1, eval_steps=2,
                                       rouge_test_samples=0), name="stop me")
    assert run.status == "queued" and run.pid
    R.request_stop(ws, run.id)          # honoured at the end of the first step: checkpoint, then stop
    stopped = R.wait_for_run(ws, run.id, timeout=300)
    assert stopped.status == "stopped", (stopped.error, R.log_tail(stopped, 40))
    checkpoint = R.last_checkpoint(stopped)
    assert checkpoint is not None and checkpoint.name == "checkpoint-1"
    assert not (stopped.adapter_dir / "adapter_config.json").exists()

    resumed = R.resume_run(ws, run.id)
    assert resumed.status == "queued"
    done = R.wait_for_run(ws, run.id, timeout=300)
    assert done.status == "finished", (done.error, R.log_tail(done, 40))
    assert done.attempts == 2
    steps = [r["step"] for r in R.read_metrics(done) if r["event"] == "train"]
    assert steps == [1, 2, 3, 4]         # steps after the checkpoint ran once, nothing repeated
    assert (done.adapter_dir / "adapter_config.json").is_file()
    with pytest.raises(TuneloopError, match="is finished; only a stopped or failed run can be resumed"):
        R.resume_run(ws, run.id)


def test_a_killed_job_shows_as_failed_not_running(ws, tiny_model):
    version = split_version(ws)
    run = R.launch_run(ws, tiny_config(tiny_model, version.name, max_steps=500), name="killed")
    os.kill(run.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while R.process_alive(R.get_run(ws, run.id)) and time.monotonic() < deadline:
        time.sleep(0.2)
    # A fresh view of the workspace (as after an app restart) sees the same.
    fresh = Workspace.open(ws.root)
    failed = R.get_run_status(fresh, run.id)
    assert failed.status == "failed"
    assert "ended without reporting" in failed.error and "Resume it" in failed.error
    assert [r.status for r in R.list_runs(fresh)] == ["failed"]


def test_a_created_run_waits_as_created_until_it_is_launched(ws, tiny_model, tmp_path, capsys):
    """`python -m training create` registers a run for accelerate to start later: no process yet is no failure."""
    from training.cli import main as training_cli
    version = split_version(ws)
    config = save_config(tiny_config(tiny_model, version.name), tmp_path / "run.yaml")
    assert training_cli(["create", str(config), "--workspace", str(ws.root)]) == 0
    run_id = int(capsys.readouterr().out.strip())
    fresh = Workspace.open(ws.root)
    assert R.get_run_status(fresh, run_id).status == "created"
    assert [r.status for r in R.list_runs(fresh)] == ["created"]
    started = R.start_job_process(fresh, R.get_run(fresh, run_id))
    assert started.status in ("queued", "running")
    R.request_stop(fresh, run_id)
    assert R.wait_for_run(fresh, run_id, timeout=600).status in ("stopped", "finished")



def test_a_resumed_run_is_not_failed_by_a_poll_before_its_process_exists(ws, tiny_model, monkeypatch):
    version = split_version(ws)
    run = R.create_run(ws, tiny_config(tiny_model, version.name, max_steps=500), name="resumed")
    R.update_run(ws, run.id, status="stopped", error="stopped by ana")
    polled = []
    spawn = R._spawn

    def poll_first(db, ws_, run_, **kw):
        polled.append(R.get_run_status(Workspace.open(ws.root), run_.id))   # another tab's poll, in the window
        return spawn(db, ws_, run_, **kw)

    monkeypatch.setattr(R, "_spawn", poll_first)
    resumed = R.resume_run(ws, run.id)
    assert polled[0].status in ("created", "queued") and polled[0].error is None
    assert resumed.status in ("queued", "running") and resumed.pid is not None
    R.request_stop(ws, run.id)
    assert R.wait_for_run(ws, run.id, timeout=600).status in ("stopped", "finished")

# -- preflight and CLI ---------------------------------------------------------------------------------
def test_preflight_reports_memory_tokens_and_an_example(ws, tiny_model):
    from training.preflight import preflight
    version = split_version(ws)
    report = preflight(ws, tiny_config(tiny_model, version.name))
    assert report.ok and report.memory.total_gb > 0 and report.memory.available_gb > 0
    assert report.token_stats["conversations"] == 28 and report.token_stats["max_len"] <= 512
    assert report.steps_per_epoch == 7 and report.total_steps == 4
    assert any(on for _, on in report.example) and any(not on for _, on in report.example)
    assert "[[" in report.as_text() and "fits" in report.as_text()
    huge = preflight(ws, tiny_config(tiny_model, version.name, micro_batch_size=10**6, packing=True))
    assert not huge.ok and "lower micro_batch_size" in huge.warnings[0]


def test_cli_config_run_list_show(ws, tiny_model, tmp_path, capsys):
    from training.cli import main
    version = split_version(ws)
    assert main(["config", "--preset", "Quick CPU demo", "--datasets", version.name]) == 0
    config = config_from_yaml(capsys.readouterr().out)
    assert config.datasets == version.name and config.micro_batch_size == 4
    path = save_config(tiny_config(tiny_model, version.name, max_steps=2, eval_steps=0, rouge_test_samples=0),
                       tmp_path / "run.yaml")
    assert main(["run", str(path), "--workspace", str(ws.root), "--name", "from cli"]) == 0
    out = capsys.readouterr().out
    assert "run #1" in out and "finished" in out
    assert main(["list", "--workspace", str(ws.root)]) == 0
    assert "#1" in capsys.readouterr().out
    assert main(["show", "1", "--workspace", str(ws.root)]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "finished"
    (tmp_path / "bad.yaml").write_text("lora_r: -3\ndatasets: v1\n")
    assert main(["run", str(tmp_path / "bad.yaml"), "--workspace", str(ws.root)]) == 1
    assert "lora_r: -3 is too small" in capsys.readouterr().err
    assert main(["stop", "1", "--workspace", str(ws.root)]) == 1
    assert "nothing to stop" in capsys.readouterr().err


def test_run_views_table_curves_and_config_diff(finished):
    from training.run_views import config_diff, loss_curves, runs_table
    ws, run = finished
    other = R.create_run(ws, run.config.replace(output_dir="", learning_rate=1e-4, lora_r=8), name="other")
    headers, rows = config_diff([R.get_run(ws, run.id), other])
    keys = {r[0]: r[1:] for r in rows}
    assert headers == ["key", run.label, other.label]
    assert keys["learning_rate"] == ["0.005", "0.0001"] and keys["lora_r"] == ["16", "8"]
    assert "micro_batch_size" not in keys
    curves = loss_curves([R.get_run(ws, run.id), other])
    assert {c["series"] for c in curves} == {f"#{run.id} train loss", f"#{run.id} eval loss"}
    table = {row[0]: row for row in runs_table(R.list_runs(ws))}
    assert table[run.id][2] == "finished" and table[run.id][3] == "4/4" and "→" in table[run.id][5]
    assert table[other.id][2] == "created"     # registered but never started: waits, is not a failure
