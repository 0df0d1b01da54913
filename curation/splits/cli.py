"""``python -m curation.splits``: build a leak-free train/val/test split of a file or a workspace version.

With a version as INPUT the split is saved as a new version (as the Splits tab's Build split does) and
is stratified by the version's label field unless ``--stratify`` says otherwise (``--stratify ''``: none);
with OUTDIR the splits are also written there, with ``leakage.json`` (audit before and after the fix,
moves, drops, counts, balance, the options). The flags come from ``SplitOptions``.

Example::

    python -m curation.splits current --workspace ws --stratify label --group customer_id
    python -m curation.splits tickets.jsonl out/ --val 0.1 --test 200 --fix drop --format jsonl,parquet
    python -m curation.splits v3 --workspace ws --options split.yaml
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.errors import TuneloopError
from core.options import add_arguments, from_args
from core.workspace import atomic_write
from curation.data.sources import add_source_arguments, check_output, percent_bar, read_source
from curation.splits.balance import balance_report
from curation.splits.build import SplitOptions, make_split, split_version, version_split_options
from curation.splits.export import SHAPES, export_split


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m curation.splits",
                                description="Split a dataset into train/val/test, audit leakage between the splits and "
                                            "fix it; a version as INPUT makes a new split version.")
    add_source_arguments(p, output="folder to write train/val/test and leakage.json into")
    add_arguments(p, SplitOptions)
    p.add_argument("--format", dest="formats", default="jsonl",
                   help="comma-separated: jsonl,csv,parquet,hf (HF DatasetDict folder); one file per split "
                        "(train, validation, test); default jsonl")
    p.add_argument("--shape", choices=SHAPES, default="messages",
                   help="row shape: messages (default; keeps ids and meta), prompt_completion, input_label")
    p.add_argument("--label-field", help="with --shape input_label: the meta field holding the label (default: the answer)")
    p.add_argument("--keep-splits", action="store_true",
                   help="INPUT already carries train/val/test (meta split): audit and fix it instead of splitting again")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        source = read_source(args.input, args.workspace)
        base = None if source.version is None else version_split_options(source.workspace, source.version.id)
        options = from_args(SplitOptions, args, base=base)
        check_output(source, args.output)
        with percent_bar("splitting") as progress:
            if source.version is not None:
                result, version = split_version(source.workspace, source.version.id, options,
                                                keep_splits=args.keep_splits, progress=progress)
            else:
                result, version = make_split(source.records, options, keep_splits=args.keep_splits,
                                             progress=progress), None
        written = []
        if args.output:
            outdir = Path(args.output)
            written = export_split(result.records, outdir,
                                   formats=[f.strip() for f in args.formats.split(",") if f.strip()],
                                   shape=args.shape, label_field=args.label_field)
            report = {**result.leakage, "moved": result.moved, "dropped": result.dropped, "counts": result.counts(),
                      "balance": balance_report(result.records, options.stratify).to_dict(),
                      "options": options.to_dict()}
            atomic_write(outdir / "leakage.json", json.dumps(report, indent=2, ensure_ascii=False).encode("utf-8"))
            written.append(outdir / "leakage.json")
    except TuneloopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = result.counts()
    if result.balance_warning():
        print(f"warning: {result.balance_warning()}", file=sys.stderr)
    print(f"train {counts['train']} · val {counts['val']} · test {counts['test']} · leaking pairs found "
          f"{counts['leaking pairs found']}, left {counts['leaking pairs left']} · moved {counts['moved']} · "
          f"dropped {counts['dropped']}")
    if version is not None:
        print(f"saved {version.describe()}")
    for path in written:
        print(f"wrote {path}")
    return 0
