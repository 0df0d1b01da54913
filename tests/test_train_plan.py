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


def test_ctrl_c_stops_the_cli_run_at_a_checkpoint_like_the_tabs_stop(ws, tiny_model):
    """``python -m training run`` interrupted once (SIGINT, what Ctrl-C sends) saves a checkpoint at the end of
    the step and ends stopped, resumable, instead of failing with its last steps lost."""
    import os
    import signal
    import time
    config = tiny_config(tiny_model, split_version(ws).name, max_steps=4, save_steps=10, eval_steps=0,
                         rouge_test_samples=0)
    run = R.launch_run(ws, config, name="interrupt me")
    deadline = time.monotonic() + 300
    while R.get_run_status(ws, run.id).status == "queued" and time.monotonic() < deadline:
        time.sleep(0.2)      # "running" is set once the job listens for the signal
    assert R.get_run_status(ws, run.id).status == "running"
    os.kill(run.pid, signal.SIGINT)
    stopped = R.wait_for_run(ws, run.id, timeout=300)
    assert stopped.status == "stopped", (stopped.error, R.log_tail(stopped, 40))
    assert R.last_checkpoint(stopped) is not None and stopped.metrics["last_step"] < 4
    assert "stopping after this step" in R.log_tail(stopped, 40)


def test_only_the_trained_tokens_go_through_the_lm_head_with_the_same_loss_and_gradients(tmp_path, tiny_model):
    """On CPU the job's training loss sends only labelled positions through the LM head (trl's fused head sends
    every position there), and gives what transformers' own loss gives: the same value, the same LoRA gradients."""
    import torch
    from curation.data.demo import demo_records
    from training.data import tokenize_records
    from training.job import add_lora, build_trainer, to_dataset
    from training.models import load_model_and_tokenizer, resolve_base_model

    config = tiny_config(tiny_model, "v1", adapter="lora", load_in_4bit=False, micro_batch_size=3, eval_steps=0)
    model, tokenizer = load_model_and_tokenizer(resolve_base_model(tiny_model, None))
    torch.manual_seed(0)
    model = add_lora(model, config)
    for name, param in model.named_parameters():
        if "lora_B" in name:             # LoRA starts as a no-op; make it change the logits so gradients differ
            torch.nn.init.normal_(param, std=0.05)
    train = to_dataset(tokenize_records(tokenizer, demo_records(6, seed=3), config.sequence_len))
    trainer = build_trainer(config, model, tokenizer, train, None, tmp_path / "out", [])
    batch = trainer.data_collator([train[i] for i in range(3)])
    labels = batch["labels"]
    rows = []
    hook = model.get_base_model().get_output_embeddings().register_forward_hook(
        lambda module, args, out: rows.append(args[0].reshape(-1, args[0].shape[-1]).shape[0]))
    model.train()
    loss = trainer.compute_loss(model, batch)
    hook.remove()
    trained = int((labels[:, 1:] != -100).sum())
    assert rows == [trained] and trained < labels[:, 1:].numel()
    loss.backward()
    ours = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    reference = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).loss
    reference.backward()
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert torch.allclose(ours[name], param.grad, rtol=1e-4, atol=1e-6), name
    # evaluation (trl's prediction step asks for the loss alone) takes the same path and gives the same loss
    model.eval()
    rows.clear()
    hook = model.get_base_model().get_output_embeddings().register_forward_hook(
        lambda module, args, out: rows.append(args[0].reshape(-1, args[0].shape[-1]).shape[0]))
    with torch.no_grad():
        evaluated = trainer.prediction_step(model, batch, prediction_loss_only=True)[0]
    hook.remove()
    assert rows == [trained] and evaluated.item() == pytest.approx(reference.item(), rel=1e-5)
