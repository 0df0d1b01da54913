"""Does round 2 beat round 1? Two rounds of the loop on the demo data, measured on one test split.

    python benchmarks/rounds.py [--train 48] [--pool 16] [--test 16] [--epochs 2] [--max-new-tokens 40]
                                [--dpo-epochs 2] [--kto-epochs 2] [--qlora] [--workspace DIR]

On the default model (SmolLM2-135M-Instruct), in one run. LoRA over the full-precision base by
default: on a CPU, bitsandbytes' 4-bit matmuls dequantize every weight on every step and are several
times slower; ``--qlora`` uses the 4-bit base (what a GPU run would use). Every round uses the same
recipe, so the comparison is fair either way.

1. round 1: SFT on ``--train`` demo conversations (split grouped by customer, so a customer's
   re-sent ticket never sits on both sides of a split);
2. rating: round 1 and the base model answer ``--pool`` new prompts (held out of round 1's training);
   a *simulated* rater votes blind through the real arena (``next_pair`` / ``record_vote``): the answer
   with the higher ROUGE-L against the support team's reference answer wins (within 0.05: a tie; both
   below 0.2: both bad), and when neither answer reaches 0.5 the rater writes the reference answer
   as the correction. This stands in for a domain expert who knows the house answers; it is
   not a human judgement;
3. round 2, three ways: (a) SFT with the same recipe on the merged version (round 1's data plus the
   corrections), (b) DPO from round 1's adapter on the votes' preference pairs, (c) KTO from round 1's
   adapter on every answer the votes judged (one-sided and "both bad" votes too, and the corrections);
4. every model is evaluated automatically on the same test split (ROUGE-L, BLEU, perplexity on val
   and test, a house-rules regression suite).

Prints what each stage had to learn from and what it changed: its training loss first → last step
(and whether it moved at all), its reward figures, and how far its adapter moved the next-token
log-probabilities away from round 1's on the test prompts (mean |Δ log p| of the greedy token; 0
means the stage changed nothing). Then the figures side by side (base, round 1, round 2 SFT, DPO,
KTO) and, per round-2 model, whether it beat round 1 on each figure. Nothing is assumed: whatever the
numbers say is printed.
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.errors import TuneloopError  # noqa: E402
from core.workspace import Workspace  # noqa: E402
from curation.data.records import Record  # noqa: E402

HOUSE_RULES = [
    ("refund window", "I want a refund for my Lumio Smart Plug, order ORD-123456.",
     [{"kind": "contains", "value": "30 days"}]),
    ("password reset path", "how do i reset my password??", [{"kind": "contains", "value": "Forgot password"}]),
    ("order tracking path", "Where is my order ORD-654321? It's been a week.",
     [{"kind": "contains", "value": "Account > Orders"}]),
    ("cancel path", "How do I cancel my plan?", [{"kind": "regex", "pattern": r"(?i)account\s*>\s*subscription"}]),
    ("no AI talk", "Why was I charged $9.99 twice this month?",
     [{"kind": "not_contains", "value": "as an ai"}, {"kind": "not_contains", "value": "language model"}]),
]


def grouped_split(records: list[Record], sizes: dict[str, int], seed: int = 0) -> dict[str, list[Record]]:
    """Whole customers into each part in turn until it holds its size (near-duplicates share a customer)."""
    by_customer: dict[str, list[Record]] = {}
    for r in records:
        by_customer.setdefault(r.meta.get("customer_id", r.id), []).append(r)
    customers = sorted(by_customer)
    random.Random(seed).shuffle(customers)
    parts: dict[str, list[Record]] = {name: [] for name in sizes}
    it = iter(customers)
    for name, size in sizes.items():
        while len(parts[name]) < size:
            parts[name].extend(by_customer[next(it)])
        parts[name] = parts[name][:size]
    return parts


def with_split(records: list[Record], split: str) -> list[Record]:
    return [Record(r.id, r.messages, {**r.meta, "split": split}) for r in records]


def simulated_votes(ws, evaluation_id: int, references: dict[str, str]) -> dict[str, int]:
    """Vote every pair blind, as described in the module docstring; returns the verdict counts."""
    from evaluation.arena import next_pair, record_vote
    from training.quality import rouge_l_scores
    counts = {"A": 0, "B": 0, "tie": 0, "both_bad": 0, "corrected": 0}
    while (pair := next_pair(ws, evaluation_id, "simulated-expert")) is not None:
        prompt_id = ws.db.execute("select p.prompt_id from eval_assignments a join eval_pairs p on p.id=a.pair_id"
                                  " where a.id=?", (pair.assignment_id,)).fetchone()[0]
        reference = references[prompt_id]
        score_a, score_b = rouge_l_scores([pair.response_a, pair.response_b], [reference, reference])
        if max(score_a, score_b) < 0.2:
            verdict = "both_bad"
        elif abs(score_a - score_b) <= 0.05:
            verdict = "tie"
        else:
            verdict = "A" if score_a > score_b else "B"
        # Blind, so the rater cannot favour a model: they write the answer they wanted when neither is good enough.
        correction = reference if max(score_a, score_b) < 0.5 else None
        record_vote(ws, pair.assignment_id, "simulated-expert", verdict, corrected_answer=correction)
        counts[verdict] += 1
        counts["corrected"] += correction is not None
    return counts


def logprob_shift(base_model: str, adapter_a, adapter_b, prompts: list[list[dict]]) -> float:
    """Mean over prompts of |log p_a(t) − log p_b(t)| for the next token t that adapter a would choose:
    how far b moved the model away from a where it answers (0.0: b changes nothing a does)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_model), str(adapter_a),
                                      adapter_name="a")
    model.load_adapter(str(adapter_b), adapter_name="b")
    shifts = []
    with torch.no_grad():
        for messages in prompts:
            ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                return_dict=True)["input_ids"]
            model.set_adapter("a")
            log_a = model(input_ids=ids).logits[0, -1].log_softmax(-1)
            model.set_adapter("b")
            log_b = model(input_ids=ids).logits[0, -1].log_softmax(-1)
            token = int(log_a.argmax())
            shifts.append(abs(float(log_a[token] - log_b[token])))
    return sum(shifts) / len(shifts)


def stage_report(run, name: str, moved_below: float = 0.01) -> str:
    """One run's training in numbers: its loss first → last step and whether it moved, and its reward figures."""
    from training.registry import read_metrics
    rows = [r for r in read_metrics(run) if r.get("event") == "train"]
    if not rows:
        return f"{name}: no training step logged"
    first, last = rows[0], rows[-1]
    moved = abs(last["loss"] - first["loss"])
    text = (f"{name}: {len(rows)} steps, loss {first['loss']:.4f} → {last['loss']:.4f} "
            + (f"(moved {last['loss'] - first['loss']:+.4f})" if moved >= moved_below else
               f"(did not move: |Δ| {moved:.4f} < {moved_below})"))
    rewards = [k for k in ("rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected", "kl")
               if k in last]
    if rewards:
        text += "; " + ", ".join(f"{k} {first.get(k, 0):.4f} → {last[k]:.4f}" for k in rewards)
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=48)
    p.add_argument("--pool", type=int, default=16, help="new prompts rated after round 1")
    p.add_argument("--val", type=int, default=8)
    p.add_argument("--test", type=int, default=16)
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--dpo-epochs", type=float, default=2.0)
    p.add_argument("--kto-epochs", type=float, default=2.0)
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--qlora", action="store_true", help="train over the 4-bit base (slow on a CPU)")
    p.add_argument("--workspace", help="keep the workspace here (default: a temporary folder)")
    args = p.parse_args(argv)

    from curation.data.demo import demo_records
    from curation.data.versions import create_version
    from evaluation.arena import EvalItem, create_evaluation
    from evaluation.auto import FIGURES, auto_evaluate, format_auto_evaluation
    from evaluation.feedback import collect_feedback, make_kto_version, make_preference_version, merge_feedback
    from evaluation.generate import DecodingSettings, generate_pairs, prompt_from_record, resolve_adapter
    from evaluation.regression import add_case, create_suite
    from evaluation.stats import summarize, votes_from_rows
    from training.config import RunConfig
    from training.job import run_training
    from training.models import resolve_base_model
    from training.registry import create_run

    started = time.monotonic()
    marks: list[tuple[str, float]] = []

    def mark(what: str) -> None:
        marks.append((what, time.monotonic() - started))
        print(f"[{time.monotonic() - started:6.0f}s] {what}", flush=True)

    root = Path(args.workspace) if args.workspace else Path(tempfile.mkdtemp(prefix="tuneloop-rounds-"))
    ws = Workspace.open(root)
    base_model = resolve_base_model("default", None).path      # converted once into the user cache, reused
    parts = grouped_split(demo_records(600), {"test": args.test, "val": args.val, "pool": args.pool,
                                              "train": args.train})
    v1 = create_version(ws, with_split(parts["train"], "train") + with_split(parts["val"], "val")
                        + with_split(parts["test"], "test"), parent=None, step="split",
                        params={"benchmark": "rounds", "grouped_by": "customer_id"})
    suite = create_suite(ws, "house rules")
    for name, prompt, checks in HOUSE_RULES:
        add_case(ws, suite, prompt, checks, name=name)
    settings = DecodingSettings(max_new_tokens=args.max_new_tokens)
    # One explicit recipe for every round (not a preset, so the comparison cannot drift when presets change).
    recipe = dict(base_model=base_model, adapter="qlora" if args.qlora else "lora", load_in_4bit=args.qlora,
                  lora_r=16, lora_alpha=32, lora_dropout=0.0, sequence_len=192, micro_batch_size=8,
                  num_epochs=args.epochs, max_steps=-1, learning_rate=5e-4, lr_scheduler="cosine", warmup_ratio=0.05,
                  eval_steps=0, save_steps=1000, early_stopping_patience=0, gradient_checkpointing=False,
                  rouge_test_samples=0, cpu_threads=2, seed=42)

    def train(config, name):
        run = run_training(ws, create_run(ws, config, name=name).id)
        if run.status != "finished":
            raise SystemExit(f"{name} failed: {run.error}")
        mark(f"{name}: run #{run.id} finished, {run.metrics.get('last_step')} steps")
        return run

    mark(f"workspace {root}; v{v1.id}: {args.train} train / {args.val} val / {args.test} test; "
         f"{args.pool} new prompts to rate")
    r1 = train(RunConfig.from_dict({**recipe, "datasets": v1.name}), "round 1 SFT")
    auto = {"round 1": auto_evaluate(ws, str(r1.id), v1.id, settings=settings)}
    mark("round 1 evaluated automatically:\n" + format_auto_evaluation(auto["round 1"]))

    pool = with_split(parts["pool"], "train")      # new prompts; their corrections are training data
    items = [prompt_from_record(r) for r in pool]
    models = resolve_adapter(ws, str(r1.id))
    answers = generate_pairs(ws, items, base_model=models.base_model, adapter=models.adapter, settings=settings)
    evaluation = create_evaluation(ws, "round 1 vs base (simulated expert)",
                                   [EvalItem(i.prompt_id, i.messages, b, t, i.label, i.split)
                                    for i, (b, t) in zip(items, answers)],
                                   base_model=models.base_model, adapter=models.adapter, run_id=str(r1.id),
                                   dataset_version=v1.id)
    counts = simulated_votes(ws, evaluation, {r.id: r.answer for r in pool})
    from evaluation.arena import evaluation_votes
    human = summarize(votes_from_rows([v.to_stats_row() for v in evaluation_votes(ws, evaluation)]))
    fb = collect_feedback(ws, evaluation)
    mark(f"rated {len(items)} new prompts: {counts}; feedback {fb.counts()}")

    v2 = merge_feedback(ws, evaluation, created_by="benchmark")
    r2 = {"round 2 SFT": train(RunConfig.from_dict({**recipe, "datasets": v2.name}), "round 2 SFT")}
    not_trained: dict[str, str] = {}

    def second_stage(name: str, make_data, data_key: str, stage: dict) -> None:
        """Train a DPO or KTO round from round 1's adapter; when the votes give it nothing to train on, say why."""
        try:
            data = make_data(ws, evaluation, created_by="benchmark")
            config = RunConfig.from_dict({**recipe, "datasets": v1.name, "sft_run": str(r1.id), "learning_rate": 2e-4,
                                          "micro_batch_size": 4, **stage, data_key: data.name})
            r2[name] = train(config, name)
        except TuneloopError as exc:
            not_trained[name] = str(exc)
            mark(f"{name}: not trained: {exc}")

    second_stage("round 2 DPO", make_preference_version, "preferences",
                 {"stage": "dpo", "dpo_beta": 0.1, "num_epochs": args.dpo_epochs})
    second_stage("round 2 KTO", make_kto_version, "kto_data",
                 {"stage": "kto", "kto_beta": 0.1, "num_epochs": args.kto_epochs})
    for name, run in r2.items():
        auto[name] = auto_evaluate(ws, str(run.id), v1.id, settings=settings)
        mark(f"{name} evaluated automatically:\n" + format_auto_evaluation(auto[name]))

    print()
    print(f"Human-side figures of round 1 (simulated expert, {human['votes']} votes): round 1 won {human['wins']}, "
          f"base won {human['losses']}, ties {human['ties']}, both bad {human['both_bad']}; win rate "
          f"{human['win_rate']:.3f} [Wilson 95%: {human['wilson_low']:.3f}, {human['wilson_high']:.3f}]")
    print(f"Round 2 data from {counts['A'] + counts['B']} decisive votes, {counts['both_bad']} both bad, "
          f"{counts['tie']} ties, {counts['corrected']} corrections: SFT on v{v2.id} ({v2.counts.get('added')} "
          f"corrected answers added to v{v1.id})"
          + (f"; DPO on {r2['round 2 DPO'].metrics.get('train_pairs')} preference pairs" if "round 2 DPO" in r2 else "")
          + (f"; KTO on {r2['round 2 KTO'].metrics.get('train_examples')} judged answers "
             f"({r2['round 2 KTO'].metrics.get('desirable')} desirable, {r2['round 2 KTO'].metrics.get('undesirable')} "
             f"undesirable; weights {r2['round 2 KTO'].metrics.get('desirable_weight')} / "
             f"{r2['round 2 KTO'].metrics.get('undesirable_weight')})" if "round 2 KTO" in r2 else ""))
    for name, reason in not_trained.items():
        print(f"{name}: not trained: {reason}")
    test_prompts = [prompt_from_record(r).messages for r in parts["test"]]
    print(stage_report(r1, "round 1 SFT"))
    for name, run in r2.items():
        shift = logprob_shift(base_model, r1.adapter_dir, run.adapter_dir, test_prompts)
        print(f"{stage_report(run, name)}; mean |Δ log p| of round 1's next token on the test prompts {shift:.4f}")
    print()
    columns = ["base", "round 1"] + list(r2)
    print(f"{'figure on v' + str(v1.id) + '/test (' + str(args.test) + ')':<30}" + "".join(f"{c:>14}" for c in columns))
    table = {}
    for key, title, higher in FIGURES:
        values = [auto["round 1"].figure("base", key)] + [auto[c].figure("finetuned", key) for c in columns[1:]]
        table[key] = (values, higher)
        if all(v is None for v in values):
            continue
        print(f"{title:<30}" + "".join(f"{'n/a' if v is None else format(v, '.3f'):>14}" for v in values))
    passes = [auto["round 1"].metrics["regression"][0]["base_passed"]] + [
        auto[c].metrics["regression"][0]["finetuned_passed"] for c in columns[1:]]
    print(f"{'house rules passed (of ' + str(len(HOUSE_RULES)) + ')':<30}" + "".join(f"{v:>14}" for v in passes))
    print()
    for name in r2:
        verdicts = []
        for key, title, higher in FIGURES:
            values, _ = table[key]
            before, after = values[1], values[columns.index(name)]
            if before is None or after is None:
                continue
            better = after > before if higher else after < before
            verdicts.append(f"{title} {'better' if better else 'worse'} ({before:.3f} → {after:.3f})")
        after_pass = passes[columns.index(name)]
        verdicts.append(f"house rules {passes[1]} → {after_pass}")
        print(f"{name} vs round 1: " + "; ".join(verdicts))
    print(f"\ntotal {time.monotonic() - started:.0f}s; workspace {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
