"""Training speed and memory: Tuneloop's job vs the guide's configuration, side by side in one run.

Both train the default model (SmolLM2-135M-Instruct, 4-bit NF4 base, LoRA) on the same demo
conversations once (the same token budget), each in its own process with 2 CPU threads:

- Tuneloop: ``python -m training run`` with the "Quick CPU demo" preset (length-grouped batches of 4,
  assistant-only loss, LoRA on all linear layers, gradient checkpointing, no evaluation).
- Guide: plain transformers Trainer, per_device_train_batch_size=2, gradient_accumulation_steps=16,
  every conversation padded to the maximum length, LoRA r=8 on q/k/v/o over a 4-bit NF4 base.

tokens/s counts real (non-padding) tokens trained per second of training; peak RSS is the process's
maximum resident memory. Target: Tuneloop ≥ 2× the guide's tokens/s at ≤ 3 GB peak RSS.

    python benchmarks/train.py [--conversations 32] [--repeats 1] [--sequence-len 512]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def demo_split(folder: Path, conversations: int) -> Path:
    from curation.data.demo import demo_records
    from curation.data.formats import write_jsonl
    records = demo_records(600, seed=0)
    write_jsonl(records[:conversations], folder / "train.jsonl")
    write_jsonl(records[540:560], folder / "val.jsonl")
    return folder


def run_tuneloop(workspace: Path, data: Path, sequence_len: int) -> dict:
    from training.config import preset_config, save_config
    config = preset_config("Quick CPU demo", datasets=str(data), max_steps=-1, num_epochs=1.0, eval_steps=0,
                           save_steps=10_000, rouge_test_samples=0, sequence_len=sequence_len)
    path = save_config(config, workspace.parent / f"tuneloop-{time.time_ns()}.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "training", "run", str(path), "--workspace", str(workspace)],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"Tuneloop run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    run_dir = max((workspace / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    end = next(r for r in rows if r.get("event") == "train_end")
    tokens = max(r.get("tokens_seen") or 0 for r in rows)
    return {"tokens": tokens, "seconds": end["train_runtime"], "tokens_per_s": tokens / end["train_runtime"],
            "peak_rss_mb": max(r.get("peak_rss_mb") or 0 for r in rows)}


def guide_job(data: Path, sequence_len: int) -> dict:
    """The guide's recipe, as it is written there (runs in its own process: --guide)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, Trainer, TrainingArguments
    from curation.data.formats import read_records
    from training.models import resolve_base_model

    torch.set_num_threads(2)
    resolved = resolve_base_model("default", None)
    tokenizer = AutoTokenizer.from_pretrained(resolved.path)
    tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(resolved.path, quantization_config=BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float32), dtype=torch.float32, device_map={"": "cpu"})
    model = prepare_model_for_kbit_training(model)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, bias="none",
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                             task_type="CAUSAL_LM"))
    texts = [tokenizer.apply_chat_template(r.messages, tokenize=False) for r in read_records(data / "train.jsonl").records]
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=sequence_len)
    labels = [[t if m else -100 for t, m in zip(ids, mask)] for ids, mask in zip(enc["input_ids"], enc["attention_mask"])]
    dataset = Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels})
    tokens = sum(sum(m) for m in enc["attention_mask"])
    args = TrainingArguments(output_dir=str(data / "guide-out"), per_device_train_batch_size=2,
                             gradient_accumulation_steps=16, num_train_epochs=1, learning_rate=2e-4,
                             logging_steps=1, save_strategy="no", report_to="none", use_cpu=True,
                             disable_tqdm=True, seed=0)
    result = Trainer(model=model, args=args, train_dataset=dataset).train()
    seconds = result.metrics["train_runtime"]
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_guide(data: Path, sequence_len: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, __file__, "--guide", str(data), "--sequence-len", str(sequence_len)],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"guide run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conversations", type=int, default=32, help="training conversations (the token budget)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--sequence-len", type=int, default=512)
    parser.add_argument("--guide", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.guide:
        print(json.dumps(guide_job(Path(args.guide), args.sequence_len)))
        return 0
    from core.workspace import Workspace
    from training.models import resolve_base_model
    tmp = Path(tempfile.mkdtemp(prefix="tuneloop-bench-train-"))
    data = demo_split(tmp / "split", args.conversations)
    workspace = tmp / "ws"
    resolve_base_model("default", Workspace.open(workspace))     # convert once, outside the timings
    resolve_base_model("default", None)
    ours, guide = [], []
    for i in range(args.repeats):
        ours.append(run_tuneloop(workspace, data, args.sequence_len))
        guide.append(run_guide(data, args.sequence_len))
        print(f"repeat {i + 1}: tuneloop {ours[-1]['tokens_per_s']:.1f} tok/s, {ours[-1]['peak_rss_mb']:.0f} MB · "
              f"guide {guide[-1]['tokens_per_s']:.1f} tok/s, {guide[-1]['peak_rss_mb']:.0f} MB", flush=True)

    def med(rows, key):
        return statistics.median(r[key] for r in rows)

    print(f"\n{args.conversations} demo conversations, sequence_len {args.sequence_len}, {args.repeats} repeat(s); medians")
    print(f"{'':24}{'Tuneloop':>14}{'guide':>14}")
    for key, label, fmt in (("tokens", "real tokens trained", "{:.0f}"), ("seconds", "train seconds", "{:.1f}"),
                            ("tokens_per_s", "tokens/s", "{:.1f}"), ("peak_rss_mb", "peak RSS (MB)", "{:.0f}")):
        print(f"{label:24}{fmt.format(med(ours, key)):>14}{fmt.format(med(guide, key)):>14}")
    speedup = med(ours, "tokens_per_s") / med(guide, "tokens_per_s")
    peak = med(ours, "peak_rss_mb")
    print(f"\nspeed-up {speedup:.2f}× (target ≥ 2×); Tuneloop peak RSS {peak / 1024:.2f} GB (target ≤ 3 GB): "
          f"{'MET' if speedup >= 2 and peak <= 3 * 1024 else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
