"""The DPO stage on a tiny model built here: SFT run → blind votes → preference pairs → DPO run."""
from __future__ import annotations

import json

import pytest

from core.errors import TuneloopError
from curation.data.records import Record
from curation.data.versions import create_version
from evaluation.arena import EvalItem, create_evaluation, next_pair, record_vote
from evaluation.feedback import make_preference_version
from tests.tiny_model import build_tiny_model
from training.config import RunConfig
from training.dpo import load_preference_pairs, split_preference_pairs
from training.job import run_training
from training.registry import create_run, read_metrics

GOOD = "Open Settings, choose Security and press Reset password."
BAD = "The quick brown fox jumps over the lazy dog."
QUESTIONS = ["How do I reset my password?", "I forgot my password", "Where is my order?", "Can I get a refund?",
             "reset password please", "password help", "how to reset", "locked out of my account"]


def _record(i: int, split: str, question: str, answer: str = GOOD) -> Record:
    return Record(f"{split}{i}", [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
                  {"split": split})


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("dpo") / "tiny")


def _config(tiny_base, version, **extra) -> RunConfig:
    values = dict(base_model=str(tiny_base), datasets=version, adapter="qlora", load_in_4bit=True, lora_r=4,
                  lora_alpha=8, lora_dropout=0.0, sequence_len=96, micro_batch_size=4, max_steps=2, eval_steps=0,
                  save_steps=50, early_stopping_patience=0, rouge_test_samples=0, warmup_ratio=0.0,
                  lr_scheduler="constant", cpu_threads=2)
    return RunConfig.from_dict({**values, **extra})


def _vote_for_good_answers(ws, evaluation_id: int) -> None:
    """A rater who always prefers the helpful answer, whichever side it is shown on."""
    while (pair := next_pair(ws, evaluation_id, "ana")) is not None:
        record_vote(ws, pair.assignment_id, "ana", "A" if pair.response_a == GOOD else "B")


@pytest.fixture(scope="module")
def rated_sft(tmp_path_factory, tiny_base):
    """A finished SFT run on the tiny model, an evaluation of it with one rater's votes, and the
    preference version made from them."""
    from core.workspace import Workspace
    ws = Workspace.open(tmp_path_factory.mktemp("dpo-ws") / "workspace")
    records = ([_record(i, "train", q) for i, q in enumerate(QUESTIONS)]
               + [_record(i, "val", q) for i, q in enumerate(QUESTIONS[:2])]
               + [_record(i, "test", q) for i, q in enumerate(QUESTIONS[2:4])])
    version = create_version(ws, records, parent=None, step="import")
    sft = run_training(ws, create_run(ws, _config(tiny_base, version.name), name="sft").id)
    assert sft.status == "finished", sft.error
    # The fine-tuned side answered well on train prompts and badly on the test prompt.
    items = [EvalItem(f"p{i}", [{"role": "user", "content": q}], base_response=BAD, finetuned_response=GOOD,
                      split="train") for i, q in enumerate(QUESTIONS)]
    items.append(EvalItem("t0", [{"role": "user", "content": "Where is my order?"}], base_response=GOOD,
                          finetuned_response=BAD, split="test"))
    eid = create_evaluation(ws, "round 1", items, base_model="tiny", run_id=str(sft.id), overlap=1)
    _vote_for_good_answers(ws, eid)
    return ws, version, sft, make_preference_version(ws, eid)


@pytest.mark.slow
def test_dpo_run_from_votes_completes_and_lowers_its_loss(rated_sft, tiny_base):
    ws, version, sft, prefs = rated_sft
    data = load_preference_pairs(ws, prefs.name)
    assert data.version_id == prefs.id and data.content_hash == prefs.content_hash
    parts = split_preference_pairs(data.pairs)
    assert (len(parts["train"]), len(parts["val"]), len(parts["test"])) == (8, 0, 1)
    assert parts["train"][0].chosen == [{"role": "assistant", "content": GOOD}]

    config = _config(tiny_base, version.name, stage="dpo", sft_run=str(sft.id), preferences=prefs.name,
                     learning_rate=2e-2, max_steps=12, dpo_beta=0.5)
    created = create_run(ws, config, name="dpo")
    assert (created.preference_version, created.preference_hash) == (prefs.id, prefs.content_hash)
    assert created.parent_run_id == sft.id and created.status == "created"
    dpo = run_training(ws, created.id)
    assert dpo.status == "finished", dpo.error
    rows = [r for r in read_metrics(dpo) if r.get("event") == "train"]
    assert len(rows) == 12
    assert {"loss", "rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected"} <= set(rows[0])
    # Policy and reference start equal: the DPO loss starts at ln 2 with zero margin.
    assert rows[0]["loss"] == pytest.approx(0.6931, abs=1e-3)
    assert rows[-1]["loss"] < rows[0]["loss"] - 0.1
    assert rows[-1]["rewards/margins"] > 0 and rows[-1]["rewards/accuracies"] > 0.5
    assert dpo.metrics["train_pairs"] == 8 and dpo.metrics["test_pairs_left_out"] == 1
    assert dpo.metrics["sft_run"] == sft.id
    adapter = dpo.adapter_dir
    assert (adapter / "adapter_config.json").is_file() and not (adapter / "ref").exists()
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 4


def test_dpo_config_names_what_is_missing(tiny_base):
    problems = RunConfig.from_dict({"datasets": "v1", "stage": "dpo", "dpo_beta": 0}).problems()
    assert any(p.startswith("sft_run:") for p in problems)
    assert any(p.startswith("preferences:") for p in problems)
    assert any(p.startswith("dpo_beta:") for p in problems)
    assert RunConfig.from_dict({"datasets": "v1", "stage": "ppo"}).problems()[0] == "stage: 'ppo' is not one of sft, dpo, kto"


def test_preferences_from_a_file_are_checked_line_by_line(ws, tmp_path):
    path = tmp_path / "prefs.jsonl"
    path.write_text(json.dumps({"prompt": "hi", "chosen": "hello", "rejected": "go away"}) + "\n"
                    + json.dumps({"prompt": "hi", "chosen": "hello"}) + "\n")
    with pytest.raises(TuneloopError, match="line 2: missing rejected"):
        load_preference_pairs(ws, str(path))
    path.write_text(json.dumps({"prompt": "hi", "chosen": "hello", "rejected": "go away"}) + "\n")
    data = load_preference_pairs(ws, str(path))
    (pair,) = data.pairs
    assert pair.messages == [{"role": "user", "content": "hi"}]
    assert pair.rejected == [{"role": "assistant", "content": "go away"}]
    assert data.version_id is None and len(data.content_hash) == 64


def test_preferences_must_name_a_preference_version(ws):
    sft_data = create_version(ws, [_record(0, "train", QUESTIONS[0])], parent=None, step="import")
    with pytest.raises(TuneloopError, match=f"{sft_data.name} holds chat records, not preference pairs"):
        load_preference_pairs(ws, sft_data.name)
    with pytest.raises(TuneloopError, match="neither a preference dataset version"):
        load_preference_pairs(ws, "2,5")
    pairs = create_version(ws, [Record("p", [{"role": "user", "content": "hi"}], {"split": "train"},
                                       chosen=[{"role": "assistant", "content": "hello"}],
                                       rejected=[{"role": "assistant", "content": "go away"}])],
                           parent=None, step="preferences")
    from training.data import load_split_data
    with pytest.raises(TuneloopError, match=f"datasets: {pairs.name} holds preference pairs"):
        load_split_data(ws, pairs.name)


@pytest.mark.slow
def test_dpo_run_stops_with_a_checkpoint_and_resumes_from_it(rated_sft, tiny_base):
    """The Train tab's path: the job in its own process, a stop request, then resume."""
    import time

    from training.registry import get_run_status, last_checkpoint, launch_run, request_stop, resume_run, wait_for_run
    ws, version, sft, prefs = rated_sft
    config = _config(tiny_base, version.name, stage="dpo", sft_run=str(sft.id), preferences=prefs.name,
                     learning_rate=2e-2, max_steps=8, save_steps=2, dpo_beta=0.5)
    run = launch_run(ws, config, name="dpo stop")
    while get_run_status(ws, run.id).active and not any(r.get("event") == "train" for r in read_metrics(run)):
        time.sleep(0.2)
    request_stop(ws, run.id)
    stopped = wait_for_run(ws, run.id, timeout=600)
    assert stopped.status == "stopped", stopped.error
    checkpoint = last_checkpoint(stopped)
    assert checkpoint is not None and 1 <= int(checkpoint.name.split("-")[-1]) < 8
    resume_run(ws, run.id)
    resumed = wait_for_run(ws, run.id, timeout=600)
    assert resumed.status == "finished", resumed.error
    steps = [r["step"] for r in read_metrics(resumed) if r.get("event") == "train"]
    assert steps == list(range(1, 9))          # the steps after the checkpoint ran once, none twice
    assert (resumed.adapter_dir / "adapter_config.json").is_file()
