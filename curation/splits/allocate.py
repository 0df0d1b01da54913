"""Placing units (records that must share a split) into splits as close to the targets as whole units allow.

Records sharing a group form one *unit*. Units are placed greedily, largest first, where they fill
the per-label targets best, then whole units are moved between splits (and pairs of units swapped)
while that brings every split closer to its targets; a placement whose label shares miss by more
than MAX_SHARE_GAP_POINTS is retried in another seeded order.

Example::

    members = group_units(records, "customer_id").sets()
    placed = place_checked(members, labels, targets, seed=0, stratified=True)   # a split per unit
"""
from __future__ import annotations

import random
from collections import Counter, defaultdict
from typing import Iterable

from curation.data.records import Record, canonical_json
from curation.splits.balance import MAX_SHARE_GAP_POINTS, MIN_LABEL_RECORDS
from curation.splits.fields import field_value

_IMPROVE_PASSES = 30
_ATTEMPTS = 8
_SWAP_CANDIDATES = 2000   # units tried per swap; bounds the work on very large datasets


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
