"""Playground latency: time to the first token and tokens per second, base and fine-tuned, default model.

    python benchmarks/playground.py [--run RUN] [--prompts 6] [--max-new-tokens 48] [--threads N] [--workspace DIR]

Side by side in one run, on the same warm model and the same prompts (order alternated per prompt):
- playground: both answers from one two-row batch (peft ``adapter_names``), streamed together;
- baseline:   the usual way, one answer after the other (adapter off, then on), each streamed alone; its
              fine-tuned answer only starts once the base answer is done.
Without --run, a fresh LoRA adapter with random weights is made on the default model (speed does not
depend on what the adapter learned). Medians over the prompts are printed.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.random_adapter import random_adapter  # noqa: E402
from core.workspace import Workspace  # noqa: E402
from evaluation.playground import matchup_for, stream_pair  # noqa: E402
from training.inference import BasePool, DecodingSettings  # noqa: E402

PROMPTS = ["Where is my order? It has been a week.", "How do I reset my password?",
           "Can I get a refund for a broken lamp?", "My smart bulb does not connect to Wi-Fi. What should I do?",
           "How long does shipping to Germany take?", "Can I change the delivery address after ordering?",
           "What does the warranty cover?", "How do I cancel my subscription?"]


def playground_once(ws, matchup, pool, prompt, settings):
    start = time.perf_counter()
    last = None
    for last in stream_pair(ws, matchup, [{"role": "user", "content": prompt}], settings, pool=pool):
        pass
    total = time.perf_counter() - start
    return [(s.first_token_s, s.tokens_per_s, s.tokens) for s in last.stats], total


def one_side(model, tokenizer, prompt, settings):
    """One answer streamed alone with transformers' TextIteratorStreamer: (first token s, tokens/s, tokens)."""
    import torch
    from transformers import TextIteratorStreamer
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                         tokenize=False)
    batch = tokenizer([text], return_tensors="pt", add_special_tokens=False)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    kwargs = dict(max_new_tokens=settings.max_new_tokens, do_sample=False, temperature=None, top_p=None, top_k=None,
                  repetition_penalty=settings.repetition_penalty, pad_token_id=tokenizer.pad_token_id)

    def run():
        with torch.inference_mode():
            out.append(model.generate(**batch, **kwargs, streamer=streamer))

    out: list = []
    start = time.perf_counter()
    thread = threading.Thread(target=run)
    thread.start()
    first = None
    for piece in streamer:
        if piece and first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    thread.join()
    tokens = out[0].shape[1] - batch["input_ids"].shape[1]
    rate = (tokens - 1) / (end - first) if first and tokens > 1 and end > first else None
    return (first - start if first else None), rate, tokens, end - start


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", help="run id, run folder or adapter folder (default: a fresh adapter on the default model)")
    p.add_argument("--workspace", help="workspace folder (default: a temporary one)")
    p.add_argument("--prompts", type=int, default=6)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice; 1 is far faster when "
                                               "other jobs share the cores)")
    args = p.parse_args(argv)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="tuneloop-bench-playground-") as tmp:
        return measure(args, Path(tmp))


def measure(args, tmp: Path) -> int:
    ws = Workspace.open(args.workspace or tmp / "workspace")
    run = args.run or str(random_adapter(tmp / "adapter"))
    matchup = matchup_for(ws, run)
    settings = DecodingSettings(max_new_tokens=args.max_new_tokens)
    pool = BasePool()
    t0 = time.perf_counter()
    playground_once(ws, matchup, pool, "Hello", DecodingSettings(max_new_tokens=2))   # load and warm up
    import torch
    warm = pool.models()[0]
    tuned = warm.add_adapter(matchup.right.adapter)
    print(f"model: {warm.resolved.describe()}; loaded and warmed up in "
          f"{time.perf_counter() - t0:.1f} s; {args.prompts} prompts, {args.max_new_tokens} new tokens max, greedy, "
          f"{torch.get_num_threads()} torch threads")
    rows = {"playground": [], "baseline": []}
    for n, prompt in enumerate((PROMPTS * 4)[: args.prompts]):
        order = ("playground", "baseline") if n % 2 == 0 else ("baseline", "playground")
        for how in order:
            if how == "playground":
                sides, total = playground_once(ws, matchup, pool, prompt, settings)
                rows[how].append((sides[0][0], sides[0][1], sides[1][0], sides[1][1], total))
            else:
                with warm.using(None) as (model, tokenizer):
                    b_first, b_rate, _, b_total = one_side(model, tokenizer, prompt, settings)
                with warm.using(tuned) as (model, tokenizer):
                    t_first, t_rate, _, t_total = one_side(model, tokenizer, prompt, settings)
                rows[how].append((b_first, b_rate, b_total + t_first, t_rate, b_total + t_total))
    print(f"\n{'median over ' + str(args.prompts) + ' prompts':<34}{'base: first token':>18}{'base tok/s':>12}"
          f"{'tuned: first token':>20}{'tuned tok/s':>13}{'both done':>11}")
    for how, label in (("playground", "playground (both in one batch)"),
                       ("baseline", "baseline (one after the other)")):
        cols = list(zip(*rows[how]))
        print(f"{label:<34}{median(cols[0]):>16.2f} s{median(cols[1]):>12.1f}{median(cols[2]):>18.2f} s"
              f"{median(cols[3]):>13.1f}{median(cols[4]):>9.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
