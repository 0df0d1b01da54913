"""Leakage between splits: the same example (or nearly) on both sides makes every evaluation a lie.

The audit compares val and test with the splits before them (val with train; test with train and
val), separately on prompts (the user turns) and answers (the assistant turns), three ways:

- **exact**: equal after normalising case, punctuation and whitespace;
- **near**: Jaccard similarity of character shingles at or above a threshold (MinHash + LSH
  candidates, every pair verified, shared boilerplate discounted; ``curation.dedup.near_duplicates``);
- **ngram**: a shared run of 13 words, as LLM decontamination checks.

What many records share is not one example leaking: a 13-word run found in more than
``common_records`` records is boilerplate (a greeting, a signature), and an answer that more than
``common_records`` records give (exactly or nearly) is a canned reply, the answer to a whole intent.
Both are set aside and counted. A question asked by many customers is still caught: prompts are
never set aside.

Texts shorter than ``min_words`` words are not compared: a "Thanks!" in train and test leaks nothing.

Similarity does not depend on the split, so it is computed once (``similarity_graph``) and an
audit of any assignment is a cheap filter over it.

The fix either **moves** (default) or **drops**. Moving joins every similar pair, together with the
groups its records belong to, into one unit (so the units are closed: nothing similar is left
outside a unit), puts each unit where most of its records already are, then moves whole units
between splits until every split is back near its size and label shares. Dropping removes the
later-split record of each pair (the val or test one) when that stays within ``max_drop`` of the
records; otherwise it moves instead. Either way the fix audits again and returns both audits.

Example::

    report = audit_leakage(split_records)                       # report.pairs, report.summary()
    graph = similarity_graph(records); audit_split(split_records, graph)   # re-audit for free
    outcome = fix_leakage(split_records, mode="move", group="customer_id", stratify="label")
    outcome.after.clean  # True
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np

from core.errors import TuneloopError
from core.options import Options, option
from curation.dedup.arrays import mix64, ngram_multipliers, ranges
from curation.dedup.near_duplicates import near_duplicate_pairs
from curation.dedup.shingles import DEFAULT_THRESHOLD, normalise_text
from curation.data.records import SPLITS, Record
from curation.splits.allocate import group_units, place_checked
from curation.splits.fields import label_of, with_split
from curation.splits.targets import split_targets

Progress = Callable[[float, str], None]
FIELDS = ("prompt", "answer")
KINDS = ("exact", "near", "ngram")
# move: leaking groups into one split; drop: the leaking val/test records; none: only report.
FIX_MODES = ("move", "drop", "none")
_ORDER = {s: i for i, s in enumerate(SPLITS)}
_MAX_PARTNERS = 20   # pairs reported per record, field and kind; bounded for a question asked a thousand times


@dataclass
class AuditOptions(Options):
    """How the leakage audit compares the splits (the Splits tab and CLI set the threshold through
    ``SplitOptions.leakage_threshold``; the rest are for callers who audit with other rules)."""
    what: ClassVar[str] = "leakage audit options"
    threshold: float = option(DEFAULT_THRESHOLD, "near duplicate at or above this Jaccard similarity",
                              min=0.01, max=1.0)
    ngram_words: int = option(13, "length of a shared word run that counts as overlap", min=1)
    fields: tuple[str, ...] = option(FIELDS, "compare prompts, answers, or both", choices=FIELDS)
    min_words: int = option(4, "shorter texts are not compared", min=0)
    common_records: int = option(10, "a word run, or an answer, shared by more records is boilerplate", min=1)

    def more_problems(self) -> list[str]:
        return [] if self.fields else [f"fields: compare {' or '.join(FIELDS)} (or both)"]

    def __post_init__(self):
        self.fields = tuple(self.fields)
        self.validate()


@dataclass
class LeakPair:
    """A val/test record (``id`` in ``split``) too close to a record of an earlier split."""
    kind: str           # exact | near | ngram
    field: str          # prompt | answer
    split: str          # val or test: the later split of the two
    id: str
    other_split: str    # train or val
    other_id: str
    similarity: float   # 1.0 for exact; the verified Jaccard for near; for ngram the share of shared word runs
    evidence: str = ""  # ngram: the shared words


@dataclass
class LeakageReport:
    options: AuditOptions
    sizes: dict[str, int]
    pairs: list[LeakPair] = field(default_factory=list)
    boilerplate_ngrams: int = 0
    canned_answers: int = 0                # answers set aside as canned replies

    @property
    def clean(self) -> bool:
        return not self.pairs

    def leaking_ids(self, split: str | None = None) -> set[str]:
        """Ids of the val/test records that leak (the later side of each pair)."""
        return {p.id for p in self.pairs if split is None or p.split == split}

    def summary(self) -> dict[str, Any]:
        kinds = Counter(f"{p.kind} {p.field}" for p in self.pairs)
        per_split = {s: len(self.leaking_ids(s)) for s in SPLITS[1:]}
        return {"pairs": len(self.pairs), "by kind": dict(sorted(kinds.items())), "leaking records": per_split,
                "leaking share": {s: round(100.0 * k / self.sizes[s], 1) if self.sizes.get(s) else 0.0
                                  for s, k in per_split.items()}}

    def to_dict(self) -> dict[str, Any]:
        return {"options": asdict(self.options), "sizes": self.sizes, "clean": self.clean,
                "num_pairs": len(self.pairs), "summary": self.summary(),
                "boilerplate_ngrams": self.boilerplate_ngrams, "canned_answers": self.canned_answers, "pairs": [asdict(p) for p in self.pairs]}

    def rows(self, records_by_id: dict[str, Record] | None = None, limit: int = 500) -> list[list]:
        """Table rows: kind, field, split, id, other split, other id, similarity, the two texts (shortened)."""
        def text(rid: str, fld: str) -> str:
            r = (records_by_id or {}).get(rid)
            if r is None:
                return ""
            t = " ".join(_field_text(r, fld).split())
            return t if len(t) <= 120 else t[:119] + "…"
        return [[p.kind, p.field, p.split, p.id, p.other_split, p.other_id, p.similarity,
                 p.evidence or text(p.id, p.field), text(p.other_id, p.field)] for p in self.pairs[:limit]]


PAIR_HEADERS = ["kind", "field", "split", "id", "other split", "other id", "similarity", "text (or shared words)",
                "other text"]


def _field_text(record: Record, fld: str) -> str:
    return record.text(("user",) if fld == "prompt" else ("assistant",))


def _check_splits(records: list[Record]) -> None:
    bad = [r.id for r in records if r.split not in _ORDER]
    if bad:
        raise TuneloopError(f"{len(bad)} record(s) carry no train/val/test split (first: {bad[0]}); "
                            "build a split first")


@dataclass
class SimilarityGraph:
    """Which records are alike, whatever their split: per field, exact-duplicate sets, verified
    near-duplicate pairs and sets sharing a (non-boilerplate) word run. Indices refer to the records
    the graph was built from, in that order."""
    options: AuditOptions
    ids: list[str]
    exact: dict[str, list[list[int]]]
    near: dict[str, list[tuple[int, int, float]]]
    ngram: dict[str, list[tuple[list[int], str]]]     # (records sharing the run, the run)
    canned: set[int]                                  # records whose answer is a canned reply
    boilerplate_ngrams: int = 0

    def links(self):
        """Index pairs that must share a split for the splits to be leak-free."""
        for fld in self.options.fields:
            for members in self.exact[fld]:
                yield from ((members[0], j) for j in members[1:])
            for i, j, _ in self.near[fld]:
                yield i, j
            for members, _ in self.ngram[fld]:
                yield from ((members[0], j) for j in members[1:])


def similarity_graph(records: list[Record], options: AuditOptions | None = None, *,
                     progress: Progress | None = None) -> SimilarityGraph:
    options = options or AuditOptions()
    say = progress or (lambda f, d: None)
    graph = SimilarityGraph(options=options, ids=[r.id for r in records], exact={}, near={}, ngram={}, canned=set())
    steps = len(options.fields)
    for f_index, fld in enumerate(options.fields):
        texts = [_field_text(r, fld) for r in records]
        words = [normalise_text(t).split() for t in texts]
        eligible = [i for i, w in enumerate(words) if len(w) >= options.min_words]
        buckets: dict[str, list[int]] = defaultdict(list)
        for i in eligible:
            buckets[" ".join(words[i])].append(i)
        say(f_index / steps, f"near duplicates in {fld}s")
        # Every pair within one collection once (i < j): no text is compared with itself.
        pairs, sims = near_duplicate_pairs([texts[i] for i in eligible], options.threshold,
                                           normalised=[" ".join(words[i]) for i in eligible],
                                           progress=lambda f, d: say((f_index + 0.8 * f) / steps, f"{fld}s: {d}"))
        near = sorted((eligible[i], eligible[j], round(sim, 4)) for (i, j), sim in zip(pairs.tolist(), sims.tolist()))
        skip: set[int] = set()
        if fld == "answer":
            degree = Counter(i for i, j, _ in near) + Counter(j for i, j, _ in near)
            skip = {i for m in buckets.values() if len(m) > options.common_records for i in m}
            skip |= {i for i, k in degree.items() if k >= options.common_records}
            graph.canned = skip
        graph.exact[fld] = [m for m in buckets.values() if len(m) > 1 and m[0] not in skip]
        graph.near[fld] = [(i, j, sim) for i, j, sim in near if i not in skip and j not in skip]
        say((f_index + 0.8) / steps, f"{options.ngram_words}-word runs in {fld}s")
        runs, boilerplate = _shared_runs(words, options)
        graph.ngram[fld] = [(m, run) for m, run in runs if not any(i in skip for i in m)]
        graph.boilerplate_ngrams += boilerplate
    say(1.0, "similarity computed")
    return graph


def _shared_runs(words: list[list[str]], options: AuditOptions) -> tuple[list[tuple[list[int], str]], int]:
    """Sets of records sharing an n-word run, and how many runs were set aside as boilerplate.

    A run in more than ``common_records`` records is boilerplate; a rarer run counts only when at
    least half its words lie outside boilerplate, so "<one word> + the start of a signature" is
    not evidence. Each set of records is reported once, with the first such run of its first record.
    Counting is vectorised over every run of every text; only the shared, rare runs are visited one by one.
    """
    n = options.ngram_words
    hashes, owner, first = _run_hashes(words, n)
    if hashes.size == 0:
        return [], 0
    # Each run's records: (hash, record) pairs without repeats, grouped by hash, records ascending.
    order = np.lexsort((owner, hashes))
    by_hash, by_owner = hashes[order], owner[order]
    distinct = np.ones(by_hash.size, bool)
    distinct[1:] = (by_hash[1:] != by_hash[:-1]) | (by_owner[1:] != by_owner[:-1])
    run_hash, run_owner = by_hash[distinct], by_owner[distinct]
    group_start = np.flatnonzero(np.concatenate(([True], run_hash[1:] != run_hash[:-1])))
    group_size = np.diff(np.append(group_start, run_hash.size))
    group = np.searchsorted(run_hash[group_start], hashes)
    size = group_size[group]
    common = size > options.common_records
    # Words inside a boilerplate run, and how many of each run's words are.
    total_words = sum(map(len, words))
    cover = np.zeros(total_words + 1, np.int64)
    np.add.at(cover, first[common], 1)
    np.add.at(cover, first[common] + n, -1)
    covered = np.concatenate(([0], np.cumsum(np.cumsum(cover[:-1]) > 0)))
    in_boilerplate = covered[first + n] - covered[first]
    keep = (size >= 2) & ~common & (run_owner[group_start[group]] == owner) & (2 * in_boilerplate <= n)
    word_start = np.concatenate(([0], np.cumsum([len(w) for w in words])))
    shared, seen_sets = [], set()
    for at in np.flatnonzero(keep).tolist():   # runs are in text order, then word order
        g = group[at]
        members = run_owner[group_start[g]:group_start[g] + group_size[g]].tolist()
        key = tuple(members)
        if key in seen_sets:
            continue
        seen_sets.add(key)
        i = members[0]
        k = int(first[at] - word_start[i])
        shared.append((members, " ".join(words[i][k:k + n])))
    return shared, int(np.count_nonzero(group_size > options.common_records))


def _run_hashes(words: list[list[str]], n: int, *, batch: int = 50_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """64-bit hashes of every run of ``n`` words, the text each is in and its first word's index over all
    texts, in text order then word order."""
    multipliers = ngram_multipliers(n)
    counts = np.fromiter(map(len, words), np.int64, len(words))
    offsets = np.concatenate(([0], np.cumsum(counts)))
    out_hashes, out_owner, out_first = [], [], []
    for lo in range(0, len(words), batch):
        hi = min(lo + batch, len(words))
        runs = np.maximum(counts[lo:hi] - n + 1, 0)
        if not runs.any():
            continue
        word_hash = _word_hashes(words[lo:hi])
        first = ranges(offsets[lo:hi] - offsets[lo], runs)
        h = word_hash[first] * multipliers[0]
        for j in range(1, n):
            h += word_hash[first + j] * multipliers[j]
        out_hashes.append(mix64(h))
        out_owner.append(np.repeat(np.arange(lo, hi, dtype=np.int64), runs))
        out_first.append(first + offsets[lo])
    if not out_hashes:
        empty = np.zeros(0, np.int64)
        return np.zeros(0, np.uint64), empty, empty
    return np.concatenate(out_hashes), np.concatenate(out_owner), np.concatenate(out_first)


def _word_hashes(words: list[list[str]]) -> np.ndarray:
    """A 64-bit hash of every word of the texts, in order (words are normalised: no spaces inside)."""
    joined = " ".join(w for text in words for w in text) + " "
    codes = np.frombuffer(joined.encode("utf-32-le"), np.uint32).astype(np.uint64)
    space = codes == 32
    starts = np.flatnonzero(~space & np.concatenate(([True], space[:-1])))
    # Each character mixed with its place in the word, summed per word, then mixed in full.
    word_of_char = np.repeat(starts.astype(np.uint64), np.diff(np.append(starts, codes.size)))
    place = np.arange(codes.size, dtype=np.uint64) - word_of_char
    mixed = codes * np.uint64(0x9E3779B97F4A7C15) + place * np.uint64(0xD6E8FEB86659FD93)
    mixed ^= mixed >> np.uint64(29)
    mixed *= np.uint64(0xBF58476D1CE4E5B9)
    mixed[space] = 0
    return mix64(np.add.reduceat(mixed, starts))


def audit_split(records: list[Record], graph: SimilarityGraph) -> LeakageReport:
    """The leakage of this split assignment, read off a similarity graph of the same records."""
    _check_splits(records)
    if [r.id for r in records] != graph.ids:
        raise TuneloopError("the similarity graph was built from other records; build it again")
    sizes = Counter(r.split for r in records)
    report = LeakageReport(options=graph.options, sizes={s: sizes.get(s, 0) for s in SPLITS},
                           boilerplate_ngrams=graph.boilerplate_ngrams,
                           canned_answers=sum(1 for i in graph.canned if records[i].split != SPLITS[0]))
    found: set[tuple[str, str, str]] = set()
    kept: Counter = Counter()

    def add(kind: str, fld: str, i: int, j: int, sim: float, evidence: str = "") -> None:
        if _ORDER[records[i].split] < _ORDER[records[j].split]:
            i, j = j, i
        a, b = records[i], records[j]
        key = (fld, a.id, b.id)
        if key in found or kept[(kind, fld, a.id)] >= _MAX_PARTNERS:
            return
        found.add(key)
        kept[(kind, fld, a.id)] += 1
        report.pairs.append(LeakPair(kind, fld, a.split, a.id, b.split, b.id, round(sim, 4), evidence))

    for fld in graph.options.fields:
        for members in graph.exact[fld]:
            _pair_across(members, records, lambda i, j: add("exact", fld, i, j, 1.0))
        for i, j, sim in graph.near[fld]:
            if records[i].split != records[j].split:
                add("near", fld, i, j, sim)
        for members, run in graph.ngram[fld]:
            _pair_across(members, records, lambda i, j: add("ngram", fld, i, j, 1.0, run))
    report.pairs.sort(key=lambda p: (_ORDER[p.split], KINDS.index(p.kind), p.field, p.id, p.other_id))
    return report


def audit_leakage(records: list[Record], options: AuditOptions | None = None, *,
                  progress: Progress | None = None) -> LeakageReport:
    """Every val/test record too close to a record of an earlier split, by field and kind."""
    _check_splits(records)
    return audit_split(records, similarity_graph(records, options, progress=progress))


def _pair_across(members: list[int], records: list[Record], emit) -> None:
    """Emit (later, earlier) index pairs among ``members`` that sit in different splits."""
    by_split: dict[str, list[int]] = defaultdict(list)
    for i in members:
        by_split[records[i].split].append(i)
    if len(by_split) < 2:
        return
    for s, idx in by_split.items():
        for t, other in by_split.items():
            if _ORDER[t] < _ORDER[s]:
                for i in idx:
                    for j in other[:_MAX_PARTNERS]:
                        emit(i, j)


# -- the fix -------------------------------------------------------------------------------------------

@dataclass
class FixOutcome:
    records: list[Record]
    before: LeakageReport
    after: LeakageReport
    moved: list[dict[str, str]] = field(default_factory=list)   # {id, from, to}
    dropped: list[str] = field(default_factory=list)
    note: str = ""
    largest_unit: int = 0   # records in the biggest set that had to stay in one split (groups + similar records)


def fix_leakage(records: list[Record], *, mode: str = "move", group: str | None = None, stratify: str | None = None,
                options: AuditOptions | None = None, max_drop: float = 0.03, seed: int = 0,
                progress: Progress | None = None) -> FixOutcome:
    """Audit, fix (``move``, ``drop`` or ``none``), audit again; groups (by ``group``) stay whole.

    ``stratify`` names the label whose shares the move keeps; ``max_drop`` is the largest share of
    records ``drop`` may remove before it moves instead.
    """
    if mode not in FIX_MODES:
        raise TuneloopError(f"unknown leakage fix '{mode}'; choose {', '.join(FIX_MODES)}")
    _check_splits(records)
    say = progress or (lambda f, d: None)
    graph = similarity_graph(records, options, progress=lambda f, d: say(0.9 * f, d))
    before = audit_split(records, graph)
    outcome = FixOutcome(records=list(records), before=before, after=before)
    if mode == "none" or before.clean:
        say(1.0, "no fix needed" if before.clean else "reported only")
        return outcome
    if mode == "drop":
        leaking = before.leaking_ids()
        if len(leaking) <= max_drop * len(records):
            kept = [r for r in records if r.id not in leaking]
            outcome.records, outcome.dropped = kept, sorted(leaking)
            outcome.after = audit_leakage(kept, graph.options)
            say(1.0, "dropped")
            return outcome
        outcome.note = (f"dropping the {len(leaking)} leaking val/test records would remove more than "
                        f"{max_drop:.0%} of the data, so they were moved instead")
    say(0.9, "moving leaking groups")
    sizes = Counter(r.split for r in records)
    labels = [label_of(r, stratify) for r in records]
    targets = split_targets(Counter(labels), {s: sizes.get(s, 0) for s in SPLITS})
    members = group_units(records, group, graph.links()).sets()
    outcome.largest_unit = max(len(m) for m in members)
    start = [_majority_split(records, m) for m in members]
    placed = place_checked(members, labels, targets, seed=seed, stratified=bool(stratify), start=start)
    split_of = {i: s for m, s in zip(members, placed) for i in m}
    moved = [r if r.split == split_of[i] else with_split(r, split_of[i]) for i, r in enumerate(records)]
    outcome.records, outcome.after = moved, audit_split(moved, graph)
    outcome.moved = [{"id": r.id, "from": old.split, "to": r.split} for old, r in zip(records, moved)
                     if old.split != r.split]
    say(1.0, "moved")
    return outcome


def _majority_split(records: list[Record], members: list[int]) -> str:
    count = Counter(records[i].split for i in members)
    return max(SPLITS, key=lambda s: (count.get(s, 0), -_ORDER[s]))
