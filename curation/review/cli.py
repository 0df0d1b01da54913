"""``python -m curation.review``: the Review tab's admin work, headless (schema, assign, progress,
agreement, settle, bulk, commit), and ``python -m curation labels export|import``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

from core.errors import TuneloopError
from core.workspace import Workspace
from curation.data import versions as V
from curation.review.labels import label_schema, parse_schema, save_schema
from curation.review.state import QueueFilter, STATUS_FILTERS
from curation.review.actions import BULK_ACTIONS, BulkAction, bulk_apply, bulk_preview
from curation.review.team import agreement, assign_reviewers, disagreements, reviewer_progress, settle
from curation.review.commit import commit_review, export_labels, import_labels


def labels_command(ws: Workspace, args) -> int:
    """``python -m curation labels export VERSION OUT`` / ``labels import FILE`` (see curation.cli)."""
    if args.labels_command == "export":
        n = export_labels(ws, args.version, args.out)
        print(f"wrote the labels of {n} records of {V.get_version(ws, args.version).name} to {args.out}")
        return 0
    result = import_labels(ws, args.file, version=args.version, reviewer=args.reviewer, overwrite=args.overwrite)
    for conflict in result.conflicts:
        print(f"conflict: {conflict}")
    if result.unknown_ids:
        shown = ", ".join(result.unknown_ids[:10]) + (" …" if len(result.unknown_ids) > 10 else "")
        print(f"warning: {len(result.unknown_ids)} ids are not in the version and were skipped: {shown}",
              file=sys.stderr)
    print(f"imported {result.applied} labels as {args.reviewer}; {result.unchanged} already so; "
          f"{len(result.conflicts)} conflicts" + (" (file applied)" if args.overwrite else " (kept as they were)"))
    return 0


def main(argv=None) -> int:
    """``python -m curation.review``: the Review tab's admin work, headless."""
    p = argparse.ArgumentParser(prog="python -m curation.review", description="Review, label, assign, commit.")
    p.add_argument("--workspace")
    p.add_argument("--version", help="the version under review (default: the current one)")
    sub = p.add_subparsers(dest="command", required=True)
    sch = sub.add_parser("schema", help="show the label schema, or set it from a JSON file")
    sch.add_argument("--set", metavar="FILE", help='{"fields": [...], "guidelines": "..."}')
    asg = sub.add_parser("assign", help="give each record to k reviewers")
    asg.add_argument("reviewers", nargs="+")
    asg.add_argument("--overlap", type=int, default=1)
    sub.add_parser("progress", help="each reviewer's progress")
    sub.add_parser("agreement", help="agreement per label field, and the disagreements to settle")
    st = sub.add_parser("settle", help="settle a disagreement: the value the dataset keeps")
    st.add_argument("record_id")
    st.add_argument("field")
    st.add_argument("value")
    st.add_argument("--by", default="admin")
    bulk = sub.add_parser("bulk", help="approve, reject or label every record matching a filter")
    bulk.add_argument("action", choices=BULK_ACTIONS)
    bulk.add_argument("--set", metavar="FIELD=VALUE", default="", help="for label: the value to set")
    bulk.add_argument("--by", required=True, help="the reviewer the action is credited to")
    bulk.add_argument("--search", default="")
    bulk.add_argument("--label", default="", help="only records with FIELD=VALUE")
    bulk.add_argument("--source", default="")
    bulk.add_argument("--status", default="any", choices=STATUS_FILTERS)
    bulk.add_argument("--yes", action="store_true", help="apply; without it, only say how many would change")
    com = sub.add_parser("commit", help="make the reviewed records a new version (rejected ones left out)")
    com.add_argument("--by")
    com.add_argument("--note", default="")
    args = p.parse_args(argv)
    try:
        ws = Workspace.open(args.workspace)
        version = args.version or V.require_current(ws).name
        return _COMMANDS[args.command](ws, version, args)
    except TuneloopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _cli_schema(ws, version, args) -> int:
    if args.set:
        schema = save_schema(ws, version, parse_schema(Path(args.set).read_text(encoding="utf-8")))
        print(f"saved the label schema of {version}'s dataset: {', '.join(schema.names)}")
    print(json.dumps(label_schema(ws, version).to_dict(), indent=2, ensure_ascii=False))
    return 0


def _cli_assign(ws, version, args) -> int:
    for who, n in assign_reviewers(ws, version, args.reviewers, args.overlap).items():
        print(f"{who}\t{n} records")
    return 0


def _cli_progress(ws, version, args) -> int:
    rows = reviewer_progress(ws, version)
    if not rows:
        print(f"nobody has reviewed {version} yet")
    for row in rows:
        print("\t".join(f"{k} {v}" if k != "reviewer" else str(v) for k, v in row.items()))
    return 0


def _cli_agreement(ws, version, args) -> int:
    for a in agreement(ws, version):
        alpha = "—" if a.alpha is None else f"{a.alpha:.3f}"
        percent = "—" if a.percent is None else f"{a.percent:.0%}"
        print(f"{a.field}\talpha {alpha}\tagree {percent}\trecords {a.records}\treviewers {a.reviewers}"
              + (f"\t({a.note})" if a.note else ""))
    for d in disagreements(ws, version):
        print(f"disagreement\t{d.record_id}\t{d.field}\t{d.describe()}")
    return 0


def _cli_settle(ws, version, args) -> int:
    value = args.value.split(",") if "," in args.value else args.value
    settle(ws, version, args.record_id, args.field, value, by=args.by)
    print(f"settled {args.record_id} {args.field} = {args.value}")
    return 0


def _cli_bulk(ws, version, args) -> int:
    name, _, value = args.set.partition("=")
    action = BulkAction(args.action, field=name.strip(), value=value.strip())
    filters = QueueFilter(status=args.status, label=args.label, source=args.source, search=args.search,
                          assigned_only=False)
    selected, changing = bulk_preview(ws, version, args.by, filters, action)
    if not args.yes:
        print(f"{action.describe()}: {selected} records selected, {changing} would change (add --yes to apply)")
        return 0
    print(f"{action.describe()}: changed {bulk_apply(ws, version, args.by, filters, action, expected=changing)} records")
    return 0


def _cli_commit(ws, version, args) -> int:
    v = commit_review(ws, version, by=args.by, note=args.note)
    print(f"committed the review of {version} as {v.describe()}")
    return 0


_COMMANDS: dict[str, Callable] = {"schema": _cli_schema, "assign": _cli_assign, "progress": _cli_progress,
                                  "agreement": _cli_agreement, "settle": _cli_settle, "bulk": _cli_bulk,
                                  "commit": _cli_commit}
