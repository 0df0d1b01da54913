"""Is fine-tuning worth it? Base, prompted base, round 1 and round 2, rated blind across every pair of arms.

    python benchmarks/rounds.py [--train 16] [--pool 6] [--test 8] [--epochs 1] [--max-new-tokens 24]
                                [--examples 2] [--dpo-epochs 1] [--kto-epochs 1] [--qlora] [--workspace DIR]
                                [--both-bad-below 0.2] [--tie-within 0.05]

On the default model (SmolLM2-135M-Instruct), in one run. The defaults are small (a round's SFT is 2 or 3 steps):
the figures are a smoke test of the loop, not a measure of the method; raise the sizes on a GPU. On two CPU cores
the time goes to training steps and answers, and both grow with the load: ``--train 24 --pool 8 --test 12
--max-new-tokens 32`` took 804 s at load 1 to 6 and 3,277 s at load 0.5 to 7 (README); at load 15 one SFT step of 8
conversations took about 500 s. The default model's answers score about 0.1 ROUGE-L against the house answers, so
the default expert (both bad under 0.2) votes nearly every pair both bad and the ratings get almost no decisive
votes; ``--both-bad-below 0.1 --tie-within 0.02`` gives a lenient expert that picks a side. The recipe has no
learning-rate warm-up: with a warm-up the first step runs at learning rate 0, so a one-step round changed nothing at
all (its Δ log p was 0.0000). LoRA over the full-precision base by default: on a CPU, bitsandbytes' 4-bit matmuls
dequantize every weight on every step and are several times slower; ``--qlora`` uses the 4-bit base (what a GPU run
would use). Every round uses the same recipe.

1. round 1: SFT on ``--train`` demo conversations (split grouped by customer, so a customer's re-sent ticket
   never sits on both sides of a split);
2. rate to improve: the base, the prompted base (a house system prompt and ``--examples`` train conversations as
   earlier turns) and round 1 answer ``--pool`` new prompts (train split, held out of round 1); a *simulated* expert
   votes blind on every pair of arms through the real arena (``next_pair`` / ``record_vote``): the answer with the
   higher ROUGE-L against the support team's reference answer wins (within ``--tie-within`` 0.05: a tie; both below
   ``--both-bad-below`` 0.2: both bad), and when neither answer reaches 0.5 it writes the reference answer as the
   correction. It stands in for a domain expert who knows the house answers; it is not a human judgement;
3. round 2, three ways, from every vote on every pair of arms (``evaluation.feedback``): SFT with the same recipe
   on the merged version (round 1's data plus the corrections), DPO from round 1's adapter on the preference
   pairs, KTO from round 1's adapter on every judged answer; a stage the votes give nothing to is reported as
   not trained, with the reason;
4. rate to measure: every arm (base, prompted base, round 1 and each round 2) answers the ``--test`` prompts and
   the simulated expert votes on every pair of arms; Bradley–Terry ratings with bootstrap intervals over prompts
   (``evaluation.ratings``), the win matrix, and each arm's mean ROUGE-L against the reference.

Prints what each stage had to learn from and what it changed: its training loss first → last step (and whether
it moved at all), its reward figures, and how far its adapter moved the next-token log-probabilities away from
round 1's on the test prompts (mean |Δ log p| of the greedy token; 0 means the stage changed nothing). Nothing is
assumed: whatever the numbers say is printed.
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
from evaluation.arena import Arm  # noqa: E402

# The prompted base's system prompt: what a team would write before deciding to fine-tune at all.
SYSTEM_PROMPT = ("You answer customer support tickets for a small electronics shop. Reply in two or three short "
                 "sentences, give the exact menu path or policy when there is one, and never mention being an AI.")


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


def simulated_votes(ws, evaluation_id: int, references: dict[str, str], both_bad_below: float = 0.2,
                    tie_within: float = 0.05, correct_below: float = 0.5) -> dict[str, int]:
    """Vote every pair blind, as described in the module docstring; returns the verdict counts."""
    from evaluation.arena import next_pair, record_vote
    from training.quality import rouge_l_scores
    counts = {"A": 0, "B": 0, "tie": 0, "both_bad": 0, "corrected": 0}
    while (pair := next_pair(ws, evaluation_id, "simulated-expert")) is not None:
        prompt_id = ws.db.execute("select p.prompt_id from eval_assignments a join eval_pairs p on p.id=a.pair_id"
                                  " where a.id=?", (pair.assignment_id,)).fetchone()[0]
        reference = references[prompt_id]
        score_a, score_b = rouge_l_scores([pair.response_a, pair.response_b], [reference, reference])
        if max(score_a, score_b) < both_bad_below:
            verdict = "both_bad"
        elif abs(score_a - score_b) <= tie_within:
            verdict = "tie"
        else:
            verdict = "A" if score_a > score_b else "B"
        # Blind, so the rater cannot favour a model: they write the answer they wanted when neither is good enough.
        correction = reference if max(score_a, score_b) < correct_below else None
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


def answer_arms(ws, records: list[Record], arms, base_model: str, settings, name: str, version: int):
    """Every arm's answer to the records' prompts, as a new evaluation of those arms; returns (its id, the answers)."""
    from evaluation.arena import EvalItem, create_evaluation
    from evaluation.generate import generate_answers, prompt_from_record
    items = [prompt_from_record(r) for r in records]
    answers = generate_answers(ws, items, arms, base_model=base_model, settings=settings)
    eval_items = [EvalItem(i.prompt_id, i.messages, label=i.label, split=i.split,
                           responses={a.name: answers[a.name][n] for a in arms}) for n, i in enumerate(items)]
    return create_evaluation(ws, name, eval_items, arms=arms, base_model=base_model, dataset_version=version), answers


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=16)
    p.add_argument("--pool", type=int, default=6, help="new prompts rated after round 1 (train split)")
    p.add_argument("--val", type=int, default=4)
    p.add_argument("--test", type=int, default=8, help="prompts rated to measure every arm")
    p.add_argument("--examples", type=int, default=2, help="train conversations the prompted base sees")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--dpo-epochs", type=float, default=1.0)
    p.add_argument("--kto-epochs", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--qlora", action="store_true", help="train over the 4-bit base (slow on a CPU)")
    p.add_argument("--both-bad-below", type=float, default=0.2,
                   help="the simulated expert votes both bad when neither answer's ROUGE-L reaches this")
    p.add_argument("--tie-within", type=float, default=0.05,
                   help="the simulated expert votes a tie when the two ROUGE-L scores are this close")
    p.add_argument("--workspace", help="keep the workspace here (default: a temporary folder)")
    args = p.parse_args(argv)

    import dataclasses

    from curation.data.demo import demo_records
    from curation.data.versions import create_version
    from evaluation.arena import evaluation_arms, evaluation_comparisons
    from evaluation.feedback import collect_feedback, make_kto_version, make_preference_version, merge_feedback
    from evaluation.generate import (ArmRequest, DecodingSettings, prompt_from_record, prompted_arm, resolve_adapter,
                                     run_arm)
    from evaluation.ratings import arms_summary, format_arms
    from training.config import RunConfig
    from training.job import run_training
    from training.models import resolve_base_model
    from training.quality import rouge_l_scores
    from training.registry import create_run

    started = time.monotonic()

    def mark(what: str) -> None:
        print(f"[{time.monotonic() - started:6.0f}s] {what}", flush=True)

    root = Path(args.workspace) if args.workspace else Path(tempfile.mkdtemp(prefix="tuneloop-rounds-"))
    ws = Workspace.open(root)
    base_model = resolve_base_model("default", None).path      # converted once into the user cache, reused
    parts = grouped_split(demo_records(600), {"test": args.test, "val": args.val, "pool": args.pool,
                                              "train": args.train})
    v1 = create_version(ws, with_split(parts["train"], "train") + with_split(parts["val"], "val")
                        + with_split(parts["test"], "test"), parent=None, step="split",
                        params={"benchmark": "rounds", "grouped_by": "customer_id"})
    settings = DecodingSettings(max_new_tokens=args.max_new_tokens)
    # One explicit recipe for every round (not a preset, so the comparison cannot drift when presets change).
    recipe = dict(base_model=base_model, adapter="qlora" if args.qlora else "lora", load_in_4bit=args.qlora,
                  lora_r=16, lora_alpha=32, lora_dropout=0.0, sequence_len=192, micro_batch_size=8,
                  num_epochs=args.epochs, max_steps=-1, learning_rate=5e-4, lr_scheduler="cosine", warmup_ratio=0.0,
                  eval_steps=0, save_steps=1000, early_stopping_patience=0, gradient_checkpointing=False,
                  rouge_test_samples=0, cpu_threads=2, seed=42)

    def train(config, name):
        run = run_training(ws, create_run(ws, config, name=name).id)
        if run.status != "finished":
            raise SystemExit(f"{name} failed: {run.error}")
        mark(f"{name}: run #{run.id} finished, {run.metrics.get('last_step')} steps")
        return run

    def run_as(run, name: str):
        return dataclasses.replace(run_arm(resolve_adapter(ws, str(run.id))), name=name)

    mark(f"workspace {root}; v{v1.id}: {args.train} train / {args.val} val / {args.test} test; "
         f"{args.pool} new prompts to rate")
    r1 = train(RunConfig.from_dict({**recipe, "datasets": v1.name}), "round 1 SFT")

    pool = with_split(parts["pool"], "train")      # new prompts; their corrections are training data
    prompted = prompted_arm(ws, ArmRequest("prompted", examples=args.examples, system_prompt=SYSTEM_PROMPT),
                            version=v1.id, exclude={r.id for r in pool})
    prompted = dataclasses.replace(prompted, name="prompted base")
    improve, _ = answer_arms(ws, pool, [Arm("base", "base"), prompted, run_as(r1, "round 1")], base_model, settings,
                             "rate to improve (simulated expert)", v1.id)
    counts = simulated_votes(ws, improve, {r.id: r.answer for r in pool}, args.both_bad_below, args.tie_within)
    fb = collect_feedback(ws, improve)
    by_arms: dict[str, int] = {}
    for pair in fb.preference_pairs:
        key = f"{pair['meta']['chosen_arm']} over {pair['meta']['rejected_arm']}"
        by_arms[key] = by_arms.get(key, 0) + 1
    mark(f"rated {len(pool)} new prompts on every pair of 3 arms: {counts}; feedback {fb.counts()}; "
         f"preference pairs {by_arms or 'none'}")

    v2 = merge_feedback(ws, improve, created_by="benchmark")
    r2 = {"round 2 SFT": train(RunConfig.from_dict({**recipe, "datasets": v2.name}), "round 2 SFT")}
    not_trained: dict[str, str] = {}

    def second_stage(name: str, make_data, data_key: str, stage: dict) -> None:
        """Train a DPO or KTO round from round 1's adapter; when the votes give it nothing to train on, say why."""
        try:
            data = make_data(ws, improve, created_by="benchmark")
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

    test = parts["test"]
    arms = [Arm("base", "base"), prompted, run_as(r1, "round 1")] + [run_as(run, name) for name, run in r2.items()]
    measure, answers = answer_arms(ws, test, arms, base_model, settings, "rate to measure (simulated expert)", v1.id)
    measured = simulated_votes(ws, measure, {r.id: r.answer for r in test}, args.both_bad_below, args.tie_within)
    mark(f"rated {len(test)} test prompts on every pair of {len(arms)} arms: {measured}")

    print()
    print(f"Rate to improve ({len(pool)} prompts, every pair of base / prompted base / round 1): {counts}")
    print(f"Round 2 data: SFT on v{v2.id} ({v2.counts.get('added')} corrected answers added to v{v1.id})"
          + (f"; DPO on {r2['round 2 DPO'].metrics.get('train_pairs')} preference pairs ({by_arms})"
             if "round 2 DPO" in r2 else "")
          + (f"; KTO on {r2['round 2 KTO'].metrics.get('train_examples')} judged answers "
             f"({r2['round 2 KTO'].metrics.get('desirable')} desirable, {r2['round 2 KTO'].metrics.get('undesirable')} "
             f"undesirable; weights {r2['round 2 KTO'].metrics.get('desirable_weight')} / "
             f"{r2['round 2 KTO'].metrics.get('undesirable_weight')})" if "round 2 KTO" in r2 else ""))
    for name, reason in not_trained.items():
        print(f"{name}: not trained: {reason}")
    test_prompts = [prompt_from_record(r).messages for r in test]
    print(stage_report(r1, "round 1 SFT"))
    for name, run in r2.items():
        shift = logprob_shift(base_model, r1.adapter_dir, run.adapter_dir, test_prompts)
        print(f"{stage_report(run, name)}; mean |Δ log p| of round 1's next token on the test prompts {shift:.4f}")
    print()
    print(f"Rate to measure ({len(test)} test prompts, every pair of {len(arms)} arms): {measured}")
    summary = arms_summary(evaluation_comparisons(ws, measure), reference="base",
                           arms=[a.name for a in evaluation_arms(ws, measure)])
    print(format_arms(summary))
    references = [r.answer for r in test]
    print("mean ROUGE-L against the reference (what the simulated expert votes on):")
    for arm in arms:
        scores = rouge_l_scores(answers[arm.name], references)
        print(f"  {arm.name}: {sum(scores) / len(scores):.3f}")
    from evaluation.rounds import round_rows, rounds_table
    print("the rounds view (Results tab) of this workspace: each run's human figures, read from the arms it was "
          "rated as:")
    for row in rounds_table(round_rows(ws)):
        print(f"  {row['run']}: win rate {row['human (win rate, 95% CI)']}; "
              f"rating {row['human rating (Bradley–Terry vs base)']}")
    print(f"\ntotal {time.monotonic() - started:.0f}s; workspace {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
