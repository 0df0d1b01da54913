"""``python -m curation``: import files and work with dataset versions from the command line.

Each command does what the Data tab does; errors print the line-numbered message and exit 1.
"""
from __future__ import annotations

import argparse
import json
import sys

from core.errors import TuneloopError
from core.workspace import Workspace
from curation.data import versions as V
from curation.data.export import EXPORT_FORMATS
from curation.data.formats import FORMATS, parse_column_map


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m curation", description="Tuneloop curation: datasets and versions.")
    p.add_argument("--workspace", help="workspace folder (default $TUNELOOP_WORKSPACE or ./workspace)")
    sub = p.add_subparsers(dest="command", required=True)

    imp = sub.add_parser("import", help="import a file or HF dataset folder as a new version")
    imp.add_argument("file")
    imp.add_argument("--format", choices=FORMATS, help="force the schema instead of detecting it (openai is "
                                                       "messages; preference makes a preference version)")
    imp.add_argument("--columns", help="column mapping for any file type, field=column: e.g. "
                                       "prompt=instruction,input=context,completion=response,id=ticket (fields: "
                                       "id, system, prompt, input, completion, messages, chosen, rejected)")
    imp.add_argument("--skip-bad", action="store_true",
                     help="import the good records and list every bad one (line and reason), stored with the "
                          "version; without it one bad record refuses the whole file")
    imp.add_argument("--max-mb", type=float, help="refuse files larger than this (default 500)")
    imp.add_argument("--append", action="store_true", help="add to the current version instead of starting anew")
    imp.add_argument("--note", default="", help="a note stored with the version")
    imp.add_argument("--no-index", action="store_true",
                     help="do not build the search index of a big version (20,000 records or more) before "
                          "returning; its first search builds it, or `python -m curation index vN`")

    ix = sub.add_parser("index", help="build a version's search index (what browsing, search and review read), "
                                      "or say that it is built",
                        description="Builds the index with a progress bar when the version has none (or one "
                                    "built by an older Tuneloop); Ctrl-C stops it and leaves no partial file.")
    ix.add_argument("version")

    sub.add_parser("versions", help="list versions with their lineage; * marks the current one")

    show = sub.add_parser("show", help="show a version's details and records")
    show.add_argument("version")
    show.add_argument("--search", default="", help="only records containing these words")
    show.add_argument("--limit", type=int, default=5, help="records to print (default 5)")
    show.add_argument("--offset", type=int, default=0)

    diff = sub.add_parser("diff", help="records added, removed and changed from version A to B")
    diff.add_argument("a")
    diff.add_argument("b")
    diff.add_argument("--examples", type=int, default=3)

    exp = sub.add_parser("export", help="write a version to a file, or a split version to one file per split",
                         description="A split version is written as train, validation and test files in the folder "
                                     "OUT (or the archive OUT.zip / OUT.tar.gz); hf writes a DatasetDict folder.")
    exp.add_argument("version")
    exp.add_argument("out", help="a file (a version without splits), a folder, or a .zip / .tar.gz")
    exp.add_argument("--format", choices=EXPORT_FORMATS, default="jsonl")
    exp.add_argument("--single-file", action="store_true",
                     help="write a split version as one file anyway: the test set is mixed in with the training "
                          "data (each record's meta.split still says which is which)")

    rb = sub.add_parser("rollback", help="make an older version the current one")
    rb.add_argument("version")

    demo = sub.add_parser("demo", help="import the built-in demo dataset (600 support conversations)")
    demo.add_argument("--n", type=int, default=600)

    lf = sub.add_parser("label-field", help="show or choose the meta field that is a version's label (what splits "
                                           "stratify by, review suggests and results are broken down by)")
    lf.add_argument("version")
    lf.add_argument("field", nargs="?", help="the meta field to use, e.g. category; left out: show the label field "
                                             "and the fields to choose from")

    labels = sub.add_parser("labels", help="export a version's labels, or import labels made elsewhere")
    lsub = labels.add_subparsers(dest="labels_command", required=True)
    lexp = lsub.add_parser("export", help="write id, labels and review status per record as JSONL")
    lexp.add_argument("version")
    lexp.add_argument("out")
    limp = lsub.add_parser("import", help='merge {"id", "labels": {...}} lines into the review, by record id')
    limp.add_argument("file")
    limp.add_argument("--version", help="the version under review (default: the current one)")
    limp.add_argument("--reviewer", default="import", help="whose labels these are (default 'import')")
    limp.add_argument("--overwrite", action="store_true", help="on a conflict, the file's value wins")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        ws = Workspace.open(args.workspace)
        return COMMANDS[args.command](ws, args)
    except TuneloopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _import(ws, args) -> int:
    from curation.data.imports import import_file, skipped_lines
    from curation.data.sources import percent_bar
    current = V.current_version(ws)
    newest = max((v.id for v in V.list_versions(ws)), default=0)
    try:
        with percent_bar("import") as progress:
            version, result = import_file(ws, args.file, format=args.format,
                                          column_map=parse_column_map(args.columns), max_mb=args.max_mb,
                                          append=args.append, note=args.note, progress=progress,
                                          skip_bad=args.skip_bad)
    except KeyboardInterrupt:
        return _import_interrupted(ws, newest)
    for warning in result.warnings:
        print(f"warning: {result.source}: {warning}", file=sys.stderr)
    for line in skipped_lines(result.skipped):
        print(f"skipped: {result.source}: {line}")
    skipped = f", skipped {len(result.skipped)} bad" if result.skipped else ""
    if version.kind == "preference":
        print(f"imported {version.num_records} preference pairs ({result.format}{skipped}) as {version.name}; "
              f"name it in a DPO run's preferences (it does not become the current version)")
    else:
        print(f"imported {version.num_records} records ({result.format}{skipped}) as {version.name}"
              + (f" (was {current.name})" if current else ""))
    if version.num_records >= V.BACKGROUND_INDEX_FROM:
        from curation.data.index import cancel_build
        if args.no_index:
            cancel_build(ws, version.id)
            print(f"search index of {version.name} not built (--no-index): its first search builds it, or "
                  f"`python -m curation index {version.name}`")
        else:
            return _wait_for_index(ws, version)
    return 0


def _import_interrupted(ws, newest: int) -> int:
    """Ctrl-C during an import: what it made (a version is made whole or not at all), and no index build left."""
    from curation.data.index import cancel_build
    made = [v for v in V.list_versions(ws) if v.id > newest]
    for v in made:
        cancel_build(ws, v.id)
    if made:
        print(f"stopped: {made[-1].name} was imported ({made[-1].num_records:,} records) but its search index was "
              f"not built (no file left); its first search builds it, or `python -m curation index "
              f"{made[-1].name}`", file=sys.stderr)
    else:
        print("stopped: nothing was imported", file=sys.stderr)
    return 130


def _wait_for_index(ws, version) -> int:
    """Follow the background build that making ``version`` started (or start one) with a progress bar until the
    index is in place; Ctrl-C stops it, leaving no partial file."""
    import time

    from curation.data.index import build_in_background, cancel_build, index_path
    from curation.data.sources import percent_bar
    build = build_in_background(ws, version.id)
    if build is not None:
        try:
            with percent_bar("search index") as progress:
                while build.running:
                    progress(build.fraction, f"indexing {version.name}")
                    time.sleep(0.2)
                if not build.error:
                    progress(1.0, f"indexed {version.name}")
        except KeyboardInterrupt:
            cancel_build(ws, version.id)
            print(f"stopped: the search index of {version.name} was not built (no file left); its first search "
                  f"builds it, or `python -m curation index {version.name}`", file=sys.stderr)
            return 130
        if build.error:
            print(f"error: the search index of {version.name} was not built: {build.error}", file=sys.stderr)
            return 1
    print(f"search index of {version.name}: {_size(index_path(ws, version))}")
    return 0


def _index(ws, args) -> int:
    from curation.data.index import built_index, index_path, record_index
    from curation.data.sources import percent_bar
    v = V.get_version(ws, args.version)
    path = index_path(ws, v)
    if built_index(ws, v.id) is None:
        older = " anew (the one there was built by an older Tuneloop)" if path.exists() else ""
        try:
            with percent_bar("search index") as progress:
                record_index(ws, v.id, progress)
        except KeyboardInterrupt:
            print(f"stopped: the search index of {v.name} was not built (no file left)", file=sys.stderr)
            return 130
        print(f"built the search index of {v.name}{older}: {_size(path)}")
    else:
        print(f"the search index of {v.name} is built: {_size(path)}")
    index = record_index(ws, v.id)
    if index.count != v.num_records:
        print(f"error: the search index of {v.name} holds {index.count:,} records, the version "
              f"{v.num_records:,}; delete {path} and run this again", file=sys.stderr)
        return 1
    return 0


def _size(path) -> str:
    return f"{path.stat().st_size / 1e6:,.1f} MB ({path})"


def _versions(ws, args) -> int:
    current = V.current_version(ws)
    rows = V.list_versions(ws)
    if not rows:
        print("no versions yet; import a file first")
    for v in rows:
        mark = "*" if current and v.id == current.id else " "
        print(f"{mark} {v.describe()} · {v.created_at} · {v.content_hash[:12]}")
    return 0


def _show(ws, args) -> int:
    v = V.get_version(ws, args.version)
    print(v.describe())
    print(f"hash {v.content_hash}\ncreated {v.created_at}\nparams {json.dumps(v.params)}")
    print("lineage " + " ← ".join(x.name for x in V.lineage(ws, v.id)))
    from curation.data.imports import skipped_lines, skipped_records
    skipped = skipped_records(ws, v.id)
    if skipped:
        print(f"skipped at import: {len(skipped)} record(s)")
        for line in skipped_lines(skipped):
            print(f"  {line}")
    # The page asked for, through the version's search index when it has one, else streamed from the snapshot a
    # batch at a time (what the Data tab reads): the version's records are never all held.
    from curation.data.index import built_index, snapshot_search
    index = built_index(ws, v.id)
    start, limit = max(0, args.offset), max(0, args.limit)
    total, page = (index.search(args.search or "", start=start, limit=limit) if index is not None else
                   snapshot_search(ws, v.id, args.search or "", start=start, limit=limit))
    print(f"{total} records" + (f" match '{args.search}'" if args.search else ""))
    for r in page:
        print(json.dumps(r.to_dict(), ensure_ascii=False))
    return 0


def _diff(ws, args) -> int:
    d = V.diff_versions(ws, args.a, args.b)
    s = d.summary()
    print(f"v{d.a} → v{d.b}: {s['added']} added, {s['removed']} removed, {s['changed']} changed, "
          f"{s['unchanged']} unchanged")
    for r in d.added[:args.examples]:
        print(f"+ {r.id}: {_short(r.text())}")
    for r in d.removed[:args.examples]:
        print(f"- {r.id}: {_short(r.text())}")
    for old, new in d.changed[:args.examples]:
        print(f"~ {new.id}: {_short(old.text())}\n  → {_short(new.text())}")
    return 0


def _short(text: str, n: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n - 1] + "…"


def _export(ws, args) -> int:
    done = V.export_version(ws, args.version, args.out, args.format, single_file=args.single_file)
    print(f"exported {V.get_version(ws, args.version).name} as {args.format}: {done.describe()}")
    return 0


def _rollback(ws, args) -> int:
    v = V.set_current(ws, args.version)
    print(f"current version is now {v.name}")
    return 0


def _demo(ws, args) -> int:
    from curation.data.demo import load_demo
    v = load_demo(ws, n=args.n)
    print(f"imported the demo dataset as {v.name} ({v.num_records} records)")
    return 0


def _labels(ws, args) -> int:
    from curation.review.cli import labels_command
    return labels_command(ws, args)


def _label_field(ws, args) -> int:
    from curation.review.labels import label_field, meta_fields, schema_gap, set_label_field
    v = V.get_version(ws, args.version)
    if args.field:
        chosen = set_label_field(ws, v.id, args.field)
        print(f"the label field of {v.name} and the versions made from it is now {chosen.describe()}")
    else:
        print(f"label field of {v.name}: {label_field(ws, v.id) or 'none'}")
        for f in meta_fields(V.load_records(ws, v.id)):
            print(f"  {f.describe()}")
    gap = schema_gap(ws, v.id)
    if gap:
        print(f"note: {gap}", file=sys.stderr)
    return 0


COMMANDS = {"import": _import, "versions": _versions, "show": _show, "diff": _diff, "export": _export,
            "rollback": _rollback, "demo": _demo, "labels": _labels, "index": _index,
            "label-field": _label_field}
