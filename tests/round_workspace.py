"""Two real rounds of the loop on a tiny model built in the test, for the rounds, auto and model-card tests.

Round 1: an SFT run on v1, automatic evaluation, a blind evaluation with votes and corrections,
merged into v2, and the votes' preference pairs made version v3. Round 2: an SFT run on v2 and a
DPO run from round 1's adapter on v3, each evaluated automatically. Everything is real: registry, jobs, generation.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.workspace import Workspace
from curation.data.records import Record
from curation.data.versions import create_version
from evaluation.arena import EvalItem, create_evaluation, next_pair, record_vote
from tests.tiny_model import build_tiny_model

GOOD = "Open Settings, choose Security and press Reset password."
BAD = "The quick brown fox jumps over the lazy dog."
QUESTIONS = ["How do I reset my password?", "I forgot my password", "Where is my order?", "Can I get a refund?",
             "reset password please", "password help", "how to reset", "locked out of my account"]


@dataclass
class TwoRounds:
    ws: Workspace
    v1: int
    v2: int
    preferences: int
    evaluation: int
    sft1: int
    sft2: int
    dpo: int


def _record(i: int, split: str, question: str) -> Record:
    return Record(f"{split}{i}", [{"role": "user", "content": question}, {"role": "assistant", "content": GOOD}],
                  {"split": split, "label": "password_reset"})


def _config(base: Path, version: str, **extra):
    from training.config import RunConfig
    values = dict(base_model=str(base), datasets=version, adapter="lora", load_in_4bit=False, lora_r=4, lora_alpha=8,
                  lora_dropout=0.0, sequence_len=96, micro_batch_size=4, max_steps=2, eval_steps=0, save_steps=50,
                  early_stopping_patience=0, rouge_test_samples=0, warmup_ratio=0.0, lr_scheduler="constant",
                  learning_rate=1e-2, cpu_threads=2)
    return RunConfig.from_dict({**values, **extra})


def _train(ws: Workspace, config, name: str) -> int:
    from training.job import run_training
    from training.registry import create_run
    run = run_training(ws, create_run(ws, config, name=name).id)
    assert run.status == "finished", run.error
    return run.id


def build_two_rounds(root: Path) -> TwoRounds:
    from evaluation.auto import auto_evaluate
    from evaluation.feedback import make_preference_version, merge_feedback
    from evaluation.generate import DecodingSettings
    from evaluation.regression import add_case, create_suite

    base = build_tiny_model(root / "tiny")
    ws = Workspace.open(root / "workspace")
    records = ([_record(i, "train", q) for i, q in enumerate(QUESTIONS)]
               + [_record(i, "val", q) for i, q in enumerate(QUESTIONS[:2])]
               + [_record(i, "test", q) for i, q in enumerate(QUESTIONS[2:5])])
    v1 = create_version(ws, records, parent=None, step="import")
    suite = create_suite(ws, "house rules")
    add_case(ws, suite, "How do I reset my password?", [{"kind": "regex", "pattern": r"[\s\S]*"}], name="answers")
    add_case(ws, suite, "Where is my order?", [{"kind": "contains", "value": "Account > Orders"}], name="order path")
    settings = DecodingSettings(max_new_tokens=6)

    sft1 = _train(ws, _config(base, v1.name), "round 1")
    auto_evaluate(ws, str(sft1), v1.id, settings=settings)
    # Rated on new prompts in the train split; the rater prefers the helpful answer and corrects two.
    items = [EvalItem(f"p{i}", [{"role": "user", "content": q + " (new)"}], base_response=BAD, finetuned_response=GOOD,
                      split="train", label="password_reset") for i, q in enumerate(QUESTIONS)]
    evaluation = create_evaluation(ws, "round 1 vs base", items, base_model="tiny", run_id=str(sft1), overlap=1,
                                   dataset_version=v1.id)
    n = 0
    while (pair := next_pair(ws, evaluation, "ana")) is not None:
        n += 1
        record_vote(ws, pair.assignment_id, "ana", "A" if pair.response_a == GOOD else "B",
                    corrected_answer=GOOD + " Then sign in again." if n <= 2 else None)
    v2 = merge_feedback(ws, evaluation, created_by="ana")
    prefs = make_preference_version(ws, evaluation, created_by="ana")
    sft2 = _train(ws, _config(base, v2.name), "round 2 SFT")
    dpo = _train(ws, _config(base, v1.name, stage="dpo", sft_run=str(sft1), preferences=prefs.name,
                             max_steps=3, dpo_beta=0.5), "round 2 DPO")
    for run in (sft2, dpo):
        auto_evaluate(ws, str(run), v1.id, settings=settings)
    return TwoRounds(ws=ws, v1=v1.id, v2=v2.id, preferences=prefs.id, evaluation=evaluation, sft1=sft1, sft2=sft2, dpo=dpo)
