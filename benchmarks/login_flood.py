"""Password guessing beside voting raters (#20 item 10): a rater's vote latency with and without a login flood,
and how long a wrong password takes for a known and for an unknown name.

    python benchmarks/login_flood.py [--raters 20] [--votes 10] [--think 2] [--guessers 8]

A hosted server (``--rater-only``, users in the workspace) on 127.0.0.1. ``--raters`` raters log in at / (the
Rate app of a rater-only server) and vote, reading ``--think`` seconds on average per pair, three times over:

- alone (the baseline);
- beside ``--guessers`` clients posting wrong passwords to /login as fast as they are answered, with the throttle as
  shipped (a name locked after 5 failures, an address after 20: most guesses get 429 after a 1 s pause,
  without a check);
- the same flood with the throttle set out of reach (``--login-failures-per-*`` 1,000,000), so every guess
  costs a scrypt check: this measures that password checks run off the event loop, in threads of their own.

Then, with the throttle out of reach, ``--timing-rounds`` wrong passwords, alternately for a known name and a
made-up one, one at a time: the medians should be the same (both cost one scrypt check).
Figures are medians and 95th percentiles of one run; the client runs on the same machine.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.users import add_user  # noqa: E402
from core.workspace import Workspace  # noqa: E402
from evaluation.arena import EvalItem, create_evaluation  # noqa: E402
from tests.browser import start_app  # noqa: E402
from tests.hosted_client import RaterClient  # noqa: E402

PASSWORD = "rater-password-1"
OUT_OF_REACH = ["--login-failures-per-user", "1000000", "--login-failures-per-address", "1000000"]


def pairs(n: int, name: str) -> list[EvalItem]:
    return [EvalItem(prompt_id=f"q{i}", messages=[{"role": "user", "content": f"Question {i} ({name}): refund?"}],
                     base_response=f"Answer {i}, first wording. " * 6,
                     finetuned_response=f"Answer {i}, second wording. " * 6) for i in range(n)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def vote_latencies(url: str, eid: int, raters: int, votes: int, think: float, guessers: int) -> tuple[list, dict]:
    """Every vote's latency (s) while ``guessers`` clients post wrong passwords; and the guessers' answers."""
    clients = [RaterClient(url, f"rater{r}", PASSWORD, prefix="") for r in range(raters)]
    latencies: list[float] = []
    answers: dict[int, int] = {}
    lock, done = threading.Lock(), threading.Event()
    failures = []

    def rate(client: RaterClient) -> None:
        client.start(eid)
        for _ in range(votes):
            time.sleep(random.expovariate(1 / think) if think else 0)
            t = time.perf_counter()
            result = client.vote(random.choice(["A", "B", "tie", "both_bad"]))
            elapsed = time.perf_counter() - t
            with lock:
                if result.success and result.output[10].startswith("✅"):
                    latencies.append(elapsed)
                else:
                    failures.append(result.error)

    def guess(worker: int) -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            i = 0
            while not done.is_set():
                status = http.post("/login", data={"username": f"rater{worker % raters}",
                                                   "password": f"guess-{worker}-{i}"}).status_code
                with lock:
                    answers[status] = answers.get(status, 0) + 1
                i += 1

    flood = [threading.Thread(target=guess, args=(w,)) for w in range(guessers)]
    voters = [threading.Thread(target=rate, args=(c,)) for c in clients]
    for t in flood:
        t.start()
    for t in voters:
        t.start()
    for t in voters:
        t.join()
    done.set()
    for t in flood:
        t.join()
    for c in clients:
        c.close()
    if failures:
        print(f"  {len(failures)} votes failed: {failures[:3]}")
    return latencies, answers


def wrong_password_times(url: str, rounds: int) -> tuple[list[float], list[float]]:
    known, unknown = [], []
    with httpx.Client(base_url=url, timeout=120) as http:
        for i in range(rounds):
            for name, into in (("rater0", known), (f"nobody{i}", unknown)):
                t = time.perf_counter()
                status = http.post("/login", data={"username": name, "password": f"wrong-{i}"}).status_code
                into.append(time.perf_counter() - t)
                assert status == 400, status
    return known, unknown


def row(label: str, latencies: list[float], answers: dict | None = None) -> str:
    ms = [v * 1000 for v in latencies]
    told = "" if not answers else "  guesses answered: " + ", ".join(f"{n} × {s}" for s, n in sorted(answers.items()))
    return f"{label:<58} {statistics.median(ms):>8.1f} {percentile(ms, 95):>8.1f} {len(ms):>6}{told}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raters", type=int, default=20)
    ap.add_argument("--votes", type=int, default=10, help="votes per rater and run")
    ap.add_argument("--think", type=float, default=2.0, help="mean seconds a rater reads per pair")
    ap.add_argument("--guessers", type=int, default=8)
    ap.add_argument("--timing-rounds", type=int, default=40)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tuneloop-flood-") as tmp:
        ws = Workspace.open(Path(tmp) / "workspace")
        for r in range(args.raters):
            add_user(ws, f"rater{r}", "rater", PASSWORD)
        runs = ("alone", "beside the flood, throttle as shipped", "beside the flood, every guess checked")
        evals = {name: create_evaluation(ws, name, pairs(args.raters * (args.votes + 1), name), base_model="base")
                 for name in runs}
        results = {}
        for name, flags, guessers in ((runs[0], [], 0), (runs[1], [], args.guessers),
                                      (runs[2], OUT_OF_REACH, args.guessers)):
            app = start_app(ws.root, ["--rater-only", *flags])
            try:
                results[name] = vote_latencies(app.url, evals[name], args.raters, args.votes, args.think, guessers)
                if name == runs[2]:
                    known, unknown = wrong_password_times(app.url, args.timing_rounds)
            finally:
                app.stop()
    print(f"{args.raters} raters × {args.votes} votes, reading {args.think:g} s per pair on average; "
          f"{args.guessers} guessing clients; over HTTP on 127.0.0.1 ({os.cpu_count()} cores, client on the same "
          f"machine)")
    print(f"{'vote → reveal + next pair':<58} {'p50 ms':>8} {'p95 ms':>8} {'votes':>6}")
    for name in runs:
        print(row(name, *results[name]))
    k, u = (statistics.median(v) * 1000 for v in (known, unknown))
    print(f"a wrong password, one at a time ({args.timing_rounds} each, throttle out of reach): known name "
          f"median {k:.1f} ms, unknown name median {u:.1f} ms (ratio {u / k:.2f})")


if __name__ == "__main__":
    main()
