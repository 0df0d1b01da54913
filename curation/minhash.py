"""Near-duplicate machinery shared by dedup and the split leakage audit: shingles, MinHash, LSH, verification.

A text becomes a set of character n-gram shingles of its normalised form (case folded, punctuation
and runs of whitespace turned into one space). Two texts are near duplicates when the Jaccard
similarity of their shingle sets is at least a threshold. MinHash signatures and LSH banding only
propose candidate pairs cheaply; every candidate is then **verified** on the exact shingle sets, so
a pair that merely collides in LSH (shared boilerplate, bad luck) never counts as a duplicate.

Why character 5-grams and 0.55: on the generated chat set of ``benchmarks/dedup.py`` (a few words
replaced, inserted or deleted; case and whitespace changes) word 5-grams drop a short record with
two edited words to a Jaccard near 0.4, while character 5-grams keep it above 0.6; unrelated
records, and records that only share a long boilerplate paragraph, stay well under 0.45.

Everything is vectorised with numpy over batches of records (no Python loop per shingle), which is
what makes a million short records a matter of minutes in a few GB.

Example::

    near_duplicate_clusters(["Reset my password", "reset my  password!", "Refund please"])
    # -> [NearDuplicateCluster(keeper=0, members=[0, 1], similarities=[1.0, 1.0])]
    cross_near_duplicates(test_prompts, train_prompts)   # [(query_index, corpus_index, similarity)]
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np

DEFAULT_THRESHOLD = 0.55
DEFAULT_NUM_PERM = 128
DEFAULT_NGRAM = 5
# LSH is tuned to propose pairs well below the threshold too, so verification (exact) decides.
_LSH_MARGIN = 0.15
_BATCH_RECORDS = 4096
_MAX_PAIRS_PER_BUCKET_MEMBER = 48
_SEED = 20240611
_U64 = np.uint64
_MASK32 = _U64(0xFFFFFFFF)

Progress = Callable[[float, str], None]

_NON_WORD = re.compile(r"[\W_]+")


def normalise_text(text: str) -> str:
    """Case folded, Unicode-normalised, punctuation and whitespace runs collapsed to one space."""
    return " ".join(_NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).split())


@dataclass
class ShingleSets:
    """The shingle sets of many texts, concatenated: text i owns ``values[offsets[i]:offsets[i+1]]``.

    Each text's values are unique, sorted 32-bit shingle hashes.
    """
    values: np.ndarray   # uint32
    offsets: np.ndarray  # int64, len(texts) + 1

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)

    def of(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i]:self.offsets[i + 1]]


@dataclass
class NearDuplicateCluster:
    """A keeper and the members verified to be within the threshold of it (keeper first, similarity 1)."""
    keeper: int
    members: list[int]
    similarities: list[float]


def _ngram_multipliers(ngram: int) -> np.ndarray:
    rng = np.random.default_rng(_SEED + ngram)
    return rng.integers(1, 2**63, size=ngram, dtype=np.uint64) | _U64(1)


def _mix64(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place: spreads the polynomial window hash over all 64 bits."""
    h ^= h >> _U64(30)
    h *= _U64(0xBF58476D1CE4E5B9)
    h ^= h >> _U64(27)
    h *= _U64(0x94D049BB133111EB)
    h ^= h >> _U64(31)
    return h


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, s + n)`` for every (s, n): indices of many slices at once."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    ends = np.cumsum(lengths)
    within = np.arange(total, dtype=np.int64) - np.repeat(ends - lengths, lengths)
    return np.repeat(starts.astype(np.int64), lengths) + within


def _shingle_batch(texts: Sequence[str], ngram: int, multipliers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique sorted shingle hashes and per-text counts for one batch of normalised texts."""
    # A text shorter than one shingle (but not empty) is one shingle: itself, padded.
    padded = [t if len(t) >= ngram or not t else t.ljust(ngram, "\0") for t in texts]
    lengths = np.fromiter((len(t) for t in padded), np.int64, len(padded))
    codes = np.frombuffer("".join(padded).encode("utf-32-le"), np.uint32).astype(np.uint64)
    windows = np.maximum(lengths - ngram + 1, 0)
    if codes.size < ngram or windows.sum() == 0:
        return np.zeros(0, np.uint32), np.zeros(len(texts), np.int64)
    last = codes.size - ngram + 1
    h = codes[:last] * multipliers[0]
    for j in range(1, ngram):
        h += codes[j:last + j] * multipliers[j]
    _mix64(h)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    positions = _ranges(starts, windows)
    owner = np.repeat(np.arange(len(texts), dtype=np.uint64), windows)
    keys = (owner << _U64(32)) | (h[positions] >> _U64(32))
    keys.sort()
    keep = np.empty(keys.size, bool)
    keep[0] = True
    np.not_equal(keys[1:], keys[:-1], out=keep[1:])
    keys = keys[keep]
    counts = np.bincount((keys >> _U64(32)).astype(np.int64), minlength=len(texts))
    return (keys & _MASK32).astype(np.uint32), counts


def shingle_sets(texts: Sequence[str], *, ngram: int = DEFAULT_NGRAM, normalised: bool = False,
                 progress: Progress | None = None) -> ShingleSets:
    """The character ``ngram`` shingle sets of ``texts`` (normalised first unless ``normalised``)."""
    if ngram < 1:
        raise ValueError("ngram must be at least 1")
    multipliers = _ngram_multipliers(ngram)
    parts, counts = [], []
    for start in range(0, len(texts), _BATCH_RECORDS):
        batch = texts[start:start + _BATCH_RECORDS]
        if not normalised:
            batch = [normalise_text(t) for t in batch]
        values, batch_counts = _shingle_batch(batch, ngram, multipliers)
        parts.append(values)
        counts.append(batch_counts)
        if progress:
            progress(min(1.0, (start + len(batch)) / max(1, len(texts))), "reading texts")
    values = np.concatenate(parts) if parts else np.zeros(0, np.uint32)
    offsets = np.zeros(len(texts) + 1, np.int64)
    if counts:
        np.cumsum(np.concatenate(counts), out=offsets[1:])
    return ShingleSets(values=values, offsets=offsets)


def _permutations(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(_SEED)
    a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) | _U64(1)
    b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    return a, b


def minhash_signatures(sets: ShingleSets, num_perm: int = DEFAULT_NUM_PERM, *,
                       progress: Progress | None = None) -> np.ndarray:
    """A ``(len(sets), num_perm)`` uint32 MinHash matrix; an empty set's row is all 0xFFFFFFFF.

    Permutation k maps a 32-bit shingle hash x to ``((a_k * x + b_k) mod 2**64) >> 32``
    (multiply-add-shift, a universal family), computed for a whole batch per numpy call.
    """
    a, b = _permutations(num_perm)
    n = len(sets)
    out = np.full((n, num_perm), 0xFFFFFFFF, np.uint32)
    sizes = sets.sizes
    for start in range(0, n, _BATCH_RECORDS):
        stop = min(n, start + _BATCH_RECORDS)
        rows = np.arange(start, stop)
        rows = rows[sizes[start:stop] > 0]
        if rows.size:
            lo, hi = sets.offsets[start], sets.offsets[stop]
            x = sets.values[lo:hi].astype(np.uint64)
            firsts = sets.offsets[rows] - lo
            buf = np.empty_like(x)
            block = np.empty((rows.size, num_perm), np.uint32)
            for k in range(num_perm):
                np.multiply(x, a[k], out=buf)
                buf += b[k]
                buf >>= _U64(32)
                block[:, k] = np.minimum.reduceat(buf, firsts)
            out[rows] = block
        if progress:
            progress(stop / max(1, n), "computing signatures")
    return out


@lru_cache(maxsize=32)
def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) whose candidate curve is steep at ``threshold - margin``: LSH proposes, verification decides.

    Chosen as datasketch's MinHashLSH does (minimising false positive and false negative areas),
    with false negatives weighted 0.9 because a missed candidate can never be recovered.
    """
    from scipy.integrate import quad

    target = max(0.05, threshold - _LSH_MARGIN)
    best, best_error = (1, num_perm), float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            fp = quad(lambda s: 1 - (1 - s ** rows) ** bands, 0.0, target)[0]
            fn = quad(lambda s: (1 - s ** rows) ** bands, target, 1.0)[0]
            error = 0.1 * fp + 0.9 * fn
            if error < best_error:
                best, best_error = (bands, rows), error
    return best


def _band_keys(sig: np.ndarray, bands: int, rows: int) -> list[np.ndarray]:
    mult = _ngram_multipliers(rows + 1000)[:rows]
    keys = []
    for band in range(bands):
        block = sig[:, band * rows:(band + 1) * rows].astype(np.uint64)
        key = block[:, 0] * mult[0]
        for j in range(1, rows):
            key += block[:, j] * mult[j]
        keys.append(_mix64(key))
    return keys


def lsh_candidate_pairs(signatures: np.ndarray, threshold: float = DEFAULT_THRESHOLD, *,
                        active: np.ndarray | None = None, progress: Progress | None = None) -> np.ndarray:
    """Pairs ``(i, j)``, i < j, that share at least one LSH band: an ``(m, 2)`` int64 array, unique.

    ``active`` (bool per row) leaves rows out (empty texts). In a bucket with very many members each
    member is paired with its next few neighbours only, so one template shared by thousands of
    records cannot blow up into millions of pairs.
    """
    n, num_perm = signatures.shape
    bands, rows = lsh_bands(threshold, num_perm)
    index = np.arange(n, dtype=np.int64) if active is None else np.flatnonzero(active)
    if index.size < 2:
        return np.zeros((0, 2), np.int64)
    sig = signatures[index]
    found = []
    for band, key in enumerate(_band_keys(sig, bands, rows)):
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        for step in range(1, _MAX_PAIRS_PER_BUCKET_MEMBER + 1):
            same = np.flatnonzero(sorted_key[:-step] == sorted_key[step:])
            if same.size == 0:
                break
            left, right = index[order[same]], index[order[same + step]]
            found.append((np.minimum(left, right).astype(np.uint64) << _U64(32))
                         | np.maximum(left, right).astype(np.uint64))
        if progress:
            progress((band + 1) / bands, "finding candidate pairs")
    if not found:
        return np.zeros((0, 2), np.int64)
    packed = np.unique(np.sort(np.concatenate(found)))
    return np.stack([(packed >> _U64(32)).astype(np.int64), (packed & _MASK32).astype(np.int64)], axis=1)


def jaccard_pairs(left: ShingleSets, pairs: np.ndarray, right: ShingleSets | None = None,
                  *, chunk: int = 200_000) -> np.ndarray:
    """Exact Jaccard similarity of the shingle sets of each pair (left[i], right[j]); float64 array."""
    right = left if right is None else right
    out = np.zeros(len(pairs), np.float64)
    left_sizes, right_sizes = left.sizes, right.sizes
    for start in range(0, len(pairs), chunk):
        block = pairs[start:start + chunk]
        i, j = block[:, 0], block[:, 1]
        na, nb = left_sizes[i], right_sizes[j]
        pid = np.arange(len(block), dtype=np.uint64)
        va = left.values[_ranges(left.offsets[i], na)].astype(np.uint64)
        vb = right.values[_ranges(right.offsets[j], nb)].astype(np.uint64)
        keys = np.concatenate([(np.repeat(pid, na) << _U64(32)) | va, (np.repeat(pid, nb) << _U64(32)) | vb])
        keys.sort()
        # Each set is unique, so two equal neighbours after sorting are one shingle found on both sides.
        shared = keys[1:][keys[1:] == keys[:-1]] >> _U64(32)
        inter = np.bincount(shared.astype(np.int64), minlength=len(block)).astype(np.float64)
        union = (na + nb).astype(np.float64) - inter
        out[start:start + len(block)] = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return out


def similarity(a: str, b: str, *, ngram: int = DEFAULT_NGRAM) -> float:
    """The verified similarity of two texts: Jaccard of their shingle sets (0 if either is empty)."""
    sets = shingle_sets([a, b], ngram=ngram)
    return float(jaccard_pairs(sets, np.array([[0, 1]]))[0])


def verified_pairs(sets: ShingleSets, threshold: float = DEFAULT_THRESHOLD, *,
                   num_perm: int = DEFAULT_NUM_PERM, progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Within one collection: candidate pairs from MinHash LSH, kept only if their exact similarity ≥ threshold."""
    sig = minhash_signatures(sets, num_perm, progress=_stage(progress, 0.0, 0.6))
    pairs = lsh_candidate_pairs(sig, threshold, active=sets.sizes > 0, progress=_stage(progress, 0.6, 0.85))
    del sig
    sims = jaccard_pairs(sets, pairs)
    keep = sims >= threshold
    if progress:
        progress(1.0, "verified candidate pairs")
    return pairs[keep], sims[keep]


def near_duplicate_clusters(texts: Sequence[str], threshold: float = DEFAULT_THRESHOLD, *,
                            num_perm: int = DEFAULT_NUM_PERM, ngram: int = DEFAULT_NGRAM,
                            priority: Sequence[float] | np.ndarray | None = None,
                            progress: Progress | None = None) -> list[NearDuplicateCluster]:
    """Clusters of near-duplicate texts (only clusters of two or more), each member verified against its keeper.

    Texts are visited in ``priority`` order (lower first; default: input order). The first unclaimed
    text with a verified neighbour becomes a keeper and claims every unclaimed text whose similarity
    to *it* is ≥ threshold. No transitive chaining: A~B and B~C never puts A and C together unless
    C is within the threshold of the keeper itself.
    """
    _check_threshold(threshold)
    sets = shingle_sets(texts, ngram=ngram, progress=_stage(progress, 0.0, 0.3))
    pairs, sims = verified_pairs(sets, threshold, num_perm=num_perm, progress=_stage(progress, 0.3, 0.95))
    n = len(texts)
    rank = np.arange(n, dtype=np.float64) if priority is None else np.asarray(priority, dtype=np.float64)
    if rank.shape != (n,):
        raise ValueError("priority must give one number per text")
    return _star_clusters(n, pairs, sims, rank)


def _star_clusters(n: int, pairs: np.ndarray, sims: np.ndarray, rank: np.ndarray) -> list[NearDuplicateCluster]:
    if len(pairs) == 0:
        return []
    both = np.concatenate([pairs, pairs[:, ::-1]])
    both_sims = np.concatenate([sims, sims])
    order = np.lexsort((both[:, 1], both[:, 0]))
    both, both_sims = both[order], both_sims[order]
    starts = np.searchsorted(both[:, 0], np.arange(n + 1))
    claimed = np.zeros(n, bool)
    clusters = []
    visit = np.lexsort((np.arange(n), rank))
    has_edges = np.diff(starts) > 0
    for keeper in visit[has_edges[visit]]:
        if claimed[keeper]:
            continue
        lo, hi = starts[keeper], starts[keeper + 1]
        neighbours, neighbour_sims = both[lo:hi, 1], both_sims[lo:hi]
        free = ~claimed[neighbours]
        if not free.any():
            continue
        members, member_sims = neighbours[free], neighbour_sims[free]
        by_rank = np.lexsort((members, rank[members]))
        claimed[keeper] = True
        claimed[members] = True
        clusters.append(NearDuplicateCluster(
            keeper=int(keeper), members=[int(keeper)] + [int(m) for m in members[by_rank]],
            similarities=[1.0] + [round(float(s), 4) for s in member_sims[by_rank]]))
    return clusters


def cross_near_duplicates(queries: Sequence[str], corpus: Sequence[str], threshold: float = DEFAULT_THRESHOLD, *,
                          num_perm: int = DEFAULT_NUM_PERM, ngram: int = DEFAULT_NGRAM,
                          progress: Progress | None = None) -> list[tuple[int, int, float]]:
    """Every (query_index, corpus_index, similarity) with verified similarity ≥ threshold, sorted.

    For leakage audits: which test prompts have a near-duplicate in train. Empty texts match nothing.
    All matching corpus texts of a query are returned, not only the best one.
    """
    _check_threshold(threshold)
    nq = len(queries)
    if nq == 0 or len(corpus) == 0:
        return []
    sets = shingle_sets(list(queries) + list(corpus), ngram=ngram, progress=_stage(progress, 0.0, 0.3))
    sig = minhash_signatures(sets, num_perm, progress=_stage(progress, 0.3, 0.7))
    pairs = lsh_candidate_pairs(sig, threshold, active=sets.sizes > 0, progress=_stage(progress, 0.7, 0.9))
    del sig
    pairs = pairs[(pairs[:, 0] < nq) & (pairs[:, 1] >= nq)]
    sims = jaccard_pairs(sets, pairs)
    keep = sims >= threshold
    if progress:
        progress(1.0, "verified candidate pairs")
    return [(int(q), int(c) - nq, round(float(s), 4)) for (q, c), s in zip(pairs[keep], sims[keep])]


def _check_threshold(threshold: float) -> None:
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"the similarity threshold must be between 0 and 1, got {threshold}")


def _stage(progress: Progress | None, lo: float, hi: float) -> Progress | None:
    """A progress callback for one stage, mapping its 0..1 onto lo..hi of the whole."""
    if progress is None:
        return None
    return lambda fraction, text: progress(lo + (hi - lo) * fraction, text)
