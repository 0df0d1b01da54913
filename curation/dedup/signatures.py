"""MinHash signatures: a fixed-size sketch per text whose agreeing rows estimate Jaccard similarity.

Signatures are computed batch by batch straight from the texts (``text_signatures``), so a million
short records need the signatures (num_perm × 4 bytes each) and little else.

Example::

    sig, nonempty = text_signatures([normalise_text(t) for t in texts])
    estimated_similarity(sig, np.array([[0, 1]]))
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable, Sequence

import numpy as np

from curation.dedup.arrays import BATCH_RECORDS, SEED, U64, ngram_multipliers
from curation.dedup.shingles import DEFAULT_NGRAM, ShingleSets, window_hashes

DEFAULT_NUM_PERM = 128

Progress = Callable[[float, str], None]

_EMPTY_BIN = np.uint32(0xFFFFFFFF)
_DENSIFY_ROUNDS = 64


@lru_cache(maxsize=8)
def _densify_order(num_perm: int) -> np.ndarray:
    """For each round and bin, the bin an empty bin borrows from (the same for every text)."""
    return np.random.default_rng(SEED).integers(0, num_perm, size=(_DENSIFY_ROUNDS, num_perm))


def _signature_block(x: np.ndarray, counts: np.ndarray, num_perm: int) -> np.ndarray:
    """MinHash rows for consecutive texts owning ``counts`` of the values ``x`` (each count > 0).

    One-permutation hashing with optimal densification (Shrivastava, 2017): a shingle's hash picks
    its bin (its top bits) and competes there for the minimum, so each shingle costs one step
    instead of ``num_perm``; an empty bin borrows the value of the bin a fixed random sequence
    points to first that is not empty. Two texts agree in a row with probability equal to their
    Jaccard similarity, as with ``num_perm`` separate permutations.
    """
    rows = counts.size
    owner = np.repeat(np.arange(rows, dtype=np.int64), counts)
    bins = ((x.astype(np.uint64) * U64(num_perm)) >> U64(32)).astype(np.int64)
    block = np.full(rows * num_perm, _EMPTY_BIN, np.uint32)
    np.minimum.at(block, owner * num_perm + bins, x)
    block = block.reshape(rows, num_perm)
    filled = block.copy()
    todo_r, todo_j = np.nonzero(block == _EMPTY_BIN)
    order = _densify_order(num_perm)
    for attempt in range(_DENSIFY_ROUNDS):
        if todo_r.size == 0:
            break
        borrowed = block[todo_r, order[attempt, todo_j]]
        found = borrowed != _EMPTY_BIN
        filled[todo_r[found], todo_j[found]] = borrowed[found]
        todo_r, todo_j = todo_r[~found], todo_j[~found]
    if todo_r.size:
        # Texts with only a shingle or two: borrow from the first non-empty bin to the right.
        for r, j in zip(todo_r.tolist(), todo_j.tolist()):
            ring = np.roll(block[r], -j)
            filled[r, j] = ring[np.argmax(ring != _EMPTY_BIN)]
    return filled


def minhash_signatures(sets: ShingleSets, num_perm: int = DEFAULT_NUM_PERM, *,
                       progress: Progress | None = None) -> np.ndarray:
    """A ``(len(sets), num_perm)`` uint32 MinHash matrix; an empty set's row is all 0xFFFFFFFF.

    Rows come from one-permutation hashing with densification (see ``_signature_block``).
    """
    n = len(sets)
    out = np.full((n, num_perm), 0xFFFFFFFF, np.uint32)
    sizes = sets.sizes
    for start in range(0, n, BATCH_RECORDS):
        stop = min(n, start + BATCH_RECORDS)
        rows = start + np.flatnonzero(sizes[start:stop] > 0)
        if rows.size:
            x = sets.values[sets.offsets[start]:sets.offsets[stop]]
            out[rows] = _signature_block(x, sizes[rows], num_perm)
        if progress:
            progress(stop / max(1, n), "computing signatures")
    return out


def text_signatures(normalised: Sequence[str], num_perm: int = DEFAULT_NUM_PERM, *, ngram: int = DEFAULT_NGRAM,
                    progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MinHash rows straight from normalised texts, batch by batch, and which texts have shingles.

    The same signature as ``minhash_signatures(shingle_sets(...))`` (a repeated shingle cannot change
    a minimum), without ever holding or sorting every text's shingles: memory stays at the signatures.
    """
    multipliers = ngram_multipliers(ngram)
    n = len(normalised)
    out = np.full((n, num_perm), 0xFFFFFFFF, np.uint32)
    nonempty = np.zeros(n, bool)
    for start in range(0, n, BATCH_RECORDS):
        stop = min(n, start + BATCH_RECORDS)
        hashes, windows = window_hashes(normalised[start:stop], ngram, multipliers)
        present = windows > 0
        nonempty[start:stop] = present
        if present.any():
            out[start + np.flatnonzero(present)] = _signature_block(hashes, windows[present], num_perm)
        if progress:
            progress(stop / max(1, n), "computing signatures")
    return out, nonempty


def estimated_similarity(signatures: np.ndarray, pairs: np.ndarray, *, chunk: int = 32_768) -> np.ndarray:
    """MinHash estimate of each pair's Jaccard similarity: the share of agreeing signature rows.

    Pairs go in chunks: each one's two rows are copied out, so 32k pairs take ~36 MB at 128 permutations
    (200k took 230 MB, as much as a hundred thousand records' signatures, for no gain in speed)."""
    out = np.zeros(len(pairs), np.float64)
    for start in range(0, len(pairs), chunk):
        block = pairs[start:start + chunk]
        out[start:start + len(block)] = (signatures[block[:, 0]] == signatures[block[:, 1]]).mean(axis=1)
    return out
