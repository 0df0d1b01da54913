"""Dedup in bounded memory finds what it found before: exact groups from hashes (a collision never merges two
texts), raw texts made on demand, LSH candidates judged band by band, verification a block of pairs at a time.
Each is checked against the plain way of doing the same (a dict of texts, every band's pairs then the filter,
everything at once). The memory figures themselves are in ``benchmarks/dedup.py --million``."""
from __future__ import annotations

import random

import numpy as np
import pytest

from curation.data.records import Record
from curation.dedup import clusters as C
from curation.dedup import verify as VF
from curation.dedup.lsh import lsh_candidate_pairs
from curation.dedup.shingles import normalise_text
from curation.dedup.signatures import estimated_similarity, text_signatures

WORDS = ("account billing refund order parcel courier password login invoice router firmware update screen "
         "battery charger cable warranty delivery address payment card subscription plan upgrade cancel").split()


SIGNATURE = " Thank you for contacting Acme support, our team answers every message within two working days."


def _records(n: int, seed: int = 0) -> list[Record]:
    """Questions and answers, with exact copies (other case and punctuation), light edits, a signature shared by a
    quarter of the answers (boilerplate) and empty records."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if out and i % 7 == 3:
            q, a = (m["content"] for m in out[rng.randrange(len(out))].messages)
            q = q.upper() + "!!"                                   # an exact duplicate once normalised
        elif out and i % 5 == 2 and out[-1].messages[1]["content"]:
            q, a = (m["content"] for m in out[-1].messages)
            words = a.split()
            words[rng.randrange(len(words))] = rng.choice(WORDS)   # a near duplicate
            a = " ".join(words)
        else:
            q = " ".join(rng.choices(WORDS, k=rng.randint(6, 12))) + "?"
            a = " ".join(rng.choices(WORDS, k=rng.randint(10, 24))) + "."
            if i % 4 == 0:
                a += SIGNATURE
        if i % 50 == 49:
            q, a = "", ""                                          # empty: nobody's duplicate
        out.append(Record(id=f"r{i}", messages=[{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                          meta={"created_at": f"2026-01-{1 + i % 28:02d}"}))
    return out


def _reference_groups(normalised, rank):
    """The exact groups as a dict of texts makes them (how dedup grouped before): representatives in keeper
    order, each with its copies."""
    groups = {}
    for i in sorted(range(len(normalised)), key=lambda k: rank[k]):
        if normalised[i]:
            groups.setdefault(normalised[i], []).append(i)
    return [m[0] for m in groups.values()], {m[0]: m[1:] for m in groups.values() if len(m) > 1}


@pytest.mark.parametrize("policy", C.KEEP_POLICIES)
def test_exact_groups_from_hashes_are_the_groups_a_dict_of_texts_makes(policy):
    records = _records(600)
    normalised = [normalise_text(C.record_text(r)) for r in records]
    rank = C.keeper_rank(records, normalised, policy)
    priority = C.keeper_priority(records, normalised, policy)
    assert list(np.argsort(rank)) == sorted(range(len(records)), key=priority.__getitem__)
    representatives, copies = C._exact_groups(normalised, rank)
    expected_reps, expected_copies = _reference_groups(normalised, rank)
    assert representatives.tolist() == expected_reps and copies == expected_copies
    assert sum(map(len, copies.values())) > 50                       # the set has exact duplicates to find


def test_texts_whose_hashes_collide_are_never_merged(monkeypatch):
    records = _records(300)
    normalised = [normalise_text(C.record_text(r)) for r in records]
    rank = C.keeper_rank(records, normalised, "first")
    monkeypatch.setattr(C, "_text_hash", lambda text: len(text) % 3)   # nearly every text collides with another
    representatives, copies = C._exact_groups(normalised, rank)
    expected_reps, expected_copies = _reference_groups(normalised, rank)
    assert representatives.tolist() == expected_reps and copies == expected_copies


def test_find_duplicates_reads_raw_texts_only_for_the_records_it_verifies(monkeypatch):
    records = _records(400)
    asked = []
    real = C.record_text

    def counted(record, mode="conversation"):
        asked.append(record.id)
        return real(record, mode)

    monkeypatch.setattr(C, "record_text", counted)
    result = C.find_duplicates(records)
    counts = result.counts()
    assert counts["near_duplicate_clusters"] > 20 and counts["exact_duplicates"] > 20
    # every record once to normalise it, then only those in candidate pairs again (their turns are aligned)
    assert len(records) < len(asked) < 2 * len(records)
    raw = C.RecordTexts(records, "conversation", np.array([5, 2]))
    assert len(raw) == 2 and raw[0] == real(records[5]) and raw[-1] == real(records[2]) and raw[:1] == [raw[0]]


def test_lsh_judging_each_bands_new_pairs_keeps_what_filtering_all_pairs_keeps():
    texts = [normalise_text(C.record_text(r)) for r in _records(800)]
    sig, nonempty = text_signatures(texts)
    every = lsh_candidate_pairs(sig, 0.6, active=nonempty)
    asked = []

    def accept(pairs):
        asked.append(len(pairs))
        return estimated_similarity(sig, pairs) >= 0.5

    judged = lsh_candidate_pairs(sig, 0.6, active=nonempty, accept=accept)
    expected = every[estimated_similarity(sig, every) >= 0.5]
    assert np.array_equal(judged, expected) and len(expected) > 100
    assert sum(asked) < 32 * len(every) and len(asked) > 1               # band by band, each pair judged once or so
    assert len(every) > len(expected)                                    # the filter did drop chance pairs


def test_verification_a_block_at_a_time_gives_what_it_gives_all_at_once(monkeypatch):
    records = _records(500)
    texts = [C.record_text(r) for r in records]
    normalised = [normalise_text(t) for t in texts]
    sig, nonempty = text_signatures(normalised)
    pairs = lsh_candidate_pairs(sig, 0.5, active=nonempty)
    whole_runs = VF.longest_new_runs(normalised, pairs)
    boilerplate = VF.boilerplate_windows(normalised, among=normalised, min_records=20)
    stripped = VF.strip_boilerplate(normalised, boilerplate)
    kept_pairs, sims = VF.verify_pairs(texts, pairs, 0.6, normalised=normalised)
    assert boilerplate.size and stripped != normalised and len(kept_pairs) > 20
    monkeypatch.setattr(VF, "_PAIRS_PER_BLOCK", 37)
    assert np.array_equal(VF.longest_new_runs(normalised, pairs, block=37), whole_runs)
    assert np.array_equal(VF.boilerplate_windows(normalised, among=normalised, min_records=20), boilerplate)
    assert VF.strip_boilerplate(normalised, boilerplate) == stripped
    blocked_pairs, blocked_sims = VF.verify_pairs(texts, pairs, 0.6, normalised=normalised)
    assert np.array_equal(blocked_pairs, kept_pairs) and np.array_equal(blocked_sims, sims)
