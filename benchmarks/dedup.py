"""Near-duplicate removal: quality and speed against the plain datasketch loop, in one run.

On a generated set with planted near duplicates and hard negatives (``benchmarks.planted_duplicates``)
both methods run on the same records, and the script prints, side by side:

- pair recall: planted duplicate pairs that end up in one cluster;
- pair precision: pairs put in one cluster that are planted duplicates;
- hard negatives removed: records that only share boilerplate with others but were dropped;
- records/s for the whole process (texts, exact and near duplicates, clusters).

The baseline is what a new user writes: one datasketch ``MinHash`` per record over word 5-gram
shingles, a ``MinHashLSH`` queried before each insert, and a record dropped when the query returns
anything (no verification).

``--million`` runs a fresh process for 100,000 and another for 1,000,000 short records, and prints each one's
peak memory (VmHWM) beside what the records alone take before dedup starts (the target at 1M is a peak
under 2 GB, records included).

Run: ``python -m benchmarks.dedup [--n 30000] [--seed 0] [--million]``
"""
from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.planted_duplicates import PlantedSet, planted_dataset  # noqa: E402
from curation.dedup.clusters import DedupOptions, find_duplicates, record_text  # noqa: E402
from curation.dedup.verify import TURN_SEPARATOR  # noqa: E402


def datasketch_loop(records, threshold: float, num_perm: int = 128) -> list[list[str]]:
    """The plain loop: MinHash of word 5-grams, LSH query then insert; a hit means 'duplicate of it'."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    clusters: dict[str, list[str]] = {}
    for record in records:
        words = record_text(record).replace(TURN_SEPARATOR, " ").lower().split()
        m = MinHash(num_perm=num_perm)
        for i in range(max(1, len(words) - 4)):
            m.update(" ".join(words[i:i + 5]).encode("utf-8"))
        hits = lsh.query(m)
        if hits:
            clusters[min(hits)].append(record.id)
        else:
            lsh.insert(record.id, m)
            clusters[record.id] = [record.id]
    return [members for members in clusters.values() if len(members) > 1]


def score(planted: PlantedSet, clusters: list[list[str]], dropped: set[str]) -> dict[str, float]:
    truth = planted.true_pairs()
    found = set()
    for members in clusters:
        ordered = sorted(members)
        found.update((a, b) for k, a in enumerate(ordered) for b in ordered[k + 1:])
    hit = len(found & truth)
    return {"recall": hit / max(1, len(truth)), "precision": hit / max(1, len(found)),
            "hard_negatives_removed": len(dropped & planted.hard_negatives), "pairs_found": len(found)}


def run_ours(planted: PlantedSet, options: DedupOptions) -> tuple[dict[str, float], float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    result = find_duplicates(planted.records, options)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    clusters = [[m.id for m in c.members] for c in result.clusters]
    return score(planted, clusters, result.drop_ids()), seconds, cpu


def run_baseline(planted: PlantedSet, threshold: float) -> tuple[dict[str, float], float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    clusters = datasketch_loop(planted.records, threshold)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    dropped = {rid for members in clusters for rid in members[1:]}
    return score(planted, clusters, dropped), seconds, cpu


def peak_mb() -> float:
    """This process's peak memory in MB: VmHWM where Linux has it (ru_maxrss keeps the parent's size across
    fork and exec, so a child started by a big parent would report at least that), else ru_maxrss."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def million(n: int = 1_000_000, seed: int = 0) -> None:
    """Child process: dedup ``n`` short records, print time, CPU time and peak memory."""
    import random

    from curation.data.records import Record
    from faker.providers.lorem.en_US import Provider as Lorem

    rng = random.Random(seed)
    words = list(Lorem.word_list)
    records = []
    for i in range(n):
        if i % 10 == 9:  # one record in ten is a lightly edited copy of the one before
            question, answer = (m["content"] for m in records[-1].messages)
            tokens = answer.split()
            tokens[rng.randrange(len(tokens))] = rng.choice(words)
            answer = " ".join(tokens).upper() if rng.random() < 0.3 else " ".join(tokens)
        else:
            question = " ".join(rng.choices(words, k=rng.randint(5, 12))) + "?"
            answer = " ".join(rng.choices(words, k=rng.randint(8, 20))) + "."
        records.append(Record(id=f"m{i}", messages=[{"role": "user", "content": question},
                                                    {"role": "assistant", "content": answer}]))
    loaded = peak_mb()
    start, cpu = time.perf_counter(), time.process_time()
    result = find_duplicates(records)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = peak_mb()
    counts = result.counts()
    target = "  (target at 1M: <= 2,048 MB)" if n == 1_000_000 else ""
    print(f"  {n:>9,} short records: {seconds:.0f} s wall, {cpu:.0f} s CPU ({n / seconds:,.0f} records/s), "
          f"dropped {counts['to_drop']:,} (planted ~{n // 10:,}); peak memory {peak:,.0f} MB, records alone "
          f"{loaded:,.0f} MB{target}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30_000, help="records in the generated set (default 30000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of ours; the median is printed")
    parser.add_argument("--million", action="store_true", help="also measure 1M short records in a subprocess")
    parser.add_argument("--million-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.million_child:
        million(args.million_child, seed=args.seed)
        return
    planted = planted_dataset(args.n, args.seed)
    options = DedupOptions()
    print(f"{len(planted.records):,} records, {len(planted.true_pairs()):,} planted duplicate pairs, "
          f"{len(planted.hard_negatives):,} hard negatives; threshold {options.threshold}, "
          f"char {options.ngram}-grams, {options.num_perm} permutations")
    base, base_s, base_cpu = run_baseline(planted, options.threshold)
    runs = [run_ours(planted, options) for _ in range(args.repeat)]
    ours, ours_s, ours_cpu = runs[0][0], statistics.median(r[1] for r in runs), statistics.median(r[2] for r in runs)
    n = len(planted.records)
    rows = [("pair recall", f"{base['recall']:.4f}", f"{ours['recall']:.4f}", ">= 0.98"),
            ("pair precision", f"{base['precision']:.4f}", f"{ours['precision']:.4f}", ">= 0.995"),
            ("hard negatives removed", str(base["hard_negatives_removed"]), str(ours["hard_negatives_removed"]), "0"),
            ("records/s (wall clock)", f"{n / base_s:,.0f}", f"{n / ours_s:,.0f}", f">= {10 * n / base_s:,.0f} (10x)"),
            ("records/s (CPU time)", f"{n / base_cpu:,.0f}", f"{n / ours_cpu:,.0f}", f">= {10 * n / base_cpu:,.0f} (10x)"),
            ("seconds (wall, CPU)", f"{base_s:.1f}, {base_cpu:.1f}", f"{ours_s:.1f}, {ours_cpu:.1f} (median of {args.repeat})",
             "")]
    print(f"{'':24}{'datasketch loop':>18}{'tuneloop dedup':>28}{'target':>18}")
    for name, b, o, target in rows:
        print(f"{name:24}{b:>18}{o:>28}{target:>18}")
    # CPU time is what the method costs; wall clock also counts whatever else the machine runs meanwhile.
    print(f"speed-up: {base_s / ours_s:.1f}x wall clock, {base_cpu / ours_cpu:.1f}x CPU time")
    if args.million:
        print("short records (one in ten a light edit of the one before), each size in a fresh process:")
        for size in (100_000, 1_000_000):
            subprocess.run([sys.executable, str(Path(__file__).resolve()), "--million-child", str(size),
                            "--seed", str(args.seed)], check=True)


if __name__ == "__main__":
    main()
