"""Quality filters: records a fine-tune should not learn from, each flagged with the reason.

Filters (each can be switched off):

- ``empty_answer``: no assistant turn, or only whitespace in it;
- ``short_answer``: the last answer has fewer words than the minimum *and* either the question asks
  for more than a name, a number or a yes (an explanation, a list, steps, a text: ``ASKS_FOR_MORE``)
  or the answer is only an acknowledgement ("OK", "Done"). A one-word answer to a factual question
  ("Which German state is Munich in?" → "Bavaria") is never flagged;
- ``long_answer``: the last answer has more words than the maximum;
- ``repetitive``: the share of the answer's word 3-grams that repeat an earlier one (a model stuck
  in a loop, a pasted log) is above ``max_repeated_ngrams``;
- ``garbage``: the share of characters that are neither letters, digits, whitespace nor ordinary
  punctuation (mojibake, binary, markup debris) is above ``max_garbage``;
- ``no_final_answer``: the conversation does not end in an assistant turn;
- ``language_mismatch``: the answer is in another language than the question, as py3langid (a
  naive Bayes language identifier whose model ships inside its wheel; loaded on first use, offline)
  tells with at least 0.8 probability for both texts; texts of fewer than three words are not judged
  (a name or a number is in no language), and unsure means no flag.

Every finding says why (``FilterReport.findings``: record → filter → explanation), and a filter can be
switched off for records of a label (``off_for_labels``, e.g. ``short_answer=open_qa``; the label is
the meta field ``label_field``, by default the version's label field).

``quality_score`` turns the same measurements into one number in [0, 1] (the ``quality`` keeper
policy of dedup uses it; a numeric ``meta.quality`` wins when present).

Example::

    report = filter_records(records)                 # report.counts, report.examples, report.flagged
    version = apply_filters(ws, report)              # a new version without the flagged records

CLI: ``python -m curation.dedup.filters INPUT [OUTPUT] [--workspace DIR] [--min-answer-words N]
[--max-answer-words N] [--max-repeated-ngrams R] [--max-garbage R] [--skip FILTER ...]
[--label-field FIELD] [--off-for-labels FILTER=LABEL ...] [--options FILE]
[--report flagged.jsonl]``; INPUT is a file or a version (v3, current) of the workspace, which then gets
the filtered version, as the Dedup tab's filter Apply makes it. The report has each flagged record's
filters and why.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import unicodedata
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Callable, Sequence

from core.errors import TuneloopError
from core.options import Options, add_arguments, from_args, option
from core.workspace import Workspace, atomic_write
from curation.data.records import Record
from curation.data.sources import add_source_arguments, check_output, read_source
from curation.data.versions import Version, chat_records, create_version, get_version, load_records, require_current

Progress = Callable[[float, str], None]
FILTERS = {
    "empty_answer": "no answer, or an empty one",
    "short_answer": "answer too short for what the question asks (an explanation, a list, steps, a text)",
    "long_answer": "answer longer than the maximum",
    "repetitive": "answer repeats the same phrases",
    "garbage": "too many characters that are not text",
    "no_final_answer": "conversation does not end with an answer",
    "language_mismatch": "answer in another language than the question",
}
_EXAMPLES = 5
_ORDINARY = set(".,;:!?'\"()[]{}-–—/&%$€£#@*+=<>_~^|\\`…’‘“”«»¿¡·•°")
_WORD = re.compile(r"\w+")
# A question that asks for more than a name, a number or a yes: a short answer to it is missing something.
ASKS_FOR_MORE = re.compile(
    r"\b(explain\w*|why|describe|description|discuss|elaborate|summari[sz]e|summary|outline|compare|contrast|"
    r"differences?|list|steps?|ways|ideas|reasons|examples|tips|advice|pros and cons|recommend\w*|suggest\w*|"
    r"brainstorm|write|draft|compose|tell me about|give me|name (?:some|a few|several|\d+|two|three|four|five)|"
    r"what are (?:some|the)|how (?:do|does|did|can|could|should|would|to)|help)\b", re.IGNORECASE)
# Answers that acknowledge rather than answer: short and one of these, they teach nothing.
ACKNOWLEDGEMENTS = frozenset({"ok", "okay", "k", "kk", "sure", "done", "noted", "thanks", "thank you", "fine",
                              "got it", "will do", "np", "no problem", "hmm", "ack", "roger", "alright", "cool"})
# The language identifier judges texts of at least this many words, and is believed at this probability.
_LANGUAGE_MIN_WORDS = 3
LANGUAGE_MIN_PROBABILITY = 0.8


@dataclass
class FilterOptions(Options):
    """Limits of the quality filters; ``skip`` switches filters off by name."""
    what = "filter options"
    min_answer_words: int = option(2, "shortest answer in words to a question that asks for an explanation, a list, "
                                      "steps or a text (\"OK.\" alone teaches nothing); a one-word answer to a "
                                      "factual question (\"Bavaria\") is never flagged", min=0,
                                   label="Shortest answer (words)")
    max_answer_words: int = option(2000, "longest answer in words: longer is usually a pasted document, not an answer",
                                   min=1, label="Longest answer (words)")
    max_repeated_ngrams: float = option(0.3, "largest share of the answer's word 3-grams that repeat an earlier one "
                                             "(needs at least 10 of them)", min=0.0, max=1.0,
                                        label="Most repeated 3-grams (share)")
    max_garbage: float = option(0.25, "largest share of characters that are not text", min=0.0, max=1.0,
                                label="Most non-text characters (share)")
    skip: tuple[str, ...] = option((), "filters to switch off", choices=tuple(FILTERS), label="Filters to switch off")
    label_field: str = option("", "the meta field that holds a record's label (e.g. category); empty: the "
                                  "version's label field, else 'label'", label="Label field")
    off_for_labels: tuple[str, ...] = option((), "filters switched off for records of a label, FILTER=LABEL each "
                                                 "(e.g. short_answer=open_qa short_answer=classification)",
                                             label="Filters off for labels (FILTER=LABEL, one per line)")

    def more_problems(self) -> list[str]:
        problems = []
        if self.max_answer_words < self.min_answer_words:
            problems.append(f"max_answer_words: {self.max_answer_words} is below min_answer_words "
                            f"({self.min_answer_words})")
        for item in self.off_for_labels:
            name, _, label = item.partition("=")
            if name.strip() not in FILTERS:
                problems.append(f"off_for_labels: '{item}' names no filter; write FILTER=LABEL with FILTER one of "
                                f"{', '.join(FILTERS)}")
            elif not label.strip():
                problems.append(f"off_for_labels: '{item}' names no label; write {name.strip()}=LABEL")
        return problems

    def labels_off(self, name: str) -> set[str]:
        """The labels whose records filter ``name`` leaves alone."""
        pairs = (item.partition("=") for item in self.off_for_labels)
        return {label.strip() for filter_name, _, label in pairs if filter_name.strip() == name and label.strip()}

    def label_of(self, record: Record) -> str | None:
        """The record's label under ``label_field`` (``label`` when none is set), as text; None when it has none."""
        value = record.meta.get(self.label_field or "label")
        return None if value in (None, "") else str(value)


@dataclass
class FilterReport:
    options: FilterOptions
    total: int
    flagged: dict[str, list[str]] = field(default_factory=dict)     # record id -> filters it failed
    findings: dict[str, dict[str, str]] = field(default_factory=dict)   # record id -> filter -> why
    counts: dict[str, int] = field(default_factory=dict)            # filter -> records failing it
    examples: dict[str, list[str]] = field(default_factory=dict)    # filter -> a few record ids
    version_id: int | None = None

    def kept_records(self, records: Sequence[Record], only: Sequence[str] | None = None) -> list[Record]:
        """Records passing the filters (``only``: judge by these filters alone)."""
        return [r for r in records if not self._fails(r.id, only)]

    def removed_ids(self, only: Sequence[str] | None = None) -> set[str]:
        return {rid for rid in self.flagged if self._fails(rid, only)}

    def _fails(self, rid: str, only: Sequence[str] | None) -> bool:
        reasons = self.flagged.get(rid, ())
        return any(r in only for r in reasons) if only is not None else bool(reasons)


def _answers(record: Record) -> list[str]:
    return [m["content"] for m in record.messages if m["role"] == "assistant"]


def repeated_ngram_share(text: str, n: int = 3) -> float:
    """Share of word n-grams that repeat an earlier one (0 for texts with fewer than 10 n-grams)."""
    words = text.lower().split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    if len(grams) < 10:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def garbage_share(text: str) -> float:
    """Share of non-space characters that are neither letters, digits nor ordinary punctuation."""
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return 0.0
    bad = sum(1 for c in chars if not (c.isalnum() or c in _ORDINARY or unicodedata.category(c) == "Sc"))
    return bad / len(chars)


@cache
def _language_identifier() -> Any:
    """py3langid's identifier with probabilities, over the languages with a two-letter code (so that a dialect
    or a variant, ``wuu`` or ``arz``, never counts as another language than ``zh`` or ``ar``)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages([code for code in identifier.labels if len(code) == 2])
    return identifier


def identify_language(text: str) -> tuple[str, float] | None:
    """The language of ``text`` (ISO 639-1 code) and its probability; None for fewer than three words of letters
    (CJK and other scripts written without spaces: six letters)."""
    words = [w for w in _WORD.findall(text) if any(c.isalpha() for c in w)]
    letters = sum(c.isalpha() for c in text)
    if len(words) < _LANGUAGE_MIN_WORDS and not (letters >= 6 and not text.isascii() and len(words) < letters / 4):
        return None
    code, probability = _language_identifier().classify(text)
    return code, float(probability)


def guess_language(text: str) -> str | None:
    """The language of ``text`` when the identifier is sure of it (``LANGUAGE_MIN_PROBABILITY``), else None."""
    found = identify_language(text)
    return found[0] if found and found[1] >= LANGUAGE_MIN_PROBABILITY else None


def _short_answer_finding(question: str, answer: str, words: int, minimum: int) -> str | None:
    """Why a short answer is too short for its question, or None when it is a fair answer."""
    said = " ".join(_WORD.findall(answer.lower()))
    plural = "s" if minimum != 1 else ""
    if said in ACKNOWLEDGEMENTS:
        return f"the answer '{answer.strip()}' acknowledges rather than answers (fewer than {minimum} word{plural})"
    asks = ASKS_FOR_MORE.search(question)
    if asks:
        return (f"the answer has {words} word{'s' if words != 1 else ''} (minimum {minimum}) but the question asks "
                f"for more than a name or a number ('{asks.group(0)}')")
    return None


def record_findings(record: Record, options: FilterOptions | None = None) -> dict[str, str]:
    """The filters ``record`` fails, in the order of FILTERS, each with why (what was measured against what)."""
    options = options or FilterOptions()
    found: dict[str, str] = {}
    answers = _answers(record)
    answer = answers[-1] if answers else ""
    words = len(answer.split())
    if not answer.strip():
        found["empty_answer"] = "no assistant turn" if not answers else "the last answer is empty"
    else:
        if words < options.min_answer_words:
            why = _short_answer_finding(record.prompt, answer, words, options.min_answer_words)
            if why:
                found["short_answer"] = why
        if words > options.max_answer_words:
            found["long_answer"] = f"the answer has {words:,} words (maximum {options.max_answer_words:,})"
        repeated = repeated_ngram_share(answer)
        if repeated > options.max_repeated_ngrams:
            found["repetitive"] = (f"{repeated:.0%} of the answer's word 3-grams repeat an earlier one "
                                   f"(maximum {options.max_repeated_ngrams:.0%})")
    everything = "\n".join(m["content"] for m in record.messages)
    garbage = garbage_share(everything)
    if garbage > options.max_garbage:
        found["garbage"] = f"{garbage:.0%} of the characters are not text (maximum {options.max_garbage:.0%})"
    if not record.messages or record.messages[-1]["role"] != "assistant":
        last = record.messages[-1]["role"] if record.messages else "nothing"
        found["no_final_answer"] = f"the conversation ends with {last if last == 'nothing' else 'a ' + last + ' turn'}"
    label = options.label_of(record)

    def applies(name: str) -> bool:
        return name not in options.skip and (label is None or label not in options.labels_off(name))

    # The identifier is the one costly measurement: it runs only where its filter applies.
    if answer.strip() and record.prompt.strip() and applies("language_mismatch"):
        asked, answered = identify_language(record.prompt), identify_language(answer)
        if (asked and answered and asked[0] != answered[0]
                and min(asked[1], answered[1]) >= LANGUAGE_MIN_PROBABILITY):
            found["language_mismatch"] = (f"the question is in '{asked[0]}' ({asked[1]:.2f}), the answer in "
                                          f"'{answered[0]}' ({answered[1]:.2f})")
    return {name: why for name, why in found.items() if applies(name)}


def check_record(record: Record, options: FilterOptions | None = None) -> list[str]:
    """The filters ``record`` fails, in the order of FILTERS."""
    return list(record_findings(record, options))


def quality_score(record: Record) -> float:
    """0..1, higher is better: a present, substantial, clean final answer in the question's language.

    A numeric ``meta.quality`` (a reviewer's score) is used as is when present.
    """
    given = record.meta.get("quality")
    if isinstance(given, (int, float)) and not isinstance(given, bool):
        return float(given)
    failed = check_record(record)
    answer = (_answers(record) or [""])[-1]
    # Longer answers are better up to ~80 words, then no better: rewards substance, not padding.
    substance = min(len(answer.split()), 80) / 80
    return round(max(0.0, 1.0 - 0.25 * len(failed)) * (0.5 + 0.5 * substance), 4)


def filter_records(records: Sequence[Record], options: FilterOptions | None = None, *,
                   progress: Progress | None = None) -> FilterReport:
    """Run every filter over ``records``: which failed what, counts per filter, a few examples each."""
    options = (options or FilterOptions()).validate()
    report = FilterReport(options=options, total=len(records),
                          counts={f: 0 for f in FILTERS if f not in options.skip},
                          examples={f: [] for f in FILTERS if f not in options.skip})
    step = max(1, len(records) // 100)
    for i, record in enumerate(records):
        found = record_findings(record, options)
        if found:
            report.flagged[record.id] = list(found)
            report.findings[record.id] = found
            for name in found:
                report.counts[name] += 1
                if len(report.examples[name]) < _EXAMPLES:
                    report.examples[name].append(record.id)
        if progress and i % step == 0:
            progress(i / max(1, len(records)), "checking records")
    if progress:
        progress(1.0, f"{len(report.flagged)} records flagged")
    return report


def filter_version(ws: Workspace, version: int | str | None = None, options: FilterOptions | None = None, *,
                   progress: Progress | None = None) -> FilterReport:
    """``filter_records`` on a dataset version (default: the current one); an empty ``label_field`` becomes the
    version's label field."""
    from curation.review.labels import label_field

    v = get_version(ws, version) if version is not None else require_current(ws)
    options = (options or FilterOptions()).validate()
    if not options.label_field:
        options = options.replace(label_field=label_field(ws, v.id) or "label")
    report = filter_records(chat_records(ws, v.id, step="filtering"), options, progress=progress)
    report.version_id = v.id
    return report


def apply_filters(ws: Workspace, report: FilterReport, only: Sequence[str] | None = None, *,
                  created_by: str | None = None, note: str = "") -> Version:
    """A new version without the flagged records (``only``: remove for these filters alone)."""
    if report.version_id is None:
        raise TuneloopError("these filter results were not computed on a workspace version; run them on one first")
    unknown = [f for f in (only or ()) if f not in FILTERS]
    if unknown:
        raise TuneloopError(f"unknown filter '{unknown[0]}'; the filters are {', '.join(FILTERS)}")
    records = load_records(ws, report.version_id)
    kept = report.kept_records(records, only)
    removed = report.removed_ids(only)
    counts = {"removed": len(removed)}
    for rid in removed:
        for name in report.flagged[rid]:
            if only is None or name in only:
                counts[name] = counts.get(name, 0) + 1
    params = {**report.options.to_dict(), "only": list(only) if only is not None else None}
    return create_version(ws, kept, parent=report.version_id, step="filter", params=params, counts=counts,
                          created_by=created_by, note=note)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m curation.dedup.filters",
                                     description="Drop records that fail quality filters; print counts per filter. "
                                                 "A version as INPUT makes the filtered version.")
    add_source_arguments(parser, output="JSONL file to write the records that pass")
    add_arguments(parser, FilterOptions)
    parser.add_argument("--report", help="write the flagged records (id and reasons) as JSONL")
    args = parser.parse_args(argv)
    from curation.data.formats import write_jsonl
    try:
        options = from_args(FilterOptions, args)
        source = read_source(args.input, args.workspace)
        check_output(source, args.output)
        if source.version is not None:
            report = filter_version(source.workspace, source.version.id, options)
        else:
            report = filter_records(source.records, options)
        if args.output:
            write_jsonl(report.kept_records(source.records), args.output)
        if args.report:
            lines = "".join(json.dumps({"id": rid, "failed": reasons, "why": report.findings[rid]}, ensure_ascii=False)
                            + "\n" for rid, reasons in report.flagged.items())
            atomic_write(Path(args.report), lines.encode("utf-8"))
        made = apply_filters(source.workspace, report) if source.version is not None else None
    except TuneloopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, count in report.counts.items():
        print(f"{name:18} {count:7}  {FILTERS[name]}")
    where = " and ".join(([f"to {args.output}"] if args.output else []) + ([f"as {made.describe()}"] if made else []))
    print(f"{len(report.flagged)} of {report.total} records flagged; wrote {report.total - len(report.flagged)} {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
