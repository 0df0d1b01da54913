"""Splitting a dataset into train / val / test: random, stratified by a label, grouped by a field, or both.

A FIELD names a key of a record's ``meta`` (``label``, ``customer_id``) or a top-level attribute
(``id``, ``prompt``, ``answer``). Grouping keeps every record of one group value in one split, so a
customer or a conversation never spans two splits. Sizes are ratios (``0.1``) or counts (``200``).
The same seed gives the same split every time.

Records sharing a group form one *unit*. Units are placed greedily, largest first, where they fill
the per-label targets best, then whole units are moved between splits while that brings every
split closer to its targets; finally the result is checked (no group crosses splits, shares per
label). scikit-learn's StratifiedGroupKFold is not used: it only makes k equal folds (no 85/10/5 or
absolute sizes), its ``shuffle`` only reorders groups with the same label spread (no global
shuffle), and it is about ten times slower here (``benchmarks/splits.py``).

Example::

    config = SplitConfig(val=0.1, test=0.1, stratify="label", group="customer_id", seed=7)
    result = make_split(records, config)              # split, audit leakage, move leaking groups
    version = save_split_version(ws, result, parent=3)
    export_split(result.records, "out/", formats=("jsonl", "parquet", "hf"))

CLI: ``python -m curation.splits INPUT OUTDIR [--val 0.1] [--test 0.1] [--stratify FIELD]
[--group FIELD] [--seed N] [--max-per-label N] [--leakage-threshold J] [--fix move|drop|none]``
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from core.errors import TuneloopError
from curation.data.records import SPLITS, Record, canonical_json

Progress = Callable[[float, str], None]
NO_LABEL = "(none)"
MIN_LABEL_RECORDS = 20      # the shares check covers labels with at least this many records
MAX_SHARE_GAP_POINTS = 2.0  # a label's share in a split may differ from its overall share by this much
SHAPES = ("messages", "prompt_completion", "input_label")
EXPORT_FORMATS = ("jsonl", "parquet", "hf")
_IMPROVE_PASSES = 30
_ATTEMPTS = 8
_SWAP_CANDIDATES = 2000   # units tried per swap; bounds the work on very large datasets


@dataclass
class SplitConfig:
    """How to split. The tab and the CLI both build one of these; it is saved with the split version."""
    val: float = 0.1                   # ratio of records (< 1) or a number of records (>= 1)
    test: float = 0.1                  # same for the test split
    stratify: str | None = None        # keep each value's share equal across splits (e.g. "label")
    group: str | None = None           # records with the same value stay in one split (e.g. "customer_id")
    seed: int = 0                      # same seed, same split
    max_per_label: int | None = None   # rebalancing: keep at most this many records per stratify value

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- fields and sizes ---------------------------------------------------------------------------

def field_value(record: Record, name: str) -> Any:
    """The value of FIELD ``name``: a key of ``meta``, else a top-level attribute; None if absent."""
    if name in record.meta:
        return record.meta[name]
    if name in ("id", "prompt", "answer", "split"):
        return getattr(record, name)
    return None


def field_names(records: Iterable[Record]) -> list[str]:
    """The meta keys present in the records, for a field picker (split itself left out)."""
    keys: Counter = Counter()
    for r in records:
        keys.update(k for k, v in r.meta.items() if k != "split" and not isinstance(v, (dict, list)))
    return [k for k, _ in keys.most_common()]


def label_of(record: Record, stratify: str | None) -> str:
    if not stratify:
        return "all"
    value = field_value(record, stratify)
    return NO_LABEL if value is None or value == "" else str(value)


def split_sizes(n: int, val: float, test: float) -> dict[str, int]:
    """Records per split for ``n`` records; ``val``/``test`` are ratios (< 1) or counts (>= 1)."""
    sizes = {}
    for name, value in (("val", val), ("test", test)):
        if value is None or value < 0:
            raise TuneloopError(f"the {name} size must be a ratio such as 0.1 or a number of records such as 200")
        if 0 < value < 1:
            sizes[name] = round(n * value)
        elif float(value).is_integer():
            sizes[name] = int(value)
        else:
            raise TuneloopError(f"the {name} size {value:g} is neither a ratio below 1 nor a whole number of records")
    sizes["train"] = n - sizes["val"] - sizes["test"]
    if sizes["train"] < 1:
        raise TuneloopError(f"val ({sizes['val']}) and test ({sizes['test']}) leave no records for training out of {n}; "
                            "choose smaller sizes")
    return {s: sizes[s] for s in SPLITS}


def split_targets(label_counts: dict[str, int], sizes: dict[str, int]) -> dict[str, dict[str, int]]:
    """Whole-number records per split per label: proportional, each label's and each split's totals exact."""
    n = sum(label_counts.values())
    targets = {s: {} for s in sizes}
    spare = dict(sizes)
    need = dict(label_counts)
    remainders = []
    for label, count in label_counts.items():
        for s, size in sizes.items():
            exact = count * size / n if n else 0
            targets[s][label] = int(exact)
            spare[s] -= int(exact)
            need[label] -= int(exact)
            remainders.append((exact - int(exact), label, s))
    # Largest remainders first; leftovers (rare) go wherever a split still has room.
    remainders.sort(key=lambda t: (-t[0], t[1], SPLITS.index(t[2]) if t[2] in SPLITS else 0))
    for _, label, s in remainders:
        if need[label] > 0 and spare[s] > 0:
            targets[s][label] += 1
            need[label] -= 1
            spare[s] -= 1
    for label in label_counts:
        for s in sizes:
            while need[label] > 0 and spare[s] > 0:
                targets[s][label] += 1
                need[label] -= 1
                spare[s] -= 1
    return targets


# -- units and allocation ------------------------------------------------------------------------

class UnionFind:
    """Disjoint sets over 0..n-1: records that must share a split."""

    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def sets(self) -> list[list[int]]:
        out: dict[int, list[int]] = defaultdict(list)
        for i in range(len(self.parent)):
            out[self.find(i)].append(i)
        return list(out.values())


def group_units(records: list[Record], group: str | None, links: Iterable[tuple[int, int]] = ()) -> UnionFind:
    """Records with the same ``group`` value (and linked pairs of indices) in one set."""
    uf = UnionFind(len(records))
    if group:
        first: dict[str, int] = {}
        for i, r in enumerate(records):
            value = field_value(r, group)
            if value is None or value == "":
                continue
            key = canonical_json(value)
            if key in first:
                uf.union(first[key], i)
            else:
                first[key] = i
    for a, b in links:
        uf.union(a, b)
    return uf


def _weights(targets: dict[str, dict[str, int]]) -> dict[str, float]:
    # Deviations count relative to the split's size: one record off matters more in a small test split.
    return {s: 1.0 / max(1, sum(t.values())) for s, t in targets.items()}


def allocate_units(units: list[Counter], targets: dict[str, dict[str, int]], *, seed: int = 0,
                   start: list[str] | None = None, swaps: bool = True) -> list[str]:
    """The split of each unit (a Counter of labels), as close to ``targets`` as whole units allow.

    Without ``start`` units are placed greedily, largest first (ties in seeded random order); with it
    the given placement is the starting point. Then whole units move (and, with ``swaps``, pairs of
    units trade places) while that lowers the squared deviation from the per-label and per-split targets.
    """
    splits = list(targets)
    weight = _weights(targets)
    totals = {s: sum(t.values()) for s, t in targets.items()}
    counts = {s: Counter() for s in splits}
    sizes = {s: 0 for s in splits}
    rng = random.Random(seed)
    order = list(range(len(units)))
    rng.shuffle(order)
    unit_size = [sum(u.values()) for u in units]
    # Label targets add up to the split sizes, so the size term only nudges; weighted fully it would
    # pull records of a label into a split whose quota for that label is already met.
    size_weight = 0.25

    def add_cost(u: int, s: str) -> float:
        c, t = counts[s], targets[s]
        n = unit_size[u]
        label_part = sum(k * (2 * (c[lab] - t.get(lab, 0)) + k) for lab, k in units[u].items())
        return weight[s] * (label_part + size_weight * n * (2 * (sizes[s] - totals[s]) + n))

    def remove_cost(u: int, s: str) -> float:
        c, t = counts[s], targets[s]
        n = unit_size[u]
        label_part = sum(k * (k - 2 * (c[lab] - t.get(lab, 0))) for lab, k in units[u].items())
        return weight[s] * (label_part + size_weight * n * (n - 2 * (sizes[s] - totals[s])))

    def place(u: int, s: str, sign: int = 1) -> None:
        for lab, k in units[u].items():
            counts[s][lab] += sign * k
        sizes[s] += sign * unit_size[u]

    assigned: list[str] = [""] * len(units)
    if start is None:
        order.sort(key=lambda u: -unit_size[u])
        for u in order:
            best = min(splits, key=lambda s: add_cost(u, s))
            assigned[u] = best
            place(u, best)
    else:
        assigned = list(start)
        for u, s in enumerate(assigned):
            place(u, s)
    if start is None and max(unit_size, default=1) == 1:
        return assigned  # single records: the greedy placement already meets every target exactly

    def swap_cost(u: int, v: int, s: str) -> float:
        """Change of split s's deviation when unit u leaves it and unit v joins it."""
        c, t = counts[s], targets[s]
        cost = 0.0
        for lab in set(units[u]) | set(units[v]):
            d = units[v].get(lab, 0) - units[u].get(lab, 0)
            cost += d * (2 * (c[lab] - t.get(lab, 0)) + d)
        d = unit_size[v] - unit_size[u]
        return weight[s] * (cost + size_weight * d * (2 * (sizes[s] - totals[s]) + d))

    for _ in range(_IMPROVE_PASSES):
        changed = False
        for u in order:
            here = assigned[u]
            out_gain = remove_cost(u, here)
            best, best_delta = here, -1e-9
            for s in splits:
                if s != here:
                    delta = out_gain + add_cost(u, s)
                    if delta < best_delta:
                        best, best_delta = s, delta
            if best != here:
                place(u, here, -1)
                place(u, best)
                assigned[u] = best
                changed = True
        # Swaps fix what single moves cannot: two groups trading places keeps both split sizes.
        # Only units holding a label their split has too much of can gain from leaving it.
        small = [u for u in order if swaps and assigned[u] != splits[0]
                 and any(counts[assigned[u]][lab] > targets[assigned[u]].get(lab, 0) for lab in units[u])]
        for u in small:
            a = assigned[u]
            pool = [v for v in order if assigned[v] != a]
            if len(pool) > _SWAP_CANDIDATES:
                pool = rng.sample(pool, _SWAP_CANDIDATES)
            best_v, best_delta = None, -1e-9
            for v in pool:
                b = assigned[v]
                delta = swap_cost(u, v, a) + swap_cost(v, u, b)
                if delta < best_delta:
                    best_v, best_delta = v, delta
            if best_v is not None:
                b = assigned[best_v]
                place(u, a, -1)
                place(best_v, b, -1)
                place(u, b)
                place(best_v, a)
                assigned[u], assigned[best_v] = b, a
                changed = True
        if not changed:
            break
    return assigned


# -- building and checking ------------------------------------------------------------------------

def cap_per_label(records: list[Record], stratify: str, cap: int, seed: int = 0) -> tuple[list[Record], list[Record]]:
    """Keep at most ``cap`` records per value of ``stratify`` (chosen at random by seed); (kept, left out)."""
    if cap < 1:
        raise TuneloopError("the cap per label must be at least 1 record")
    rng = random.Random(seed)
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        by_label[label_of(r, stratify)].append(i)
    keep: set[int] = set()
    for idx in by_label.values():
        keep.update(idx if len(idx) <= cap else rng.sample(idx, cap))
    return ([r for i, r in enumerate(records) if i in keep], [r for i, r in enumerate(records) if i not in keep])


def with_split(record: Record, split: str) -> Record:
    return Record(id=record.id, messages=record.messages, meta={**record.meta, "split": split})


def build_splits(records: list[Record], config: SplitConfig) -> list[Record]:
    """New records (same ids, messages and meta) carrying ``meta["split"]``, in the input order.

    With ``max_per_label`` set, records over the cap are left out of the result.
    """
    if not records:
        raise TuneloopError("there are no records to split")
    for name in (config.stratify, config.group):
        if name and all(field_value(r, name) is None for r in records):
            raise TuneloopError(f"no record has the field '{name}'; choose one of: "
                                f"{', '.join(field_names(records)) or 'id'}")
    if config.max_per_label:
        if not config.stratify:
            raise TuneloopError("a cap per label needs a label field to stratify by")
        records, _ = cap_per_label(records, config.stratify, config.max_per_label, config.seed)
    sizes = split_sizes(len(records), config.val, config.test)
    labels = [label_of(r, config.stratify) for r in records]
    targets = split_targets(Counter(labels), sizes)
    members = group_units(records, config.group).sets()
    placed = place_checked(members, labels, targets, seed=config.seed, stratified=bool(config.stratify))
    split_of = {}
    for m, s in zip(members, placed):
        for i in m:
            split_of[i] = s
    return [with_split(r, split_of[i]) for i, r in enumerate(records)]


def place_checked(members: list[list[int]], labels: list[str], targets: dict[str, dict[str, int]], *, seed: int,
                  stratified: bool, start: list[str] | None = None) -> list[str]:
    """``allocate_units`` for sets of record indices, checked: when a label's share misses by more than
    MAX_SHARE_GAP_POINTS the placement is retried in another seeded order, and the best one kept."""
    units = [Counter(labels[i] for i in m) for m in members]
    best, best_gap = [], float("inf")
    for attempt in range(_ATTEMPTS):
        # Swaps are slow on big data and rarely needed there: the first try goes without them.
        placed = allocate_units(units, targets, seed=seed * 7919 + attempt, start=start, swaps=attempt > 0)
        gap = _placement_gap(units, placed, labels) if stratified else 0.0
        if gap < best_gap:
            best, best_gap = placed, gap
        if gap <= MAX_SHARE_GAP_POINTS:
            break
    return best


def _placement_gap(units: list[Counter], placed: list[str], labels: list[str]) -> float:
    per: dict[str, Counter] = defaultdict(Counter)
    for u, s in zip(units, placed):
        per[s].update(u)
    overall = Counter(labels)
    n = len(labels)
    gap = 0.0
    for s, c in per.items():
        size = sum(c.values())
        for label, count in overall.items():
            if count >= MIN_LABEL_RECORDS and size:
                gap = max(gap, abs(100.0 * (c[label] / size - count / n)))
    return gap


def groups_across_splits(records: list[Record], group: str) -> dict[str, list[str]]:
    """Group values whose records sit in more than one split (empty when the split is sound)."""
    seen: dict[str, set[str]] = defaultdict(set)
    for r in records:
        value = field_value(r, group)
        if value is not None and value != "":
            seen[str(value)].add(r.split or "")
    return {g: sorted(s) for g, s in seen.items() if len(s) > 1}


def share_gaps(records: list[Record], stratify: str, *, min_records: int = MIN_LABEL_RECORDS) -> dict[str, dict[str, float]]:
    """Per label (with at least ``min_records``) and split: its share there minus its share overall, in points."""
    labels = Counter(label_of(r, stratify) for r in records)
    per_split = Counter(r.split for r in records)
    per = Counter((label_of(r, stratify), r.split) for r in records)
    n = len(records)
    gaps: dict[str, dict[str, float]] = {}
    for label, count in labels.items():
        if count < min_records:
            continue
        gaps[label] = {s: 100.0 * (per[(label, s)] / per_split[s] - count / n)
                       for s in SPLITS if per_split[s]}
    return gaps


def max_share_gap(records: list[Record], stratify: str) -> float:
    gaps = share_gaps(records, stratify)
    return max((abs(g) for row in gaps.values() for g in row.values()), default=0.0)


# -- balance report -------------------------------------------------------------------------------

def _words(text: str) -> int:
    return len(text.split())


@dataclass
class BalanceReport:
    """Counts per label per split, each label's share gap, and length distributions per split."""
    label_field: str | None
    sizes: dict[str, int]
    counts: dict[str, dict[str, int]]             # label → split → records
    gaps: dict[str, dict[str, float]]             # label → split → points (labels with enough records)
    lengths: dict[str, dict[str, dict[str, float]]]  # split → "prompt"/"answer" → {min, median, p90, max} in words

    @property
    def max_gap(self) -> float:
        return max((abs(g) for row in self.gaps.values() for g in row.values()), default=0.0)

    def count_rows(self) -> list[list]:
        """Rows: label, then count and share (%) per split, then the largest gap in points."""
        rows = []
        for label in sorted(self.counts, key=lambda lab: -sum(self.counts[lab].values())):
            row: list = [label]
            for s in SPLITS:
                k = self.counts[label].get(s, 0)
                row += [k, round(100.0 * k / self.sizes[s], 1) if self.sizes.get(s) else 0.0]
            gap = self.gaps.get(label)
            row.append(round(max(abs(g) for g in gap.values()), 2) if gap else None)
            rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "max_gap": self.max_gap}


COUNT_HEADERS = ["label", "train", "train %", "val", "val %", "test", "test %", "largest gap (points)"]


def balance_report(records: list[Record], label_field: str | None) -> BalanceReport:
    sizes = Counter(r.split for r in records)
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for (label, s), k in Counter((label_of(r, label_field), r.split) for r in records).items():
        counts[label][s] = k
    lengths: dict[str, dict[str, dict[str, float]]] = {}
    for s in SPLITS:
        part = [r for r in records if r.split == s]
        lengths[s] = {}
        for kind, text_of in (("prompt", lambda r: r.text(("user",))), ("answer", lambda r: r.text(("assistant",)))):
            values = sorted(_words(text_of(r)) for r in part)
            lengths[s][kind] = _summary(values)
    gaps = share_gaps(records, label_field) if label_field else {}
    return BalanceReport(label_field=label_field, sizes={s: sizes.get(s, 0) for s in SPLITS}, counts=dict(counts),
                         gaps=gaps, lengths=lengths)


def _summary(values: list[int]) -> dict[str, float]:
    if not values:
        return {"min": 0, "median": 0, "p90": 0, "max": 0}
    return {"min": values[0], "median": values[len(values) // 2], "p90": values[min(len(values) - 1, int(len(values) * 0.9))],
            "max": values[-1]}


def length_histogram(records: list[Record], kind: str = "answer", bins: int = 20) -> list[dict[str, Any]]:
    """Rows {words (bin start), split, share (% of the split's records)}: word lengths of prompts or answers."""
    roles = ("user",) if kind == "prompt" else ("assistant",)
    lengths = {s: [_words(r.text(roles)) for r in records if r.split == s] for s in SPLITS}
    every = [x for v in lengths.values() for x in v]
    if not every:
        return []
    top = max(every) + 1
    width = max(1, -(-top // bins))
    rows = []
    for s, values in lengths.items():
        per_bin = Counter(v // width for v in values)
        for b in range(-(-top // width)):
            rows.append({"words": b * width, "split": s,
                         "share": round(100.0 * per_bin.get(b, 0) / len(values), 2) if values else 0.0})
    return rows


# -- the whole step: split, audit, fix --------------------------------------------------------------

@dataclass
class SplitResult:
    records: list[Record]                 # the split records (leaking ones moved, or dropped ones gone)
    config: SplitConfig
    before: Any                           # curation.splits.leakage.LeakageReport before the fix
    after: Any                            # and after it
    fix: str
    note: str = ""
    moved: list[dict[str, str]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    capped: int = 0
    largest_unit: int = 0                 # records in the biggest set the fix had to keep in one split

    def balance_warning(self) -> str:
        """Why the label shares could not be kept within MAX_SHARE_GAP_POINTS, or "" when they were."""
        if not self.config.stratify:
            return ""
        gap = max_share_gap(self.records, self.config.stratify)
        if gap <= MAX_SHARE_GAP_POINTS:
            return ""
        why = ""
        if self.largest_unit > 0.5 * len(self.records):
            why = (f": {self.largest_unit:,} of {len(self.records):,} records are tied together (the same customers "
                   "asking the same or nearly the same questions), and tied records must share a split, so few are "
                   "left to balance the labels with")
        return f"label shares differ from the overall shares by up to {gap:.1f} points{why}"

    @property
    def leakage(self) -> dict[str, Any]:
        return {"before": self.before.to_dict(), "after": self.after.to_dict(), "note": self.note}

    def counts(self) -> dict[str, Any]:
        per = Counter(r.split for r in self.records)
        return {**{s: per.get(s, 0) for s in SPLITS}, "leaking pairs found": len(self.before.pairs),
                "leaking pairs left": len(self.after.pairs), "moved": len(self.moved), "dropped": len(self.dropped),
                "capped": self.capped}


def make_split(records: list[Record], config: SplitConfig, *, leakage_threshold: float | None = None,
               fix: str = "move", max_drop: float = 0.03, keep_splits: bool = False,
               progress: Progress | None = None) -> SplitResult:
    """Split, audit leakage between the splits, and fix it (move leaking groups, or drop, or leave it).

    With ``keep_splits`` the records' own ``meta["split"]`` is kept (data that came split) and only
    audited and fixed; ``config`` then only tells the fix which groups and labels to respect.
    """
    from curation.splits.leakage import AuditOptions, fix_leakage

    if fix not in ("move", "drop", "none"):
        raise TuneloopError(f"unknown fix '{fix}'; choose move, drop or none")
    say = progress or (lambda f, d: None)
    say(0.0, "splitting")
    split = list(records) if keep_splits else build_splits(records, config)
    options = AuditOptions() if leakage_threshold is None else AuditOptions(threshold=leakage_threshold)
    outcome = fix_leakage(split, mode=fix, group=config.group, stratify=config.stratify, options=options,
                          max_drop=max_drop, seed=config.seed,
                          progress=lambda f, d: say(0.1 + 0.9 * f, d))
    say(1.0, "done")
    return SplitResult(records=outcome.records, config=config, before=outcome.before, after=outcome.after, fix=fix,
                       note=outcome.note, moved=outcome.moved, dropped=outcome.dropped, capped=len(records) - len(split),
                       largest_unit=outcome.largest_unit)


def save_split_version(ws, result: SplitResult, *, parent: int | None, created_by: str | None = None):
    """Freeze the split as a new immutable dataset version (step "split") and return it."""
    from curation.data.versions import create_version

    params = {**result.config.to_dict(), "fix": result.fix, "leakage_threshold": result.after.options.threshold}
    return create_version(ws, result.records, parent=parent, step="split", params=params, counts=result.counts(),
                          created_by=created_by, note=f"split; leakage fix: {result.fix}")


# -- export in the shapes trl reads ------------------------------------------------------------------

def training_row(record: Record, shape: str = "messages", *, label_field: str | None = None) -> dict[str, Any]:
    """One row in a trl-readable shape; ``id`` and ``meta`` ride along (trl ignores extra columns).

    messages: ``{"messages": [...]}`` (conversational language modelling);
    prompt_completion: ``{"prompt": [turns before the last answer], "completion": [the last answer]}``;
    input_label: ``{"input": last question, "label": meta[label_field] or the answer}`` (classification,
    extraction).
    """
    if shape == "messages":
        row: dict[str, Any] = {"messages": record.messages}
    elif shape == "prompt_completion":
        last = max((i for i, m in enumerate(record.messages) if m["role"] == "assistant"), default=None)
        if last is None:
            raise TuneloopError(f"record {record.id} has no assistant turn, so it has no completion to train on")
        row = {"prompt": record.messages[:last], "completion": [record.messages[last]]}
    elif shape == "input_label":
        label = field_value(record, label_field) if label_field else record.answer
        row = {"input": record.prompt, "label": "" if label is None else str(label)}
    else:
        raise TuneloopError(f"unknown export shape '{shape}'; choose one of {', '.join(SHAPES)}")
    return {"id": record.id, **row, "meta": record.meta}


def export_split(records: list[Record], outdir: str | Path, *, formats: Iterable[str] = ("jsonl",),
                 shape: str = "messages", label_field: str | None = None) -> list[Path]:
    """Write each split: ``{split}.jsonl``, ``{split}.parquet`` and/or an HF DatasetDict folder ``hf/``.

    JSONL keeps ``meta`` as an object; Parquet and the DatasetDict keep it as a JSON string, since
    records' meta keys differ and Arrow needs one schema per column.
    """
    from core.workspace import atomic_path, atomic_write

    formats = list(formats)
    unknown = [f for f in formats if f not in EXPORT_FORMATS]
    if unknown:
        raise TuneloopError(f"unknown export format {unknown[0]!r}; choose from {', '.join(EXPORT_FORMATS)}")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    rows = {s: [training_row(r, shape, label_field=label_field) for r in records if r.split == s] for s in SPLITS}
    written: list[Path] = []
    if "jsonl" in formats:
        for s, part in rows.items():
            target = outdir / f"{s}.jsonl"
            atomic_write(target, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in part).encode("utf-8"))
            written.append(target)
    flat = {s: [{**row, "meta": canonical_json(row["meta"])} for row in part] for s, part in rows.items()}
    if "parquet" in formats:
        import pyarrow as pa
        import pyarrow.parquet as pq
        for s, part in flat.items():
            target = outdir / f"{s}.parquet"
            with atomic_path(target) as tmp:
                pq.write_table(pa.Table.from_pylist(part), tmp)
            written.append(target)
    if "hf" in formats:
        import shutil

        from datasets import Dataset, DatasetDict
        target = outdir / "hf"
        dd = DatasetDict({s: Dataset.from_list(part) for s, part in flat.items() if part})
        if target.exists():  # a re-export replaces the folder (a folder cannot be renamed over another)
            shutil.rmtree(target)
        with atomic_path(target) as tmp:
            dd.save_to_disk(str(tmp))
        written.append(target)
    return written


# -- CLI ------------------------------------------------------------------------------------------------

def _size(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a ratio (0.1) or a number of records (200)") from None


def parse_args(argv=None) -> argparse.Namespace:
    from curation.splits.leakage import DEFAULT_THRESHOLD
    p = argparse.ArgumentParser(prog="python -m curation.splits",
                                description="Split a dataset into train/val/test, audit leakage between the splits and "
                                            "fix it; writes OUTDIR/train.jsonl, val.jsonl, test.jsonl and leakage.json.")
    p.add_argument("input", help="a data file (any format the Data tab imports) or a version such as v3 of --workspace")
    p.add_argument("outdir", help="folder to write the splits into")
    p.add_argument("--val", type=_size, default=0.1, help="ratio (0.1) or number of records (200); default 0.1")
    p.add_argument("--test", type=_size, default=0.1, help="ratio (0.1) or number of records (200); default 0.1")
    p.add_argument("--stratify", metavar="FIELD", help="keep each value's share equal across splits (e.g. label)")
    p.add_argument("--group", metavar="FIELD", help="records with the same value stay in one split (e.g. customer_id)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-per-label", type=int, help="keep at most N records per --stratify value")
    p.add_argument("--leakage-threshold", type=float, metavar="J", default=DEFAULT_THRESHOLD,
                   help=f"near-duplicate similarity (Jaccard) that counts as leakage; default {DEFAULT_THRESHOLD}")
    p.add_argument("--fix", choices=("move", "drop", "none"), default="move",
                   help="move leaking groups into one split (default), drop leaking val/test records, or only report")
    p.add_argument("--format", dest="formats", default="jsonl",
                   help="comma-separated: jsonl,parquet,hf (HF DatasetDict folder); default jsonl")
    p.add_argument("--shape", choices=SHAPES, default="messages",
                   help="row shape: messages (default; keeps ids and meta), prompt_completion, input_label")
    p.add_argument("--label-field", help="with --shape input_label: the meta field holding the label (default: the answer)")
    p.add_argument("--keep-splits", action="store_true",
                   help="INPUT already carries train/val/test (meta split): audit and fix it instead of splitting again")
    p.add_argument("--workspace", help="with a version as INPUT: the workspace; the split is saved as a new version")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from tqdm import tqdm

    try:
        ws = None
        parent = None
        if Path(args.input).exists():
            from curation.data.formats import read_records
            records = read_records(args.input).records
        else:
            from core.workspace import Workspace
            from curation.data.versions import get_version, load_records
            ws = Workspace.open(args.workspace)
            parent = get_version(ws, args.input).id
            records = load_records(ws, parent)
        config = SplitConfig(val=args.val, test=args.test, stratify=args.stratify, group=args.group, seed=args.seed,
                             max_per_label=args.max_per_label)
        with tqdm(total=100, desc="splitting", unit="%") as bar:
            def progress(fraction: float, desc: str) -> None:
                bar.set_description(desc)
                bar.update(max(0, round(fraction * 100) - bar.n))
            result = make_split(records, config, leakage_threshold=args.leakage_threshold, fix=args.fix,
                                keep_splits=args.keep_splits, progress=progress)
        outdir = Path(args.outdir)
        written = export_split(result.records, outdir, formats=[f.strip() for f in args.formats.split(",") if f.strip()],
                               shape=args.shape, label_field=args.label_field)
        from core.workspace import atomic_write
        report = {**result.leakage, "moved": result.moved, "dropped": result.dropped, "counts": result.counts(),
                  "balance": balance_report(result.records, args.stratify).to_dict(), "config": config.to_dict()}
        atomic_write(outdir / "leakage.json", json.dumps(report, indent=2, ensure_ascii=False).encode("utf-8"))
        if ws is not None:
            version = save_split_version(ws, result, parent=parent)
            print(f"saved {version.describe()}")
    except TuneloopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = result.counts()
    if result.balance_warning():
        print(f"warning: {result.balance_warning()}", file=sys.stderr)
    print(f"train {counts['train']} · val {counts['val']} · test {counts['test']} · leaking pairs found "
          f"{counts['leaking pairs found']}, left {counts['leaking pairs left']} · moved {counts['moved']} · "
          f"dropped {counts['dropped']}")
    for path in written + [outdir / "leakage.json"]:
        print(f"wrote {path}")
    return 0
