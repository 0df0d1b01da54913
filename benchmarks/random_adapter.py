"""A LoRA adapter with random (not zero) weights on a base model: what a run leaves in ``adapter/``, for the
speed benchmarks (speed does not depend on what an adapter learned)."""
from __future__ import annotations

from pathlib import Path


def random_adapter(folder: Path, *, base_model: str = "default", r: int = 16, seed: int = 0) -> Path:
    """Write a rank-``r`` LoRA adapter on every linear layer of ``base_model`` to ``folder``; returns it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    from training.models import resolve_base_model
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(resolve_base_model(base_model, None).path)
    config = LoraConfig(r=r, lora_alpha=r, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(folder)
    return folder
