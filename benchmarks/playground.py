"""Playground speed by engine: time to the first token and tokens per second per side, and the agreement
of the greedy answers, on the default model (base on the left, a LoRA adapter on the right).

    python benchmarks/playground.py [--run RUN] [--prompts 6] [--max-new-tokens 48] [--threads N]
                                    [--agreement 12] [--f16] [--workspace DIR]

Side by side in one run, on the same prompts (the engines take turns per prompt, in rotating order), both
sides streamed together as the Playground streams them (``stream_pair``):
- today:        transformers, fp32 weights, both sides in one two-row batch (peft ``adapter_names``), with
                torch's own thread count: the Playground before llama.cpp;
- transformers: the same path with ``--threads`` torch threads (the fallback engine as set up now);
- llama.cpp:    the shipped Q4_1 GGUF base with the adapter as a GGUF LoRA, one context per side, taking turns.
Medians over the prompts. Agreement: the greedy answers to ``--agreement`` prompts from llama.cpp against
transformers on the same weights (the Q4_1 file against its dequantised fp32 weights; with ``--f16`` also an
f16 GGUF of those fp32 weights against them), per side: the share that match exactly and the mean number of
leading tokens that match (of the reference answer's length). Without --run, a fresh LoRA adapter with
random weights is made on the default model (speed does not depend on what the adapter learned).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.random_adapter import random_adapter  # noqa: E402
from core.workspace import Workspace  # noqa: E402
from evaluation.playground import Matchup, Side, matchup_for, stream_pair  # noqa: E402
from training.inference import BasePool, DecodingSettings, WarmBase  # noqa: E402

# Customer-support questions written for this benchmark (not from any fixture or the product's templates).
PROMPTS = ["Where is my order? It has been a week.", "How do I reset my password?",
           "Can I get a refund for a broken lamp?", "My smart bulb does not connect to Wi-Fi. What should I do?",
           "How long does shipping to Germany take?", "Can I change the delivery address after ordering?",
           "What does the warranty cover?", "How do I cancel my subscription?",
           "The app logs me out every few minutes. Why?", "Do you ship to Norway, and what does it cost?",
           "I was charged twice for one order. Can you fix it?", "How do I pair the speaker with my laptop?",
           "Is there a student discount?", "My package says delivered but I never got it.",
           "Can I return a gift without the receipt?", "What is the difference between the Pro and Basic plans?"]
ENGINES = ("today", "transformers", "llama.cpp")


def stream_once(ws, matchup, pool, prompt, settings):
    """((first token s, tokens/s) per side, seconds until both are done, the engine that answered)."""
    start = time.perf_counter()
    last = None
    for last in stream_pair(ws, matchup, [{"role": "user", "content": prompt}], settings, pool=pool):
        pass
    return [(s.first_token_s, s.tokens_per_s) for s in last.stats], time.perf_counter() - start, last.engine


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", help="run id, run folder or adapter folder (default: a fresh adapter on the default model)")
    p.add_argument("--workspace", help="workspace folder (default: a temporary one)")
    p.add_argument("--prompts", type=int, default=6, help="prompts timed per engine (at least 3)")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for the new transformers path and for llama.cpp (default 1: far faster when "
                        "other jobs share the cores)")
    p.add_argument("--agreement", type=int, default=12, help="prompts whose greedy answers are compared")
    p.add_argument("--f16", action="store_true", help="also compare an f16 GGUF of the same weights (a conversion)")
    args = p.parse_args(argv)
    if args.prompts < 3:
        p.error("--prompts must be at least 3 (medians)")
    with tempfile.TemporaryDirectory(prefix="tuneloop-bench-playground-") as tmp:
        return measure(args, Path(tmp))


def measure(args, tmp: Path) -> int:
    import torch
    ws = Workspace.open(args.workspace or tmp / "workspace")
    run = args.run or str(random_adapter(tmp / "adapter"))
    matchup = matchup_for(ws, run)
    settings = DecodingSettings(max_new_tokens=args.max_new_tokens)
    default_threads = torch.get_num_threads()
    pools = {"today": BasePool(), "transformers": BasePool(), "llama.cpp": BasePool()}
    for how in ENGINES:                                   # load, convert the adapter and warm up, untimed
        t0 = time.perf_counter()
        use_engine(how, default_threads, args.threads)
        _, _, engine = stream_once(ws, matchup, pools[how], "Hello", DecodingSettings(max_new_tokens=2))
        print(f"{how}: ready in {time.perf_counter() - t0:.1f} s (answered by {engine})")
    warm = pools["llama.cpp"].models()[0]
    print(f"model: {warm.resolved.describe()}; {args.prompts} prompts, {args.max_new_tokens} new tokens max, greedy; "
          f"today: {default_threads} torch threads; new paths: {args.threads} thread(s); {os.cpu_count()} cores")
    rows: dict[str, list] = {how: [] for how in ENGINES}
    for n, prompt in enumerate((PROMPTS * 4)[: args.prompts]):
        for how in ENGINES[n % 3:] + ENGINES[: n % 3]:
            use_engine(how, default_threads, args.threads)
            sides, total, _ = stream_once(ws, matchup, pools[how], prompt, settings)
            rows[how].append((sides[0][0], sides[0][1], sides[1][0], sides[1][1], total))
    use_engine("transformers", default_threads, args.threads)
    print(f"\n{'median over ' + str(args.prompts) + ' prompts':<40}{'base: first token':>18}{'base tok/s':>12}"
          f"{'tuned: first token':>20}{'tuned tok/s':>13}{'both done':>11}")
    today = list(zip(*rows["today"]))
    for how, label in (("today", "today (transformers, torch's threads)"),
                       ("transformers", f"transformers, {args.threads} thread(s)"),
                       ("llama.cpp", "llama.cpp (Q4_1 + GGUF LoRA)")):
        cols = list(zip(*rows[how]))
        speedup = median(cols[3]) / median(today[3]) if median(today[3]) else float("nan")
        print(f"{label:<40}{median(cols[0]):>16.2f} s{median(cols[1]):>12.1f}{median(cols[2]):>18.2f} s"
              f"{median(cols[3]):>13.1f}{median(cols[4]):>9.2f} s   x{speedup:.1f} tuned tok/s")
    agreement(args, ws, matchup, pools, tmp)
    return 0


def use_engine(how: str, default_threads: int, threads: int) -> None:
    """Force the engine ``how`` stands for (each has its own pool, so its own warm model) and its threads."""
    import torch
    os.environ["TUNELOOP_ENGINE"] = "llama.cpp" if how == "llama.cpp" else "transformers"
    os.environ["TUNELOOP_THREADS"] = str(threads)
    torch.set_num_threads(default_threads if how == "today" else threads)


def agreement(args, ws, matchup: Matchup, pools, tmp: Path) -> None:
    prompts = [[{"role": "user", "content": q}] for q in (PROMPTS * 4)[: args.agreement]]
    settings = DecodingSettings(max_new_tokens=args.max_new_tokens)
    reference = pools["transformers"].models()[0]
    fast = pools["llama.cpp"].models()[0]
    print(f"\nagreement of greedy answers, {len(prompts)} prompts, up to {args.max_new_tokens} new tokens "
          f"(exact: same answer; prefix: leading tokens equal, mean of matched / reference length)")
    compare("llama.cpp Q4_1 vs transformers on its dequantised fp32", reference, fast, matchup, prompts, settings)
    if args.f16:
        from training.gguf import convert_model
        f16 = convert_model(reference.resolved.path, tmp / "SmolLM2-135M-Instruct-f16.gguf", quant="f16")
        os.environ["TUNELOOP_ENGINE"] = "llama.cpp"
        same = BasePool().get(ws, str(f16))
        f16_matchup = Matchup(Side("base", str(f16)), Side("tuned", str(f16), matchup.right.adapter))
        compare("llama.cpp f16 vs transformers fp32 (same weights)", reference, same, f16_matchup, prompts, settings)


def compare(label: str, reference: WarmBase, fast: WarmBase, matchup: Matchup, prompts, settings) -> None:
    tokenizer = reference.load()[1]
    for side in matchup.sides:
        ref_adapter = None if side.adapter is None else reference.add_adapter(side.adapter)
        fast_adapter = None if side.adapter is None else fast.add_adapter(side.adapter)
        want = reference.answer(prompts, adapter=ref_adapter, settings=settings)
        got = fast.answer(prompts, adapter=fast_adapter, settings=settings)
        assert fast.engine_for([fast_adapter]) == "llama.cpp", fast.engine_reason
        exact = sum(a == b for a, b in zip(want, got))
        shares = []
        for a, b in zip(want, got):
            ta, tb = (tokenizer(t, add_special_tokens=False)["input_ids"] for t in (a, b))
            same = next((i for i, (x, y) in enumerate(zip(ta, tb)) if x != y), min(len(ta), len(tb)))
            shares.append((same, len(ta)))
        mean_same = statistics.mean(s for s, _ in shares)
        mean_len = statistics.mean(n for _, n in shares)
        print(f"  {label}, {side.kind} side: exact {exact}/{len(prompts)}, matching prefix {mean_same:.1f} of "
              f"{mean_len:.1f} tokens")


if __name__ == "__main__":
    sys.exit(main())
