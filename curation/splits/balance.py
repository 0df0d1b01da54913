"""Checking a split: groups that cross splits, each label's share per split, and the balance report.

Example::

    groups_across_splits(records, "customer_id")   # {} when no customer spans two splits
    report = balance_report(records, "label"); report.max_gap; report.count_rows()
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from curation.data.records import SPLITS, Record
from curation.splits.fields import field_value, label_of

MIN_LABEL_RECORDS = 20      # the shares check covers labels with at least this many records
MAX_SHARE_GAP_POINTS = 2.0  # a label's share in a split may differ from its overall share by this much


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


def count_headers(label_field: str | None) -> list[str]:
    """COUNT_HEADERS with the label column named after the field the labels come from (Dolly's ``category``)."""
    return [label_field or COUNT_HEADERS[0]] + COUNT_HEADERS[1:]


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
