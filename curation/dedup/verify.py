"""Verification: which candidate pairs really are near duplicates (``verify_pairs``).

A candidate pair counts only when

1. the exact Jaccard similarity of the two shingle sets is at least the threshold;
2. conversations with as many turns keep every aligned turn recognisable (similarity ≥ 0.3);
3. neither text has a run of 9+ words the other lacks (new content rather than an edit);
4. what remains after removing boilerplate that 20+ texts share verbatim is still ≥ threshold;
5. two short texts (the shorter has at most 20 words) differ in almost none of their content words.

Rules 2-4 are what keep records that share a template answer, a signature or a policy paragraph
apart even when that shared text dominates them. Rule 5 is for short questions: "How many cents are
3 quarters?" and "... 3 dimes?" share most of their characters but ask different things. A content
word is any word that is not a stopword (``STOPWORDS``: articles, pronouns, auxiliaries, prepositions,
conjunctions, question words, greetings); numbers are content words. A content word of one text counts
as present in the other when the other has the same word, the same word with a plural or verb ending
(``password``/``passwords``), or, for words of five letters or more, the same word with one typo
(``pasword``). Texts of up to nine content words (the larger count of the two) must agree on every one,
except that one may add a single word to the other's three or more ("my router password"); longer ones
may miss a fifth of them in the other text (two of ten to fourteen, three of fifteen to nineteen: a
reworded detail such as "last night" / "yesterday"). So "golf" / "dogs", "verb" / "vegan"
and "camels" / "thoughts" in otherwise equal questions keep them apart, while the same question
re-typed with other punctuation, case, greetings, a typo or a plural still merges. Stopwords are
English: in another language every word counts as content (stricter, never looser).

Example::

    verify_pairs(texts, candidate_pairs, 0.6)      # (kept pairs, their similarity)
    similarity("Reset my password", "reset my  password!")   # 1.0
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from curation.dedup.arrays import BATCH_RECORDS, U64, mix64, ngram_multipliers, ranges, sorted_unique, unique_per_text
from curation.dedup.shingles import DEFAULT_NGRAM, DEFAULT_THRESHOLD, ShingleSets, normalise_text, shingle_sets

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
# Word windows of this many pairs' texts (or texts) are made at once: bounded memory at a million records.
_PAIRS_PER_BLOCK = 8_192
# Short texts: at most this many words in the shorter one. With up to _ALL_CONTENT_WORDS content words they must
# agree on every one (one changed word is another subject), except that one may add a word to the other's
# _ADDED_TO or more; with more content words, at most this share may differ.
SHORT_TEXT_WORDS = 20
_ALL_CONTENT_WORDS = 9
_ADDED_TO = 3
SHORT_TEXT_DIFFERENT_SHARE = 0.2
# Words that carry no content of a question or an answer (numbers are never stopwords).
STOPWORDS = frozenset("""
a an the this that these those some any each every all both either neither no not nor none
i me my mine myself we us our ours you your yours yourself he him his she her hers it its they them their theirs
is are was were be been being am do does did doing done have has had having will would shall should can could
may might must ought let lets s t d ll m re ve
of in on at to from by for with about as into onto upon over under between through during before after
above below up down out off again further than then once so too very just also only even still
and or but if because while although though whether until unless since
what which who whom whose when where why how
there here please pls thanks thank hi hello hey dear ok okay yes yeah
""".split())
_INFLECTIONS = ("s", "es", "ed", "d", "ing")


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
        keys_a = (np.repeat(pid, na) << U64(32)) | left.values[ranges(left.offsets[i], na)].astype(np.uint64)
        keys_b = (np.repeat(pid, nb) << U64(32)) | right.values[ranges(right.offsets[j], nb)].astype(np.uint64)
        if keys_b.size == 0:
            continue
        at = np.searchsorted(keys_b, keys_a).clip(max=keys_b.size - 1)
        found = keys_b[at] == keys_a
        inter = np.bincount((keys_a[found] >> U64(32)).astype(np.int64), minlength=len(block)).astype(np.float64)
        union = (na + nb).astype(np.float64) - inter
        out[start:start + len(block)] = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
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
    mixed = codes.astype(np.uint64) * U64(0x9E3779B97F4A7C15) + place * U64(0xD6E8FEB86659FD93)
    # One xorshift-multiply round per character is enough: the window hash is mixed in full below.
    mixed ^= mixed >> U64(29)
    mixed *= U64(0xBF58476D1CE4E5B9)
    mixed[space] = 0
    word_hash = np.add.reduceat(mixed, starts)
    mult = ngram_multipliers(k + 2000)
    h = word_hash[first] * mult[0]
    for j in range(1, k):
        h += word_hash[first + j] * mult[j]
    h = mix64(h)
    return (h >> U64(32)).astype(np.uint32), owner_of_word[first], first, words_per_text


def boilerplate_windows(normalised: Sequence[str], *, among: Sequence[str] | None = None,
                        min_records: int = _BOILERPLATE_RECORDS) -> np.ndarray:
    """Sorted hashes of the word windows that at least ``min_records`` distinct texts contain.

    ``among``: only windows of these texts can qualify (the texts about to be checked), which
    spares sorting every window of the collection.
    """
    wanted = None
    if among is not None:
        among = list(among)
        parts = [sorted_unique(_word_windows(among[start:start + _PAIRS_PER_BLOCK])[0])
                 for start in range(0, len(among), _PAIRS_PER_BLOCK)]
        wanted = sorted_unique(np.concatenate(parts)) if parts else np.zeros(0, np.uint32)
        del parts
        tally = np.zeros(wanted.size, np.int64)
    distinct = list(dict.fromkeys(normalised))
    found = []
    if wanted is not None:
        # Most windows of the collection are in no text being checked: a bitmap of the wanted ones drops them cheaply.
        maybe_wanted = np.zeros(1 << _WANTED_BITS, bool)
        maybe_wanted[wanted >> np.uint32(32 - _WANTED_BITS)] = True
    for start in range(0, len(distinct), BATCH_RECORDS):
        hashes, owner, _, _ = _word_windows(distinct[start:start + BATCH_RECORDS])
        if wanted is not None:
            hit = maybe_wanted[hashes >> np.uint32(32 - _WANTED_BITS)]
            hashes, owner = hashes[hit], owner[hit]
        per_text = unique_per_text(hashes, np.bincount(owner, minlength=len(distinct[start:start + BATCH_RECORDS])))[0]
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
    if len(normalised) > _PAIRS_PER_BLOCK:      # each text on its own: a block of texts at a time
        return [text for start in range(0, len(normalised), _PAIRS_PER_BLOCK)
                for text in strip_boilerplate(normalised[start:start + _PAIRS_PER_BLOCK], boilerplate)]
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
    seg_a = ranges(first[local[rows, 0]], per_pair)
    seg_b = ranges(first[local[rows, 1]], per_pair)
    sims = jaccard_pairs(sets, np.stack([seg_a, seg_b], axis=1))
    sims[(sets.sizes[seg_a] == 0) & (sets.sizes[seg_b] == 0)] = 1.0
    worst = np.ones(len(pairs))
    np.minimum.at(worst, np.repeat(rows, per_pair), sims)
    return worst >= _MIN_TURN_SIMILARITY


def longest_new_runs(normalised: Sequence[str], pairs: np.ndarray, *, chunk: int = 4096,
                     block: int = _PAIRS_PER_BLOCK) -> np.ndarray:
    """Per pair (i, j): the longest run of words in either normalised text not covered by a 3-word window the other has.

    Pairs go ``block`` at a time, each block with the word windows of only its own texts (all candidate pairs'
    texts at once took 1.2 GB at a million records)."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if len(pairs) <= block:
        return _longest_new_runs(normalised, pairs, chunk)
    return np.concatenate([_longest_new_runs(normalised, pairs[start:start + block], chunk)
                           for start in range(0, len(pairs), block)])


def _longest_new_runs(normalised: Sequence[str], pairs: np.ndarray, chunk: int) -> np.ndarray:
    best = np.zeros(len(pairs), np.int64)
    if len(pairs) == 0:
        return best
    involved = np.unique(pairs)
    local = np.searchsorted(involved, pairs)
    hashes, owner, _, words = _word_windows([normalised[i] for i in involved])
    # Windows come text after text, one per word but the last two: window k of a text covers its words k..k+2.
    windows = np.bincount(owner, minlength=involved.size)
    window_start = np.concatenate(([0], np.cumsum(windows)[:-1]))
    set_values, set_sizes = unique_per_text(hashes, windows)
    set_values = set_values.astype(np.uint64)
    set_start = np.concatenate(([0], np.cumsum(set_sizes)[:-1]))
    for side in (0, 1):
        for start in range(0, len(pairs), chunk):
            mine, theirs = local[start:start + chunk, side], local[start:start + chunk, 1 - side]
            pid = np.arange(len(mine), dtype=np.uint64)
            n_mine, n_theirs, n_words = windows[mine], set_sizes[theirs], words[mine]
            at = ranges(window_start[mine], n_mine)
            probe = (np.repeat(pid, n_mine) << U64(32)) | hashes[at].astype(np.uint64)
            table = (np.repeat(pid, n_theirs) << U64(32)) | set_values[ranges(set_start[theirs], n_theirs)]
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


def content_words(normalised: str) -> list[str]:
    """The words of a normalised text that are not stopwords (numbers included), in order."""
    return [w for w in normalised.split() if w not in STOPWORDS]


def _one_typo(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` differ by one substitution, insertion, deletion or swap of neighbours."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    start = 0
    while start < min(len(a), len(b)) and a[start] == b[start]:
        start += 1
    if len(a) == len(b):
        rest_a, rest_b = a[start + 1:], b[start + 1:]
        swapped = start + 1 < len(a) and a[start] == b[start + 1] and a[start + 1] == b[start]
        return rest_a == rest_b or (swapped and a[start + 2:] == b[start + 2:])
    longer, shorter = (a, b) if len(a) > len(b) else (b, a)
    return longer[start + 1:] == shorter[start:]


def same_word(a: str, b: str) -> bool:
    """Whether two normalised words are one word: equal, an inflection of each other, or (5+ letters) one typo apart."""
    if a == b:
        return True
    if not (a.isalpha() and b.isalpha()):
        return False
    shorter, longer = (a, b) if len(a) <= len(b) else (b, a)
    if longer.startswith(shorter) and longer[len(shorter):] in _INFLECTIONS:
        return True
    return min(len(a), len(b)) >= 5 and _one_typo(a, b)


def differing_content_words(a: str, b: str) -> tuple[list[str], list[str]]:
    """The content words of normalised text ``a`` that ``b`` lacks, and those of ``b`` that ``a`` lacks.

    Each word is matched at most once (exact matches first, then ``same_word`` variants).
    """
    left, right = content_words(a), content_words(b)
    unmatched_right = list(right)
    rest = []
    for word in left:
        if word in unmatched_right:
            unmatched_right.remove(word)
        else:
            rest.append(word)
    unmatched_left = []
    for word in rest:
        match = next((k for k, other in enumerate(unmatched_right) if same_word(word, other)), None)
        if match is None:
            unmatched_left.append(word)
        else:
            del unmatched_right[match]
    return unmatched_left, unmatched_right


def short_texts_agree(a: str, b: str) -> bool:
    """Rule 5 for two normalised texts: True unless both are short and they differ in their content words.

    Short: the shorter text has at most ``SHORT_TEXT_WORDS`` words. Then every content word must have a
    counterpart in the other text, but for one word that one text adds to the other's three or more; when
    the texts have more than nine content words (the larger count of the two), all but
    ``SHORT_TEXT_DIFFERENT_SHARE`` of them, counting the side with more words missing.
    """
    if min(len(a.split()), len(b.split())) > SHORT_TEXT_WORDS:
        return True
    only_a, only_b = differing_content_words(a, b)
    fewer, more = sorted((len(only_a), len(only_b)))
    counts = (len(content_words(a)), len(content_words(b)))
    if max(counts) > _ALL_CONTENT_WORDS:
        return more <= int(SHORT_TEXT_DIFFERENT_SHARE * max(counts))
    return more == 0 or (fewer == 0 and more == 1 and min(counts) >= _ADDED_TO)


def _short_pairs_agree(normalised: Sequence[str], pairs: np.ndarray,
                       sims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pairs (and similarities) that pass rule 5; only pairs with a short text are looked at word by word."""
    if len(pairs) == 0:
        return pairs, sims
    involved = np.unique(pairs)
    # A normalised text has single spaces between words: counting them is enough to know which texts are short.
    words = np.array([normalised[i].count(" ") + 1 for i in involved], np.int64)
    local = np.searchsorted(involved, pairs)
    short = np.flatnonzero(np.minimum(words[local[:, 0]], words[local[:, 1]]) <= SHORT_TEXT_WORDS)
    keep = np.ones(len(pairs), bool)
    keep[short] = [short_texts_agree(normalised[i], normalised[j]) for i, j in pairs[short]]
    return pairs[keep], sims[keep]


def verify_pairs(texts: Sequence[str], pairs: np.ndarray, threshold: float = DEFAULT_THRESHOLD, *,
                 normalised: Sequence[str] | None = None, boilerplate: np.ndarray | None = None,
                 ngram: int = DEFAULT_NGRAM) -> tuple[np.ndarray, np.ndarray]:
    """The candidate pairs that are near duplicates, with their similarity.

    A pair is kept when (1) the Jaccard similarity of the whole texts is ≥ threshold, (2) for two
    conversations of as many turns, every aligned turn keeps a similarity of at least 0.3 (a light
    edit leaves each turn recognisable), (3) neither text has a run of 9 or more words the other
    lacks (new content, not an edit), and (4) what is left once boilerplate shared by many texts
    (``boilerplate_windows``, counted over all ``normalised`` unless given) is removed from both
    is still ≥ threshold similar (or both were nothing but boilerplate), and (5) two short texts
    differ in at most a small share of their content words (``short_texts_agree``).
    (2)-(4) are what stop records that only share a template reply or a signature from merging;
    (5) is what stops two short questions that differ in their subject from merging.
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
    pairs, sims = _short_pairs_agree(normalised, pairs, sims)
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
