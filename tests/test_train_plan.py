"""The training plan: LoRA weights stay fp32 on CPU through trl's trainer set-up, and with
``fit_to_memory`` the adapter and gradient checkpointing come from the memory estimate."""
from __future__ import annotations

import pytest

from core.workspace import Workspace
from tests.test_train import split_version, tiny_config
from tests.tiny_model import build_tiny_model
from training import registry as R
from training.job import run_training
from training.preflight import GB, estimate_memory, plan_memory, preflight


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama"))


def test_lora_weights_train_in_fp32_on_cpu_over_a_4bit_base(tmp_path, tiny_model):
    """trl casts LoRA weights to bf16 for a quantized base; on CPU the job keeps them fp32 (what it saves
    is what it trained)."""
    from safetensors import safe_open
    ws = Workspace.open(tmp_path / "ws")
    config = tiny_config(tiny_model, split_version(ws).name, adapter="qlora", load_in_4bit=True,
                         fit_to_memory=False, max_steps=1, eval_steps=0, save_steps=1, rouge_test_samples=0)
    run = run_training(ws, R.create_run(ws, config).id)
    assert run.status == "finished", run.error
    assert run.metrics["trained_adapter"] == "qlora"
    with safe_open(str(run.adapter_dir / "adapter_model.safetensors"), "pt") as weights:
        lora_a = [weights.get_tensor(k) for k in weights.keys() if "lora_A" in k]
    assert lora_a and {str(t.dtype) for t in lora_a} == {"torch.float32"}


def test_fit_to_memory_trains_plain_lora_without_checkpointing_when_it_fits(tmp_path, tiny_model):
    ws = Workspace.open(tmp_path / "ws")
    config = tiny_config(tiny_model, split_version(ws).name, adapter="qlora", load_in_4bit=True,
                         gradient_checkpointing=True, fit_to_memory=True, max_steps=1, eval_steps=0, save_steps=1,
                         rouge_test_samples=0)
    report = preflight(ws, config)
    assert (report.config.adapter, report.config.load_in_4bit, report.config.gradient_checkpointing) == \
        ("lora", False, False)
    assert "choice: adapter lora over the full-precision base" in report.as_text()
    assert "choice: gradient checkpointing off" in report.as_text()
    run = run_training(ws, R.create_run(ws, config).id)
    assert run.status == "finished", run.error
    assert run.metrics["trained_adapter"] == "lora" and run.metrics["gradient_checkpointing"] is False


def test_checkpointing_and_qlora_are_chosen_from_the_memory_estimate(tiny_model):
    config = tiny_config(tiny_model, "v1", fit_to_memory=True)
    tokens = 4 * 512

    def total(**values) -> float:
        return estimate_memory(config.replace(**values), tiny_model, longest_batch_tokens=tokens).total_gb * GB

    lora, lora_ckpt = total(adapter="lora", load_in_4bit=False), total(adapter="lora", load_in_4bit=False,
                                                                      gradient_checkpointing=True)
    qlora, qlora_ckpt = total(adapter="qlora", load_in_4bit=True), total(adapter="qlora", load_in_4bit=True,
                                                                        gradient_checkpointing=True)
    assert qlora_ckpt < lora_ckpt < qlora < lora

    def chosen(available: float, quantized: str = "") -> tuple[str, bool]:
        plan = plan_memory(config, tiny_model, longest_batch_tokens=tokens, source_quantization=quantized,
                           available_bytes=available)
        return plan.config.adapter, plan.config.gradient_checkpointing

    assert chosen(lora) == ("lora", False)
    assert chosen((qlora + lora) / 2) == ("qlora", False)        # NF4 first: about as fast, no recomputing
    assert chosen((qlora + lora) / 2, "Q4_1") == ("lora", True)  # weights from a Q4_1 file: no NF4 on top
    assert chosen((qlora_ckpt + lora_ckpt) / 2) == ("qlora", True)
    low = plan_memory(config, tiny_model, longest_batch_tokens=tokens, available_bytes=qlora_ckpt / 2)
    assert (low.config.adapter, low.config.gradient_checkpointing) == ("qlora", True) and not low.memory.fits
    assert "even QLoRA with checkpointing does not fit" in low.choices[1]
    as_set = plan_memory(config.replace(fit_to_memory=False, gradient_checkpointing=True), tiny_model,
                         longest_batch_tokens=tokens, available_bytes=qlora_ckpt / 2)
    assert as_set.config.gradient_checkpointing and as_set.config.adapter == config.adapter
