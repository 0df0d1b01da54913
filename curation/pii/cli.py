"""The PII commands: ``python -m curation.pii`` scrubs in one go, ``python -m curation.pii.review`` reviews first.

Both take their flags from ``PiiOptions`` (``--engine``, ``--public-figures``, ``--dates`` among them) and
say which engine ran. With a workspace version as INPUT the one-go command scans
it and applies every finding, as the PII tab's Scan then Apply do (the same functions); the review
command is the tab's review step by step::

    python -m curation.pii tickets.jsonl scrubbed.jsonl --operator mask
    python -m curation.pii current --workspace ws --options pii.yaml
    python -m curation.pii current --workspace ws --engine hf:dslim/bert-base-NER --public-figures scrub
    python -m curation.pii.review scan current --workspace ws --threshold 0.5
    python -m curation.pii.review list --workspace ws --entity PERSON --show
    python -m curation.pii.review reject t1 t7 --workspace ws
    python -m curation.pii.review keep Paypal --workspace ws
    python -m curation.pii.review edit t3 --message 1 --text "Call <PERSON> tomorrow" --workspace ws
    python -m curation.pii.review accept --all --workspace ws
    python -m curation.pii.review apply --workspace ws
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from core.errors import TuneloopError
from core.options import add_arguments, from_args
from curation.data.sources import add_source_arguments, check_output, open_workspace, read_source
from curation.pii.review import (DECISIONS, apply_scan, decide, edit_message, get_scan, keep_everywhere,
                                 latest_open_scan, load_settings, review_items, run_scan, save_settings, scan_findings)
from curation.pii.scrub import PiiOptions, Progress, engine_for, scrub_records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m curation.pii",
        description="Remove personal data from chat records, keeping order numbers, SKUs, versions and prices. "
                    "A version as INPUT makes the scrubbed version (its saved PII settings are the starting point).")
    add_source_arguments(parser, output="scrubbed records as messages JSONL (ids kept)")
    add_arguments(parser, PiiOptions)
    parser.add_argument("--report", help="write counts per type as JSON here")
    parser.add_argument("--salt", help="file INPUT: pseudonym salt, the same salt gives the same tokens across runs "
                                       "(a workspace keeps its own)")
    parser.add_argument("--format", help="force the input format (messages, alpaca, sharegpt, prompt_completion, csv)")
    parser.add_argument("--workers", type=int, help="processes to use (default: 2 or the number of cores)")
    parser.add_argument("--findings", help="write every finding as JSONL here: record id, message, offsets, type "
                                           "(never the text)")
    args = parser.parse_args(argv)

    from curation.data.formats import write_jsonl
    from curation.data.versions import load_records

    try:
        source = read_source(args.input, args.workspace, format=args.format)
        check_output(source, args.output)
        ws = source.workspace
        options = from_args(PiiOptions, args, base=load_settings(ws) if ws else None)
        started = time.perf_counter()
        with _engine_imports(options):
            engine = engine_for(options).engine_name
        made = None
        if ws is not None:
            save_settings(ws, options)
            scan = run_scan(ws, options, version=source.version.id, workers=args.workers,
                            progress=_tqdm_progress("scanning messages"))
            findings = scan_findings(ws, scan.id)
            made = apply_scan(ws, scan.id, branch=True)
            records = load_records(ws, made.id)
            counts = {k: v for k, v in scan.counts.items() if k != "records_with_pii"}
            changed = scan.counts["records_with_pii"]
        else:
            result = scrub_records(source.records, options, salt=args.salt, workers=args.workers,
                                   progress=_tqdm_progress("scanning messages"))
            records, findings, counts, changed = result.records, result.findings, result.counts, result.changed_records
        if args.output:
            write_jsonl(records, args.output)
        if args.findings:
            Path(args.findings).write_text("".join(json.dumps(asdict(f)) + "\n" for f in findings), encoding="utf-8")
        report = {"input": str(args.input), "output": str(args.output), "records": len(records),
                  "messages": sum(len(r.messages) for r in source.records), "changed_records": changed,
                  "counts": counts, "seconds": round(time.perf_counter() - started, 2),
                  "settings": options.to_dict(), "engine": engine, "version": made.name if made else None}
        if args.report:
            Path(args.report).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    except TuneloopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    found = ", ".join(f"{k} {v}" for k, v in counts.items()) or "nothing"
    where = " and ".join(([str(args.output)] if args.output else []) + ([made.describe()] if made else []))
    print(f"{len(records)} records, {changed} changed; found {found} → {where}")
    print(f"engine: {engine}")
    return 0


def review_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m curation.pii.review",
        description="Review PII findings before scrubbing, as the PII tab does: scan a version, list what would "
                    "change, accept / reject / edit per record, then apply as a new version.")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument("--workspace", metavar="DIR", help="the workspace (default: $TUNELOOP_WORKSPACE or ./workspace)")
        if name != "scan":
            sub.add_argument("--scan", type=int, metavar="N", help="the scan (default: the newest open scan of the "
                                                                    "current version)")
        return sub

    scan = command("scan", "scan a version with the saved PII settings (flags and --options change and save them)")
    scan.add_argument("version", nargs="?", default="current", help="the version to scan: v3, or current (default)")
    scan.add_argument("--workers", type=int, help="processes to use (default: 2 or the number of cores)")
    add_arguments(scan, PiiOptions)
    listing = command("list", "the records a scan would change, with their types and decisions")
    listing.add_argument("--entity", metavar="TYPE", help="only records with findings of this type")
    listing.add_argument("--decision", choices=("pending",) + DECISIONS, help="only records with this decision")
    listing.add_argument("--show", action="store_true", help="also print each changed message before and after, "
                                                             "and the evidence that made each finding")
    for name, what in (("accept", "scrub these records as proposed"), ("reject", "keep these records unchanged")):
        decision = command(name, what)
        decision.add_argument("ids", nargs="*", metavar="ID", help="record ids")
        decision.add_argument("--all", action="store_true", help=f"{name} every record the scan would change")
    edit = command("edit", "replace one changed message of a record with your own text")
    edit.add_argument("id", metavar="ID", help="the record id")
    edit.add_argument("--message", type=int, required=True, metavar="N", help="the message number (1 = the first)")
    edit.add_argument("--text", required=True, help="the message as it should read in the scrubbed version")
    keep = command("keep", "not personal data: drop every finding of exactly this text from the scan, in every "
                           "record, and add it to the allow list so later scans keep it too")
    keep.add_argument("text", help="the text as it appears in the messages (for example: Paypal)")
    keep.add_argument("--entity", metavar="TYPE", help="only its findings of this type (for example: PERSON)")
    applying = command("apply", "make the scrubbed version from the reviewed scan")
    applying.add_argument("--branch", action="store_true",
                          help="apply even though the current version has moved on since the scan")
    return parser


def review_main(argv: list[str] | None = None) -> int:
    args = review_parser().parse_args(argv)
    try:
        ws = open_workspace(args.workspace)
        if args.command == "scan":
            options = save_settings(ws, from_args(PiiOptions, args, base=load_settings(ws)))
            with _engine_imports(options):
                engine_for(options)
            scan = run_scan(ws, options, version=args.version, workers=args.workers,
                            progress=_tqdm_progress("scanning messages"))
            print(scan.describe())
            return 0
        scan_id = _scan_id(ws, args.scan)
        if args.command == "list":
            items = review_items(ws, scan_id, entity=args.entity, decision=args.decision)
            for item in items:
                print(f"{item.record_id}\t{', '.join(item.entities)}\t{item.decision}")
                for m in item.messages if args.show else ():
                    print(f"  message {m.index + 1} ({m.role})\n    before: {m.original}\n    after:  {m.proposed}")
                    for (start, end, entity, score), evidence in zip(m.spans, m.evidence):
                        print(f"    found:  {m.original[start:end]!r} {entity} {score} · {evidence}")
            print(f"{len(items)} record(s) in scan {scan_id}")
        elif args.command in ("accept", "reject"):
            if args.all == bool(args.ids):
                raise TuneloopError(f"give record ids to {args.command}, or --all (not both)")
            ids = [i.record_id for i in review_items(ws, scan_id)] if args.all else args.ids
            print(f"{args.command}: {decide(ws, scan_id, ids, args.command)} record(s) in scan {scan_id}")
        elif args.command == "keep":
            print(keep_everywhere(ws, scan_id, args.text, entity=args.entity).describe() + f" (scan {scan_id})")
        elif args.command == "edit":
            edit_message(ws, scan_id, args.id, args.message - 1, args.text)
            print(f"edited record {args.id}, message {args.message}, in scan {scan_id}")
        else:
            version = apply_scan(ws, scan_id, branch=args.branch)
            print(f"created {version.describe()}")
    except TuneloopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _scan_id(ws, given: int | None) -> int:
    if given is not None:
        return get_scan(ws, given).id
    scan = latest_open_scan(ws)
    if scan is None:
        raise TuneloopError("no open scan of the current version; run `python -m curation.pii.review scan` first")
    return scan.id


def _engine_imports(options: PiiOptions):
    """Where the engine is built: without torch for the embedded default, which never needs it; a bigger
    spaCy model or an hf: model may."""
    return _without_torch_imports() if options.engine == PiiOptions().engine else contextlib.nullcontext()


@contextlib.contextmanager
def _without_torch_imports():
    """presidio and thinc import torch and transformers whenever they are installed; the embedded engine
    uses neither, and in a fresh CLI process they cost seconds. Only for the single-threaded CLI."""
    blocked = [name for name in ("torch", "transformers") if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None
    try:
        yield
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def _tqdm_progress(label: str) -> Progress:
    from tqdm import tqdm

    tqdm.monitor_interval = 0       # no monitor thread: a single-threaded command may fork its scan workers
    bar: list = []

    def update(done: int, total: int) -> None:
        if not bar:
            bar.append(tqdm(total=total, desc=label, unit="msg", file=sys.stderr, leave=False))
        bar[0].n = done
        bar[0].refresh()
        if done >= total:
            bar[0].close()

    return update
