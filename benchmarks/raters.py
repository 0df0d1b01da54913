"""Raters at scale: 50 raters voting at once over HTTP against a live app; vote latency and throughput.

    python benchmarks/raters.py [--raters 50] [--votes 20] [--think 5]

Each rater logs in at /rate/, presses Start and votes as the page does (a plain POST to
/gradio_api/run/: the Rate tab's events are not queued). The reply to a vote already carries the next
pair (pairs are generated before rating starts), so the time to the next pair is the vote's latency.
Two ways of voting, side by side: raters who read for a while before each vote (exponential, --think
seconds on average; real raters take 10-30 s per pair) and raters who vote back to back (the server's
capacity: with R raters always waiting, a vote's latency is about R / votes per second). A third run
sends the reading raters' votes through Gradio's queue and event stream (how they were sent before).

The floor is the same SQLite statements without HTTP or Gradio: ``record_vote`` + ``next_pair`` called
in-process, one vote at a time (reading) and from R threads at once (back to back). Beside them:
the server process's CPU time per vote back to back, which a busy machine changes less than the latencies.
Target: p95 <= 100 ms per vote over HTTP for reading raters.

A vote whose request gets no answer (the connection fails) is counted and named, never a rater thread lost:
that is how issue #20 showed, a vote sent on a connection idle for just under 5 s meeting a server that
closed idle connections at 5 s, the same as httpx's own expiry (the server now keeps them 75 s).
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
from evaluation.arena import EvalItem, create_evaluation, next_pair, record_vote  # noqa: E402
from tests.browser import start_app  # noqa: E402
from tests.hosted_client import RaterClient  # noqa: E402

TARGET_P95_MS = 100
PASSWORD = "rater-password"


def pairs(n: int, name: str) -> list[EvalItem]:
    """Pairs whose texts name their evaluation: a rater never gets texts they were given in another one."""
    return [EvalItem(prompt_id=f"q{i}",
                     messages=[{"role": "user", "content": f"Question {i} ({name}): where is my order?"}],
                     base_response=f"Answer {i}, first wording. " * 8,
                     finetuned_response=f"Answer {i}, second wording. " * 8) for i in range(n)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def in_process(ws: Workspace, raters: int, votes: int, *, threads: int) -> tuple[list[float], float]:
    """Every rater's votes through ``record_vote`` + ``next_pair``, from ``threads`` threads at once."""
    name = f"in-process, {threads} thread(s)"
    eid = create_evaluation(ws, name, pairs(raters * (votes + 1), name), base_model="base")
    latencies: list[float] = []
    lock = threading.Lock()

    def rate(names: list[str]):
        for name in names:
            pair = next_pair(ws, eid, name)
            for _ in range(votes):
                t = time.perf_counter()
                record_vote(ws, pair.assignment_id, name, random.choice("AB"))
                pair = next_pair(ws, eid, name)
                with lock:
                    latencies.append(time.perf_counter() - t)

    names = [f"local{r}" for r in range(raters)]
    workers = [threading.Thread(target=rate, args=(names[i::threads],)) for i in range(threads)]
    began = time.perf_counter()
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return latencies, time.perf_counter() - began


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def over_http(url: str, eid: int, raters: int, votes: int, think: float, queued: bool | None = None):
    clients = [RaterClient(url, f"rater{r}", PASSWORD, prefix="") for r in range(raters)]
    latencies: list[float] = []
    next_ready = failures = 0
    lost: list[str] = []    # votes whose request got no answer at all (the connection failed): never silent
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
            try:
                result = client.vote(random.choice(["A", "B", "tie", "both_bad"]), queued=queued)
            except httpx.HTTPError as exc:   # counted, and the rater goes on, as a person would press again
                with lock:
                    lost.append(f"{client.name}, vote {i + 1}: {type(exc).__name__}: {exc}")
                continue
            elapsed = time.perf_counter() - t
            with lock:
                if not (result.success and result.output[10].startswith("✅")):    # the reveal
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
    return latencies, wall, next_ready, failures, lost


def figures(latencies: list[float], wall: float, cpu: float | None = None) -> str:
    ms = [v * 1000 for v in latencies]
    cpu_ms = "" if cpu is None else f"{cpu * 1000 / len(ms):.1f}"
    return (f"{statistics.median(ms):>8.1f} {percentile(ms, 95):>8.1f} {percentile(ms, 99):>8.1f} "
            f"{len(ms) / wall:>8.1f} {cpu_ms:>8}")


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
        reading, hurried, queued = (create_evaluation(ws, name, pairs(args.raters * (args.votes + 1), name),
                                                      base_model="base")
                                    for name in ("reading", "back to back", "reading, queued"))
        floor = Workspace.open(Path(tmp) / "floor")
        floors = (in_process(floor, args.raters, args.votes, threads=1),
                  in_process(floor, args.raters, args.votes, threads=args.raters))
        app = start_app(ws.root, ["--rater-only"])
        try:
            results = []
            for eid, think, via_queue in ((reading, args.think, None), (hurried, 0.0, None), (queued, args.think, True)):
                before = cpu_seconds(app.process.pid)
                latencies, wall, next_ready, failures, lost = over_http(app.url, eid, args.raters, args.votes, think,
                                                                        via_queue)
                results.append((latencies, wall, next_ready, failures, cpu_seconds(app.process.pid) - before, lost))
        finally:
            app.stop()
        stored = [ws.db.execute("select count(*) from eval_votes v join eval_assignments a on a.id=v.assignment_id"
                                " join eval_pairs p on p.id=a.pair_id where p.evaluation_id=?", (eid,)).fetchone()[0]
                  for eid in (reading, hurried, queued)]
    print(f"{args.raters} raters × {args.votes} votes each, over HTTP on 127.0.0.1 (/ of a --rater-only server); "
          f"the client runs on the same machine ({os.cpu_count()} cores)")
    head = f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'votes/s':>8} {'CPU ms':>8}"
    print(f"{'':<44} {'reading ' + format(args.think, 'g') + ' s per pair':<44} {'back to back':<44}")
    print(f"{'':<44} {head}     {head}")
    (read_lat, read_wall, *_), (b2b_lat, b2b_wall, *_, b2b_cpu, _), queued_run = results
    print(f"{'floor: record_vote + next_pair in-process':<44} {figures(*floors[0])}     {figures(*floors[1])}")
    print(f"{'over HTTP, as the page sends it':<44} {figures(read_lat, read_wall)}     "
          f"{figures(b2b_lat, b2b_wall, b2b_cpu)}")
    print(f"{'  reading, through the queue + stream':<44} {figures(queued_run[0], queued_run[1])}")
    print(f"(floor: one vote at a time while reading, {args.raters} threads at once back to back; CPU ms: the "
          f"server process's CPU time per vote while raters vote back to back)")
    for name, (latencies, _, next_ready, failures, _, lost), count in zip(
            ("reading", "back to back", "reading, queued"), results, stored):
        print(f"{name}: stored {count} of {args.raters * args.votes} votes, {failures} refused or failed, "
              f"{len(lost)} lost unanswered (the connection failed); "
              f"{next_ready}/{len(latencies)} vote replies carried the next pair (or ended the rater's share)")
        for line in lost:
            print(f"    {line}")
    p95 = percentile([v * 1000 for v in read_lat], 95)
    print(f"target p95 <= {TARGET_P95_MS} ms for reading raters: {'met' if p95 <= TARGET_P95_MS else 'NOT met'} "
          f"({p95:.1f} ms)")


if __name__ == "__main__":
    main()
