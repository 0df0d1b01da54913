"""Curation on real data: the short-text near-duplicate rule, the language filter and the short_answer
filter, each beside what it replaced, in one run.

On public slices (``benchmarks/data/README.md``: Dolly, Leipzig sentences in 15 languages) and the built-in
demo data, the script prints:

1. near duplicates of Dolly questions (``--text user``) without and with rule 5 of ``verify_pairs``
   (short texts must agree in their content words): every cluster found, to be judged by eye; then
   re-typed copies of the short Dolly questions (case, punctuation, a greeting or "please", one letter
   swapped in a long word) that must still merge, and copies with one word changed for a word of another
   question that must not;
2. pair recall and precision on ``benchmarks.planted_duplicates`` without and with rule 5;
3. language identification: accuracy of the function-word heuristic the filter used before and of
   py3langid (the filter's identifier) on the demo data and Dolly (all English) and on the Leipzig
   sentences, texts per second (median of ``--repeat`` runs), and how many records the
   ``language_mismatch`` filter flags on the demo data and on Dolly, where it should flag none;
4. ``short_answer`` on Dolly: records flagged by the old rule (any answer under the minimum) and by the
   new one, and a seeded sample of 20 flagged records with the reason, to be judged by eye.

Run: ``python -m benchmarks.real_data_quality [--planted-n 5000] [--repeat 3] [--seed 0]``
"""
from __future__ import annotations

import argparse
import contextlib
import json
import random
import re
import statistics
import sys
import time
import unicodedata
from collections import Counter
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.dedup import score  # noqa: E402
from benchmarks.planted_duplicates import planted_dataset  # noqa: E402
from curation.data.demo import demo_records  # noqa: E402
from curation.data.records import Record  # noqa: E402
from curation.dedup.clusters import DedupOptions, find_duplicates  # noqa: E402
from curation.dedup.filters import FILTERS, FilterOptions, filter_records, guess_language  # noqa: E402

DATA = ROOT / "benchmarks" / "data"
# Function words per language: the language filter's heuristic before py3langid (the baseline of section 3).
_OLD_FUNCTION_WORDS = {
    "en": "the and is are you your to of in it that for with this have not can be on we what how",
    "de": "der die das und ist nicht ich sie es mit für auf ein eine zu wie was bitte den dem",
    "fr": "le la les et est je vous pas une des que pour avec dans il ce sur qui merci",
    "es": "el la los las y es que de no por para con una un se su lo como gracias está",
    "it": "il lo la gli le e è che di non per con una un sono mi ti come grazie questo",
    "pt": "o a os as e é que de não por para com uma um se seu como obrigado está você",
    "nl": "de het een en is niet ik je u met voor op van dat wat hoe dank zijn",
}
_OLD_SCRIPTS = {"CJK": "zh", "HIRAGANA": "ja", "KATAKANA": "ja", "HANGUL": "ko", "CYRILLIC": "ru", "ARABIC": "ar"}


def old_guess_language(text: str) -> str | None:
    """The heuristic the language filter used before: the writing system, then votes of function words."""
    scripts: Counter[str] = Counter(unicodedata.name(c, "?").split(" ")[0] for c in text if c.isalpha())
    if not scripts:
        return None
    script, count = scripts.most_common(1)[0]
    if count < 0.6 * sum(scripts.values()):
        return None
    if script != "LATIN":
        return _OLD_SCRIPTS.get(script, script.lower())
    votes: Counter[str] = Counter(lang for word in re.findall(r"\w+", text.lower())
                                  for lang, words in _OLD_FUNCTION_WORDS.items() if word in words.split())
    if sum(votes.values()) < 3:
        return None
    (best, top), *rest = votes.most_common(2) + [("", 0)]
    return best if top >= 2 * rest[0][1] else None


def dolly_records() -> list[Record]:
    """The Dolly slice as chat records: the instruction (and its context, when there is one) asks; the
    response, where the slice has one, answers; ``category`` is the label."""
    records = []
    for n, line in enumerate((DATA / "dolly_slice.jsonl").read_text(encoding="utf-8").splitlines(), start=1):
        row = json.loads(line)
        messages = [{"role": "user", "content": row["instruction"]}]
        if "response" in row:
            messages.append({"role": "assistant", "content": row["response"]})
        records.append(Record(id=f"dolly-{n}", messages=messages, meta={"category": row.get("category", "")}))
    return records


def rule_5(on: bool):
    """A context with rule 5 of ``verify_pairs`` on (as shipped) or off (short texts merge on their shingles
    alone, as before #16)."""
    return contextlib.nullcontext() if on else mock.patch("curation.dedup.verify.short_texts_agree", lambda a, b: True)


def near_clusters(records: list[Record], options: DedupOptions) -> list[list[str]]:
    return [[m.id for m in c.members] for c in find_duplicates(records, options).clusters if c.kind == "near"]


def retyped(question: str, rng: random.Random) -> str:
    """The same question as someone else types it: case, punctuation, a greeting or please, a swapped letter."""
    words = question.rstrip("?.! ").split()
    long_words = [k for k, w in enumerate(words) if len(w) >= 7 and w.isalpha()]
    if long_words and rng.random() < 0.5:
        k = rng.choice(long_words)
        at = rng.randrange(1, len(words[k]) - 2)
        word = words[k]
        words[k] = word[:at] + word[at + 1] + word[at] + word[at + 2:]
    text = " ".join(words)
    text = rng.choice([text.lower(), text, text.upper() if len(text) < 40 else text])
    return rng.choice(["Hi, ", "Hello ", "", "Please: "]) + text + rng.choice(["?", "??", " please?", "", "!"])


def substituted(question: str, vocabulary: list[str], common: set[str], rng: random.Random) -> str | None:
    """The question with one of its words of five letters or more that is not among the ``common`` words of the
    questions replaced by such a word of another question (another subject)."""
    words = question.split()
    slots = [k for k, w in enumerate(words) if len(w) >= 5 and w.isalpha() and w.lower() not in common]
    if not slots:
        return None
    k = rng.choice(slots)
    choices = [v for v in vocabulary if v.lower() != words[k].lower()]
    words[k] = rng.choice(choices)
    return " ".join(words)


def section_dedup(records: list[Record], seed: int) -> None:
    options = DedupOptions(text="user")
    by_id = {r.id: r for r in records}
    print(f"1. Near duplicates of {len(records)} Dolly questions (--text user, threshold {options.threshold})")
    for on in (False, True):
        with rule_5(on):
            clusters = near_clusters(records, options)
        print(f"   rule 5 {'on ' if on else 'off'}: {len(clusters)} near-duplicate clusters")
        for members in clusters[:20]:
            print("     - " + "  |  ".join(by_id[m].prompt.replace("\n", " ")[:70] for m in members))
    rng = random.Random(seed)
    short = [r for r in records if len(r.prompt.split()) <= 20]
    # The 60 most frequent words of the questions themselves stand for words that carry no subject.
    counts = Counter(w.lower() for r in records for w in r.prompt.split())
    common = {w for w, _ in counts.most_common(60)}
    vocabulary = sorted({w for r in records for w in r.prompt.split()
                         if len(w) >= 5 and w.isalpha() and w.lower() not in common})
    originals = [Record(id=r.id, messages=r.messages[:1]) for r in short]
    copies, changed = [], []
    for r in short:
        copies.append(Record(id=f"{r.id}-copy", messages=[{"role": "user", "content": retyped(r.prompt, rng)}]))
        other = substituted(r.prompt, vocabulary, common, rng)
        if other:
            changed.append(Record(id=f"{r.id}-other", messages=[{"role": "user", "content": other}]))
    for on in (False, True):
        with rule_5(on):
            found = find_duplicates(originals + copies, options).clusters
            wrong = sum(any(m.endswith("-other") for m in c) for c in near_clusters(originals + changed, options))
        near = sum(c.kind == "near" for c in found)
        exact = sum(c.kind == "exact" for c in found)
        print(f"   rule 5 {'on ' if on else 'off'}: re-typed copies of {len(copies)} short questions: {near} found as "
              f"near and {exact} as exact duplicates, {len(copies) - near - exact} missed; one word changed for "
              f"another question's: {wrong} of {len(changed)} merged")


def section_planted(n: int, seed: int) -> None:
    planted = planted_dataset(n, seed)
    print(f"2. Planted duplicates ({len(planted.records):,} records, {len(planted.true_pairs()):,} planted pairs)")
    for text in ("conversation", "user"):
        for on in (False, True):
            with rule_5(on):
                result = find_duplicates(planted.records, DedupOptions(text=text))
            found = score(planted, [[m.id for m in c.members] for c in result.clusters], result.drop_ids())
            print(f"   --text {text:12} rule 5 {'on ' if on else 'off'}: recall {found['recall']:.4f}  "
                  f"precision {found['precision']:.4f}  hard negatives removed {found['hard_negatives_removed']}")


def _accuracy(guess, items: list[tuple[str, str]]) -> tuple[float, int, int]:
    got = [guess(text) for text, _ in items]
    right = sum(g == want for g, (_, want) in zip(got, items))
    wrong = sum(g is not None and g != want for g, (_, want) in zip(got, items))
    return right / len(items), wrong, sum(g is None for g in got)


def section_language(records: list[Record], repeat: int) -> None:
    demo = demo_records(600)
    sets = {
        "demo data (en)": [(m["content"], "en") for r in demo for m in r.messages],
        "Dolly (en)": [(m["content"], "en") for r in records for m in r.messages if m["content"].strip()],
        "Leipzig, 15 languages": [(row["text"], row["lang"]) for row in map(
            json.loads, (DATA / "leipzig_sentences.jsonl").read_text(encoding="utf-8").splitlines())],
    }
    forest = "A forest is a geographical region where trees predominate."
    print(f"3. Language identification: {forest!r} is {old_guess_language(forest)!r} to the heuristic, "
          f"{guess_language(forest)!r} to py3langid (its model loads on first use)")
    print("   right / wrong / unsure (no answer) and texts per second (median):")
    for name, items in sets.items():
        cells = []
        for label, guess in (("heuristic", old_guess_language), ("py3langid", guess_language)):
            times = []
            for _ in range(repeat):
                start = time.perf_counter()
                accuracy, wrong, unsure = _accuracy(guess, items)
                times.append(time.perf_counter() - start)
            cells.append(f"{label} {accuracy:.3f} right, {wrong} wrong, {unsure} unsure, "
                         f"{len(items) / statistics.median(times):,.0f}/s")
        print(f"   {name} ({len(items)} texts): " + " | ".join(cells))
    only = FilterOptions(skip=tuple(f for f in FILTERS if f != "language_mismatch"))
    for name, data in (("demo data", demo), ("Dolly", [r for r in records if len(r.messages) == 2])):
        flagged = filter_records(data, only).counts["language_mismatch"]
        with mock.patch("curation.dedup.filters.identify_language",
                        lambda text: (old_guess_language(text), 1.0) if old_guess_language(text) else None):
            before = filter_records(data, only).counts["language_mismatch"]
        print(f"   language_mismatch on {name} ({len(data)} records, all English): heuristic {before}, "
              f"py3langid {flagged} flagged")


def section_short_answer(records: list[Record], seed: int) -> None:
    options = FilterOptions()
    demo = demo_records(600)
    old = [r for r in demo if 0 < len(r.messages[-1]["content"].split()) < options.min_answer_words]
    now = [r for r in demo if "short_answer" in filter_records([r], options).findings.get(r.id, {})]
    print(f"4. short_answer (minimum {options.min_answer_words} words) on the demo data ({len(demo)} records): "
          f"old rule {len(old)} flagged, new rule {len(now)}")
    answered = [r for r in records if len(r.messages) == 2]
    old = [r for r in answered if len(r.messages[-1]["content"].split()) < options.min_answer_words]
    report = filter_records(answered, options)
    flagged = [r for r in answered if "short_answer" in report.findings.get(r.id, {})]
    print(f"   on {len(answered)} Dolly records with a response: old rule {len(old)} flagged, new rule {len(flagged)}")
    for r in old:
        fate = report.findings.get(r.id, {}).get("short_answer", "kept")
        print(f"   old rule flagged {r.prompt[:60]!r} -> {r.messages[-1]['content']!r}: now {fate}")
    for r in random.Random(seed).sample(flagged, min(20, len(flagged))):
        print(f"   new rule flags {r.prompt[:60]!r} -> {r.messages[-1]['content']!r}: "
              f"{report.findings[r.id]['short_answer']}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planted-n", type=int, default=5000, help="records of the planted set (default 5000)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each identifier; the median is printed")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    records = dolly_records()
    section_dedup(records, args.seed)
    section_planted(args.planted_n, args.seed)
    section_language(records, args.repeat)
    section_short_answer(records, args.seed)


if __name__ == "__main__":
    main()
