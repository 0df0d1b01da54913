"""How far does an automatic judge agree with an expert? A real evaluation of the demo data, judged.

    python benchmarks/judge.py [--prompts 30] [--max-new-tokens 48] [--judge default] [--workspace DIR]

1. ``--prompts`` single-turn demo tickets (no re-sent near-duplicates), each with the support team's answer;
2. two arms answer them with the default model (greedy, the warm pool's engine): the base as it is, and the
   base prompted with the house system prompt and two example tickets from other customers (a zero-training
   baseline) — an evaluation of the kind the Results tab prepares;
3. a *simulated* expert votes blind through the real arena (``next_pair`` / ``record_vote``): the answer with
   the higher ROUGE-L against the support team's answer wins (within 0.05: a tie; both below 0.2: both bad).
   It stands in for an expert who knows the house answers; it is not a human judgement;
4. the judge reads every rated pair in both orders (``evaluation.judge``) and its agreement with the expert is
   printed beside two baselines on the same pairs: a judge that always says A (pure position bias) and a
   seeded coin over A / B / tie. Time per reading: the median.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.workspace import Workspace  # noqa: E402


class TimedJudge:
    """Wraps a judge and records how long each reading took."""

    def __init__(self, judge):
        self.judge, self.name, self.seconds = judge, judge.name, []

    def read(self, conversation):
        started = time.perf_counter()
        reading = self.judge.read(conversation)
        self.seconds.append(time.perf_counter() - started)
        return reading


class AlwaysA:
    name = "always A"

    def read(self, conversation):
        from evaluation.judge import Reading
        return Reading("A")


class Coin:
    name = "coin"

    def __init__(self, seed: int = 0):
        self.rng = random.Random(seed)

    def read(self, conversation):
        from evaluation.judge import Reading
        return Reading(self.rng.choice(["A", "B", "tie"]))


def expert_votes(ws, evaluation_id: int, references: dict[str, str]) -> dict[str, int]:
    """Vote every pair blind, as the module docstring says; returns the verdict counts."""
    from evaluation.arena import next_pair, record_vote
    from training.quality import rouge_l_scores
    counts = {"A": 0, "B": 0, "tie": 0, "both_bad": 0}
    while (pair := next_pair(ws, evaluation_id, "simulated-expert")) is not None:
        prompt_id = ws.db.execute("select p.prompt_id from eval_assignments a join eval_pairs p on p.id=a.pair_id"
                                  " where a.id=?", (pair.assignment_id,)).fetchone()[0]
        a, b = rouge_l_scores([pair.response_a, pair.response_b], [references[prompt_id]] * 2)
        verdict = "both_bad" if max(a, b) < 0.2 else "tie" if abs(a - b) <= 0.05 else "A" if a > b else "B"
        record_vote(ws, pair.assignment_id, "simulated-expert", verdict)
        counts[verdict] += 1
    return counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--prompts", type=int, default=30)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--judge", default="default")
    p.add_argument("--workspace")
    args = p.parse_args(argv)

    from curation.data.demo import SYSTEM, demo_records
    from evaluation.arena import EvalItem, create_evaluation
    from evaluation.judge import calibrate, format_calibration, judge_evaluation, open_judge
    from training.inference import DecodingSettings, warm_base

    ws = Workspace.open(args.workspace or Path(tempfile.mkdtemp()) / "workspace")
    records = [r for r in demo_records(400) if r.meta.get("source") != "email-resend" and len(r.messages) == 2]
    chosen, examples = records[:args.prompts], records[-2:]
    shots = [m for r in examples for m in r.messages]
    questions = [[r.messages[0]] for r in chosen]
    prompted = [[{"role": "system", "content": SYSTEM}, *shots, r.messages[0]] for r in chosen]
    settings = DecodingSettings(max_new_tokens=args.max_new_tokens)
    warm = warm_base(ws, "default")
    started = time.perf_counter()
    base, tuned = (warm.answer(c, settings=settings) for c in (questions, prompted))
    generated = time.perf_counter() - started
    items = [EvalItem(r.id, q, base_response=b, finetuned_response=t, label=r.meta["label"])
             for r, q, b, t in zip(chosen, questions, base, tuned)]
    eid = create_evaluation(ws, "prompted base vs base (demo)", items, base_model="SmolLM2-135M-Instruct",
                            guidelines="Prefer the answer that is correct, complete and follows Lumio's support "
                                       "policy, with concrete next steps.")
    votes = expert_votes(ws, eid, {r.id: r.messages[1]["content"] for r in chosen})
    print(f"{len(items)} pairs ({generated:.0f} s to answer both arms, engine {warm.engine}); simulated expert: "
          + ", ".join(f"{k} {v}" for k, v in votes.items()))

    judge = TimedJudge(open_judge(ws, args.judge))
    judge_evaluation(ws, eid, judge, progress=lambda done, total, what: print(f"  {what}", file=sys.stderr))
    for baseline in (AlwaysA(), Coin()):
        judge_evaluation(ws, eid, baseline)
    print(f"\n{args.judge}: {len(judge.seconds)} readings, median {statistics.median(judge.seconds):.2f} s each")
    print(f"\n{'judge':<12} {'agreement':>10} {'95% interval':>16} {'kappa':>7} {'95% interval':>16} {'flipped':>8}")
    for name in (judge.name, AlwaysA.name, Coin.name):
        cal = calibrate(ws, eid, name)
        a = cal.overall
        print(f"{name:<12} {a.agreement:>10.1%} {f'[{a.agreement_low:.1%}, {a.agreement_high:.1%}]':>16} "
              f"{a.kappa if a.kappa is not None else float('nan'):>7.3f} "
              f"{f'[{a.kappa_low:.3f}, {a.kappa_high:.3f}]' if a.kappa_low is not None else '—':>16} "
              f"{cal.how['flipped']:>8}")
    print("\n" + format_calibration(calibrate(ws, eid, judge.name)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
