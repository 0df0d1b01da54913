"""Raters at scale: 50 raters voting at once over HTTP against a live app; vote latency and throughput.

    python benchmarks/raters.py [--raters 50] [--votes 20] [--think 5]

Each rater logs in at /rate/, presses Start and votes through the same queue + event-stream route the
page uses. The reply to a vote already carries the next pair (pairs are generated before rating starts),
so the time to the next pair is the vote's latency. Three runs against the same server: raters who read
for a while before each vote (exponential, --think seconds on average; real raters take 10-30 s per
pair) sending what the page sends (a plain POST to /gradio_api/run/: the Rate tab's events are not
queued), the same through Gradio's queue and event stream (how they were sent before), and raters who
vote back to back (the server's capacity). Printed side by side with the same vote + next pair called
in-process (``record_vote`` + ``next_pair``, no HTTP), the floor.
Target: p95 <= 100 ms per vote over HTTP for reading raters.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.users import add_user  # noqa: E402
from core.workspace import Workspace  # noqa: E402
from evaluation.arena import EvalItem, create_evaluation, next_pair, record_vote  # noqa: E402
from tests.browser import start_app  # noqa: E402
from tests.hosted_client import RaterClient  # noqa: E402

TARGET_P95_MS = 100
PASSWORD = "rater-password"


def pairs(n: int) -> list[EvalItem]:
    return [EvalItem(prompt_id=f"q{i}", messages=[{"role": "user", "content": f"Question {i}: where is my order?"}],
                     base_response=f"Answer {i}, first wording. " * 8,
                     finetuned_response=f"Answer {i}, second wording. " * 8) for i in range(n)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def in_process(ws: Workspace, raters: int, votes: int) -> tuple[list[float], float]:
    eid = create_evaluation(ws, "in-process", pairs(raters * (votes + 1)), base_model="base")
    latencies = []
    began = time.perf_counter()
    for r in range(raters):
        pair = next_pair(ws, eid, f"local{r}")
        for _ in range(votes):
            t = time.perf_counter()
            record_vote(ws, pair.assignment_id, f"local{r}", random.choice("AB"))
            pair = next_pair(ws, eid, f"local{r}")
            latencies.append(time.perf_counter() - t)
    return latencies, time.perf_counter() - began


def over_http(url: str, eid: int, raters: int, votes: int, think: float, queued: bool | None = None):
    clients = [RaterClient(url, f"rater{r}", PASSWORD, prefix="") for r in range(raters)]
    latencies: list[float] = []
    next_ready = failures = 0
    lock = threading.Lock()
    barrier = threading.Barrier(raters)

    def rate(client: RaterClient):
        nonlocal next_ready, failures
        client.start(eid)
        barrier.wait()
        for i in range(votes):
            if think:
                time.sleep(random.expovariate(1 / think))
            t = time.perf_counter()
            result = client.vote(random.choice(["A", "B", "tie", "both_bad"]), queued=queued)
            elapsed = time.perf_counter() - t
            with lock:
                if not (result.success and result.output[10].startswith("✅")):
                    failures += 1
                    continue
                latencies.append(elapsed)
                next_ready += client.question is not None or i == votes - 1

    threads = [threading.Thread(target=rate, args=(c,)) for c in clients]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    for c in clients:
        c.close()
    return latencies, wall, next_ready, failures


def row(name: str, latencies: list[float], wall: float) -> str:
    ms = [v * 1000 for v in latencies]
    return (f"{name:<36} {len(ms):>6} {statistics.median(ms):>8.1f} {percentile(ms, 95):>8.1f} "
            f"{percentile(ms, 99):>8.1f} {len(ms) / wall:>9.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raters", type=int, default=50)
    ap.add_argument("--votes", type=int, default=20, help="votes per rater")
    ap.add_argument("--think", type=float, default=5.0, help="mean seconds a reading rater takes per pair")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tuneloop-raters-") as tmp:
        ws = Workspace.open(Path(tmp) / "workspace")
        for r in range(args.raters):
            add_user(ws, f"rater{r}", "rater", PASSWORD)
        reading, queued, hurried = (create_evaluation(ws, name, pairs(args.raters * (args.votes + 1)), base_model="base")
                                    for name in ("reading", "reading, queued", "back to back"))
        base_lat, base_wall = in_process(Workspace.open(Path(tmp) / "baseline"), args.raters, args.votes)
        app = start_app(ws.root, ["--rater-only"])
        try:
            runs = [(f"HTTP, reading {args.think:g} s per pair", reading, args.think, None),
                    ("  same, through the queue + stream", queued, args.think, True),
                    ("HTTP, back to back", hurried, 0.0, None)]
            results = [(name, *over_http(app.url, eid, args.raters, args.votes, think, queued))
                       for name, eid, think, queued in runs]
        finally:
            app.stop()
        stored = [ws.db.execute("select count(*) from eval_votes v join eval_assignments a on a.id=v.assignment_id"
                                " join eval_pairs p on p.id=a.pair_id where p.evaluation_id=?", (eid,)).fetchone()[0]
                  for eid in (reading, queued, hurried)]
    print(f"{args.raters} raters × {args.votes} votes each, over HTTP on 127.0.0.1 (/ of a --rater-only server); "
          f"the client runs on the same machine")
    print(f"{'':<36} {'votes':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'votes/s':>9}")
    print(row("in-process record_vote + next_pair", base_lat, base_wall))
    for name, latencies, wall, _, _ in results:
        print(row(name, latencies, wall))
    for (name, latencies, _, next_ready, failures), count in zip(results, stored):
        print(f"{name}: stored {count} of {args.raters * args.votes} votes, {failures} refused or failed; "
              f"{next_ready}/{len(latencies)} vote replies carried the next pair (or ended the rater's share)")
    p95 = percentile([v * 1000 for v in results[0][1]], 95)
    print(f"target p95 <= {TARGET_P95_MS} ms for reading raters: {'met' if p95 <= TARGET_P95_MS else 'NOT met'} "
          f"({p95:.1f} ms)")

if __name__ == "__main__":
    main()
