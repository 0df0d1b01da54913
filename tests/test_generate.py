"""Generation for rating: one tiny base model built in the test with a fresh LoRA adapter, on and off."""
from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from curation.data.records import Record
from curation.data.versions import create_version
from evaluation.arena import get_evaluation, next_pair
from evaluation.generate import (GenerationCancelled, generate_pairs, prepare_evaluation, prompts_from_texts,
                                 prompts_from_version, resolve_adapter)
from training.inference import DecodingSettings, default_pool, warm_base
from tests.tiny_model import build_tiny_model, plain_replies

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = DecodingSettings(max_new_tokens=6)
QUESTIONS = ["Where is my order?", "How do I reset my password?", "Can I get a refund?",
             "Thank you for contacting support", "The quick brown fox", "refunds within 30 days?"]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A run folder as training leaves it: ``adapter/`` holding a LoRA adapter on the tiny base."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("gen")
    base = build_tiny_model(root / "tiny")
    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(base)
    # Random (not zero) LoRA weights, so the adapter really changes the answers.
    config = LoraConfig(r=4, lora_alpha=32, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(root / "run" / "adapter")
    return root / "run"


def test_adapter_on_and_off_match_separate_models(ws, run_folder):
    models = resolve_adapter(ws, run_folder)
    assert models.adapter.endswith("adapter") and Path(models.base_model).name == "tiny"
    items = prompts_from_texts(QUESTIONS[:3])
    pairs = generate_pairs(ws, items, base_model=models.base_model, adapter=models.adapter, settings=SETTINGS,
                           batch_size=2)
    conversations = [i.messages for i in items]
    assert [b for b, _ in pairs] == plain_replies(models.base_model, None, conversations, SETTINGS)
    assert [t for _, t in pairs] == plain_replies(models.base_model, Path(models.adapter), conversations, SETTINGS)
    assert any(b != t for b, t in pairs)
    assert [m.resolved.name for m in default_pool().models()] == ["tiny"]     # one warm copy, reused
    assert warm_base(ws, models.base_model) is default_pool().models()[0]


def test_responses_are_cached_by_settings_and_cancel_keeps_finished_batches(ws, run_folder):
    models = resolve_adapter(ws, run_folder)
    items = prompts_from_texts(QUESTIONS)
    stop = threading.Event()
    seen = []

    def progress(done, total, what):
        seen.append((done, total))
        if done >= 2:
            stop.set()

    with pytest.raises(GenerationCancelled, match="stopped after 2 of 12"):
        generate_pairs(ws, items, base_model=models.base_model, adapter=models.adapter, settings=SETTINGS,
                       batch_size=2, progress=progress, cancel=stop)
    assert ws.db.execute("select count(*) from generation_cache").fetchone()[0] == 2
    seen.clear()
    first = generate_pairs(ws, items, base_model=models.base_model, adapter=models.adapter, settings=SETTINGS,
                           batch_size=2, progress=lambda d, t, w: seen.append((d, t)))
    assert seen[0] == (2, 12) and seen[-1] == (12, 12)
    seen.clear()
    again = generate_pairs(ws, items, base_model=models.base_model, adapter=models.adapter, settings=SETTINGS,
                           progress=lambda d, t, w: seen.append((d, t)))
    assert again == first and seen == [(12, 12)]
    longer = DecodingSettings(max_new_tokens=8)
    generate_pairs(ws, items[:1], base_model=models.base_model, adapter=models.adapter, settings=longer)
    assert ws.db.execute("select count(*) from generation_cache").fetchone()[0] == 14


def test_prepare_evaluation_from_a_test_split(ws, run_folder):
    records = [Record(f"r{i}", [{"role": "user", "content": q}, {"role": "assistant", "content": "ref"}],
                      {"split": "test" if i % 2 else "train", "label": "orders"}) for i, q in enumerate(QUESTIONS)]
    version = create_version(ws, records, parent=None, step="split")
    items = prompts_from_version(ws, version.id)
    assert [i.prompt_id for i in items] == ["r1", "r3", "r5"] and items[0].messages[-1]["role"] == "user"
    eid = prepare_evaluation(ws, items, models=resolve_adapter(ws, run_folder), dataset_version=version.id,
                             overlap=2, settings=SETTINGS)
    evaluation = get_evaluation(ws, eid)
    assert evaluation.num_pairs == 3 and evaluation.overlap == 2 and evaluation.base_model == "tiny"
    assert evaluation.settings["max_new_tokens"] == 6
    assert next_pair(ws, eid, "ana").prompt in QUESTIONS


def test_generate_command_creates_an_evaluation(ws, run_folder):
    records = [Record(f"r{i}", [{"role": "user", "content": q}, {"role": "assistant", "content": "ref"}],
                      {"split": "test"}) for i, q in enumerate(QUESTIONS[:2])]
    version = create_version(ws, records, parent=None, step="split")
    done = subprocess.run([sys.executable, "-m", "evaluation", "generate", "--run", str(run_folder), "--split",
                           version.name, "--max-new-tokens", "4", "--workspace", str(ws.root)],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "evaluation 1: 2 pairs" in done.stdout
    missing = subprocess.run([sys.executable, "-m", "evaluation", "generate", "--run", "/nowhere", "--split",
                              version.name, "--workspace", str(ws.root)], cwd=ROOT, capture_output=True, text=True)
    assert missing.returncode == 2 and "error:" in missing.stderr
