"""Near-duplicate machinery shared by dedup and the split leakage audit: shingles, MinHash, LSH, verification.

A text becomes a set of character n-gram shingles of its normalised form (case folded, punctuation
and runs of whitespace turned into one space). MinHash signatures and LSH banding only propose
candidate pairs cheaply; every candidate is then **verified** (``verify_pairs``) before it counts:

1. the exact Jaccard similarity of the two shingle sets is at least the threshold;
2. conversations with as many turns keep every aligned turn recognisable (similarity ≥ 0.3);
3. neither text has a run of 9+ words the other lacks (new content rather than an edit);
4. what remains after removing boilerplate that 20+ texts share verbatim is still ≥ threshold.

Rules 2-4 are what keep records that share a template answer, a signature or a policy paragraph
apart even when that shared text dominates them.

Why character 5-grams and 0.6, measured on ``benchmarks/planted_duplicates.py`` (30k records,
1-3 words replaced, inserted or deleted per copy, case and whitespace changes): word 5-grams lose a
third of the planted pairs (one edit breaks five shingles of a 30-word record), while with
character 5-grams 99% of them score 0.7 or more and pair recall at 0.6 is 0.997; unrelated records
score under 0.1 (99.9th percentile 0.09). Character 3- and 4-grams score edited copies higher but
unrelated records much higher too (99.9th percentiles 0.31 and 0.15), so LSH proposes more chance
candidates; below 0.6 LSH needs fewer rows per band and proposes ~10x more of them.

Everything is vectorised with numpy over batches of records (no Python loop per shingle), and
signatures are computed batch by batch straight from the texts, so a million short records need
the signatures (num_perm × 4 bytes each) and little else.

Example::

    near_duplicate_clusters(["Reset my password", "reset my  password!", "Refund please"])
    # -> [NearDuplicateCluster(keeper=0, members=[0, 1], similarities=[1.0, 1.0])]
    cross_near_duplicates(test_prompts, train_prompts)   # [(query_index, corpus_index, similarity)]
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterator, Sequence

import numpy as np

DEFAULT_THRESHOLD = 0.6
DEFAULT_NUM_PERM = 128
DEFAULT_NGRAM = 5
# LSH is tuned to propose pairs below the threshold too, so verification (exact) decides.
_LSH_MARGIN = 0.1
# Candidates whose MinHash estimate is this far below the threshold are not worth an exact check
# (over 2 standard deviations of a 128-row estimate near the threshold; most true pairs sit far above it).
_ESTIMATE_MARGIN = 0.1
_BATCH_RECORDS = 4096
_ROWS_PER_SORT = 512
_MAX_PAIRS_PER_BUCKET_MEMBER = 48
_SEED = 20240611
_U64 = np.uint64
_MASK32 = _U64(0xFFFFFFFF)
# Turns of one conversation are joined with this (ASCII record separator) so verification can align them.
TURN_SEPARATOR = "\x1e"
# A light edit leaves every turn recognisable; a different question under the same template answer does not.
_MIN_TURN_SIMILARITY = 0.3
# A light edit touches a word or two at a time; a run of this many words in one text that share no
# 3-word window with the other is new content (another question, another answer), not an edit.
_NEW_CONTENT_WORDS = 9
# Boilerplate: a run of at least _BOILERPLATE_RUN word windows (3 words each) that at least
# _BOILERPLATE_RECORDS distinct texts contain verbatim (a greeting, a signature, a policy paragraph).
_WINDOW_WORDS = 3
_BOILERPLATE_RUN = 4
_BOILERPLATE_RECORDS = 20
_WANTED_BITS = 22

Progress = Callable[[float, str], None]

class _WordCharacters(dict):
    """str.translate table, filled on first sight of each character: letters and digits stay, the rest is a space."""

    def __missing__(self, code: int) -> int:
        kept = code if chr(code).isalnum() else 32
        self[code] = kept
        return kept


_WORD_CHARACTERS = _WordCharacters()


# For ASCII text: letters lowered, digits kept, everything else a space (bytes.translate is ~10x str.translate).
_ASCII_WORD_BYTES = bytes(c + 32 if 65 <= c <= 90 else c if chr(c).isalnum() else 32 for c in range(256))


def normalise_text(text: str) -> str:
    """Case folded, Unicode-normalised, punctuation and whitespace runs collapsed to one space."""
    if text.isascii():
        return " ".join(text.encode("ascii").translate(_ASCII_WORD_BYTES).decode("ascii").split())
    text = unicodedata.normalize("NFKC", text)
    return " ".join(text.casefold().translate(_WORD_CHARACTERS).split())


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


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique by sorting in place (numpy's default unique hashes, several times slower here)."""
    values.sort()
    if values.size == 0:
        return values
    keep = np.empty(values.size, bool)
    keep[0] = True
    np.not_equal(values[1:], values[:-1], out=keep[1:])
    return values[keep]


def _unique_per_text(values: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
        matrix[np.repeat(np.arange(rows.size), sizes), _ranges(np.zeros(rows.size, np.int64), sizes)] = \
            values[_ranges(starts[rows], sizes)]
        matrix.sort(axis=1)
        keep = np.arange(width) < sizes[:, None]
        keep[:, 1:] &= matrix[:, 1:] != matrix[:, :-1]
        row_kept = keep.sum(axis=1)
        kept_counts[rows] = row_kept
        pieces.append((rows, matrix[keep], row_kept))
    offsets = np.concatenate(([0], np.cumsum(kept_counts)))
    out = np.empty(int(offsets[-1]), np.uint32)
    for rows, kept_values, row_kept in pieces:
        out[_ranges(offsets[rows], row_kept)] = kept_values
    return out, kept_counts


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, s + n)`` for every (s, n): indices of many slices at once."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    ends = np.cumsum(lengths)
    within = np.arange(total, dtype=np.int64) - np.repeat(ends - lengths, lengths)
    return np.repeat(starts.astype(np.int64), lengths) + within


def _window_hashes(texts: Sequence[str], ngram: int, multipliers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every character ``ngram`` window of a batch of normalised texts as a 32-bit hash, text after
    text (repeats included), and the number of windows per text."""
    # A text shorter than one shingle (but not empty) is one shingle: itself, padded.
    lengths = np.array(list(map(len, texts)), np.int64)
    short = np.flatnonzero((lengths > 0) & (lengths < ngram))
    padded = list(texts)
    for i in short.tolist():
        padded[i] = padded[i].ljust(ngram, "\0")
    lengths[short] = ngram
    windows = np.maximum(lengths - ngram + 1, 0)
    codes = np.frombuffer("".join(padded).encode("utf-32-le"), np.uint32).astype(np.uint64)
    if windows.sum() == 0:
        return np.zeros(0, np.uint32), windows
    last = codes.size - ngram + 1
    h = codes[:last] * multipliers[0]
    for j in range(1, ngram):
        h += codes[j:last + j] * multipliers[j]
    # One xorshift-multiply round is enough to spread the polynomial into the top 32 bits kept.
    h ^= h >> _U64(29)
    h *= _U64(0xBF58476D1CE4E5B9)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    return (h[_ranges(starts, windows)] >> _U64(32)).astype(np.uint32), windows


def _shingle_batch(texts: Sequence[str], ngram: int, multipliers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique sorted shingle hashes and per-text counts for one batch of normalised texts."""
    hashes, windows = _window_hashes(texts, ngram, multipliers)
    return _unique_per_text(hashes, windows)


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


_EMPTY_BIN = np.uint32(0xFFFFFFFF)
_DENSIFY_ROUNDS = 64


@lru_cache(maxsize=8)
def _densify_order(num_perm: int) -> np.ndarray:
    """For each round and bin, the bin an empty bin borrows from (the same for every text)."""
    return np.random.default_rng(_SEED).integers(0, num_perm, size=(_DENSIFY_ROUNDS, num_perm))


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
    bins = ((x.astype(np.uint64) * _U64(num_perm)) >> _U64(32)).astype(np.int64)
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
    for start in range(0, n, _BATCH_RECORDS):
        stop = min(n, start + _BATCH_RECORDS)
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
    multipliers = _ngram_multipliers(ngram)
    n = len(normalised)
    out = np.full((n, num_perm), 0xFFFFFFFF, np.uint32)
    nonempty = np.zeros(n, bool)
    for start in range(0, n, _BATCH_RECORDS):
        stop = min(n, start + _BATCH_RECORDS)
        hashes, windows = _window_hashes(normalised[start:stop], ngram, multipliers)
        present = windows > 0
        nonempty[start:stop] = present
        if present.any():
            out[start + np.flatnonzero(present)] = _signature_block(hashes, windows[present], num_perm)
        if progress:
            progress(stop / max(1, n), "computing signatures")
    return out, nonempty


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


def _band_keys(sig: np.ndarray, bands: int, rows: int) -> Iterator[np.ndarray]:
    """One 64-bit key per text and band, a band at a time (all bands at once would double the memory)."""
    mult = _ngram_multipliers(rows + 1000)[:rows]
    for band in range(bands):
        block = sig[:, band * rows:(band + 1) * rows].astype(np.uint64)
        key = block[:, 0] * mult[0]
        for j in range(1, rows):
            key += block[:, j] * mult[j]
        yield _mix64(key)


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
    packed = _sorted_unique(np.concatenate(found))
    return np.stack([(packed >> _U64(32)).astype(np.int64), (packed & _MASK32).astype(np.int64)], axis=1)


def jaccard_pairs(left: ShingleSets, pairs: np.ndarray, right: ShingleSets | None = None,
                  *, chunk: int = 256) -> np.ndarray:
    """Exact Jaccard similarity of the shingle sets of each pair (left[i], right[j]); float64 array.

    Pairs go in chunks small enough for their shingles to stay in cache (256 pairs: 25% faster than 4096).
    """
    right = left if right is None else right
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    out = np.zeros(len(pairs), np.float64)
    left_sizes, right_sizes = left.sizes, right.sizes
    for start in range(0, len(pairs), chunk):
        block = pairs[start:start + chunk]
        i, j = block[:, 0], block[:, 1]
        na, nb = left_sizes[i], right_sizes[j]
        pid = np.arange(len(block), dtype=np.uint64)
        # Both key arrays come out sorted (pair id, then each set's sorted values): no sort needed.
        keys_a = (np.repeat(pid, na) << _U64(32)) | left.values[_ranges(left.offsets[i], na)].astype(np.uint64)
        keys_b = (np.repeat(pid, nb) << _U64(32)) | right.values[_ranges(right.offsets[j], nb)].astype(np.uint64)
        if keys_b.size == 0:
            continue
        at = np.searchsorted(keys_b, keys_a).clip(max=keys_b.size - 1)
        found = keys_b[at] == keys_a
        inter = np.bincount((keys_a[found] >> _U64(32)).astype(np.int64), minlength=len(block)).astype(np.float64)
        union = (na + nb).astype(np.float64) - inter
        out[start:start + len(block)] = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return out


def estimated_similarity(signatures: np.ndarray, pairs: np.ndarray, *, chunk: int = 200_000) -> np.ndarray:
    """MinHash estimate of each pair's Jaccard similarity: the share of agreeing signature rows."""
    out = np.zeros(len(pairs), np.float64)
    for start in range(0, len(pairs), chunk):
        block = pairs[start:start + chunk]
        out[start:start + len(block)] = (signatures[block[:, 0]] == signatures[block[:, 1]]).mean(axis=1)
    return out


def similarity(a: str, b: str, *, ngram: int = DEFAULT_NGRAM) -> float:
    """The Jaccard similarity of two texts' shingle sets (0 if either is empty), before any boilerplate rule."""
    sets = shingle_sets([a, b], ngram=ngram)
    return float(jaccard_pairs(sets, np.array([[0, 1]]))[0])


def join_turns(turns: Sequence[str]) -> str:
    """One text for a conversation whose turns verification can still tell apart."""
    return TURN_SEPARATOR.join(turns)


def _word_windows(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hashes of every run of _WINDOW_WORDS words in normalised texts.

    Returns (hashes uint32, owner text, first word's global index, words per text).
    """
    joined = " ".join(texts) + " "
    codes = np.frombuffer(joined.encode("utf-32-le"), np.uint32)
    space = codes == 32
    is_start = ~space & np.concatenate(([True], space[:-1]))
    starts = np.flatnonzero(is_start)
    words_seen = np.cumsum(is_start)
    text_ends = np.cumsum(np.array(list(map(len, texts)), np.int64) + 1)
    words_per_text = np.diff(np.concatenate(([0], words_seen[text_ends - 1])))
    owner_of_word = np.repeat(np.arange(len(texts), dtype=np.int64), words_per_text)
    k = _WINDOW_WORDS
    if starts.size < k:
        return np.zeros(0, np.uint32), np.zeros(0, np.int64), np.zeros(0, np.int64), words_per_text
    first = np.arange(starts.size - k + 1)
    first = first[owner_of_word[first] == owner_of_word[first + k - 1]]
    # A word's hash sums its characters mixed with their place in the word (no powers to precompute).
    place = np.arange(codes.size, dtype=np.uint64) - starts[np.maximum(words_seen - 1, 0)].astype(np.uint64)
    mixed = codes.astype(np.uint64) * _U64(0x9E3779B97F4A7C15) + place * _U64(0xD6E8FEB86659FD93)
    # One xorshift-multiply round per character is enough: the window hash is mixed in full below.
    mixed ^= mixed >> _U64(29)
    mixed *= _U64(0xBF58476D1CE4E5B9)
    mixed[space] = 0
    word_hash = np.add.reduceat(mixed, starts)
    mult = _ngram_multipliers(k + 2000)
    h = word_hash[first] * mult[0]
    for j in range(1, k):
        h += word_hash[first + j] * mult[j]
    h = _mix64(h)
    return (h >> _U64(32)).astype(np.uint32), owner_of_word[first], first, words_per_text


def boilerplate_windows(normalised: Sequence[str], *, among: Sequence[str] | None = None,
                        min_records: int = _BOILERPLATE_RECORDS) -> np.ndarray:
    """Sorted hashes of the word windows that at least ``min_records`` distinct texts contain.

    ``among``: only windows of these texts can qualify (the texts about to be checked), which
    spares sorting every window of the collection.
    """
    wanted = None
    if among is not None:
        wanted = _sorted_unique(_word_windows(list(among))[0])
        tally = np.zeros(wanted.size, np.int64)
    distinct = list(dict.fromkeys(normalised))
    found = []
    if wanted is not None:
        # Most windows of the collection are in no text being checked: a bitmap of the wanted ones drops them cheaply.
        maybe_wanted = np.zeros(1 << _WANTED_BITS, bool)
        maybe_wanted[wanted >> np.uint32(32 - _WANTED_BITS)] = True
    for start in range(0, len(distinct), _BATCH_RECORDS):
        hashes, owner, _, _ = _word_windows(distinct[start:start + _BATCH_RECORDS])
        if wanted is not None:
            hit = maybe_wanted[hashes >> np.uint32(32 - _WANTED_BITS)]
            hashes, owner = hashes[hit], owner[hit]
        per_text = _unique_per_text(hashes, np.bincount(owner, minlength=len(distinct[start:start + _BATCH_RECORDS])))[0]
        if wanted is None:
            found.append(per_text)
        elif wanted.size:
            at = np.searchsorted(wanted, per_text).clip(max=wanted.size - 1)
            hit = wanted[at] == per_text
            tally += np.bincount(at[hit], minlength=wanted.size)
    if wanted is not None:
        return wanted[tally >= min_records] if wanted.size else wanted
    hashes = np.sort(np.concatenate(found)) if found else np.zeros(0, np.uint32)
    if hashes.size == 0:
        return hashes
    run_starts = np.flatnonzero(np.concatenate(([True], hashes[1:] != hashes[:-1])))
    counts = np.diff(np.append(run_starts, hashes.size))
    return hashes[run_starts[counts >= min_records]]


def strip_boilerplate(normalised: Sequence[str], boilerplate: np.ndarray) -> list[str]:
    """The texts without their boilerplate runs (at least _BOILERPLATE_RUN windows in a row)."""
    if boilerplate.size == 0 or not normalised:
        return list(normalised)
    hashes, owner, first, words_per_text = _word_windows(normalised)
    at = np.searchsorted(boilerplate, hashes).clip(max=boilerplate.size - 1)
    flag = boilerplate[at] == hashes
    # A run continues while the next window is flagged, starts one word later and is in the same text.
    follows = np.concatenate(([False], (first[1:] == first[:-1] + 1) & (owner[1:] == owner[:-1]) & flag[:-1]))
    run_id = np.cumsum(~follows) - 1
    run_len = np.bincount(run_id, weights=flag.astype(np.float64))
    in_long_run = flag & (run_len[run_id] >= _BOILERPLATE_RUN)
    total_words = int(words_per_text.sum())
    cover = np.zeros(total_words + 1, np.int64)
    np.add.at(cover, first[in_long_run], 1)
    np.add.at(cover, first[in_long_run] + _WINDOW_WORDS, -1)
    covered = np.cumsum(cover[:-1]) > 0
    out, word = [], 0
    for text, count in zip(normalised, words_per_text):
        mask = covered[word:word + count]
        out.append(" ".join(w for w, c in zip(text.split(), mask) if not c) if mask.any() else text)
        word += count
    return out


def _turns_agree(texts: Sequence[str], pairs: np.ndarray, ngram: int) -> np.ndarray:
    """Per pair: True unless both are conversations of as many turns and some aligned turn differs outright."""
    involved = np.unique(pairs)
    turns = [texts[i].split(TURN_SEPARATOR) for i in involved]
    count = np.array(list(map(len, turns)), np.int64)
    first = np.concatenate(([0], np.cumsum(count)[:-1]))
    local = np.searchsorted(involved, pairs)
    ca, cb = count[local[:, 0]], count[local[:, 1]]
    aligned = (ca == cb) & (ca > 1)
    ok = np.ones(len(pairs), bool)
    if not aligned.any():
        return ok
    # Only turns of aligned pairs are compared: the others' turns are given no shingles.
    needed = np.zeros(len(turns), bool)
    needed[local[aligned].ravel()] = True
    sets = shingle_sets([turn if use else "" for record_turns, use in zip(turns, needed) for turn in record_turns],
                        ngram=ngram)
    rows = np.flatnonzero(aligned)
    per_pair = ca[rows]
    seg_a = _ranges(first[local[rows, 0]], per_pair)
    seg_b = _ranges(first[local[rows, 1]], per_pair)
    sims = jaccard_pairs(sets, np.stack([seg_a, seg_b], axis=1))
    sims[(sets.sizes[seg_a] == 0) & (sets.sizes[seg_b] == 0)] = 1.0
    worst = np.ones(len(pairs))
    np.minimum.at(worst, np.repeat(rows, per_pair), sims)
    return worst >= _MIN_TURN_SIMILARITY


def longest_new_runs(normalised: Sequence[str], pairs: np.ndarray, *, chunk: int = 4096) -> np.ndarray:
    """Per pair (i, j): the longest run of words in either normalised text not covered by a 3-word window the other has."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    best = np.zeros(len(pairs), np.int64)
    if len(pairs) == 0:
        return best
    involved = np.unique(pairs)
    local = np.searchsorted(involved, pairs)
    hashes, owner, _, words = _word_windows([normalised[i] for i in involved])
    # Windows come text after text, one per word but the last two: window k of a text covers its words k..k+2.
    windows = np.bincount(owner, minlength=involved.size)
    window_start = np.concatenate(([0], np.cumsum(windows)[:-1]))
    set_values, set_sizes = _unique_per_text(hashes, windows)
    set_values = set_values.astype(np.uint64)
    set_start = np.concatenate(([0], np.cumsum(set_sizes)[:-1]))
    for side in (0, 1):
        for start in range(0, len(pairs), chunk):
            mine, theirs = local[start:start + chunk, side], local[start:start + chunk, 1 - side]
            pid = np.arange(len(mine), dtype=np.uint64)
            n_mine, n_theirs, n_words = windows[mine], set_sizes[theirs], words[mine]
            at = _ranges(window_start[mine], n_mine)
            probe = (np.repeat(pid, n_mine) << _U64(32)) | hashes[at].astype(np.uint64)
            table = (np.repeat(pid, n_theirs) << _U64(32)) | set_values[_ranges(set_start[theirs], n_theirs)]
            found = np.zeros(probe.size, bool)
            if table.size:
                found = table[np.searchsorted(table, probe).clip(max=table.size - 1)] == probe
            word_start = np.concatenate(([0], np.cumsum(n_words)[:-1]))
            first_word = np.repeat(word_start - window_start[mine], n_mine) + at
            total = int(n_words.sum())
            cover = (np.bincount(first_word[found], minlength=total + 3)
                     - np.bincount(first_word[found] + _WINDOW_WORDS, minlength=total + 3))
            covered = np.cumsum(cover[:total]) > 0
            segment_start = np.zeros(total, bool)
            segment_start[word_start[n_words > 0]] = True
            run = np.cumsum(covered | segment_start)
            uncovered = ~covered
            run_length = np.bincount(run[uncovered], minlength=run[-1] + 1 if total else 1)
            owner_pair = np.repeat(np.arange(len(mine)), n_words)
            longest = np.zeros(len(mine), np.int64)
            np.maximum.at(longest, owner_pair[uncovered], run_length[run[uncovered]])
            np.maximum(best[start:start + chunk], longest, out=best[start:start + chunk])
    return best


def verify_pairs(texts: Sequence[str], pairs: np.ndarray, threshold: float = DEFAULT_THRESHOLD, *,
                 normalised: Sequence[str] | None = None, boilerplate: np.ndarray | None = None,
                 ngram: int = DEFAULT_NGRAM) -> tuple[np.ndarray, np.ndarray]:
    """The candidate pairs that are near duplicates, with their similarity.

    A pair is kept when (1) the Jaccard similarity of the whole texts is ≥ threshold, (2) for two
    conversations of as many turns, every aligned turn keeps a similarity of at least 0.3 (a light
    edit leaves each turn recognisable), (3) neither text has a run of 9 or more words the other
    lacks (new content, not an edit), and (4) what is left once boilerplate shared by many texts
    (``boilerplate_windows``, counted over all ``normalised`` unless given) is removed from both
    is still ≥ threshold similar (or both were nothing but boilerplate).
    (2)-(4) are what stop records that only share a template reply or a signature from merging.
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if len(pairs) == 0:
        return pairs, np.zeros(0)
    if normalised is None:
        normalised = [normalise_text(t) for t in texts]
    involved = np.unique(pairs)
    local = np.searchsorted(involved, pairs)
    sets = shingle_sets([normalised[i] for i in involved], ngram=ngram, normalised=True)
    sims = jaccard_pairs(sets, local)
    keep = sims >= threshold
    pairs, sims = pairs[keep], sims[keep]
    if len(pairs) == 0:
        return pairs, sims
    # Cheaper check first: each pair must pass every rule, so the order only changes the cost.
    keep = longest_new_runs(normalised, pairs) < _NEW_CONTENT_WORDS
    pairs, sims = pairs[keep], sims[keep]
    keep = _turns_agree(texts, pairs, ngram)
    pairs, sims = pairs[keep], sims[keep]
    if len(pairs) == 0:
        return pairs, sims
    involved = np.unique(pairs)
    if boilerplate is None:
        boilerplate = boilerplate_windows(normalised, among=[normalised[i] for i in involved])
    if boilerplate.size == 0:
        return pairs, sims
    stripped = strip_boilerplate([normalised[i] for i in involved], boilerplate)
    changed = np.array([s != normalised[i] for s, i in zip(stripped, involved)])
    if not changed.any():
        return pairs, sims
    local = np.searchsorted(involved, pairs)
    check = changed[local[:, 0]] | changed[local[:, 1]]
    residual_sets = shingle_sets(stripped, ngram=ngram, normalised=True)
    residual = jaccard_pairs(residual_sets, local[check])
    nothing_left = (residual_sets.sizes[local[check, 0]] == 0) & (residual_sets.sizes[local[check, 1]] == 0)
    keep = np.ones(len(pairs), bool)
    keep[check] = (residual >= threshold) | nothing_left
    return pairs[keep], sims[keep]


def _candidates(normalised: Sequence[str], threshold: float, num_perm: int, ngram: int,
                progress: Progress | None, keep: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """LSH candidate pairs whose MinHash estimate is not hopelessly below the threshold."""
    sig, nonempty = text_signatures(normalised, num_perm, ngram=ngram, progress=_stage(progress, 0.0, 0.75))
    pairs = lsh_candidate_pairs(sig, threshold, active=nonempty, progress=_stage(progress, 0.75, 0.95))
    if keep is not None:
        pairs = keep(pairs)
    return pairs[estimated_similarity(sig, pairs) >= threshold - _ESTIMATE_MARGIN]


def near_duplicate_pairs(texts: Sequence[str], threshold: float = DEFAULT_THRESHOLD, *,
                         num_perm: int = DEFAULT_NUM_PERM, ngram: int = DEFAULT_NGRAM,
                         normalised: Sequence[str] | None = None,
                         progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every verified near-duplicate pair ``(i, j)``, i < j, within ``texts``, and its similarity.

    ``normalised`` (``normalise_text`` of each text) saves normalising again when the caller has it.
    """
    _check_threshold(threshold)
    if normalised is None:
        normalised = [normalise_text(t) for t in texts]
    pairs = _candidates(normalised, threshold, num_perm, ngram, _stage(progress, 0.0, 0.85))
    if progress:
        progress(0.9, "verifying candidate pairs")
    found = verify_pairs(texts, pairs, threshold, normalised=normalised, ngram=ngram)
    if progress:
        progress(1.0, "verified candidate pairs")
    return found


def near_duplicate_clusters(texts: Sequence[str], threshold: float = DEFAULT_THRESHOLD, *,
                            num_perm: int = DEFAULT_NUM_PERM, ngram: int = DEFAULT_NGRAM,
                            priority: Sequence[float] | np.ndarray | None = None,
                            normalised: Sequence[str] | None = None,
                            progress: Progress | None = None) -> list[NearDuplicateCluster]:
    """Clusters of near-duplicate texts (only clusters of two or more), each member verified against its keeper.

    Texts are visited in ``priority`` order (lower first; default: input order). The first unclaimed
    text with a verified neighbour becomes a keeper and claims every unclaimed text verified as a
    near duplicate of *it*. No transitive chaining: A~B and B~C never puts A and C together unless
    C is within the threshold of the keeper itself.
    """
    n = len(texts)
    rank = np.arange(n, dtype=np.float64) if priority is None else np.asarray(priority, dtype=np.float64)
    if rank.shape != (n,):
        raise ValueError("priority must give one number per text")
    pairs, sims = near_duplicate_pairs(texts, threshold, num_perm=num_perm, ngram=ngram, normalised=normalised,
                                       progress=progress)
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
    for keeper in visit[(np.diff(starts) > 0)[visit]]:
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
    """Every (query_index, corpus_index, similarity) verified as a near duplicate, sorted.

    For leakage audits: which test prompts have a near duplicate in train. Verification is the same
    as within one collection (``verify_pairs``), with boilerplate counted over both lists.
    Empty texts match nothing. All matching corpus texts of a query are returned, not only the best.
    """
    _check_threshold(threshold)
    nq = len(queries)
    if nq == 0 or len(corpus) == 0:
        return []
    texts = list(queries) + list(corpus)
    normalised = [normalise_text(t) for t in texts]
    pairs = _candidates(normalised, threshold, num_perm, ngram, _stage(progress, 0.0, 0.85),
                        keep=lambda p: p[(p[:, 0] < nq) & (p[:, 1] >= nq)])
    if progress:
        progress(0.9, "verifying candidate pairs")
    pairs, sims = verify_pairs(texts, pairs, threshold, normalised=normalised, ngram=ngram)
    if progress:
        progress(1.0, "verified candidate pairs")
    return [(int(q), int(c) - nq, round(float(s), 4)) for (q, c), s in zip(pairs, sims)]


def _check_threshold(threshold: float) -> None:
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"the similarity threshold must be between 0 and 1, got {threshold}")


def _stage(progress: Progress | None, lo: float, hi: float) -> Progress | None:
    """A progress callback for one stage, mapping its 0..1 onto lo..hi of the whole."""
    if progress is None:
        return None
    return lambda fraction, text: progress(lo + (hi - lo) * fraction, text)
