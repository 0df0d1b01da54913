"""Curation on real data (#16): short questions about different things never merge while re-typed copies
still do; the language filter knows English from Portuguese and tells languages apart on public sentences;
short_answer keeps one-word factual answers, says why it flags, and can be switched off per label."""
import json
import subprocess
import sys
from pathlib import Path

import gradio as gr

from curation.data import versions as V
from curation.data.records import Record
from curation.dedup.clusters import DedupOptions, find_duplicates
from curation.dedup.filters import FilterOptions, filter_records, filter_version, guess_language, main, record_findings
from curation.review.labels import set_label_field
from curation.ui import dedup
from tests.conftest import write_jsonl
from tests.tab_page import page

DATA = Path(__file__).resolve().parent.parent / "benchmarks" / "data"
# Short questions that share most of their characters but ask about something else: the and Dolly's.
DIFFERENT = [
    ("How many cents are 3 quarters?", "How many cents are 3 dimes?"),
    ("Why do people like golf?", "Why do people like dogs?"),
    ("What is a verb?", "What is a vegan?"),
    ("How many cents do I have if I have 3 dimes?", "How many cents do I have if I have 4 dimes?"),
    ("Identify which instrument is string or percussion: Cantaro, Gudok",
     "Identify which instrument is string or percussion: Kpanlogo, Shamisen"),
    ("Identify which car manufacturer is Chinese or American: Dodge, Foton",
     "Identify which car manufacturer is Japanese or American: Dodge, Subaru"),
    ("Why can camels survive for long without water?", "Why can thoughts survive for long without water?"),
]
# The same question as someone else typed it: case, punctuation, a greeting, a typo, a plural, a contraction,
# a word added.
SAME = [
    ("How do I reset my password?", "hi, how do i reset my pasword??"),
    ("What is the capital of France?", "what's the capital of France"),
    ("Who won the 2022 NBA Finals MVP?", "Please, who won the 2022 NBA finals MVP?"),
    ("Give me a list of the best movies I've never seen.", "Give me a list of the best movie I have never seen"),
    ("Which episodes of season four of Game of Thrones did Michelle MacLaren direct?",
     "which episode of season four of game of thrones did Michelle MacLaren direct"),
    ("What are some unique curtain tie backs that you can make yourself?",
     "What are some unique curtain tie backs that you can easily make yourself?"),
]


def asks(rid, question, answer=None, **meta):
    messages = [{"role": "user", "content": question}] + ([{"role": "assistant", "content": answer}] if answer else [])
    return Record(id=rid, messages=messages, meta=meta)


def kinds_of_pair(a, b):
    result = find_duplicates([asks("a", a), asks("b", b)], DedupOptions(text="user"))
    return [c.kind for c in result.clusters]


def dolly():
    rows = [json.loads(line) for line in (DATA / "dolly_slice.jsonl").read_text(encoding="utf-8").splitlines()]
    return [asks(f"dolly-{n}", row["instruction"], row.get("response"), category=row.get("category", ""))
            for n, row in enumerate(rows, start=1)]


def test_short_questions_about_different_things_are_not_near_duplicates():
    for a, b in DIFFERENT:
        assert kinds_of_pair(a, b) == [], (a, b)


def test_retyped_short_questions_are_still_near_duplicates():
    for a, b in SAME:
        assert kinds_of_pair(a, b) == ["near"], (a, b)


def test_dolly_questions_form_no_false_clusters():
    records = dolly()
    assert len(records) == 346
    result = find_duplicates(records, DedupOptions(text="user"))
    assert [c for c in result.clusters if c.kind == "near"] == []


def test_the_language_identifier_loads_on_first_use():
    code = ("import sys, curation.dedup.filters as f; from curation.data.records import Record; "
            "assert 'py3langid' not in sys.modules; "
            "r = Record(id='r', messages=[{'role': 'user', 'content': 'Wo ist mein Paket heute?'}, "
            "{'role': 'assistant', 'content': 'It left the depot this morning.'}]); "
            "f.filter_records([r], f.FilterOptions(skip=('language_mismatch',))); "
            "assert 'py3langid' not in sys.modules; "
            "print(f.guess_language('A forest is a geographical region where trees predominate.'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "en"


def test_plain_english_is_english_and_never_a_mismatch():
    forest = "A forest is a geographical region where trees predominate."
    assert guess_language(forest) == "en"
    assert record_findings(asks("f", "What is a forest?", forest)) == {}
    answered = [r for r in dolly() if len(r.messages) == 2]
    only = FilterOptions(skip=("empty_answer", "short_answer", "long_answer", "repetitive", "garbage",
                               "no_final_answer"))
    assert filter_records(answered, only).counts == {"language_mismatch": 0}


def test_languages_of_public_sentences_are_told_apart():
    rows = [json.loads(line) for line in (DATA / "leipzig_sentences.jsonl").read_text(encoding="utf-8").splitlines()]
    guesses = [(guess_language(row["text"]), row["lang"]) for row in rows]
    right = sum(got == want for got, want in guesses)
    wrong = sum(got is not None and got != want for got, want in guesses)
    assert len(rows) == 600 and right >= 0.9 * len(rows) and wrong <= 6
    english = next(row["text"] for row in rows if row["lang"] == "en" and len(row["text"].split()) > 8)
    german = next(row["text"] for row in rows if row["lang"] == "de" and len(row["text"].split()) > 8)
    found = record_findings(asks("m", english, german))
    assert list(found) == ["language_mismatch"]
    assert "'en'" in found["language_mismatch"] and "'de'" in found["language_mismatch"]


def test_one_word_factual_answers_are_kept_and_flags_say_why():
    assert record_findings(asks("b", "Which German state is Munich in?", "Bavaria")) == {}
    answered = [r for r in dolly() if len(r.messages) == 2]
    one_word = [r for r in answered if len(r.messages[-1]["content"].split()) < 2]
    assert len(one_word) == 10
    assert filter_records(answered).counts["short_answer"] == 0
    why = record_findings(asks("w", "Why do camels have humps?", "Fat."))["short_answer"]
    assert why == "the answer has 1 word (minimum 2) but the question asks for more than a name or a number ('Why')"
    assert "acknowledges" in record_findings(asks("k", "Which plan suits me?", "OK"))["short_answer"]
    assert record_findings(asks("l", "List the primary colours", "Red."))["short_answer"].endswith("('List')")


def test_a_filter_can_be_switched_off_per_label(ws, tmp_path):
    records = [asks("open", "Why do camels have humps?", "Fat.", category="open_qa"),
               asks("brain", "Give me ideas for a party", "Games.", category="brainstorming")]
    options = FilterOptions(label_field="category", off_for_labels=("short_answer=open_qa",))
    assert filter_records(records, options).flagged == {"brain": ["short_answer"]}
    v1 = V.create_version(ws, records, parent=None, step="import")
    set_label_field(ws, v1.id, "category")
    report = filter_version(ws, v1.id, FilterOptions(off_for_labels=("short_answer=open_qa",)))
    assert report.options.label_field == "category" and list(report.flagged) == ["brain"]
    source, flagged = write_jsonl(tmp_path / "in.jsonl", [r.to_dict() for r in records]), tmp_path / "why.jsonl"
    assert main([str(source), str(tmp_path / "kept.jsonl"), "--label-field", "category",
                 "--off-for-labels", "short_answer=brainstorming", "--report", str(flagged)]) == 0
    assert [json.loads(line) for line in flagged.read_text().splitlines()] == [{
        "id": "open", "failed": ["short_answer"],
        "why": {"short_answer": "the answer has 1 word (minimum 2) but the question asks for more than a name or a "
                                "number ('Why')"}}]


def test_the_tab_shows_why_and_switches_a_filter_off_per_label(ws):
    V.create_version(ws, [asks("open", "Why do camels have humps?", "Fat.", category="open_qa"),
                          asks("brain", "Give me ideas for a party", "Games.", category="brainstorming")],
                     parent=None, step="import")
    with gr.Blocks():
        w = dedup.build(ws)
    checked = dedup.check_filters(ws, w, page(w, version="v1"))
    shown = checked[w.filter_findings]
    assert list(shown["record"]) == ["open", "brain"] and list(shown["filter"]) == ["short_answer"] * 2
    assert "('Why')" in shown["why"][0] and shown["answer"][0] == "Fat."
    off = dedup.check_filters(ws, w, page(w, version="v1", filter_form={
        "label_field": "category", "off_for_labels": "short_answer=open_qa\nshort_answer=brainstorming"}))
    assert off[w.filter_status] == "0 of 2 records flagged." and off[w.filter_findings].empty
