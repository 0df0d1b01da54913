"""What the arms and the rater checks cost a vote: ``record_vote`` + ``next_pair`` in-process, one vote at a time.

    python benchmarks/arena_checks.py [--raters 10] [--votes 40] [--prompts 200]

Four evaluations in one workspace, side by side: the baseline (two arms, no checks, as every evaluation was
before arms), three arms (every pair of arms on every prompt), the two arms with gold pairs and repeats
(gold rate 0.1, repeat rate 0.1: the extra queries that keep the progress total still), and three arms with
the checks. Medians and 95th percentiles of the milliseconds from a vote to the next pair on screen.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.workspace import Workspace  # noqa: E402
from evaluation.arena import (Arm, EvalItem, GoldItem, RaterChecks, create_evaluation, next_pair,  # noqa: E402
                              record_vote)

TWO = [Arm("base", "base"), Arm("remote", "endpoint", settings={"model": "m"})]
THREE = TWO + [Arm("other", "endpoint", settings={"model": "n"})]
CHECKS = RaterChecks(gold_rate=0.1, repeat_rate=0.1)


def prompts(n: int, arms: list[Arm], tag: str) -> list[EvalItem]:
    """Prompts whose texts name their evaluation (a rater never gets texts they were given in another one)."""
    return [EvalItem(f"q{i}", [{"role": "user", "content": f"Question {i} ({tag}): where is my order?"}],
                     responses={a.name: f"Answer {i} from {a.name}, in its own words. " * 8 for a in arms})
            for i in range(n)]


def gold(n: int, tag: str) -> list[GoldItem]:
    return [GoldItem(f"g{i}", [{"role": "user", "content": f"Gold question {i} ({tag})?"}],
                     better=f"The right answer to {i}. " * 8, worse=f"A wrong answer to {i}. " * 8) for i in range(n)]


def latencies(ws: Workspace, eid: int, raters: int, votes: int) -> list[float]:
    out = []
    for r in range(raters):
        name = f"rater {r}"
        pair = next_pair(ws, eid, name)
        for _ in range(votes):
            if pair is None:
                break
            began = time.perf_counter()
            record_vote(ws, pair.assignment_id, name, "A")
            pair = next_pair(ws, eid, name)
            out.append((time.perf_counter() - began) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raters", type=int, default=10)
    ap.add_argument("--votes", type=int, default=40, help="votes per rater")
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3, help="the four evaluations are measured in turn this many times")
    args = ap.parse_args()
    setups = [("baseline: 2 arms, no checks", TWO, None), ("3 arms", THREE, None),
              ("2 arms, gold 0.1 + repeats 0.1", TWO, CHECKS), ("3 arms, gold 0.1 + repeats 0.1", THREE, CHECKS)]
    measured: dict[str, list[float]] = {label: [] for label, _, _ in setups}
    sizes = {}
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.open(Path(tmp) / "workspace")
        for round_ in range(args.rounds):      # in turn, so that a busy machine slows every setup alike
            for n, (label, arms, checks) in enumerate(setups):
                tag = f"{round_}.{n}"
                eid = create_evaluation(ws, label, prompts(args.prompts, arms, tag), arms=arms, base_model="base",
                                        overlap=args.raters, gold=gold(20, tag) if checks else (), checks=checks)
                measured[label] += latencies(ws, eid, args.raters, args.votes)
                sizes[label] = ws.db.execute("select count(*) from eval_pairs where evaluation_id=?",
                                             (eid,)).fetchone()[0]
    print(f"{args.raters} raters x {args.votes} votes, {args.prompts} prompts, overlap {args.raters}, "
          f"{args.rounds} rounds")
    print(f"{'evaluation':34} {'pairs':>6} {'median ms':>10} {'p95 ms':>8}")
    for label, ms in measured.items():
        ms.sort()
        print(f"{label:34} {sizes[label]:>6} {statistics.median(ms):>10.2f} {ms[int(0.95 * (len(ms) - 1))]:>8.2f}")


if __name__ == "__main__":
    main()
