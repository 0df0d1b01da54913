"""Training speed per CPU-second, one thread: Tuneloop's job against the best trl setup, side by side.

    python benchmarks/train.py [--conversations 32] [--sequence-len 512] [--repeats 3] [--only tuneloop best ...]

Every configuration trains the default model (SmolLM2-135M-Instruct) once over the same demo
conversations (single-turn, so every configuration trains on the same answer tokens), each in its
own process with one thread:

- tuneloop: ``python -m training run`` with the "Quick CPU demo" preset (its memory plan: LoRA r=16
  on all linear layers over the fp32 base, fp32 LoRA weights, no checkpointing, length-grouped
  batches of 4, assistant-only loss, only the trained tokens through the LM head), no evaluation;
- best trl: what a skilled trl user runs on CPU, written from trl's documentation: SFTTrainer on
  prompt/completion conversations (loss on the completion), the same LoRA over the fp32 base,
  fp32 LoRA weights, no gradient checkpointing, ``train_sampling_strategy="group_by_length"``;
- qlora fp32: the same over a 4-bit NF4 base, LoRA weights cast back to fp32 after trl made them bf16;
- guide: plain transformers Trainer, batch 2 × accumulation 16, every conversation padded to
  ``--sequence-len``, LoRA r=8 on q/k/v/o over a 4-bit NF4 base (as the guide writes it).

Then the machine's fp32 matmul speed on one thread (the model's own shapes), turned into a limit:
a token costs about 4 × (frozen weights) FLOP forward and backward (no weight gradients) plus
6 × (LoRA weights); ``% of limit`` is tokens per CPU-second over that limit. The limit runs every
token through the LM head, as trl does on CPU; Tuneloop runs only the trained tokens through it, so
part of its margin is work it leaves out rather than work done faster. tokens counts real
(non-padding) tokens; CPU seconds are the training loop's (model loading excluded). Losses are
printed at the same steps for the configurations that take the same steps (not the guide: one
step per 32 conversations).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIGS = ("tuneloop", "best", "qlora", "guide")
LABELS = {"tuneloop": "Tuneloop's job", "best": "best trl (LoRA fp32)", "qlora": "QLoRA, fp32 LoRA",
          "guide": "guide's configuration"}
# The preset's training values, written out so the trl runs do not read them from Tuneloop.
LORA = dict(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", bias="none", task_type="CAUSAL_LM")
TRAIN = dict(per_device_train_batch_size=4, gradient_accumulation_steps=1, num_train_epochs=1, learning_rate=5e-4,
             lr_scheduler_type="cosine", warmup_steps=0.05, seed=42, data_seed=42)


def demo_split(folder: Path, conversations: int) -> Path:
    from curation.data.demo import demo_records
    from curation.data.formats import write_jsonl
    single = [r for r in demo_records(900, seed=0) if sum(m["role"] == "assistant" for m in r.messages) == 1
              and r.messages[-1]["role"] == "assistant"]
    write_jsonl(single[:conversations], folder / "train.jsonl")
    write_jsonl(single[-20:], folder / "val.jsonl")
    return folder


def one_thread_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def run_tuneloop(workspace: Path, data: Path, sequence_len: int) -> dict:
    from training.config import preset_config, save_config
    config = preset_config("Quick CPU demo", datasets=str(data), max_steps=-1, num_epochs=1.0, eval_steps=0,
                           save_steps=10_000, rouge_test_samples=0, sequence_len=sequence_len, cpu_threads=1)
    path = save_config(config, workspace.parent / f"tuneloop-{time.time_ns()}.yaml")
    proc = subprocess.run([sys.executable, "-m", "training", "run", str(path), "--workspace", str(workspace)],
                          cwd=ROOT, env=one_thread_env(), capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"Tuneloop run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    run_dir = max((workspace / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    end = next(r for r in rows if r.get("event") == "train_end")
    train = [r for r in rows if r.get("event") == "train"]
    plan = [line.removeprefix("[tuneloop] ") for line in proc.stdout.splitlines()
            if line.startswith(("[tuneloop] adapter", "[tuneloop] gradient"))]
    return {"tokens": max(r.get("tokens_seen") or 0 for r in rows), "cpu_s": end["train_cpu_s"],
            "wall_s": end["train_runtime"], "peak_rss_mb": max(r.get("peak_rss_mb") or 0 for r in rows),
            "losses": {r["step"]: r["loss"] for r in train}, "plan": plan}


def _base(four_bit: bool):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
    from training.models import resolve_base_model
    path = resolve_base_model("default", None).path
    tokenizer = AutoTokenizer.from_pretrained(path)
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.float32) if four_bit else None
    model = AutoModelForCausalLM.from_pretrained(path, quantization_config=quant, dtype=torch.float32,
                                                 device_map={"": "cpu"})
    return model, tokenizer


def trl_job(data: Path, sequence_len: int, four_bit: bool) -> dict:
    """SFTTrainer with LoRA over the fp32 (or NF4) base, fp32 LoRA weights, no checkpointing, length-grouped."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer
    from curation.data.formats import read_records

    torch.set_num_threads(1)
    model, tokenizer = _base(four_bit)
    records = read_records(data / "train.jsonl").records
    rows = [{"prompt": r.messages[:-1], "completion": r.messages[-1:]} for r in records]
    args = SFTConfig(output_dir=str(data / "trl-out"), **TRAIN, max_length=sequence_len, logging_steps=1,
                     save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True, bf16=False,
                     gradient_checkpointing=False, train_sampling_strategy="group_by_length",
                     include_num_input_tokens_seen="non_padding")
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                         peft_config=LoraConfig(**LORA))
    for param in trainer.model.parameters():   # trl makes them bf16 over a 4-bit base; this CPU has no fast bf16
        if param.requires_grad:
            param.data = param.data.float()
    cpu, wall = time.process_time(), time.perf_counter()
    trainer.train()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    losses = {r["step"]: round(r["loss"], 5) for r in trainer.state.log_history if "loss" in r}
    return {"tokens": trainer.state.num_input_tokens_seen, "cpu_s": cpu, "wall_s": wall, "losses": losses,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def guide_job(data: Path, sequence_len: int) -> dict:
    """The guide's recipe, as it is written there."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import Trainer, TrainingArguments
    from curation.data.formats import read_records

    torch.set_num_threads(1)
    model, tokenizer = _base(True)
    tokenizer.pad_token = tokenizer.eos_token
    model = prepare_model_for_kbit_training(model)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, bias="none",
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                             task_type="CAUSAL_LM"))
    texts = [tokenizer.apply_chat_template(r.messages, tokenize=False) for r in read_records(data / "train.jsonl").records]
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=sequence_len)
    labels = [[t if m else -100 for t, m in zip(ids, mask)] for ids, mask in zip(enc["input_ids"], enc["attention_mask"])]
    dataset = Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels})
    args = TrainingArguments(output_dir=str(data / "guide-out"), per_device_train_batch_size=2,
                             gradient_accumulation_steps=16, num_train_epochs=1, learning_rate=2e-4,
                             logging_steps=1, save_strategy="no", report_to="none", use_cpu=True,
                             disable_tqdm=True, seed=0)
    trainer = Trainer(model=model, args=args, train_dataset=dataset)
    cpu, wall = time.process_time(), time.perf_counter()
    trainer.train()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"tokens": sum(sum(m) for m in enc["attention_mask"]), "cpu_s": cpu, "wall_s": wall, "losses": {},
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def matmul_flops(repeats: int = 5) -> float:
    """fp32 matmul FLOP per CPU-second on one thread, median over the model's MLP and attention shapes.

    Timed by this thread's CPU clock, as the training runs are, so other jobs on the machine do not count.
    """
    import statistics
    import torch
    torch.set_num_threads(1)
    rates = []
    for m, k, n in ((2048, 576, 1536), (2048, 1536, 576), (2048, 576, 576), (2048, 576, 192)):
        a, b = torch.randn(m, k), torch.randn(k, n)
        torch.mm(a, b)
        for _ in range(repeats):
            start = time.thread_time()
            for _ in range(4):
                torch.mm(a, b)
            rates.append(4 * 2 * m * k * n / (time.thread_time() - start))
    return statistics.median(rates)


def flop_per_token() -> float:
    """FLOP per token: forward and input-gradient backward through the frozen weights (4 per weight), LoRA
    with its weight gradients (6 per weight)."""
    from training.models import resolve_base_model
    from training.preflight import model_shape
    shape = model_shape(resolve_base_model("default", None).path)
    frozen = shape["linear_params"] + shape["vocab"] * shape["hidden"]      # the tied lm_head is a matmul too
    lora = shape["layers"] * LORA["r"] * shape["lora_in_out_per_layer"]
    return 4 * frozen + 6 * lora


def in_own_process(name: str, data: Path, sequence_len: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--one", name, "--data", str(data), "--sequence-len",
                           str(sequence_len)], cwd=ROOT, env=one_thread_env(), capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{name} run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conversations", type=int, default=32, help="training conversations (the token budget)")
    parser.add_argument("--sequence-len", type=int, default=512)
    parser.add_argument("--only", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds, each configuration once per round in turn (the guide only in the first); "
                             "the table shows each one's median round, so load that comes and goes hits all alike")
    parser.add_argument("--one", choices=CONFIGS[1:] + ("flops",), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        data = Path(args.data or ".")
        result = {"best": lambda: trl_job(data, args.sequence_len, False),
                  "qlora": lambda: trl_job(data, args.sequence_len, True),
                  "guide": lambda: guide_job(data, args.sequence_len),
                  "flops": lambda: {"flops": matmul_flops()}}[args.one]()
        print(json.dumps(result))
        return 0
    from core.workspace import Workspace
    from training.models import resolve_base_model
    tmp = Path(tempfile.mkdtemp(prefix="tuneloop-bench-train-"))
    data = demo_split(tmp / "split", args.conversations)
    workspace = tmp / "ws"
    resolve_base_model("default", Workspace.open(workspace))     # convert once, outside the timings
    resolve_base_model("default", None)
    rounds: dict[str, list[dict]] = {name: [] for name in args.only}
    for n in range(args.repeats):
        for name in args.only:
            if name == "guide" and n:      # far below the others; once is enough to place it
                continue
            r = (run_tuneloop(workspace, data, args.sequence_len) if name == "tuneloop"
                 else in_own_process(name, data, args.sequence_len))
            rounds[name].append(r)
            print(f"round {n + 1}, {LABELS[name]}: {r['tokens']} tokens, {r['cpu_s']:.1f} CPU-s ({r['wall_s']:.1f} s "
                  f"wall), {r['tokens'] / r['cpu_s']:.1f} tok/CPU-s, peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    # the median round by CPU seconds; the losses are the same in every round (same seed, same batches)
    results = {name: sorted(runs, key=lambda r: r["cpu_s"])[len(runs) // 2] for name, runs in rounds.items()}
    flops = in_own_process("flops", data, args.sequence_len)["flops"]
    per_token = flop_per_token()
    limit = flops / per_token
    print(f"\n{args.conversations} single-turn demo conversations, sequence_len {args.sequence_len}, one thread, "
          f"median of {args.repeats} round(s)")
    print(f"fp32 matmul on one thread: {flops / 1e9:.1f} GFLOP/s; {per_token / 1e6:.0f} MFLOP per token "
          f"→ limit {limit:.0f} tok/CPU-s")
    print(f"{'':26}{'tok/CPU-s':>10}{'% of limit':>11}{'× best trl':>11}{'tokens':>8}{'CPU-s':>8}{'peak MB':>9}")
    best = results.get("best")
    for name, r in results.items():
        rate = r["tokens"] / r["cpu_s"]
        vs = f"{rate / (best['tokens'] / best['cpu_s']):.2f}" if best else "-"
        print(f"{LABELS[name]:26}{rate:>10.1f}{100 * rate / limit:>10.0f}%{vs:>11}{r['tokens']:>8}{r['cpu_s']:>8.1f}"
              f"{r['peak_rss_mb']:>9.0f}")
    curves = {name: r["losses"] for name, r in results.items() if r["losses"]}
    if curves:
        steps = sorted(set.intersection(*(set(map(int, c)) for c in curves.values())))
        print("\nloss at the same steps:")
        print(f"{'step':>5}" + "".join(f"{LABELS[n][:22]:>24}" for n in curves))
        for step in steps:
            print(f"{step:>5}" + "".join(f"{c.get(step, c.get(str(step))):>24.4f}" for c in curves.values()))
    if "tuneloop" in results and results["tuneloop"]["plan"]:
        print("\nTuneloop's plan: " + "; ".join(results["tuneloop"]["plan"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
