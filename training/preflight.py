"""Preflight: before a run starts, does it fit and does the data look right?

A memory estimate against the memory available, token statistics of the training split (how many
conversations get cut at ``sequence_len``), steps per epoch, and one example rendered with its loss
mask (what the model learns from, and what is context only).

With ``fit_to_memory`` the estimate also chooses (``plan_memory``; the job makes the same choice):
LoRA over the full-precision base without gradient checkpointing when that fits, since it is the
fastest and loses nothing; otherwise QLoRA and/or checkpointing, whichever costs least. The choices
and why are stated in the preflight text and stored with the run.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import TuneloopError
from core.workspace import Workspace
from training.config import RunConfig

GB = 1024 ** 3


@dataclass
class MemoryEstimate:
    weights_gb: float
    adapter_and_optimizer_gb: float
    activations_gb: float
    overhead_gb: float
    available_gb: float
    device: str

    @property
    def total_gb(self) -> float:
        return self.weights_gb + self.adapter_and_optimizer_gb + self.activations_gb + self.overhead_gb

    @property
    def fits(self) -> bool:
        return self.total_gb <= self.available_gb

    def as_dict(self) -> dict[str, Any]:
        return {"weights_gb": round(self.weights_gb, 2), "adapter_and_optimizer_gb": round(self.adapter_and_optimizer_gb, 2),
                "activations_gb": round(self.activations_gb, 2), "overhead_gb": round(self.overhead_gb, 2),
                "total_gb": round(self.total_gb, 2), "available_gb": round(self.available_gb, 2),
                "device": self.device, "fits": self.fits}


@dataclass
class MemoryPlan:
    """The config to train with (``fit_to_memory`` may change adapter, load_in_4bit and
    gradient_checkpointing), its memory estimate, and the choices in words."""
    config: RunConfig
    memory: MemoryEstimate
    choices: list[str] = field(default_factory=list)


@dataclass
class Preflight:
    config: RunConfig
    base_model: str
    memory: MemoryEstimate
    token_stats: dict[str, Any]
    steps_per_epoch: int
    total_steps: int
    example: list[tuple[str, bool]]
    warnings: list[str] = field(default_factory=list)
    choices: list[str] = field(default_factory=list)
    stage_data: str = ""        # dpo / kto: what the run trains on, and what is left out and why
    coverage: str = ""          # how much of the training split the steps reach, in words
    system_prompt: str = ""     # what the conversations' system prompts will be

    @property
    def ok(self) -> bool:
        return self.memory.fits

    def as_text(self) -> str:
        m = self.memory.as_dict()
        lines = [f"base model: {self.base_model}",
                 f"memory: about {m['total_gb']} GB needed (weights {m['weights_gb']}, adapter+optimizer "
                 f"{m['adapter_and_optimizer_gb']}, activations {m['activations_gb']}, overhead {m['overhead_gb']}); "
                 f"{m['available_gb']} GB available on {m['device']} → {'fits' if m['fits'] else 'DOES NOT FIT'}",
                 "tokens: " + ", ".join(f"{k} {v}" for k, v in self.token_stats.items()),
                 f"steps: {self.steps_per_epoch} per epoch, {self.total_steps} in all"]
        lines += [f"trains on: {self.coverage}"] if self.coverage else []
        lines += [f"system prompt: {self.system_prompt}"] if self.system_prompt else []
        lines += [f"choice: {c}" for c in self.choices]
        lines += [f"{self.config.stage} data: {self.stage_data}"] if self.stage_data else []
        lines += [
                 "example (trained text in [[...]]):",
                 "".join(f"[[{t}]]" if trained else t for t, trained in self.example)]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def model_shape(model_path: str) -> dict[str, int]:
    """Parameter count and layer sizes from config.json (no weights loaded)."""
    config = json.loads((Path(model_path) / "config.json").read_text())
    text = config.get("text_config", config)
    hidden = int(text["hidden_size"])
    layers = int(text["num_hidden_layers"])
    inter = int(text.get("intermediate_size", 4 * hidden))
    vocab = int(text["vocab_size"])
    heads = int(text.get("num_attention_heads", 1))
    kv = int(text.get("num_key_value_heads", heads))
    head_dim = int(text.get("head_dim") or hidden // heads)
    attn = hidden * head_dim * heads * 2 + hidden * head_dim * kv * 2
    mlp = 3 * hidden * inter
    linear = layers * (attn + mlp)
    embed = vocab * hidden * (1 if text.get("tie_word_embeddings", config.get("tie_word_embeddings")) else 2)
    return {"hidden": hidden, "layers": layers, "intermediate": inter, "vocab": vocab, "linear_params": linear,
            "embedding_params": embed, "lora_in_out_per_layer": 7 * hidden + 2 * head_dim * (heads + kv) + 3 * inter}


def estimate_memory(config: RunConfig, model_path: str, *, longest_batch_tokens: int,
                    available_bytes: float | None = None) -> MemoryEstimate:
    """A rough upper estimate: 4-bit (or fp32/bf16) weights, LoRA with Adam states, activations of one micro batch.

    ``available_bytes``: plan for that much memory instead of what is free on this device now.
    """
    import psutil
    import torch
    shape = model_shape(model_path)
    on_cuda = torch.cuda.is_available()
    full_bytes = 2 if on_cuda else 4
    linear_bytes = 0.56 if config.load_in_4bit else full_bytes       # NF4 plus its scales
    weights = shape["linear_params"] * linear_bytes + shape["embedding_params"] * full_bytes
    lora_params = shape["layers"] * config.lora_r * shape["lora_in_out_per_layer"]
    adapter = lora_params * 16                                       # weights, grads, two Adam moments (fp32)
    per_token_layer = shape["hidden"] * 16 + shape["intermediate"] * 8
    if config.gradient_checkpointing:
        per_token_layer = shape["hidden"] * 4 + per_token_layer / shape["layers"]
    activations = longest_batch_tokens * (shape["layers"] * per_token_layer * full_bytes / 2
                                          + shape["vocab"] * 4 * 3)  # logits, their grad, log-softmax
    if on_cuda:
        free, _ = torch.cuda.mem_get_info()
        available, device, overhead = free, torch.cuda.get_device_name(), 0.8 * GB
    else:
        available, device, overhead = psutil.virtual_memory().available, "CPU (RAM)", 0.9 * GB
    if available_bytes is not None:
        available = available_bytes
    return MemoryEstimate(weights / GB, adapter / GB, activations / GB, overhead / GB, available / GB, device)


def longest_batch_tokens(config: RunConfig, lengths: list[int]) -> int:
    """Tokens in the largest micro batch: packed rows are full; length-grouped batches hold the longest together."""
    if config.packing:
        return config.micro_batch_size * config.sequence_len
    longest = sorted(lengths, reverse=True)
    if not longest:
        return 0
    return max(sum(longest[: config.micro_batch_size]), longest[0] * min(config.micro_batch_size, len(longest)))


def plan_memory(config: RunConfig, model_path: str, *, longest_batch_tokens: int, source_quantization: str = "",
                available_bytes: float | None = None) -> MemoryPlan:
    """The config as set, or with ``fit_to_memory`` the fastest adapter/checkpointing whose estimate fits.

    Order tried: LoRA over the full-precision base without checkpointing; then, when the base's
    weights were already dequantized from ``source_quantization`` (a GGUF Q4_1, say), checkpointing
    before NF4 (quantizing them again costs quality: validation loss 3.79 vs 3.48 on the default
    model), else QLoRA first (about as fast as LoRA on CPU, checkpointing about 1.4× slower); last both.
    """
    import torch

    def estimate(candidate: RunConfig) -> MemoryEstimate:
        return estimate_memory(candidate, model_path, longest_batch_tokens=longest_batch_tokens,
                               available_bytes=available_bytes)

    cpu = [] if torch.cuda.is_available() else [
        "LoRA weights train in fp32 (a CPU has no fast bf16 matmul; trl would cast them to bf16 for a 4-bit base)"]
    if not config.fit_to_memory or config.stage != "sft":
        return MemoryPlan(config, estimate(config), cpu)
    lora, qlora = dict(adapter="lora", load_in_4bit=False), dict(adapter="qlora", load_in_4bit=True)
    if source_quantization:
        order = [(lora, False), (lora, True), (qlora, False), (qlora, True)]
    else:
        order = [(lora, False), (qlora, False), (lora, True), (qlora, True)]
    full = estimate(config.replace(**lora, gradient_checkpointing=False))
    for adapter, checkpointing in order:
        chosen = config.replace(**adapter, gradient_checkpointing=checkpointing)
        memory = estimate(chosen)
        if memory.fits:
            break
    need = f"LoRA over the full-precision base without checkpointing needs about {full.total_gb:.1f} GB"
    free = f"{full.available_gb:.1f} GB is free on {full.device}"
    if chosen.adapter == "lora":
        adapter_line = (f"adapter lora over the full-precision base (about {memory.total_gb:.1f} GB of the "
                        f"{full.available_gb:.1f} GB free)")
        if source_quantization:
            adapter_line += (f"; its weights come from a {source_quantization} GGUF file, so quantizing them "
                             f"again to NF4 (qlora) would cost quality")
    else:
        adapter_line = f"adapter qlora (4-bit NF4 base): {need}, {free}"
        if source_quantization:
            adapter_line += f"; NF4 on top of weights from a {source_quantization} GGUF file costs some quality"
    if chosen.gradient_checkpointing:
        checkpoint_line = f"gradient checkpointing on: {need} and {free} (checkpointing is about 1.4× slower)"
    else:
        checkpoint_line = (f"gradient checkpointing off: the activations (about {memory.activations_gb:.1f} GB) "
                           f"fit, and recomputing them would be about 1.4× slower")
    if not memory.fits:
        checkpoint_line += "; even QLoRA with checkpointing does not fit"
    return MemoryPlan(chosen, memory, [adapter_line, checkpoint_line] + cpu)


def preflight(ws: Workspace, config: RunConfig) -> Preflight:
    """Check a config before launching: validation errors raise; fitting and data problems are reported. A DPO
    or KTO config whose data holds nothing it may train on is refused, saying why."""
    import torch
    from training.data import (apply_system_prompt, load_split_data, render_loss_mask, system_prompt_summary,
                               token_statistics, tokenize_records)
    from training.models import load_tokenizer, resolve_base_model, source_quantization
    config.validate()
    stage_data = second_stage_data(ws, config) if config.stage in ("dpo", "kto") else ""
    resolved = resolve_base_model(config.base_model, ws)
    data = load_split_data(ws, config.datasets)
    tokenizer = load_tokenizer(resolved)
    train = apply_system_prompt(tokenizer, data["train"], config)
    system_prompt, mixed = system_prompt_summary(tokenizer, data["train"], config)
    tokenized = tokenize_records(tokenizer, train, config.sequence_len)
    if not tokenized.input_ids:
        raise TuneloopError("the training split has no conversation with an assistant answer to learn from")
    stats = token_statistics(tokenized, config.sequence_len)
    if config.packing:
        sequences = math.ceil(tokenized.num_tokens / config.sequence_len)
    else:
        sequences = len(tokenized.lengths)
    per_step = config.micro_batch_size * config.gradient_accumulation_steps
    steps_per_epoch = max(1, math.ceil(sequences / per_step))
    total = config.max_steps if config.max_steps > 0 else math.ceil(steps_per_epoch * config.num_epochs)
    coverage = training_coverage(config, sequences, total, conversations=len(tokenized.input_ids))
    plan = plan_memory(config, resolved.path, longest_batch_tokens=longest_batch_tokens(config, tokenized.lengths),
                       source_quantization=source_quantization(resolved))
    config, memory = plan.config, plan.memory
    warnings = [mixed] if mixed else []
    if not memory.fits:
        warnings.append(f"the run needs about {memory.total_gb:.1f} GB but {memory.available_gb:.1f} GB is free: "
                        f"lower micro_batch_size or sequence_len, use 4-bit, or turn on gradient_checkpointing")
    if stats["cut_at_sequence_len"]:
        warnings.append(f"{stats['cut_at_sequence_len']} conversations are longer than sequence_len "
                        f"({config.sequence_len}) and will be cut; raise it to keep them whole")
    if config.packing and not torch.cuda.is_available():
        warnings.append("packing on CPU lets packed conversations attend to each other (CPU attention has no "
                        "per-sequence masks), which skews the loss; set packing: false to train length-grouped batches")
    if tokenized.dropped:
        warnings.append(f"{len(tokenized.dropped)} conversations have no assistant tokens left and are skipped")
    if config.eval_steps and not data["val"]:
        warnings.append("the split has no validation records: set eval_steps: 0 or make a split with a val part")
    sample = train[0]
    example = render_loss_mask(tokenizer, sample.messages, config.sequence_len)
    return Preflight(config, resolved.describe(), memory, stats, steps_per_epoch, total, example, warnings,
                     plan.choices, stage_data, coverage, system_prompt)


def training_coverage(config: RunConfig, sequences: int, total_steps: int, *, conversations: int) -> str:
    """How much of the training split ``total_steps`` reach: "96 of 265 conversations, 0.36 epoch"."""
    seen = total_steps * config.micro_batch_size * config.gradient_accumulation_steps
    epochs = seen / sequences if sequences else 0.0
    unit = "packed sequences" if config.packing else "conversations"
    whole = sequences if config.packing else conversations
    why = f" (max_steps {config.max_steps} ends it there)" if config.max_steps > 0 else ""
    if epochs < 1:
        return f"{seen} of {whole} {unit}, {epochs:.2f} epoch{why}"
    return f"all {whole} {unit}, {epochs:.2f} epochs{why}"


def second_stage_data(ws: Workspace, config: RunConfig) -> str:
    """What a DPO or KTO config trains on, in words; raises (naming why) when nothing can be trained on."""
    from training.job import stage_for
    data, parts = stage_for(config).training_data(ws, config)
    what = "preference pairs" if config.stage == "dpo" else "KTO examples"
    line = (f"{data.source}: {len(parts['train'])} {what} to train on, {len(parts['val'])} for evaluation, "
            f"{len(parts['test'])} from test prompts left out")
    if config.stage == "kto":
        good = sum(1 for e in parts["train"] if e.desirable)
        line += f" ({good} desirable, {len(parts['train']) - good} undesirable in training)"
    return line
