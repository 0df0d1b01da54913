"""Generating pairs for rating: Tuneloop's batched generation vs the usual one-prompt-at-a-time loop.

    python benchmarks/generate.py [--prompts 16] [--max-new-tokens 48] [--repeats 3] [--batch-size 8] [--threads N]

Side by side in one run, on the default model, the same prompts and the same greedy settings:
- tuneloop: ``generate_pairs`` — one base model in memory, adapter switched off for the base answers,
            prompts batched shortest first (a fresh workspace each time, so nothing comes from the cache);
- baseline: two models in memory (the base, and a second copy with the adapter), each prompt generated
            alone on each.
A fresh LoRA adapter with random weights stands in for a run's adapter (speed does not depend on what it
learned). Prints pairs/s per repeat and the medians, and how many copies of the base weights each holds.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.random_adapter import random_adapter  # noqa: E402
from core.workspace import Workspace  # noqa: E402
from evaluation.generate import generate_pairs, prompts_from_records  # noqa: E402
from training.inference import DecodingSettings, warm_base  # noqa: E402
from training.models import resolve_base_model  # noqa: E402


def demo_prompts(n: int):
    from curation.data.demo import demo_records
    return prompts_from_records(demo_records(n * 3), split=None)[:n]


def baseline_models(base_path: str, adapter: Path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    base = AutoModelForCausalLM.from_pretrained(base_path).eval()
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_path), str(adapter)).eval()
    return tokenizer, base, tuned


def baseline_once(tokenizer, base, tuned, items, settings) -> list[tuple[str, str]]:
    import torch
    out = []
    for item in items:
        replies = []
        for model in (base, tuned):
            ids = tokenizer.apply_chat_template(item.messages, add_generation_prompt=True, return_tensors="pt",
                                                return_dict=True)
            with torch.inference_mode():
                gen = model.generate(**ids, max_new_tokens=settings.max_new_tokens, do_sample=False,
                                     repetition_penalty=settings.repetition_penalty,
                                     pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
            replies.append(tokenizer.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip())
        out.append((replies[0], replies[1]))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, help="torch threads for both (1 is far faster on a crowded machine)")
    args = p.parse_args(argv)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    settings = DecodingSettings(max_new_tokens=args.max_new_tokens)
    items = demo_prompts(args.prompts)
    with tempfile.TemporaryDirectory() as tmp:
        adapter = random_adapter(Path(tmp) / "adapter")
        # The default model's converted folder in the user cache: every fresh workspace below reuses it.
        base_path = resolve_base_model("default", None).path
        tokenizer, base, tuned = baseline_models(base_path, adapter)
        warm = warm_base(None, base_path)        # the model generate_pairs answers with, loaded before timing
        warm.answer([items[0].messages], adapter=warm.add_adapter(adapter), settings=DecodingSettings(max_new_tokens=1))
        ours, theirs, same = [], [], 0
        for r in range(args.repeats):
            ws = Workspace.open(Path(tmp) / f"ws{r}")   # empty cache: every response is generated
            start = time.perf_counter()
            pairs = generate_pairs(ws, items, base_model=base_path, adapter=adapter, settings=settings,
                                   batch_size=args.batch_size)
            ours.append(len(items) / (time.perf_counter() - start))
            start = time.perf_counter()
            reference = baseline_once(tokenizer, base, tuned, items, settings)
            theirs.append(len(items) / (time.perf_counter() - start))
            same = sum(a == b for a, b in zip(pairs, reference))
            print(f"repeat {r + 1}: tuneloop {ours[-1]:.2f} pairs/s   baseline {theirs[-1]:.2f} pairs/s", flush=True)
    print(f"\n{len(items)} prompts, {args.max_new_tokens} new tokens max, greedy, batch size {args.batch_size}")
    print(f"{'':10}{'pairs/s (median)':>18}{'base weights held':>20}")
    print(f"{'tuneloop':10}{statistics.median(ours):>18.2f}{1:>20}")
    print(f"{'baseline':10}{statistics.median(theirs):>18.2f}{2:>20}")
    print(f"speed-up {statistics.median(ours) / statistics.median(theirs):.2f}x; "
          f"{same} of {len(items)} pairs identical to the baseline's text (batching pads; greedy may differ slightly)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
