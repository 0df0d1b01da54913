"""The start-up sweep: what opening a workspace costs with it, beside opening it without (migrations only).

    python benchmarks/open_sweep.py [--versions 200] [--runs 100] [--repeats 20]

Builds a workspace with VERSIONS dataset versions (one small snapshot each) and RUNS run folders (each with
a few files and checkpoint folders, as training leaves them), then times, REPEATS times each: opening it
without the sweep, the sweep alone (``sweep_leftovers``: the scan for temp files and the unreferenced-snapshot
check), and ``Workspace.open`` as every command and the app do. Prints medians in milliseconds.
Target: the sweep adds under 50 ms to an open of such a workspace on the 2-core dev machine.
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
TARGET_MS = 50.0


def build(root: Path, versions: int, runs: int) -> None:
    from core.workspace import Workspace
    from curation.data.records import Record
    from curation.data.versions import create_version

    ws = Workspace.open(root)
    for n in range(versions):
        create_version(ws, [Record(id=f"b{n}", messages=[{"role": "user", "content": f"benchmark turn {n}"}])],
                       parent=None, step="import")
    for n in range(runs):
        run = root / "runs" / str(n)
        for step in (10, 20, 30):
            (run / "checkpoints" / f"checkpoint-{step}").mkdir(parents=True)
        (run / "adapter").mkdir()
        for name in ("config.yaml", "metrics.jsonl", "train.log"):
            (run / name).write_text("x\n")


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--versions", type=int, default=200)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    from core.workspace import Workspace, sweep_leftovers

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ws"
        build(root, args.versions, args.runs)
        without = median_ms(lambda: Workspace(root).migrate(), args.repeats)
        sweep = median_ms(lambda: sweep_leftovers(Workspace(root)), args.repeats)
        opened = median_ms(lambda: Workspace.open(root), args.repeats)
    print(f"workspace: {args.versions} versions, {args.runs} run folders; median of {args.repeats} (ms)")
    print(f"{'':34}{'measured':>10}{'target':>10}")
    print(f"{'open without the sweep (baseline)':34}{without:>10.1f}")
    print(f"{'the sweep alone':34}{sweep:>10.1f}{TARGET_MS:>10.1f}")
    print(f"{'Workspace.open with the sweep':34}{opened:>10.1f}")


if __name__ == "__main__":
    main()
