"""The shared near-duplicate machinery: shingles, signatures, LSH candidates, verification, clusters
(curation.dedup.shingles, signatures, lsh, verify, near_duplicates)."""
import random

import numpy as np
import pytest

from curation.dedup.near_duplicates import cross_near_duplicates, near_duplicate_clusters
from curation.dedup.shingles import DEFAULT_THRESHOLD, normalise_text, shingle_sets
from curation.dedup.signatures import minhash_signatures
from curation.dedup.verify import jaccard_pairs, similarity

WORDS = ("account billing refund order parcel courier password login invoice router firmware update "
         "screen battery charger cable warranty delivery address payment card subscription plan upgrade "
         "cancel support ticket agent reply email phone number reset broken missing late damaged").split()


def sentence(rng: random.Random, n: int = 14) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def test_normalise_text_ignores_case_punctuation_and_spacing():
    assert normalise_text("  Hello,   WORLD!\n") == normalise_text("hello world") == "hello world"


def test_similarity_is_exact_jaccard_of_shingles():
    assert similarity("The parcel is late", "the  parcel is LATE!") == 1.0
    assert similarity("", "anything") == 0.0
    a, b = "abcdefg", "abcdefh"   # 5-grams: abcde bcdef cdefg | abcde bcdef cdefh
    assert similarity(a, b) == pytest.approx(2 / 4)


def test_jaccard_pairs_matches_python_sets():
    rng = random.Random(1)
    texts = [sentence(rng, rng.randint(1, 20)) for _ in range(60)]
    sets = shingle_sets(texts)
    pairs = np.array([(i, j) for i in range(0, 60, 7) for j in range(60)])
    got = jaccard_pairs(sets, pairs)
    for (i, j), value in zip(pairs, got):
        a, b = set(sets.of(i)), set(sets.of(j))
        assert value == pytest.approx(len(a & b) / len(a | b))


def test_signature_agreement_estimates_similarity():
    rng = random.Random(2)
    base = sentence(rng, 40)
    edited = base.replace(base.split()[5], "zebra", 1)
    sets = shingle_sets([base, edited, sentence(rng, 40)])
    sig = minhash_signatures(sets, 256)
    true = similarity(base, edited)
    assert abs((sig[0] == sig[1]).mean() - true) < 0.1
    assert (sig[0] == sig[2]).mean() < 0.3


def test_empty_texts_get_no_signature_and_match_nothing():
    sig = minhash_signatures(shingle_sets(["", "a b c d e f"]), 16)
    assert (sig[0] == 0xFFFFFFFF).all()
    assert near_duplicate_clusters(["", "", "x y"]) == []


def test_cross_near_duplicates_finds_edited_copies_only():
    rng = random.Random(3)
    corpus = [sentence(rng) for _ in range(300)]
    queries = [corpus[10].replace(" ", "  ").upper(),           # only case and spacing changed
               corpus[20] + " please",                          # one word added
               sentence(rng),                                   # unrelated
               ""]
    found = cross_near_duplicates(queries, corpus)
    assert [(q, c) for q, c, _ in found] == [(0, 10), (1, 20)]
    assert all(s >= DEFAULT_THRESHOLD for _, _, s in found)
    assert found[0][2] == 1.0


def test_cross_near_duplicates_returns_every_match_and_handles_empty_inputs():
    found = cross_near_duplicates(["my router keeps dropping the wifi"],
                                  ["My router keeps dropping the WiFi!", "my router keeps dropping the wifi."])
    assert sorted(c for _, c, _ in found) == [0, 1]
    assert cross_near_duplicates([], ["x"]) == [] and cross_near_duplicates(["x"], []) == []
    with pytest.raises(ValueError):
        cross_near_duplicates(["x"], ["y"], threshold=0)


def test_clusters_have_no_transitive_chains():
    # a ~ b and b ~ c, but a and c are too far apart to be one cluster (over 20 words: not the short-text rule)
    words = ("one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
             "seventeen eighteen nineteen twenty twentyone twentytwo").split()
    new = "alpha beta gamma delta omega sigma kappa lambda".split()
    a = " ".join(words)
    b = " ".join(words[:16] + new[:5])
    c = " ".join(words[:13] + new)
    threshold = 0.5
    assert similarity(a, b) >= threshold and similarity(b, c) >= threshold > similarity(a, c)
    clusters = near_duplicate_clusters([a, b, c], threshold)
    assert len(clusters) == 1
    cluster = clusters[0]
    assert cluster.keeper == 0 and cluster.members == [0, 1]
    for member, sim in zip(cluster.members, cluster.similarities):
        assert sim == pytest.approx(similarity([a, b, c][cluster.keeper], [a, b, c][member]), abs=1e-4)


def test_priority_chooses_the_keeper():
    texts = ["the invoice total is wrong on my account", "The invoice total is wrong on my account!!"]
    assert near_duplicate_clusters(texts)[0].keeper == 0
    assert near_duplicate_clusters(texts, priority=[1, 0])[0].keeper == 1
    with pytest.raises(ValueError):
        near_duplicate_clusters(texts, priority=[1])


def test_signatures_from_texts_equal_signatures_from_sets():
    from curation.dedup.signatures import text_signatures
    rng = random.Random(4)
    texts = [normalise_text(sentence(rng, rng.randint(0, 30))) for _ in range(50)] + ["ab", ""]
    sig, nonempty = text_signatures(texts, 64)
    sets = shingle_sets(texts, normalised=True)
    assert (sig == minhash_signatures(sets, 64)).all()
    assert (nonempty == (sets.sizes > 0)).all()


def test_boilerplate_is_text_many_records_share_verbatim():
    from curation.dedup.verify import boilerplate_windows, strip_boilerplate
    rng = random.Random(5)
    footer = "please keep your order number at hand when you write to us again thank you"
    texts = [normalise_text(f"{sentence(rng, 10)} {footer}") for _ in range(25)]
    everywhere = boilerplate_windows(texts)
    assert (boilerplate_windows(texts, among=texts[:2]) == everywhere).all() and everywhere.size > 0
    stripped = strip_boilerplate(texts[:2], everywhere)
    assert stripped == [" ".join(t.split()[:10]) for t in texts[:2]]
    assert boilerplate_windows(texts[:5]).size == 0     # five records sharing it is not boilerplate yet


def _longest_new_run_by_words(a: str, b: str) -> int:
    """The rule spelt out word by word: the longest run of words not inside a 3-word window the other text has."""
    def uncovered(words: list[str], other: list[str]) -> int:
        theirs = set(zip(other, other[1:], other[2:]))
        covered = [False] * len(words)
        for i, window in enumerate(zip(words, words[1:], words[2:])):
            if window in theirs:
                covered[i] = covered[i + 1] = covered[i + 2] = True
        best = run = 0
        for c in covered:
            run = 0 if c else run + 1
            best = max(best, run)
        return best
    return max(uncovered(a.split(), b.split()), uncovered(b.split(), a.split()))


def test_longest_new_runs_match_the_word_by_word_rule():
    from curation.dedup.verify import longest_new_runs
    rng = random.Random(6)
    texts = ["", "refund", "refund my order", "order refund my order please"]
    for _ in range(60):
        words = sentence(rng, rng.randint(0, 40)).split()
        texts.append(" ".join(words))
        edited = list(words)
        for _ in range(rng.randint(0, 4)):   # light edits and inserted new content of various lengths
            edited[rng.randrange(len(edited) + 1):0] = sentence(rng, rng.choice([1, 2, 5, 12])).split()
        texts.append(" ".join(edited))
    pairs = np.array([(i, j) for i in range(len(texts)) for j in range(len(texts)) if i != j and rng.random() < 0.2])
    expected = [_longest_new_run_by_words(texts[i], texts[j]) for i, j in pairs]
    assert longest_new_runs(texts, pairs, chunk=50).tolist() == expected
    assert max(expected) >= 9 and min(expected) == 0


def test_shared_boilerplate_does_not_make_different_requests_near_duplicates():
    """Rule 4: two tickets that are mostly the same long policy paragraph but ask different things stay apart,
    while a light edit of one ticket under the same paragraph is still found."""
    policy = ("thank you for contacting acme support our team answers every message within two working days "
              "please keep your order number at hand and do not share your password with anyone including our "
              "staff we may record this conversation to improve the quality of our service")
    rng = random.Random(8)
    others = [f"{sentence(rng, 6)} {policy}" for _ in range(25)]
    router = f"my router keeps dropping the wifi {policy}"
    cancel = f"please cancel my plan from today {policy}"
    edited = f"my router keeps dropping the wi-fi {policy}"
    texts = [router, cancel, edited] + others
    assert similarity(router, cancel) >= DEFAULT_THRESHOLD   # the paragraph alone would merge them
    clusters = near_duplicate_clusters(texts)
    together = [sorted(c.members) for c in clusters if 0 in c.members or 1 in c.members]
    assert together == [[0, 2]]
