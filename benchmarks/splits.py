"""Grouped + stratified splitting: Tuneloop's ``build_splits`` vs scikit-learn's StratifiedGroupKFold.

    python benchmarks/splits.py [--records 2000 20000] [--repeats 3]

Side by side in one run, on the same generated support tickets (customers with 1-6 tickets, eight
labels of uneven size), for a 80/10/10 split grouped by customer and stratified by label:
- tuneloop: ``build_splits(records, SplitOptions(val=0.1, test=0.1, stratify="label", group="customer"))``;
- baseline: ``StratifiedGroupKFold(n_splits=10, shuffle=True)``, fold 0 as test and fold 1 as val.
Prints, per size: seconds (median of the repeats), the largest gap in points between a label's share
in a split and overall, how far each split's size is from its target, groups crossing splits, and the
share of test records that change between seed 0 and seed 1 (StratifiedGroupKFold's shuffle only
reorders groups with the same label spread). Then the leakage audit's time on the same data.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from curation.splits.leakage import audit_leakage  # noqa: E402
from curation.data.records import Record  # noqa: E402
from curation.splits.balance import groups_across_splits, max_share_gap  # noqa: E402
from curation.splits.build import SplitOptions, build_splits  # noqa: E402
from tests.test_splits import support_tickets  # noqa: E402


def sklearn_split(records: list[Record], seed: int) -> list[Record]:
    import numpy as np
    from sklearn.model_selection import StratifiedGroupKFold

    labels = np.array([r.meta["label"] for r in records])
    groups = np.array([r.meta["customer"] for r in records])
    folds = list(StratifiedGroupKFold(n_splits=10, shuffle=True, random_state=seed).split(labels, labels, groups))
    split = ["train"] * len(records)
    for i in folds[0][1]:
        split[i] = "test"
    for i in folds[1][1]:
        split[i] = "val"
    return [Record(r.id, r.messages, {**r.meta, "split": s}) for r, s in zip(records, split)]


def tuneloop_split(records: list[Record], seed: int) -> list[Record]:
    return build_splits(records, SplitOptions(val=0.1, test=0.1, stratify="label", group="customer", seed=seed))


def measure(fn, records, repeats: int) -> dict:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(records, 0)
        times.append(time.perf_counter() - start)
    other = fn(records, 1)
    n = len(records)
    sizes = {s: sum(r.split == s for r in out) for s in ("train", "val", "test")}
    target = {"train": n - 2 * round(n * 0.1), "val": round(n * 0.1), "test": round(n * 0.1)}
    test0 = {r.id for r in out if r.split == "test"}
    test1 = {r.id for r in other if r.split == "test"}
    return {"seconds": statistics.median(times), "gap": max_share_gap(out, "label"),
            "size_off": max(abs(sizes[s] - target[s]) for s in sizes), "crossing": len(groups_across_splits(out, "customer")),
            "seed_change": len(test0 ^ test1) / 2 / max(1, len(test0))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--records", type=int, nargs="+", default=[2000, 20000])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    print(f"{'records':>8} {'method':<9} {'seconds':>8} {'max gap (pts)':>14} {'size off':>9} {'crossing':>9} "
          f"{'test changed by seed':>21}")
    for n in args.records:
        records = support_tickets(n, seed=n)
        for name, fn in (("tuneloop", tuneloop_split), ("sklearn", sklearn_split)):
            m = measure(fn, records, args.repeats)
            print(f"{n:>8} {name:<9} {m['seconds']:>8.2f} {m['gap']:>14.2f} {m['size_off']:>9} {m['crossing']:>9} "
                  f"{m['seed_change']:>20.0%}")
        split = tuneloop_split(records, 0)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            report = audit_leakage(split)
            times.append(time.perf_counter() - start)
        print(f"{n:>8} leakage audit (exact + near + 13-gram, prompts and answers): {statistics.median(times):.2f} s, "
              f"{len(report.pairs)} pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
