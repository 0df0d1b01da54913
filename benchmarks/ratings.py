"""Bradley–Terry ratings across arms: the bootstrap's speed against one optimiser call per resample, and how often
the intervals hold the true ratings, in one run.

Simulated evaluations: arms with known strengths (logit scale, the base at 0) answer every prompt; every pair of
arms is judged on each prompt by a few raters. Votes on one prompt are not independent: the prompt has its own
verdict (drawn by the Bradley–Terry chance) that each rater follows with probability ``SHARED``, else judges
afresh by the same chance, so each vote alone still follows the true ratings exactly (no ties: a tie's half win
would pull every rating towards 0 by design). The script prints:

- seconds per 1,000 bootstrap resamples of one evaluation: ``evaluation.ratings.arm_ratings`` (every resample in
  one scipy call) beside the plain way, one scipy call per resample (the same objective; timed on
  ``--plain-resamples`` and scaled, its cost being the same for every resample), median of the runs;
- coverage: the share of simulated evaluations whose 95% interval holds each arm's true rating, with the
  resamples drawn over prompts (as the ratings do) and, for comparison, over votes.

Run: ``python -m benchmarks.ratings [--prompts 40] [--raters 3] [--resamples 1000] [--evaluations 100]``
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from evaluation import ratings as R  # noqa: E402

TRUE = {"base": 0.0, "prompted": 0.4, "round 1": 0.8, "round 2": 1.1}
SHARED = 0.6                 # chance that a rater follows the prompt's own verdict


def simulate(rng: np.random.Generator, prompts: int, raters: int) -> list[R.Comparison]:
    """One evaluation's votes: every pair of arms on every prompt, each rater once, sides by a coin."""
    arms = list(TRUE)
    votes = []
    for p in range(prompts):
        for i, a in enumerate(arms):
            for b in arms[i + 1:]:
                chance = 1 / (1 + np.exp(TRUE[b] - TRUE[a]))
                prompt_says_a = rng.random() < chance
                for r in range(raters):
                    a_won = prompt_says_a if rng.random() < SHARED else rng.random() < chance
                    left, right = (a, b) if rng.random() < 0.5 else (b, a)
                    outcome = "left" if a_won == (left == a) else "right"
                    votes.append(R.Comparison(f"p{p}", f"r{r}", left, right, outcome))
    return votes


def one_call_per_resample(votes: list[R.Comparison], resamples: int, seed: int):
    """The plain bootstrap: draw prompts, refit with its own optimiser call, percentile interval."""
    arms = sorted({a for c in votes for a in (c.left, c.right)})
    index = {a: i for i, a in enumerate(arms)}
    by_prompt: dict[str, list] = {}
    for c in votes:
        by_prompt.setdefault(c.prompt_id, []).append(c)
    per_prompt = np.stack([R._score_matrix(cs, index) for cs in by_prompt.values()])
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(per_prompt), np.full(len(per_prompt), 1 / len(per_prompt)), size=resamples)
    boot = np.array([R._fit(np.tensordot(w, per_prompt, axes=1), index["base"]) for w in draws])
    return np.percentile(boot, [2.5, 97.5], axis=0)


def coverage(rng, evaluations: int, prompts: int, raters: int, resamples: int) -> dict[str, float]:
    """Share of (evaluation, arm) intervals that hold the true rating, resampling prompts or votes."""
    held = {"prompts": 0, "votes": 0}
    total = 0
    for e in range(evaluations):
        votes = simulate(rng, prompts, raters)
        by_prompts = R.arm_ratings(votes, reference="base", resamples=resamples, seed=e)
        # every vote its own "prompt": the bootstrap then treats votes as independent
        apart = [R.Comparison(f"{c.prompt_id}-{k}", c.rater, c.left, c.right, c.outcome) for k, c in enumerate(votes)]
        by_votes = R.arm_ratings(apart, reference="base", resamples=resamples, seed=e)
        for kind, result in (("prompts", by_prompts), ("votes", by_votes)):
            for r in result.arms:
                if r.arm != "base":
                    held[kind] += r.low <= TRUE[r.arm] <= r.high
        total += len(TRUE) - 1
    return {k: v / total for k, v in held.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=40)
    ap.add_argument("--raters", type=int, default=3)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--evaluations", type=int, default=100)
    ap.add_argument("--plain-resamples", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    votes = simulate(rng, args.prompts, args.raters)
    print(f"{len(TRUE)} arms, {args.prompts} prompts, {args.raters} raters per pair: {len(votes)} votes; "
          f"{args.resamples} bootstrap resamples")
    joint, plain = [], []
    for run in range(args.runs):
        t = time.perf_counter()
        R.arm_ratings(votes, reference="base", resamples=args.resamples, seed=run)
        joint.append((time.perf_counter() - t) * 1000 / args.resamples)
        t = time.perf_counter()
        one_call_per_resample(votes, args.plain_resamples, seed=run)
        plain.append((time.perf_counter() - t) * 1000 / args.plain_resamples)
    a, b = statistics.median(joint), statistics.median(plain)
    print(f"seconds per 1,000 resamples, median of {args.runs}: Tuneloop (one call for all resamples) {a:.2f} s, "
          f"one call per resample {b:.2f} s ({b / a:.1f}x)")
    held = coverage(rng, args.evaluations, args.prompts, args.raters, min(args.resamples, 500))
    print(f"95% intervals holding the true rating over {args.evaluations} simulated evaluations: resampling prompts "
          f"{held['prompts']:.1%}, resampling votes (as if independent) {held['votes']:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
