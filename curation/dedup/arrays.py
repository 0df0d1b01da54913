"""Vectorised array helpers shared by shingling, MinHash signatures, LSH banding and verification.

Everything in near-duplicate search works on many texts at once, as flat numpy arrays with per-text
counts or offsets; these are the few operations all of it needs (slices of many texts at once, per-text
sorting without repeats, 64-bit mixing) and the constants that keep every hash reproducible.
"""
from __future__ import annotations

import numpy as np

BATCH_RECORDS = 4096
_ROWS_PER_SORT = 512
SEED = 20240611
U64 = np.uint64
MASK32 = U64(0xFFFFFFFF)


def ngram_multipliers(ngram: int) -> np.ndarray:
    rng = np.random.default_rng(SEED + ngram)
    return rng.integers(1, 2**63, size=ngram, dtype=np.uint64) | U64(1)


def mix64(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place: spreads the polynomial window hash over all 64 bits."""
    h ^= h >> U64(30)
    h *= U64(0xBF58476D1CE4E5B9)
    h ^= h >> U64(27)
    h *= U64(0x94D049BB133111EB)
    h ^= h >> U64(31)
    return h


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique by sorting in place (numpy's default unique hashes, several times slower here)."""
    values.sort()
    if values.size == 0:
        return values
    keep = np.empty(values.size, bool)
    keep[0] = True
    np.not_equal(values[1:], values[:-1], out=keep[1:])
    return values[keep]


def unique_per_text(values: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each text's uint32 values (``counts[i]`` consecutive ones per text) sorted without repeats, and the new counts.

    Texts of similar length are sorted together as the rows of one padded matrix: numpy sorts many
    short rows (SIMD, in cache) dozens of times faster than one long array of (text, value) keys.
    """
    counts = np.asarray(counts, dtype=np.int64)
    kept_counts = np.zeros(counts.size, np.int64)
    if values.size == 0:
        return np.zeros(0, np.uint32), kept_counts
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    by_size = np.argsort(counts, kind="stable")
    pieces = []
    for lo in range(0, counts.size, _ROWS_PER_SORT):
        rows = by_size[lo:lo + _ROWS_PER_SORT]
        sizes = counts[rows]
        width = int(sizes[-1])
        if width == 0:
            continue
        matrix = np.full((rows.size, width), 0xFFFFFFFF, np.uint32)
        matrix[np.repeat(np.arange(rows.size), sizes), ranges(np.zeros(rows.size, np.int64), sizes)] = \
            values[ranges(starts[rows], sizes)]
        matrix.sort(axis=1)
        keep = np.arange(width) < sizes[:, None]
        keep[:, 1:] &= matrix[:, 1:] != matrix[:, :-1]
        row_kept = keep.sum(axis=1)
        kept_counts[rows] = row_kept
        pieces.append((rows, matrix[keep], row_kept))
    offsets = np.concatenate(([0], np.cumsum(kept_counts)))
    out = np.empty(int(offsets[-1]), np.uint32)
    for rows, kept_values, row_kept in pieces:
        out[ranges(offsets[rows], row_kept)] = kept_values
    return out, kept_counts


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, s + n)`` for every (s, n): indices of many slices at once."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    ends = np.cumsum(lengths)
    within = np.arange(total, dtype=np.int64) - np.repeat(ends - lengths, lengths)
    return np.repeat(starts.astype(np.int64), lengths) + within
