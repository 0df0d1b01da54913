"""GPU readiness: a QLoRA run in bf16 through Tuneloop's own job on the default model (and on a larger
model when one is at hand), then the merged model's generation speed; prints one table.

    bash benchmarks/gpu_check.sh [--dry] [--model default] [--large PATH_OR_HUB_ID] [--steps 40]

Per model: training tokens per second (the job's own figure, from metrics.jsonl, after the first
logged step), peak GPU memory of the run (torch.cuda.max_memory_allocated), and greedy generation
of the merged bf16 model (tokens per second at batch 1 and batch 8, 128 new tokens, after a warm-up).
``--dry`` runs the same code on the CPU over the tiny test model (LoRA, no 4-bit, 2 steps), so the
script is checked where there is no GPU; its figures say nothing about a GPU.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def demo_split(folder: Path, conversations: int) -> Path:
    """Single-answer demo conversations as train/val JSONL (the job's input)."""
    from curation.data.demo import demo_records
    from curation.data.formats import write_jsonl
    records = [r for r in demo_records(conversations * 3, seed=7) if r.messages[-1]["role"] == "assistant"]
    write_jsonl(records[:conversations], folder / "train.jsonl")
    write_jsonl(records[-8:], folder / "val.jsonl")
    return folder


def train(ws, model: str, split: Path, *, steps: int, dry: bool):
    """One run through ``training.job.run_training``: QLoRA on CUDA (bf16 compute), LoRA fp32 when dry."""
    from training import registry as R
    from training.config import preset_config
    from training.job import run_training
    plan = (dict(adapter="lora", load_in_4bit=False, micro_batch_size=4, cpu_threads=2) if dry else
            dict(adapter="qlora", load_in_4bit=True, micro_batch_size=8, gradient_checkpointing=False, cpu_threads=8))
    config = preset_config("7B QLoRA on one 24 GB GPU", base_model=model, datasets=str(split), max_steps=steps,
                           sequence_len=512, packing=False, gradient_accumulation_steps=1, eval_steps=0,
                           save_steps=steps, early_stopping_patience=0, rouge_test_samples=0, warmup_ratio=0.0,
                           **plan)
    run = run_training(ws, R.create_run(ws, config, name=f"gpu check {model}").id)
    if run.status != "finished":
        raise SystemExit(f"training on {model} ended {run.status}: {run.error}")
    rows = [r for r in R.read_metrics(run) if r.get("event") == "train" and r.get("tokens_per_s")]
    return run, (rows[-1]["tokens_per_s"] if rows else None), run.metrics.get("peak_gpu_mb")


def generation_speed(ws, run, *, dry: bool) -> dict[int, float]:
    """Greedy tokens per second of the merged model, bf16 on the GPU (fp32 on the CPU when dry)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from training.export import export_merged
    device = "cpu" if dry else "cuda"
    with tempfile.TemporaryDirectory() as tmp:
        merged = export_merged(ws, run, Path(tmp) / "merged")
        tokenizer = AutoTokenizer.from_pretrained(merged, padding_side="left")
        model = AutoModelForCausalLM.from_pretrained(
            merged, dtype=torch.float32 if dry else torch.bfloat16, device_map={"": device}).eval()
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    questions = ["How do I reset my password?", "Where is my order?", "Can I get a refund?",
                 "How do I change my address?", "Why was I charged twice?", "Do you ship abroad?",
                 "How do I cancel?", "Is there a student discount?"]
    new_tokens = 16 if dry else 128
    speeds = {}
    for batch in (1, 8):
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                               add_generation_prompt=True) for q in questions[:batch]]
        inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                      pad_token_id=tokenizer.pad_token_id)
        with torch.no_grad():
            model.generate(**inputs, **kwargs)                  # warm-up: kernels, caches
            if not dry:
                torch.cuda.synchronize()
            started = time.perf_counter()
            out = model.generate(**inputs, **kwargs)
            if not dry:
                torch.cuda.synchronize()
        made = (out.shape[1] - inputs["input_ids"].shape[1]) * batch
        speeds[batch] = made / (time.perf_counter() - started)
    return speeds


def check(ws, model: str, split: Path, *, steps: int, dry: bool) -> list[str]:
    """Train, merge and generate with one model; the table's row."""
    import torch
    if not dry:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    run, tokens_per_s, peak_mb = train(ws, model, split, steps=steps, dry=dry)
    trained_s = time.perf_counter() - started
    speeds = generation_speed(ws, run, dry=dry)
    return [model, str(steps), f"{trained_s:.0f}", f"{tokens_per_s:.0f}" if tokens_per_s else "?",
            f"{peak_mb:.0f}" if peak_mb else "-", f"{speeds[1]:.1f}", f"{speeds[8]:.1f}"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry", action="store_true", help="CPU, tiny test model, 2 steps: checks the script only")
    parser.add_argument("--model", default="default", help="base model of the first run (default: SmolLM2-135M)")
    parser.add_argument("--large", default="", help="a larger base model (folder or cached hub id), when at hand")
    parser.add_argument("--steps", type=int, default=40, help="training steps per run")
    args = parser.parse_args(argv)
    import torch
    if not args.dry and not torch.cuda.is_available():
        print("no CUDA device: run on a GPU machine, or pass --dry to check the script on the CPU")
        return 1
    with tempfile.TemporaryDirectory(prefix="tuneloop-gpu-check-") as tmp:
        from core.workspace import Workspace
        root = Path(tmp)
        ws = Workspace.open(root / "ws")
        models = [args.model] + ([args.large] if args.large else [])
        steps = 2 if args.dry else args.steps
        if args.dry:
            from tests.tiny_model import build_tiny_model
            models = [str(build_tiny_model(root / "tiny"))]
        split = demo_split(root / "split", 16 if args.dry else 8 * steps)
        device = "CPU (dry run)" if args.dry else torch.cuda.get_device_name(0)
        print(f"device: {device}; torch {torch.__version__}; {'no 4-bit' if args.dry else 'QLoRA NF4, bf16 compute'}")
        header = ["base model", "steps", "train s", "train tok/s", "peak GPU MB", "gen tok/s b1", "gen tok/s b8"]
        rows = [check(ws, model, split, steps=steps, dry=args.dry) for model in models]
        if not args.large and not args.dry:
            print("no larger model named (--large): only the default model was checked")
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        for line in [header, ["-" * w for w in widths], *rows]:
            print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
