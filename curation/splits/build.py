"""Splitting a dataset into train / val / test: random, stratified by a label, grouped by a field, or both;
then the leakage audit and its fix, and freezing the result as a version.

A FIELD names a key of a record's ``meta`` (``label``, ``customer_id``) or a top-level attribute
(``id``, ``prompt``, ``answer``; ``curation.splits.fields``). Grouping keeps every record of one group
value in one split, so a customer or a conversation never spans two splits. Sizes are ratios (``0.1``)
or counts (``200``; ``curation.splits.targets``). The same seed gives the same split every time.
Units of records that must share a split are placed by ``curation.splits.allocate``; the result is
checked by ``curation.splits.balance`` and exported by ``curation.splits.export``.
scikit-learn's StratifiedGroupKFold is not used: it only makes k equal folds (no 85/10/5 or absolute
sizes), its ``shuffle`` only reorders groups with the same label spread (no global shuffle), and it is
about ten times slower here (``benchmarks/splits.py``).

``SplitOptions`` is the single source of the step's parameters: the Splits tab renders its form from
it, ``python -m curation.splits`` its flags, and a split version's params are its ``to_dict()``. A
workspace version is stratified by its label field unless the options name another field or none
(``version_split_options``; the field is ``curation.review.labels.label_field``).

Example::

    options = SplitOptions(val=0.1, test=0.1, stratify="label", group="customer_id", seed=7)
    result = make_split(records, options)              # split, audit leakage, move leaking groups
    version = save_split_version(ws, result, parent=3)
    result, version = split_version(ws, "v3", options)  # the same on a workspace version
    version_split_options(ws, "v3", {"test": 0.2})      # stratify: v3's label field (e.g. Dolly's category)
"""
from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

from core.errors import TuneloopError
from core.options import Options, option
from core.workspace import Workspace
from curation.data.records import SPLITS, Record
from curation.data.versions import Version, chat_records, create_version, get_version, load_records
from curation.dedup.shingles import DEFAULT_THRESHOLD
from curation.review.labels import label_field
from curation.splits.allocate import group_units, place_checked
from curation.splits.balance import MAX_SHARE_GAP_POINTS, max_share_gap
from curation.splits.fields import field_names, field_value, label_of, with_split
from curation.splits.leakage import FIX_MODES, AuditOptions, fix_leakage
from curation.splits.targets import split_sizes, split_targets

Progress = Callable[[float, str], None]
_SIZE_HELP = "a ratio of the records (0.1) or a number of records (200)"


@dataclass
class SplitOptions(Options):
    """How to split and how to treat leakage between the splits; saved as the split version's params."""
    what = "split options"
    val: float = option(0.1, f"validation split: {_SIZE_HELP}", min=0.0,
                        label="Validation (ratio, or number of records)")
    test: float = option(0.1, f"test split: {_SIZE_HELP}", min=0.0, label="Test (ratio, or number of records)")
    stratify: str | None = option(None, "FIELD whose values keep their share in every split (e.g. label); a "
                                        "workspace version is stratified by its label field unless given ('' for none)",
                                  label="Stratify by (keep each label's share)")
    group: str | None = option(None, "FIELD whose records stay in one split (e.g. customer_id)",
                               label="Group by (never split a customer / conversation)")
    seed: int = option(0, "random seed: the same seed gives the same split", label="Seed (same seed, same split)")
    max_per_label: int | None = option(None, "rebalancing: keep at most this many records per stratify value",
                                       min=1, label="Cap per label (0: no cap)")
    leakage_threshold: float = option(DEFAULT_THRESHOLD, "near-duplicate similarity (Jaccard) that counts as leakage",
                                      min=0.0, max=1.0, label="Leakage: near-duplicate similarity threshold")
    fix: str = option("move", "move leaking groups into one split, drop leaking val/test records (at most 3%), "
                              "or only report", choices=FIX_MODES, label="Fix leakage by")

    def more_problems(self) -> list[str]:
        out = []
        for name in ("val", "test"):
            value = getattr(self, name)
            if value >= 1 and not float(value).is_integer():
                out.append(f"{name}: {value:g} is neither a ratio below 1 nor a whole number of records")
        if self.leakage_threshold <= 0:
            out.append("leakage_threshold: must be above 0 (a similarity of 0 makes every pair a leak)")
        return out


def version_split_options(ws: Workspace, version: int | str, given: dict[str, Any] | None = None) -> SplitOptions:
    """The options ``given`` (option names to values) for splitting a workspace version, stratified by the
    version's label field unless ``given`` names a stratify field (None or "" for none); validated."""
    return SplitOptions.from_dict({"stratify": label_field(ws, version), **(given or {})}).validate()


def split_records(ws: Workspace, version: int | str | None) -> list[Record]:
    """The records of a split version (each in train, val or test); a TuneloopError says what to do when the
    version is missing or not split."""
    if not version:
        raise TuneloopError("there is no split version yet; build a split in the Splits tab first")
    records = load_records(ws, version)
    if any(r.split not in SPLITS for r in records):
        raise TuneloopError(f"{version} has records without a train/val/test split; build a split first")
    return records


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


def build_splits(records: list[Record], options: SplitOptions) -> list[Record]:
    """New records (same ids, messages and meta) carrying ``meta["split"]``, in the input order.

    With ``max_per_label`` set, records over the cap are left out of the result.
    """
    if not records:
        raise TuneloopError("there are no records to split")
    for name in (options.stratify, options.group):
        if name and all(field_value(r, name) is None for r in records):
            raise TuneloopError(f"no record has the field '{name}'; choose one of: "
                                f"{', '.join(field_names(records)) or 'id'}")
    if options.max_per_label:
        if not options.stratify:
            raise TuneloopError("a cap per label needs a label field to stratify by")
        records, _ = cap_per_label(records, options.stratify, options.max_per_label, options.seed)
    sizes = split_sizes(len(records), options.val, options.test)
    labels = [label_of(r, options.stratify) for r in records]
    targets = split_targets(Counter(labels), sizes)
    members = group_units(records, options.group).sets()
    placed = place_checked(members, labels, targets, seed=options.seed, stratified=bool(options.stratify))
    split_of = {}
    for m, s in zip(members, placed):
        for i in m:
            split_of[i] = s
    return [with_split(r, split_of[i]) for i, r in enumerate(records)]


# -- the whole step: split, audit, fix --------------------------------------------------------------

@dataclass
class SplitResult:
    records: list[Record]                 # the split records (leaking ones moved, or dropped ones gone)
    options: SplitOptions
    before: Any                           # curation.splits.leakage.LeakageReport before the fix
    after: Any                            # and after it
    note: str = ""
    moved: list[dict[str, str]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    capped: int = 0
    largest_unit: int = 0                 # records in the biggest set the fix had to keep in one split

    def balance_warning(self) -> str:
        """Why the label shares could not be kept within MAX_SHARE_GAP_POINTS, or "" when they were."""
        if not self.options.stratify:
            return ""
        gap = max_share_gap(self.records, self.options.stratify)
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


def make_split(records: list[Record], options: SplitOptions | None = None, *, max_drop: float = 0.03,
               keep_splits: bool = False, progress: Progress | None = None) -> SplitResult:
    """Split, audit leakage between the splits, and fix it (move leaking groups, or drop, or leave it).

    With ``keep_splits`` the records' own ``meta["split"]`` is kept (data that came split) and only
    audited and fixed; ``options`` then only tell the fix which groups and labels to respect.
    """
    options = (options or SplitOptions()).validate()
    say = progress or (lambda f, d: None)
    say(0.0, "splitting")
    split = list(records) if keep_splits else build_splits(records, options)
    outcome = fix_leakage(split, mode=options.fix, group=options.group, stratify=options.stratify,
                          options=AuditOptions(threshold=options.leakage_threshold), max_drop=max_drop,
                          seed=options.seed, progress=lambda f, d: say(0.1 + 0.9 * f, d))
    say(1.0, "done")
    return SplitResult(records=outcome.records, options=options, before=outcome.before, after=outcome.after,
                       note=outcome.note, moved=outcome.moved, dropped=outcome.dropped, capped=len(records) - len(split),
                       largest_unit=outcome.largest_unit)


def save_split_version(ws: Workspace, result: SplitResult, *, parent: int | None,
                       created_by: str | None = None) -> Version:
    """Freeze the split as a new immutable dataset version (step "split", params = the options) and return it."""
    return create_version(ws, result.records, parent=parent, step="split", params=result.options.to_dict(),
                          counts=result.counts(), created_by=created_by,
                          note=f"split; leakage fix: {result.options.fix}")


def split_version(ws: Workspace, version: int | str, options: SplitOptions | None = None, *,
                  keep_splits: bool = False, created_by: str | None = None,
                  progress: Progress | None = None) -> tuple[SplitResult, Version]:
    """``make_split`` on a dataset version, saved as a new version whose parent it is (the tab's Build split,
    and with ``keep_splits`` its Fix leakage)."""
    parent = get_version(ws, version)
    result = make_split(chat_records(ws, parent.id, step="splitting"), options, keep_splits=keep_splits, progress=progress)
    return result, save_split_version(ws, result, parent=parent.id, created_by=created_by)
