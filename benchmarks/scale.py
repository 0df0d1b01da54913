"""Record storage at 10k, 100k and 1M records: each figure of the Data and Review tabs beside its floor, in one run.

The records are generated here: each pairs an instruction and a response drawn at random from
``benchmarks/data/dolly_slice.jsonl`` (databricks-dolly-15k, CC BY-SA 3.0; see benchmarks/data/README.md) with a
ticket number, a source and Dolly's category as the label, so every text is human-written and many records share
words. No part of Tuneloop reads that file. For each size the script writes a version (``SnapshotWriter``, what an
import writes) into a fresh workspace and measures, as medians over ``--repeat`` runs:

- **index build** (``curation.data.index``, once per version; its wall and CPU time, a median over ``--repeat``
  builds up to ``--compare-up-to`` records, else one) beside the floor of reading the snapshot with pyarrow, and
  up to ``--compare-up-to`` records beside the layout it had before (FORMAT 1: each record's text kept in the FTS5
  table and every trigram's positions, ``detail=full``), built here from the same rows by this script's own code;
- **Data tab, first page** before the index exists (the snapshot's first row group) and from the index, beside a
  plain SQLite query of 20 rows from a table holding the same records;
- **Data tab, search** (the tab's handler minus Gradio: ``RecordIndex.search`` for a count and the first page) for
  a rare word, a common one, a common word longer than a trigram and a one-letter one, beside the same FTS5
  query run bare on the index file; at sizes up to
  ``--scan-up-to`` also the full scan the tab ran before (load every record, ``search_records``);
- **Review, open** (the warm state built: the index opened, the review rows read, the first queue computed) and
  **approve + next** through the tab's own handler (``curation.ui.review.approve``: store the decision and labels,
  move the queue, show the next record), median and p95 over ``--approvals`` approvals (wall clock, and this
  process's CPU time, which a loaded machine disturbs less), beside a plain SQLite insert of the decision and a
  select of the next row;
- optionally (``--import-sizes``) **import** of the same records as JSONL (``import_file``) beside
  ``pyarrow.json.read_json``, in turns, each run in a fresh process: median time and the peak memory of each;
- the index file's size beside the snapshot's, and (up to ``--snapshot-scan-up-to``) a search while the index is
  still being built (``snapshot_search``, the snapshot read a batch at a time).

Run: ``python -m benchmarks.scale [--sizes 10000,100000,1000000] [--repeat 3] [--approvals 30]``
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DOLLY = ROOT / "benchmarks" / "data" / "dolly_slice.jsonl"
SOURCES = ["mail", "chat", "phone", "web"]
RARE, COMMON, COMMON_LONG, SHORT = "river", "the", "which", "x"


def dolly_texts() -> tuple[list[tuple[str, str]], list[str]]:
    rows = [json.loads(line) for line in DOLLY.read_text(encoding="utf-8").splitlines() if line.strip()]
    asks = [(r["instruction"], r.get("category") or "general") for r in rows if r.get("instruction")]
    answers = [r["response"] for r in rows if r.get("response")]
    return asks, answers


def generated_records(n: int, seed: int = 0):
    """``n`` records as dicts (id, messages, meta), the same for the same seed."""
    asks, answers = dolly_texts()
    rnd = random.Random(seed)
    for i in range(n):
        ask, category = asks[rnd.randrange(len(asks))]
        yield {"id": f"t{i:07d}",
               "messages": [{"role": "user", "content": f"{ask} (ticket T-{rnd.randrange(10**6):06d})"},
                            {"role": "assistant", "content": answers[rnd.randrange(len(answers))]}],
               "meta": {"label": category, "source": SOURCES[rnd.randrange(len(SOURCES))]}}


IMPORT_CHILD = """
from core.workspace import Workspace
from curation.data import versions as V
from curation.data.imports import import_file
import pyarrow.parquet                      # loaded before the clock starts, as the floor's reader is
V.BACKGROUND_INDEX_FROM = 10**12          # the import alone: no index built beside it
ws = Workspace.open(tempfile.mkdtemp(dir=folder))
start = time.perf_counter()
import_file(ws, src, max_mb=100_000)
"""
PYARROW_CHILD = """
from pyarrow import json as pajson
start = time.perf_counter()
pajson.read_json(src)
"""


def in_child(code: str, src: Path, folder: Path) -> tuple[float, float]:
    """(milliseconds, peak resident MB) of ``code`` run in a fresh Python process (imports not counted). The peak is
    the process's VmHWM: ru_maxrss would start from this process's size, which a forked child inherits."""
    script = ("import re, sys, tempfile, time\n"
              f"sys.path.insert(0, {str(ROOT)!r})\nsrc, folder = {str(src)!r}, {str(folder)!r}\n" + code +
              "peak = int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) / 1024\n"
              "print((time.perf_counter() - start) * 1000, peak)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    ms, mb = done.stdout.split()[-2:]
    return float(ms), float(mb)


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def plain_table(path: Path, rows) -> sqlite3.Connection:
    """The floor's database: the same records in one plain SQLite table (position, id, record JSON)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("pragma journal_mode=wal")       # the workspace database's settings
    db.execute("pragma synchronous=normal")
    db.execute("create table records (position integer primary key, id text, record text)")
    db.execute("create table decisions (record_id text primary key, status text)")
    db.execute("begin")
    db.executemany("insert into records values (?,?,?)", rows)
    db.execute("commit")
    return db


def format1_index(path: Path, snapshot: Path) -> tuple[float, float, float]:
    """(wall ms, CPU ms, MB) of the index layout used before FORMAT 2, made from ``snapshot``: a records table with
    each record's JSON and an FTS5 trigram table that keeps the text and every trigram's positions, merged once at
    the end (what that build did, written here so that the comparison does not run the code it measures)."""
    import pyarrow.parquet as pq
    path.unlink(missing_ok=True)
    start, start_cpu = time.perf_counter(), time.process_time()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("pragma journal_mode=off")
    db.execute("pragma synchronous=off")
    db.execute("pragma cache_size=-65536")
    db.execute("create table records (position integer primary key, id text, record text, source text)")
    db.execute("create virtual table hay using fts5(text, detail='full', tokenize='trigram case_sensitive 1')")
    db.execute("insert into hay (hay, rank) values ('automerge', 0)")
    db.execute("insert into hay (hay, rank) values ('crisismerge', 64)")
    db.execute("begin")
    position = 0
    for batch in pq.ParquetFile(snapshot).iter_batches(batch_size=5_000):
        ids, messages, metas = (batch.column(c).to_pylist() for c in ("id", "messages", "meta"))
        rows, texts = [], []
        for rid, m, meta in zip(ids, messages, metas):
            rows.append((position, rid, '{"id":' + json.dumps(rid) + ',"messages":' + m + ',"meta":' + meta + "}",
                         str(json.loads(meta).get("source", ""))))
            texts.append((position, (rid + "\n" + "\n".join(x["content"] for x in json.loads(m)) + "\n"
                                     + meta).lower()))
            position += 1
        db.executemany("insert into records values (?,?,?,?)", rows)
        db.executemany("insert into hay (rowid, text) values (?,?)", texts)
    db.execute("create unique index records_id on records (id)")
    db.execute("create index records_source on records (source)")
    db.execute("commit")
    db.execute("insert into hay (hay) values ('optimize')")
    db.close()
    out = ((time.perf_counter() - start) * 1000, (time.process_time() - start_cpu) * 1000, path.stat().st_size / 1e6)
    path.unlink()
    return out


def measure(n: int, repeat: int, approvals: int, scan_up_to: int, with_import: bool, import_only: bool = False,
            compare_up_to: int = 100_000, snapshot_scan_up_to: int = 100_000) -> list[tuple]:
    from core.workspace import Workspace
    from curation.data import versions as V
    from curation.data import index as I
    from curation.data.index import record_index, snapshot_page, snapshot_search
    from curation.data.records import Record
    import pyarrow.parquet as pq

    folder = Path(tempfile.mkdtemp(prefix=f"tuneloop-scale-{n}-"))
    ws = Workspace.open(folder / "ws")
    V.BACKGROUND_INDEX_FROM = n + 1    # the build below is timed on its own (a tab starts it in the background)
    out = []
    if with_import:
        src = folder / "records.jsonl"
        with src.open("w", encoding="utf-8") as fh:
            for d in generated_records(n):
                fh.write(json.dumps(d, ensure_ascii=False) + "\n")
        ours, floor = [], []
        for _ in range(repeat):      # in turns, each in a fresh process, so that both meet the same load and peak
            ours.append(in_child(IMPORT_CHILD, src, folder))
            floor.append(in_child(PYARROW_CHILD, src, folder))
        out.append(("import JSONL (import_file)", statistics.median(t for t, _ in ours),
                    statistics.median(t for t, _ in floor), "pyarrow.json.read_json"))
        out.append(("  import: peak memory of its process (MB)", max(m for _, m in ours), max(m for _, m in floor),
                    "(the reader's peak)"))
        if import_only:
            shutil.rmtree(folder, ignore_errors=True)
            return out
    start = time.perf_counter()
    writer = V.SnapshotWriter(ws)
    for d in generated_records(n):
        writer.add(Record.from_dict(d))
    version = V.create_version(ws, writer, parent=None, step="import")
    out.append(("write the version (generate + SnapshotWriter)", (time.perf_counter() - start) * 1000, None, ""))
    snapshot = ws.path(version.path)

    cold_page = median_ms(lambda: snapshot_page(ws, version.id, 0, 20), repeat)
    read_floor = median_ms(lambda: pq.read_table(snapshot), repeat)
    walls, cpus = [], []
    for _ in range(repeat if n <= compare_up_to else 1):
        I.index_path(ws, version).unlink(missing_ok=True)
        I._open.clear()
        start, start_cpu = time.perf_counter(), time.process_time()
        index = record_index(ws, version.id)
        walls.append((time.perf_counter() - start) * 1000)
        cpus.append((time.process_time() - start_cpu) * 1000)
    out.append(("index build (once per version)", statistics.median(walls), read_floor, "pyarrow read of the snapshot"))
    out.append(("  index build, CPU of this process", statistics.median(cpus), None, ""))
    out.append(("  index file (MB)", index.path.stat().st_size / 1e6, snapshot.stat().st_size / 1e6,
                "(the snapshot's size)"))
    if n <= compare_up_to:
        before = [format1_index(folder / "format1.sqlite", snapshot) for _ in range(repeat)]
        out.append(("  the layout before (FORMAT 1): build wall", statistics.median(b[0] for b in before), None, ""))
        out.append(("  the layout before (FORMAT 1): build CPU", statistics.median(b[1] for b in before), None, ""))
        out.append(("  the layout before (FORMAT 1): file (MB)", before[0][2], None, ""))
    db = plain_table(folder / "plain.sqlite", ((i, r["id"], json.dumps(r)) for i, r in enumerate(generated_records(n))))
    page_floor = median_ms(lambda: db.execute("select record from records where position >= ? order by position"
                                              " limit 20", (n // 2,)).fetchall(), repeat)
    out.append(("Data: first page, no index yet (snapshot)", cold_page, page_floor, "SQLite: 20 rows of a table"))
    out.append(("Data: a middle page (index)", median_ms(lambda: index.search("", start=n // 2, limit=20), repeat),
                page_floor, "SQLite: 20 rows of a table"))
    raw = sqlite3.connect(f"file:{index.path}?mode=ro", uri=True)
    for word in (RARE, COMMON, COMMON_LONG, SHORT):
        match = index._match([word])

        def bare(match=match):
            raw.execute("select count(*) from hay where hay match ?", (match,)).fetchone()
            raw.execute("select rowid from hay where hay match ? order by rowid limit 20", (match,)).fetchall()
        total = index.search(word)[0]
        out.append((f"Data: search '{word}' ({total:,} found)", median_ms(lambda: index.search(word), repeat),
                    median_ms(bare, repeat), "the same FTS5 query, bare"))
        if n <= snapshot_scan_up_to and word in (RARE, COMMON):
            out.append((f"  while the index builds: snapshot scan for '{word}'",
                        median_ms(lambda: snapshot_search(ws, version.id, word), 1), None, ""))
        if n <= scan_up_to and word in (RARE, COMMON):
            V.load_records(ws, version.id)
            out.append((f"  before: full scan for '{word}'",
                        median_ms(lambda: V.search_records(V.load_records(ws, version.id), word)[:20], repeat),
                        None, ""))
    out += review_figures(ws, version, db, approvals)
    shutil.rmtree(folder, ignore_errors=True)
    return out


def review_figures(ws, version, db, approvals: int) -> list[tuple]:
    import gradio as gr
    from curation.ui import review
    from curation.review.labels import label_schema

    with gr.Blocks():
        with gr.Tabs():
            w = review.build(ws)
    values = {c: getattr(c, "value", None) for c in [*vars(w).values(), *w.slots]
              if isinstance(c, gr.components.Component)}
    start = time.perf_counter()
    shown = review.open_review(ws, w, {**values, w.name: "bench", w.version: version.name}, None)
    opened = (time.perf_counter() - start) * 1000
    option = label_schema(ws, version.id).fields[0]
    label = option.options[0] if option.options else "x"
    slot = 0 if option.kind == "single" else 2
    times, cpu = [], []
    rid = shown[w.cur_rid]
    for _ in range(approvals):
        data = {**values, w.name: "bench", w.version: version.name, w.cur_rid: rid,
                w.msg_pick: shown[w.msg_pick]["value"], w.msg_edit: shown[w.msg_edit], w.slots[slot]: label}
        start, start_cpu = time.perf_counter(), time.process_time()
        shown = review.approve(ws, w, data, None)
        times.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
        if w.cur_rid not in shown or f"**{rid}** approved" not in shown[w.action_msg]:
            raise SystemExit(f"approving {rid} failed: {shown.get(w.action_msg)}")
        rid = shown[w.cur_rid]

    def plain_approve(i=[0]):
        i[0] += 1
        db.execute("begin")
        db.execute("insert or replace into decisions values (?, 'approved')", (f"t{i[0]:07d}",))
        db.execute("commit")
        db.execute("select record from records where position > ? order by position limit 1", (i[0],)).fetchone()

    floor = [median_ms(plain_approve, 1) for _ in range(approvals)]
    return [("Review: open (warm state built, first queue)", opened, None, ""),
            (f"Review: approve + next, median of {approvals}", statistics.median(times), statistics.median(floor),
             "SQLite: insert a decision, select the next row"),
            (f"Review: approve + next, p95 of {approvals}", p95(times), p95(floor), ""),
            ("Review: approve + next, CPU median / p95", statistics.median(cpu), p95(cpu),
             "(the p95 in the floor column)")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--approvals", type=int, default=30)
    p.add_argument("--scan-up-to", type=int, default=100_000, help="measure the old full scan up to this size")
    p.add_argument("--snapshot-scan-up-to", type=int, default=100_000,
                   help="measure a search while the index is built (the snapshot read) up to this size")
    p.add_argument("--compare-up-to", type=int, default=100_000,
                   help="build the index --repeat times, and the layout before beside it, up to this size")
    p.add_argument("--import-sizes", default="", help="sizes at which to measure import_file too (comma-separated)")
    p.add_argument("--import-only", action="store_true", help="measure only the import (at --import-sizes)")
    args = p.parse_args(argv)
    imports = {int(s) for s in args.import_sizes.split(",") if s.strip()}
    print(f"{'records':>9}  {'what':<48} {'Tuneloop (ms)':>14} {'floor (ms)':>11}  floor")
    for n in (int(s) for s in args.sizes.split(",")):
        for what, ms, floor, floor_name in measure(n, args.repeat, args.approvals, args.scan_up_to, n in imports,
                                                 args.import_only, args.compare_up_to, args.snapshot_scan_up_to):
            shown = f"{floor:>11.1f}" if floor is not None else f"{'':>11}"
            print(f"{n:>9,}  {what:<48} {ms:>14.1f} {shown}  {floor_name}", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of the run: {peak:,.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
