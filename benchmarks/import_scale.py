"""Importing a big JSONL file: time and peak memory of Tuneloop's import beside pyarrow's JSON reader, in one run.

The script writes N short chat records (a question and an answer of a few words each, ids and a label) as
JSONL into a temporary folder, then measures, each in a fresh process so that peak memory is its own:

- ``tuneloop import``: ``curation.data.imports.import_file`` into a new workspace (read, validate, hash,
  write the Parquet snapshot, record the version), what the Data tab and ``python -m curation import`` run;
- ``tuneloop read``: ``curation.data.formats.read_records`` alone (read and validate, no version written);
- ``pyarrow.json.read_json``: the same file into an Arrow table (no validation, no Python objects), the
  floor of reading it at all.

It prints the median seconds, records per second, the median peak resident memory (ru_maxrss) of each over
``--repeat`` runs and each median's ratio to pyarrow's, and the file's size. The methods take turns within each
repeat, so that a change in the machine's load falls on all of them alike.

Run: ``python -m benchmarks.import_scale [--records 1000000] [--repeat 3]``
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SUBJECTS = ["parcel", "invoice", "password", "subscription", "voucher", "delivery slot", "warranty", "login"]
ASKS = ["Where is my {}?", "How do I change my {}?", "Can you cancel my {}?", "Why was my {} refused?"]
REPLIES = ["It is on its way.", "Open Settings and choose it there.", "Done, you will get an email.",
           "Please send us the number on it."]


def write_file(path: Path, n: int, seed: int = 0) -> None:
    """N short records, a line each, with an id and a label in meta."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            subject = rng.choice(SUBJECTS)
            row = {"id": f"t{i}", "messages": [{"role": "user", "content": rng.choice(ASKS).format(subject)},
                                               {"role": "assistant", "content": rng.choice(REPLIES)}],
                   "meta": {"label": subject}}
            fh.write(json.dumps(row) + "\n")


def child(method: str, path: str, workspace: str) -> None:
    """One measurement in this process: prints {"seconds", "peak_mb", "records"} as JSON."""
    start = time.perf_counter()
    if method == "tuneloop import":
        from core.workspace import Workspace
        from curation.data.imports import import_file
        version, _ = import_file(Workspace.open(workspace), path)
        count = version.num_records
    elif method == "tuneloop read":
        from curation.data.formats import read_records
        count = len(read_records(path).records)
    else:
        import pyarrow.json as pj
        count = pj.read_json(path).num_rows
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "records": count}))


def measure(method: str, path: Path, workspace: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.import_scale", "--child", method, str(path),
                          str(workspace)], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--child", nargs=3, metavar=("METHOD", "FILE", "WORKSPACE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    methods = ["tuneloop import", "tuneloop read", "pyarrow.json.read_json"]
    with tempfile.TemporaryDirectory(prefix="tuneloop-import-scale-") as tmp:
        path = Path(tmp) / "records.jsonl"
        write_file(path, args.records)
        size_mb = path.stat().st_size / 1024 / 1024
        print(f"{args.records:,} records, {size_mb:.1f} MB of JSONL; medians of {args.repeat} runs, each in its own "
              f"process")
        runs = {method: [] for method in methods}
        for i in range(args.repeat):
            for method in methods:
                runs[method].append(measure(method, path, Path(tmp) / f"ws-{method.split()[-1]}-{i}"))
        floor = statistics.median(r["seconds"] for r in runs[methods[-1]])
        print(f"{'method':<24} {'seconds':>8} {'records/s':>11} {'peak RSS MB':>12} {'x pyarrow':>10}")
        for method in methods:
            assert all(r["records"] == args.records for r in runs[method]), runs[method]
            seconds = statistics.median(r["seconds"] for r in runs[method])
            peak = statistics.median(r["peak_mb"] for r in runs[method])
            print(f"{method:<24} {seconds:>8.2f} {args.records / seconds:>11,.0f} {peak:>12,.0f} "
                  f"{seconds / floor:>10.2f}")
            print(f"{'':<24} runs: " + ", ".join(f"{r['seconds']:.2f} s" for r in runs[method]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
