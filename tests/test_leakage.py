"""Leakage audit and fix: exact, near and 13-word overlap between splits; boilerplate and canned replies
set aside; moving keeps groups whole; dropping stays within its budget."""
from __future__ import annotations

import random
from collections import Counter

import pytest

from core.errors import TuneloopError
from curation.splits.leakage import (AuditOptions, _shared_runs, audit_leakage, audit_split, fix_leakage,
                                     similarity_graph)
from curation.data.records import Record
from curation.splits.balance import groups_across_splits, max_share_gap
from tests.test_splits import _word


def rec(rid: str, split: str, question: str, answer: str = "", **meta) -> Record:
    rng = random.Random(rid)
    answer = answer or " ".join(_word(rng) for _ in range(15))
    return Record(id=rid, messages=[{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
                  meta={"split": split, **meta})


def filler(seed: int, n: int = 40, start: int = 0) -> list[Record]:
    """Unrelated records spread over the splits (8 of 10 in train)."""
    rng = random.Random(seed)
    return [rec(f"f{start + i}", "train" if i % 10 < 8 else ("val" if i % 10 == 8 else "test"),
                " ".join(_word(rng) for _ in range(rng.randint(8, 20))) + "?") for i in range(n)]


def kinds(report) -> Counter:
    return Counter((p.kind, p.field) for p in report.pairs)


def test_exact_duplicate_prompt_across_splits_is_found_after_normalising():
    records = filler(1) + [rec("a", "train", "How do I reset my Lumio password?"),
                           rec("b", "test", "how do i reset my lumio  password"),
                           rec("c", "train", "How do I reset my Lumio password?!")]
    report = audit_leakage(records)
    pairs = [(p.kind, p.field, p.id, p.other_id) for p in report.pairs]
    assert ("exact", "prompt", "b", "a") in pairs and ("exact", "prompt", "b", "c") in pairs
    assert not any(p.id == "c" for p in report.pairs)  # a and c are both train: no leak between them
    assert report.leaking_ids() == {"b"} and report.summary()["leaking records"] == {"val": 0, "test": 1}


def test_near_duplicate_respects_the_threshold():
    q = "My Lumio hub shows error E-1042 after the firmware update last night, what should I do now?"
    edited = q.replace("last night", "yesterday")
    records = filler(2) + [rec("a", "train", q), rec("b", "val", edited)]
    found = audit_leakage(records, AuditOptions(threshold=0.5))
    assert kinds(found)[("near", "prompt")] == 1
    assert found.pairs[0].similarity >= 0.5
    strict = audit_leakage(records, AuditOptions(threshold=0.95))
    assert strict.clean


def test_thirteen_word_overlap_is_found_and_boilerplate_is_not():
    rng = random.Random(303)
    log = " ".join(_word(rng) for _ in range(14))
    signature = "Kind regards from all of us at the Lumio support desk, we are here for you every single day."
    records = filler(3, 60)
    for r in records:  # the same signature in every answer: boilerplate, not leakage
        r.messages[1]["content"] += " " + signature
    records += [rec("a", "train", " ".join(_word(rng) for _ in range(40)) + f" The log says: {log}"),
                rec("b", "test", f"Crash again. The log says: {log} " + " ".join(_word(rng) for _ in range(40)))]
    report = audit_leakage(records)
    assert [(p.kind, p.field, p.id, p.other_id) for p in report.pairs] == [("ngram", "prompt", "b", "a")]
    assert log.split()[0].lower() in report.pairs[0].evidence
    assert report.boilerplate_ngrams > 0


def test_short_texts_and_canned_answers_are_set_aside_but_popular_questions_are_not():
    canned = "Thanks for reaching out! Go to Account, then Orders, then Track parcel to see where it is."
    records = filler(4, 30)
    for i in range(30):  # thirty customers, one canned reply, different questions
        rng = random.Random(i)
        records.append(rec(f"c{i}", "train" if i < 24 else "test", " ".join(_word(rng) for _ in range(12)), canned))
    records += [rec("y1", "train", "Yes", "Ok"), rec("y2", "test", "Yes", "Ok")]
    for i in range(14):  # the same question from fourteen customers
        records.append(rec(f"p{i}", "train" if i < 12 else "val", "Can I pay my Lumio invoice with PayPal please?"))
    report = audit_leakage(records)
    assert report.canned_answers == 6
    assert report.leaking_ids() == {"p12", "p13"}
    assert {p.field for p in report.pairs} == {"prompt"}


def test_records_without_a_split_are_refused():
    with pytest.raises(TuneloopError, match="build a split first"):
        audit_leakage([Record(id="x", messages=[{"role": "user", "content": "hello there my friend"}])])


def _grouped_leaky(seed: int) -> list[Record]:
    """Customers with two tickets each; five questions each asked by four customers across splits."""
    rng = random.Random(seed)
    records = []
    splits = ["train"] * 8 + ["val", "test"]
    for c in range(150):
        split = splits[c % 10]
        for t in range(2):
            records.append(rec(f"c{c}-{t}", split, " ".join(_word(rng) for _ in range(12)) + "?",
                               customer=f"C{c}", label=["a", "b", "c"][(c + t) % 3]))
    for q in range(5):
        question = f"Why does my {_word(rng)} {_word(rng)} keep {_word(rng)} every {_word(rng)} evening?"
        for k in range(4):
            c = rng.randrange(150)
            records.append(rec(f"q{q}-{k}", splits[c % 10], question, customer=f"C{c}", label=["a", "b", "c"][q % 3]))
    return records


@pytest.mark.parametrize("seed", [0, 1])
def test_move_keeps_groups_whole_and_leaves_no_leak(seed):
    records = _grouped_leaky(seed)
    outcome = fix_leakage(records, mode="move", group="customer", stratify="label", seed=seed)
    assert not outcome.before.clean and outcome.after.clean
    assert outcome.dropped == [] and len(outcome.records) == len(records)
    assert groups_across_splits(outcome.records, "customer") == {}
    assert outcome.moved and all(m["from"] != m["to"] for m in outcome.moved)
    # A fresh audit from scratch agrees with the cheap re-audit.
    assert audit_leakage(outcome.records).clean
    assert max_share_gap(outcome.records, "label") <= 2.0 + max_share_gap(records, "label")


def test_drop_removes_the_later_side_within_budget_else_moves():
    records = _grouped_leaky(2)
    leaking = audit_leakage(records).leaking_ids()
    dropped = fix_leakage(records, mode="drop", group="customer", max_drop=0.5)
    assert set(dropped.dropped) == leaking and dropped.after.clean
    assert all(r.split == "train" for r in records if r.id in {p.other_id for p in dropped.before.pairs
                                                                if p.other_split == "train"})
    tight = fix_leakage(records, mode="drop", group="customer", max_drop=0.001)
    assert tight.dropped == [] and tight.moved and tight.after.clean
    assert "moved instead" in tight.note


def test_none_reports_and_changes_nothing():
    records = _grouped_leaky(3)
    outcome = fix_leakage(records, mode="none")
    assert outcome.records == records and not outcome.after.clean


def test_reaudit_from_the_graph_follows_any_assignment():
    records = _grouped_leaky(4)
    graph = similarity_graph(records)
    all_train = [Record(r.id, r.messages, {**r.meta, "split": "train"}) for r in records]
    assert audit_split(all_train, graph).clean
    assert audit_split(records, graph).pairs == audit_leakage(records).pairs


def test_near_pairs_are_those_the_texts_against_themselves_gave_without_self_comparison():
    """The graph's near pairs (every pair once) equal what comparing the eligible texts with
    themselves found, on a set whose near duplicates were planted by benchmarks/planted_duplicates."""
    from benchmarks.planted_duplicates import planted_dataset
    from curation.dedup.near_duplicates import cross_near_duplicates
    from curation.dedup.shingles import normalise_text

    records = planted_dataset(1500, seed=5).records
    options = AuditOptions(common_records=10**6)   # nothing set aside: every verified pair stays in the graph
    graph = similarity_graph(records, options)
    for fld in ("prompt", "answer"):
        texts = [r.text(("user",) if fld == "prompt" else ("assistant",)) for r in records]
        eligible = [i for i, t in enumerate(texts) if len(normalise_text(t).split()) >= options.min_words]
        inside = [texts[i] for i in eligible]
        before = [(eligible[q], eligible[c], s) for q, c, s in cross_near_duplicates(inside, inside) if q < c]
        assert len(before) > 50
        assert graph.near[fld] == sorted(before)


def _runs_one_by_one(words, options):
    """The shared-run rule written plainly, one record and one run at a time (what the audit vectorises)."""
    n = options.ngram_words
    runs = [[tuple(w[k:k + n]) for k in range(len(w) - n + 1)] for w in words]
    records_of: dict = {}
    for i, rs in enumerate(runs):
        for r in dict.fromkeys(rs):
            records_of.setdefault(r, []).append(i)
    common = {r for r, m in records_of.items() if len(m) > options.common_records}
    shared, seen = [], set()
    for i, rs in enumerate(runs):
        in_common = [False] * len(words[i])
        for k, r in enumerate(rs):
            if r in common:
                in_common[k:k + n] = [True] * n
        for k, r in enumerate(rs):
            members = records_of[r]
            if len(members) < 2 or r in common or members[0] != i or tuple(members) in seen:
                continue
            if 2 * sum(in_common[k:k + n]) > n:
                continue
            seen.add(tuple(members))
            shared.append((members, " ".join(r)))
    return shared, len(common)


def test_shared_word_runs_match_the_rule_applied_one_run_at_a_time():
    from curation.dedup.shingles import normalise_text
    from tests.test_splits import support_tickets

    rng = random.Random(77)
    records = support_tickets(900, seed=8, shared_logs=12)
    signature = " ".join(_word(rng) for _ in range(16))
    for k, r in enumerate(records[:300]):   # boilerplate in many answers, and shared after a few private words
        r.messages[1]["content"] = " ".join(_word(rng) for _ in range(k % 5)) + " " + signature
    for k in range(0, 40, 2):               # quoted runs shared by two to four records
        quote = " ".join(_word(rng) for _ in range(rng.randint(13, 30)))
        for r in records[300 + k * 5: 300 + k * 5 + rng.randint(2, 4)]:
            r.messages[0]["content"] += " " + quote
        for r in records[k * 5: k * 5 + rng.randint(2, 4)]:   # a quote beside the signature
            r.messages[1]["content"] += " " + quote
    options = AuditOptions(ngram_words=13, common_records=10)
    prompts, answers = ([normalise_text(r.text((role,))).split() for r in records] for role in ("user", "assistant"))
    expected = _runs_one_by_one(prompts, options)
    assert len(expected[0]) >= 20 and _shared_runs(prompts, options) == expected
    expected = _runs_one_by_one(answers, options)
    assert expected[0] and expected[1] > 0 and _shared_runs(answers, options) == expected
