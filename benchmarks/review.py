"""How long a reviewer waits per keystroke action as the dataset grows, beside a baseline.

One "approve" in the Review tab reads the review state, applies the action, reads the state again and
finds the next record in the queue. The baseline is what the Data tab does to show one page of a
version: load its records and search them. Both run on the same workspace in the same process, for
versions of several sizes built from the demo data (ids made unique); the figures are medians.

    python -m benchmarks.review [--sizes 600,10000,50000] [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from core.workspace import Workspace
from curation.review.actions import submit_review
from curation.review.state import ReviewState, review_queue
from curation.data import versions as V
from curation.data.demo import demo_records
from curation.data.records import Record


def _records(n: int) -> list[Record]:
    base = demo_records(600)
    return [Record(id=f"{r.id}-{i // len(base)}", messages=r.messages, meta=r.meta)
            for i, r in ((i, base[i % len(base)]) for i in range(n))]


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def run(sizes: list[int], repeats: int) -> list[tuple[int, float, float]]:
    rows = []
    for n in sizes:
        ws = Workspace.open(tempfile.mkdtemp(prefix="tuneloop-bench-review-"))
        version = V.create_version(ws, _records(n), parent=None, step="import")
        V.load_records(ws, version.id)
        queue = review_queue(ws, version.id, "bench")

        def approve_and_next():
            rid = queue.pop(0)
            submit_review(ws, version.id, rid, "bench", decision="approved", labels={"label": "refund"})
            state = ReviewState(ws, version.id)
            state.view(state.queue("bench")[0], "bench")

        def browse_page():
            V.search_records(V.load_records(ws, version.id), "refund")[:20]

        rows.append((n, _median_ms(browse_page, repeats), _median_ms(approve_and_next, repeats)))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.review", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="600,10000,50000")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    print(f"{'records':>8}  {'baseline: browse a page (ms)':>30}  {'approve + next record (ms)':>28}")
    for n, browse, approve in run([int(s) for s in args.sizes.split(",")], args.repeats):
        print(f"{n:>8}  {browse:>30.1f}  {approve:>28.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
