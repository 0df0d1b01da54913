"""LSH banding: candidate pairs from MinHash signatures, cheaply, tuned to miss almost nothing.

Signature rows are cut into bands; texts whose rows agree over a whole band land in one bucket and
become a candidate pair. Candidates are only proposals: verification (``curation.dedup.verify``)
decides.

Example::

    bands, rows = lsh_bands(0.6, 128)
    pairs = lsh_candidate_pairs(signatures, 0.6)     # (m, 2) int64, i < j, unique
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable, Iterator

import numpy as np

from curation.dedup.arrays import MASK32, U64, mix64, ngram_multipliers, sorted_unique
from curation.dedup.shingles import DEFAULT_THRESHOLD

# LSH is tuned to propose pairs below the threshold too, so verification (exact) decides.
_LSH_MARGIN = 0.1
_MAX_PAIRS_PER_BUCKET_MEMBER = 48
_ACCEPT_CHUNK = 1 << 19      # pairs unpacked and judged by ``accept`` at a time (8 MB of them)

Progress = Callable[[float, str], None]

@lru_cache(maxsize=32)
def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) for LSH: the fewest chance candidates among settings that still propose almost every pair at the threshold.

    A pair at the threshold must become a candidate with probability ≥ 0.97 and one 0.1 below it
    with ≥ 0.8 (a missed candidate is never recovered); among those settings, the one proposing
    fewest pairs of similarity 0.2 (unrelated texts with a shared vocabulary) wins.
    """
    def chance(s: float, bands: int, rows: int) -> float:
        return 1 - (1 - s ** rows) ** bands

    best = (1.0, num_perm, 1)
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        if chance(threshold, bands, rows) >= 0.97 and chance(max(0.0, threshold - _LSH_MARGIN), bands, rows) >= 0.8:
            best = min(best, (chance(0.2, bands, rows), bands, rows))
    return best[1], best[2]


def _band_keys(sig: np.ndarray, bands: int, rows: int, index: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """One 64-bit key per text (the ``index`` rows of ``sig``, default all) and band, a band at a time (all bands
    at once would double the memory, and so would a copy of the chosen rows: only one band's columns are taken)."""
    mult = ngram_multipliers(rows + 1000)[:rows]
    for band in range(bands):
        columns = slice(band * rows, (band + 1) * rows)
        block = (sig[:, columns] if index is None else sig[index, columns]).astype(np.uint64)
        key = block[:, 0] * mult[0]
        for j in range(1, rows):
            key += block[:, j] * mult[j]
        yield mix64(key)


def lsh_candidate_pairs(signatures: np.ndarray, threshold: float = DEFAULT_THRESHOLD, *,
                        active: np.ndarray | None = None, accept: Callable[[np.ndarray], np.ndarray] | None = None,
                        progress: Progress | None = None) -> np.ndarray:
    """Pairs ``(i, j)``, i < j, that share at least one LSH band: an ``(m, 2)`` int64 array, unique and sorted.

    ``active`` (bool per row) leaves rows out (empty texts). ``accept`` (pairs -> bool per pair) keeps only the
    pairs it accepts: it is asked band by band about the pairs no earlier band found, so what is held is the
    accepted pairs and one band's new ones, never every chance pair of every band (a million short records
    have tens of millions of those). In a bucket with very many members each member is paired with its next
    few neighbours only, so one template shared by thousands of records cannot blow up into millions of pairs.
    """
    n, num_perm = signatures.shape
    bands, rows = lsh_bands(threshold, num_perm)
    index = np.arange(n, dtype=np.int64) if active is None else np.flatnonzero(active)
    if index.size < 2:
        return np.zeros((0, 2), np.int64)
    kept = np.zeros(0, np.uint64)
    for band, key in enumerate(_band_keys(signatures, bands, rows, None if index.size == n else index)):
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        del key
        found = []
        for step in range(1, _MAX_PAIRS_PER_BUCKET_MEMBER + 1):
            same = np.flatnonzero(sorted_key[:-step] == sorted_key[step:])
            if same.size == 0:
                break
            left, right = index[order[same]], index[order[same + step]]
            found.append((np.minimum(left, right).astype(np.uint64) << U64(32))
                         | np.maximum(left, right).astype(np.uint64))
        del order, sorted_key
        if found:
            new = sorted_unique(np.concatenate(found))
            del found
            if kept.size and new.size:
                at = np.searchsorted(kept, new).clip(max=kept.size - 1)
                new = new[kept[at] != new]
            if accept is not None and new.size:
                ok = np.concatenate([accept(_unpacked(new[start:start + _ACCEPT_CHUNK]))
                                     for start in range(0, new.size, _ACCEPT_CHUNK)])
                new = new[ok]
            if new.size:
                kept = np.concatenate([kept, new])
                kept.sort(kind="stable")      # two sorted runs: a merge
        if progress:
            progress((band + 1) / bands, "finding candidate pairs")
    return _unpacked(kept)


def _unpacked(packed: np.ndarray) -> np.ndarray:
    """Pairs packed as ``i << 32 | j`` back as an ``(m, 2)`` int64 array."""
    return np.stack([(packed >> U64(32)).astype(np.int64), (packed & MASK32).astype(np.int64)], axis=1)
