"""The run config: one dataclass, the single source of truth for a QLoRA run.

Keys follow axolotl's names so a practitioner recognises them. The config is validated before
anything starts (every problem names its key and says why), saved beside the run as YAML, and the
Train tab renders its form from the fields below (type, help text, choices).

Example::

    config = preset_config("Quick CPU demo", base_model="default", datasets="v4", output_dir="runs/a")
    config.validate()                      # raises TuneloopError listing every bad key
    save_config(config, "runs/a/config.yaml"); load_config("runs/a/config.yaml")
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from core.errors import TuneloopError
from core.options import Options, option

ADAPTERS = ("qlora", "lora")
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")
ALL_LINEAR = "all-linear"
SYSTEM_PROMPT_MODES = ("template", "records", "none", "custom")


@dataclass
class RunConfig(Options):
    """A QLoRA/LoRA supervised fine-tuning run on a chat dataset split."""
    what: ClassVar[str] = "run config"
    base_model: str = option("default", 
        "'default' (SmolLM2-135M-Instruct, offline), a model folder, a .gguf file, or a hub id")
    datasets: str = option("", 
        "a split dataset version (e.g. v4, records carry train/val/test) or a folder with train.jsonl and val.jsonl")
    output_dir: str = option("", 
        "where the run writes metrics.jsonl, checkpoints and the adapter (empty: runs/<run id> in the workspace)")
    adapter: str = option("qlora", 
        "qlora: LoRA over a 4-bit base (least memory); lora: LoRA over a full-precision base", choices=ADAPTERS)
    load_in_4bit: bool = option(True, 
        "load the base model in 4-bit NF4 (bitsandbytes); required for qlora")
    lora_r: int = option(16, "LoRA rank: capacity of the adapter", min=1)
    lora_alpha: int = option(32, "LoRA scaling; commonly 2 × lora_r", min=1)
    lora_dropout: float = option(0.05, "dropout on the LoRA path, 0 to 0.5", min=0.0, max=0.5)
    lora_target: str = option(ALL_LINEAR, 
        "modules that get adapters: all-linear, or a comma-separated list such as q_proj,v_proj")
    sequence_len: int = option(512, 
        "longest conversation in tokens; longer ones are cut", min=16)
    packing: bool = option(False, 
        "pack several short conversations into one sequence (fewer padding tokens, faster)")
    micro_batch_size: int = option(8, "conversations per forward pass", min=1)
    gradient_accumulation_steps: int = option(1, 
        "forward passes per optimizer step; effective batch = micro_batch_size × this", min=1)
    num_epochs: float = option(1.0, "passes over the training split", min=0.0)
    max_steps: int = option(-1, 
        "stop after this many optimizer steps (-1: no limit, num_epochs decides)", min=-1)
    learning_rate: float = option(2e-4, "peak learning rate", min=0.0, max=1.0)
    lr_scheduler: str = option("cosine", "learning-rate schedule", choices=SCHEDULERS)
    warmup_ratio: float = option(0.05, 
        "share of steps spent warming the learning rate up", min=0.0, max=0.5)
    eval_steps: int = option(20, 
        "evaluate on the val split every this many steps (0: only at the end)", min=0)
    save_steps: int = option(20, 
        "save a checkpoint every this many steps (resume starts from the last one)", min=1)
    early_stopping_patience: int = option(0, 
        "stop after this many evaluations without a better eval loss (0: off)", min=0)
    gradient_checkpointing: bool = option(False, 
        "recompute activations in the backward pass: less memory, about 30% slower")
    fit_to_memory: bool = option(False, 
        "let preflight choose adapter and gradient_checkpointing from its memory estimate: LoRA over the "
        "full-precision base without checkpointing when that fits, else QLoRA and/or checkpointing (sft only)")
    seed: int = option(42, "random seed for data order and adapter initialisation")
    rouge_test_samples: int = option(24, 
        "test-split conversations answered by the base and the tuned model for ROUGE-L at the end (0: skip)", min=0)
    cpu_threads: int = option(2, "CPU threads the job may use", min=1)
    system_prompt_mode: str = option("template",
        "the system prompt of each training conversation: template (a record's own, else the base template's "
        "default), records (a record's own, else none), none, or custom (system_prompt, for every conversation)",
        choices=SYSTEM_PROMPT_MODES)
    system_prompt: str = option("", "custom only: the system prompt every training conversation gets")
    stage: str = option("sft", 
        "sft: learn the split's answers; dpo: learn from rated preference pairs; kto: learn from answers judged one "
        "at a time (thumbs, one-sided votes); dpo and kto start from an SFT run's adapter",
        choices=("sft", "dpo", "kto"))
    sft_run: str = option("", "dpo and kto: the finished SFT run whose adapter they start from (e.g. 3)")
    preferences: str = option("", 
        "dpo only: a preference dataset version made from an evaluation's votes (e.g. v7), or a prompt/chosen/rejected JSONL")
    dpo_beta: float = option(0.1, 
        "dpo only: how strongly the model is held near the SFT adapter (lower lets it move further)", min=0.0)
    kto_data: str = option("", 
        "kto only: a KTO dataset version made from one-sided votes or thumbs on served answers (e.g. v9), or a "
        "prompt/completion/label JSONL")
    kto_beta: float = option(0.1, 
        "kto only: how strongly the model is held near the SFT adapter (lower lets it move further)", min=0.0)

    # -- checks across keys (each key's type, choices and range come from its metadata) -------------
    def more_problems(self) -> list[str]:
        out = []
        if not str(self.base_model).strip():
            out.append("base_model: choose a base model ('default' works offline)")
        if not str(self.datasets).strip():
            out.append("datasets: choose a split dataset version (e.g. v4) or a folder with train.jsonl and val.jsonl")
        if self.adapter == "qlora" and not self.load_in_4bit:
            out.append("load_in_4bit: qlora trains over a 4-bit base; set load_in_4bit: true or adapter: lora")
        if self.max_steps == 0 or (self.max_steps < 0 and self.num_epochs <= 0):
            out.append("num_epochs: the run would train zero steps; set num_epochs > 0 or max_steps > 0")
        if self.early_stopping_patience and not self.eval_steps:
            out.append("early_stopping_patience: needs eval_steps > 0 (it compares evaluations during training)")
        if self.early_stopping_patience and self.eval_steps and self.save_steps % self.eval_steps:
            out.append(f"save_steps: with early stopping it must be a multiple of eval_steps ({self.eval_steps}) "
                       f"so the best checkpoint is kept")
        if self.lora_target != ALL_LINEAR and not all(t.strip() for t in self.lora_target.split(",")):
            out.append("lora_target: use all-linear or module names separated by commas, e.g. q_proj,v_proj")
        if self.system_prompt_mode == "custom" and not self.system_prompt.strip():
            out.append("system_prompt: system_prompt_mode custom needs the prompt's text (or choose another mode)")
        if self.stage == "dpo":
            from training.dpo import dpo_problems
            out += dpo_problems(self)
        if self.stage == "kto":
            from training.kto import kto_problems
            out += kto_problems(self)
        return out

    def validate(self) -> "RunConfig":
        problems = self.problems()
        if problems:
            raise TuneloopError("the run config has problems; nothing was started:\n  " + "\n  ".join(problems))
        return self

    @property
    def lora_target_modules(self) -> str | list[str]:
        if self.lora_target == ALL_LINEAR:
            return ALL_LINEAR
        return [t.strip() for t in self.lora_target.split(",") if t.strip()]


# -- presets -------------------------------------------------------------------------------------
PRESETS: dict[str, dict[str, Any]] = {
    # A 135M model on 2 slow CPU cores in under 15 minutes: 96 conversations in length-grouped batches
    # (CPU attention has no per-sequence packing), no LoRA dropout (it copies every activation), and
    # preflight's memory estimate choosing the rest: LoRA over the fp32 base without checkpointing
    # when memory allows (the default model's weights come from a Q4_1 file; NF4 on top hurts it).
    "Quick CPU demo": dict(adapter="lora", load_in_4bit=False, lora_r=16, lora_alpha=32, lora_dropout=0.0,
                           sequence_len=512, packing=False, micro_batch_size=4, gradient_accumulation_steps=1,
                           num_epochs=1.0, max_steps=24, learning_rate=5e-4, lr_scheduler="cosine",
                           warmup_ratio=0.05, eval_steps=12, save_steps=12, early_stopping_patience=0,
                           gradient_checkpointing=False, fit_to_memory=True, rouge_test_samples=12, cpu_threads=2),
    # The QLoRA paper's recipe for a 7B model on one 24 GB card.
    "7B QLoRA on one 24 GB GPU": dict(adapter="qlora", load_in_4bit=True, lora_r=16, lora_alpha=32,
                                      lora_dropout=0.05, sequence_len=2048, packing=True, micro_batch_size=2,
                                      gradient_accumulation_steps=8, num_epochs=3.0, max_steps=-1,
                                      learning_rate=2e-4, lr_scheduler="cosine", warmup_ratio=0.03,
                                      eval_steps=50, save_steps=50, early_stopping_patience=3,
                                      gradient_checkpointing=True, rouge_test_samples=50, cpu_threads=8),
}


def preset_config(preset: str, **overrides) -> RunConfig:
    if preset not in PRESETS:
        raise TuneloopError(f"unknown preset '{preset}'; choose one of: {', '.join(PRESETS)}")
    return RunConfig.from_dict({**PRESETS[preset], **overrides})


# -- YAML ------------------------------------------------------------------------------------------
def config_to_yaml(config: RunConfig) -> str:
    return config.to_yaml()


def config_from_yaml(text: str, *, source: str = "config") -> RunConfig:
    return RunConfig.from_yaml(text, source=source)


def save_config(config: RunConfig, path: str | os.PathLike) -> Path:
    return config.save(path)


def load_config(path: str | os.PathLike) -> RunConfig:
    path = Path(path)
    if not path.is_file():
        raise TuneloopError(f"config file '{path}' does not exist")
    return config_from_yaml(path.read_text(encoding="utf-8"), source=str(path))
