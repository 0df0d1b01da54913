"""Duplicate removal: exact duplicates (after normalising case, whitespace and punctuation) and near
duplicates (MinHash + LSH candidates, every pair verified; ``curation.dedup.near_duplicates``).

Records are grouped into clusters, each with one keeper chosen by a policy (first seen, longest,
most recent, best quality score). Every member of a near-duplicate cluster was verified against the
keeper itself, so chains (A like B, B like C) never glue unrelated records together. What a record
"says" can be the whole conversation (user and assistant turns; system prompts are instructions
shared across a dataset, not content), the user turns only, or the assistant turns only.

Example::

    result = find_duplicates(records, DedupOptions(threshold=0.55, keep="longest"))
    result.summary(); kept = result.kept_records(records, overrides={"r17": "keep"})
    version = apply_dedup(ws, result, overrides={"r17": "keep"})          # a new dataset version

CLI: ``python -m curation.dedup INPUT [OUTPUT] [--workspace DIR] [--threshold J] [--ngram N] [--num-perm P]
[--text conversation|user|assistant] [--keep first|longest|recent|quality] [--options FILE]
[--clusters clusters.jsonl]``; INPUT is a file or a version (v3, current) of the workspace, which then gets
the deduplicated version, as the Dedup tab's Apply makes it.
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
from collections import Counter
from collections.abc import Sequence as SequenceABC
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from core.errors import TuneloopError
from core.options import Options, add_arguments, from_args, option
from core.workspace import Workspace, atomic_write
from curation.dedup.near_duplicates import near_duplicate_clusters
from curation.dedup.shingles import DEFAULT_NGRAM, DEFAULT_THRESHOLD, normalise_text
from curation.dedup.signatures import DEFAULT_NUM_PERM
from curation.dedup.verify import join_turns
from curation.data.records import Record
from curation.data.sources import add_source_arguments, check_output, percent_bar, read_source
from curation.data.versions import Version, chat_records, create_version, get_version, load_records, require_current

Progress = Callable[[float, str], None]
TEXT_MODES = {"conversation": ("user", "assistant"), "user": ("user",), "assistant": ("assistant",)}
KEEP_POLICIES = ("first", "longest", "recent", "quality")
# A text's 64-bit hash for telling exact duplicates apart (equal hashes are then compared as strings).
_text_hash = hash
# Fields that date a record, in the order they are trusted, for the "recent" keeper policy.
DATE_FIELDS = ("updated_at", "created_at", "timestamp", "date", "time")


@dataclass
class DedupOptions(Options):
    """How duplicates are found and which one is kept: the Dedup tab's form, the CLI's flags, a version's params."""
    what = "dedup options"
    threshold: float = option(DEFAULT_THRESHOLD, "near-duplicate similarity (verified Jaccard of character shingles); "
                              f"{DEFAULT_THRESHOLD} suits lightly edited chat records", min=0.0, max=1.0,
                              label="Similarity threshold")
    ngram: int = option(DEFAULT_NGRAM, "shingle length in characters", min=1, max=50,
                        label="Shingle length (characters)")
    num_perm: int = option(DEFAULT_NUM_PERM, "MinHash permutations (more: fewer missed candidates, slower)",
                           min=16, max=1024, label="MinHash permutations")
    text: str = option("conversation", "what to compare: the whole conversation (user and assistant turns), "
                       "the user turns or the assistant turns", choices=tuple(TEXT_MODES), label="Compare")
    keep: str = option("first", "which record of a cluster to keep: first seen, longest, most recent, best quality",
                       choices=KEEP_POLICIES, label="Keep in each cluster")

    def more_problems(self) -> list[str]:
        return ["threshold: must be above 0 (at 0 every pair of records is a near duplicate)"] if self.threshold <= 0 else []


@dataclass
class Member:
    id: str
    similarity: float   # to the keeper; 1.0 for the keeper and its exact copies
    exact: bool         # same text as the keeper after normalising


@dataclass
class DuplicateCluster:
    keeper: str
    kind: str                 # "exact" when every member is an exact copy of the keeper, else "near"
    members: list[Member]     # the keeper first

    @property
    def size(self) -> int:
        return len(self.members)

    def to_dict(self) -> dict[str, Any]:
        return {"keeper": self.keeper, "kind": self.kind, "members": [asdict(m) for m in self.members]}


@dataclass
class DedupResult:
    options: DedupOptions
    total: int
    clusters: list[DuplicateCluster] = field(default_factory=list)
    version_id: int | None = None   # the version the records came from, when run on a workspace

    def drop_ids(self, overrides: dict[str, str] | None = None) -> set[str]:
        """Ids to remove: every non-keeper, unless overridden ("keep" / "drop" per id, any record)."""
        overrides = overrides or {}
        drop = {rid for rid, choice in overrides.items() if choice == "drop"}
        for cluster in self.clusters:
            for member in cluster.members:
                default = "keep" if member.id == cluster.keeper else "drop"
                if overrides.get(member.id, default) == "drop":
                    drop.add(member.id)
        return drop

    def kept_records(self, records: Sequence[Record], overrides: dict[str, str] | None = None) -> list[Record]:
        drop = self.drop_ids(overrides)
        return [r for r in records if r.id not in drop]

    def cluster_of(self, record_id: str) -> DuplicateCluster | None:
        return next((c for c in self.clusters if any(m.id == record_id for m in c.members)), None)

    def counts(self, overrides: dict[str, str] | None = None) -> dict[str, int]:
        drop = self.drop_ids(overrides)
        exact_dropped = sum(1 for c in self.clusters for m in c.members if m.exact and m.id in drop)
        return {"records": self.total,
                "exact_duplicates": sum(1 for c in self.clusters for m in c.members[1:] if m.exact),
                "near_duplicate_clusters": sum(1 for c in self.clusters if c.kind == "near"),
                "exact_clusters": sum(1 for c in self.clusters if c.kind == "exact"),
                "to_drop": len(drop), "exact_dropped": exact_dropped, "near_dropped": len(drop) - exact_dropped,
                "overrides": len(overrides or {})}

    def size_histogram(self) -> dict[int, int]:
        """Cluster size → number of clusters of that size."""
        return dict(sorted(Counter(c.size for c in self.clusters).items()))


def record_text(record: Record, mode: str = "conversation") -> str:
    """What a record says, for comparing: the chosen turns, kept apart for turn-by-turn verification."""
    roles = TEXT_MODES[mode]
    return join_turns([m["content"] for m in record.messages if m["role"] in roles])


def keeper_priority(records: Sequence[Record], texts: Sequence[str], policy: str) -> list[tuple]:
    """A sort key per record: the lowest key in a cluster is its keeper (ties: first seen)."""
    if policy == "first":
        return [(i,) for i in range(len(records))]
    if policy == "longest":
        return [(-len(t), i) for i, t in enumerate(texts)]
    if policy == "recent":
        def date(r: Record) -> str:
            return next((str(r.meta[f]) for f in DATE_FIELDS if r.meta.get(f) not in (None, "")), "")
        # Newest date first; records without one come after dated ones, later in the file first.
        return [(0, _descending(date(r)), -i) if date(r) else (1, "", -i) for i, r in enumerate(records)]
    from curation.dedup.filters import quality_score
    return [(-quality_score(r), i) for i, r in enumerate(records)]


def _descending(text: str) -> str:
    return "".join(chr(0x10FFFF - ord(c)) for c in text)


class Cancelled(TuneloopError):
    """The user stopped the run; nothing was changed."""


def find_duplicates(records: Sequence[Record], options: DedupOptions | None = None, *,
                    progress: Progress | None = None, cancel: Callable[[], bool] | None = None) -> DedupResult:
    """Exact and near-duplicate clusters of ``records`` (only clusters with two or more members).

    ``progress(fraction, text)`` is called as work advances; when ``cancel()`` turns true the run
    stops at the next batch with ``Cancelled``.
    """
    options = (options or DedupOptions()).validate()
    # The run allocates millions of small objects that all live to its end: collecting them is wasted time.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _find_duplicates(records, options, progress, cancel)
    finally:
        if collecting:
            gc.enable()


def _find_duplicates(records: Sequence[Record], options: DedupOptions, progress: Progress | None,
                     cancel: Callable[[], bool] | None) -> DedupResult:
    def say(fraction: float, text: str) -> None:
        if cancel is not None and cancel():
            raise Cancelled("duplicate search cancelled; nothing was changed")
        if progress is not None:
            progress(fraction, text)
    say(0.0, "reading texts")
    # Only the normalised texts are held (a million short records: ~200 MB); the raw texts, which verification
    # reads for the few records in a candidate pair, are made again from the records when asked for.
    normalised = [normalise_text(record_text(r, options.text)) for r in records]
    rank = keeper_rank(records, normalised, options.keep)
    representatives, copies = _exact_groups(normalised, rank)
    say(0.05, "exact duplicates grouped")
    near = near_duplicate_clusters(
        RecordTexts(records, options.text, representatives), options.threshold, num_perm=options.num_perm,
        ngram=options.ngram, priority=rank[representatives], normalised=[normalised[i] for i in representatives],
        progress=lambda f, text: say(0.05 + 0.9 * f, text))
    del normalised
    found: list[tuple[int, DuplicateCluster]] = []
    in_near = set()
    for cluster in near:
        keeper = int(representatives[cluster.keeper])
        members = []
        for local, sim in zip(cluster.members, cluster.similarities):
            rep = int(representatives[local])
            in_near.add(rep)
            members.append(Member(records[rep].id, sim, exact=rep == keeper))
            members += [Member(records[c].id, sim, exact=rep == keeper) for c in copies.get(rep, ())]
        found.append((keeper, DuplicateCluster(keeper=records[keeper].id, kind="near", members=members)))
    for rep, rest in copies.items():
        if rep not in in_near:
            found.append((rep, DuplicateCluster(
                keeper=records[rep].id, kind="exact",
                members=[Member(records[i].id, 1.0, exact=True) for i in [rep, *rest]])))
    found.sort(key=lambda kc: (-kc[1].size, kc[0]))
    clusters = [c for _, c in found]
    say(1.0, f"{len(clusters)} duplicate clusters")
    return DedupResult(options=options, total=len(records), clusters=clusters)


class RecordTexts(SequenceABC):
    """``record_text`` of the chosen records, made when asked for rather than held: verification reads the raw
    text of only the records in candidate pairs."""

    def __init__(self, records: Sequence[Record], mode: str, chosen: np.ndarray):
        self.records, self.mode, self.chosen = records, mode, chosen

    def __len__(self) -> int:
        return len(self.chosen)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        return record_text(self.records[int(self.chosen[i])], self.mode)


def keeper_rank(records: Sequence[Record], normalised: Sequence[str], policy: str) -> np.ndarray:
    """Each record's place in the keeper order (0 first; ``keeper_priority`` sorted), as an int64 array."""
    n = len(records)
    if policy == "first":
        return np.arange(n, dtype=np.int64)
    if policy == "longest":
        order = np.lexsort((np.arange(n), -np.fromiter(map(len, normalised), np.int64, n)))
    else:
        priority = keeper_priority(records, normalised, policy)
        order = np.array(sorted(range(n), key=priority.__getitem__), np.int64)
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n, dtype=np.int64)
    return rank


def _exact_groups(normalised: Sequence[str], rank: np.ndarray) -> tuple[np.ndarray, dict[int, list[int]]]:
    """Records with the same normalised text (empty texts are nobody's duplicate): the first of each text in
    keeper order (the representatives, in keeper order), and for each text held more than once its
    representative's copies, in keeper order.

    Texts are told apart by a 64-bit hash first (arrays, not a dict of a million strings); only records whose
    hash another record shares are compared as strings, so a hash collision never merges two texts.
    """
    n = len(normalised)
    hashes = np.fromiter(map(_text_hash, normalised), np.int64, n)
    nonempty = np.flatnonzero(np.fromiter(map(bool, normalised), bool, n))
    by_hash = nonempty[np.lexsort((rank[nonempty], hashes[nonempty]))]
    sorted_hashes = hashes[by_hash]
    shared = np.zeros(by_hash.size, bool)
    if by_hash.size > 1:
        same = sorted_hashes[1:] == sorted_hashes[:-1]
        shared[1:] |= same
        shared[:-1] |= same
    single = by_hash[~shared]
    groups: dict[str, list[int]] = {}
    for i in by_hash[shared].tolist():        # in hash order, then keeper order within a hash
        groups.setdefault(normalised[i], []).append(i)
    copies = {members[0]: members[1:] for members in groups.values() if len(members) > 1}
    firsts = np.concatenate([single, np.array([m[0] for m in groups.values()], np.int64)])
    return firsts[np.argsort(rank[firsts], kind="stable")], copies


def find_duplicates_in_version(ws: Workspace, version: int | str | None = None, options: DedupOptions | None = None,
                               *, progress: Progress | None = None,
                               cancel: Callable[[], bool] | None = None) -> DedupResult:
    """``find_duplicates`` on a dataset version (default: the current one)."""
    v = get_version(ws, version) if version is not None else require_current(ws)
    result = find_duplicates(chat_records(ws, v.id, step="dedup"), options, progress=progress, cancel=cancel)
    result.version_id = v.id
    return result


def apply_dedup(ws: Workspace, result: DedupResult, overrides: dict[str, str] | None = None, *,
                created_by: str | None = None, note: str = "") -> Version:
    """Make a new version without the dropped records; its counts say what was removed and why."""
    if result.version_id is None:
        raise TuneloopError("these duplicates were not found in a workspace version; run them on a version first")
    records = load_records(ws, result.version_id)
    unknown = sorted(set(overrides or {}) - {r.id for r in records})
    if unknown:
        raise TuneloopError(f"override for unknown record id(s): {', '.join(unknown[:5])}")
    bad = sorted({v for v in (overrides or {}).values()} - {"keep", "drop"})
    if bad:
        raise TuneloopError(f"an override must be 'keep' or 'drop', not {bad[0]!r}")
    kept = result.kept_records(records, overrides)
    counts = result.counts(overrides)
    counts = {"removed": counts["to_drop"], "exact_removed": counts["exact_dropped"],
              "near_removed": counts["near_dropped"], "clusters": len(result.clusters),
              "overrides": counts["overrides"]}
    return create_version(ws, kept, parent=result.version_id, step="dedup",
                          params={**result.options.to_dict(), "overrides": dict(overrides or {})},
                          counts=counts, created_by=created_by, note=note)


def write_clusters(result: DedupResult, path: str | Path, overrides: dict[str, str] | None = None) -> Path:
    """The clusters as JSONL: keeper, kind, and each member's similarity to the keeper and fate."""
    drop = result.drop_ids(overrides)
    lines = []
    for cluster in result.clusters:
        row = cluster.to_dict()
        for member in row["members"]:
            member["keep"] = member["id"] not in drop
        lines.append(json.dumps(row, ensure_ascii=False))
    target = Path(path)
    atomic_write(target, ("\n".join(lines) + ("\n" if lines else "")).encode("utf-8"))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m curation.dedup",
        description="Remove exact and near-duplicate records: one record per cluster plus every record without "
                    "duplicates is kept (ids kept); a version as INPUT makes the deduplicated version.")
    add_source_arguments(parser, output="JSONL file to write the kept records to")
    add_arguments(parser, DedupOptions)
    parser.add_argument("--clusters", help="also write the clusters (members, keeper, similarities) as JSONL")
    args = parser.parse_args(argv)
    from curation.data.formats import write_jsonl
    try:
        options = from_args(DedupOptions, args)
        source = read_source(args.input, args.workspace)
        check_output(source, args.output)
        with percent_bar("dedup") as progress:
            if source.version is not None:
                result = find_duplicates_in_version(source.workspace, source.version.id, options, progress=progress)
            else:
                result = find_duplicates(source.records, options, progress=progress)
        if args.output:
            write_jsonl(result.kept_records(source.records), args.output)
        if args.clusters:
            write_clusters(result, args.clusters)
        made = apply_dedup(source.workspace, result) if source.version is not None else None
    except TuneloopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = result.counts()
    where = " and ".join(([f"to {args.output}"] if args.output else []) + ([f"as {made.describe()}"] if made else []))
    print(f"{counts['records']} records: {counts['exact_duplicates']} exact duplicates, "
          f"{counts['near_duplicate_clusters']} near-duplicate clusters; dropped {counts['to_drop']}, "
          f"wrote {counts['records'] - counts['to_drop']} {where}")
    return 0
