"""Leakage audit at scale: every pair once (``near_duplicate_pairs``) vs the texts against themselves.

    python benchmarks/scale_leakage.py [--quick] [--compare 20000] [--sizes 100000 200000 400000]

Side by side in one run, on generated support tickets (``tests.test_splits.support_tickets``:
customers with 1-6 tickets, popular questions asked by several customers, shared error logs),
split 80/10/10 at random:

1. at ``--compare`` records, the audit as it is (``audit_leakage``) and as it was at commit ``BEFORE``
   (read from git: the eligible texts compared with themselves, ``cross_near_duplicates(texts, texts)``,
   and shared word runs counted one at a time in Python): wall and CPU seconds, the pairs found by
   each and whether they are the same;
2. at each of ``--sizes``, the audit's wall and CPU seconds, its peak RSS (each size in its own
   process; the RSS of the generated records alone beside it) and the time ratio to the size before
   (target: at most 2.2× per doubling).

``--quick`` compares at 2,000 and scales 5,000 / 10,000 / 20,000 (for development).
"""
from __future__ import annotations

import argparse
import json
import math
import random
import resource
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BEFORE = "bc12826"   # the last commit before the audit stopped comparing texts with themselves


def split_tickets(n: int) -> list:
    from curation.data.records import Record
    from tests.test_splits import support_tickets
    rng = random.Random(n)
    return [Record(r.id, r.messages, {**r.meta, "split": rng.choices(("train", "val", "test"), (8, 1, 1))[0]})
            for r in support_tickets(n, seed=n)]


def audit_as_it_was():
    """``audit_leakage`` as it was at ``BEFORE`` (read from git): the near-duplicate step compared the
    eligible texts with themselves and the shared word runs were counted one run at a time in Python."""
    import types
    source = subprocess.run(["git", "show", f"{BEFORE}:curation/splits/leakage.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    module = types.ModuleType("leakage_as_it_was")
    sys.modules[module.__name__] = module   # dataclasses look their module up
    exec(compile(source, f"{BEFORE}:curation/splits/leakage.py", "exec"), module.__dict__)
    return module.audit_leakage


def timed_audit(records, audit=None) -> tuple[float, float, list]:
    from curation.splits.leakage import audit_leakage
    wall, cpu = time.perf_counter(), time.process_time()
    report = (audit or audit_leakage)(records)
    return time.perf_counter() - wall, time.process_time() - cpu, [asdict(p) for p in report.pairs]


def compare(n: int) -> None:
    records = split_tickets(n)
    new_wall, new_cpu, new_pairs = timed_audit(records)
    old_wall, old_cpu, old_pairs = timed_audit(records, audit_as_it_was())
    print(f"{n:,} records: audit as it was (texts against themselves) {old_wall:.1f} s wall, {old_cpu:.1f} s CPU, "
          f"{len(old_pairs)} pairs")
    print(f"{n:,} records: audit now (every pair once)              {new_wall:.1f} s wall, {new_cpu:.1f} s CPU, "
          f"{len(new_pairs)} pairs")
    print(f"same findings: {'yes' if old_pairs == new_pairs else 'NO'}; {old_cpu / new_cpu:.2f}× less CPU "
          f"(target ≥ 3×), {old_wall / new_wall:.2f}× less wall time", flush=True)


def one_size(n: int) -> dict:
    """The audit of ``n`` records in this process (run by ``--one``): seconds and peak RSS."""
    records = split_tickets(n)
    with open("/proc/self/status") as status:   # resident now, not the peak: imports peak higher than small sets
        data_mb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024
    wall, cpu, pairs = timed_audit(records)
    return {"records": n, "wall_s": wall, "cpu_s": cpu, "pairs": len(pairs), "data_rss_mb": data_mb,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--compare", type=int, default=20_000)
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 200_000, 400_000])
    p.add_argument("--quick", action="store_true", help="compare at 2,000, scale 5,000 / 10,000 / 20,000")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(one_size(args.one)))
        return 0
    if args.quick:
        args.compare, args.sizes = 2_000, [5_000, 10_000, 20_000]
    print("leakage audit (exact + near + 13-word runs, prompts and answers) of support tickets split 80/10/10")
    compare(args.compare)
    print(f"\n{'records':>9} {'wall s':>8} {'CPU s':>8} {'× per doubling':>15} {'pairs':>7} "
          f"{'peak RSS MB':>12} {'records alone MB':>17}")
    previous = None
    for n in args.sizes:
        proc = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True, text=True, cwd=ROOT)
        if proc.returncode:
            raise SystemExit(f"the audit of {n:,} records failed:\n{proc.stderr[-3000:]}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        ratio = ""
        if previous:
            # Normalised to one doubling, so sizes that are not powers of two apart compare too.
            ratio = f"{(row['cpu_s'] / previous['cpu_s']) ** (1 / math.log2(n / previous['records'])):.2f}"
        print(f"{n:>9,} {row['wall_s']:>8.1f} {row['cpu_s']:>8.1f} {ratio:>15} {row['pairs']:>7} "
              f"{row['peak_rss_mb']:>12.0f} {row['data_rss_mb']:>17.0f}", flush=True)
        previous = row
    print("× per doubling is the CPU-time ratio to the size before, per doubling (target ≤ 2.2×)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
