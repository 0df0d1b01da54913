"""How many records each split gets, in total and per label.

Sizes are ratios (``0.1``) or counts (``200``); per-label targets are proportional, with each label's
and each split's totals exact.

Example::

    sizes = split_sizes(1000, 0.1, 0.1)            # {"train": 800, "val": 100, "test": 100}
    split_targets({"billing": 600, "login": 400}, sizes)
"""
from __future__ import annotations

from core.errors import TuneloopError
from curation.data.records import SPLITS


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
