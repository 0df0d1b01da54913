"""Quality filters: records a fine-tune should not learn from, each flagged with the reason.

Filters (each can be switched off):

- ``empty_answer``: no assistant turn, or only whitespace in it;
- ``short_answer`` / ``long_answer``: the last answer has fewer / more words than the limits;
- ``repetitive``: the share of the answer's word 3-grams that repeat an earlier one (a model stuck
  in a loop, a pasted log) is above ``max_repeated_ngrams``;
- ``garbage``: the share of characters that are neither letters, digits, whitespace nor ordinary
  punctuation (mojibake, binary, markup debris) is above ``max_garbage``;
- ``no_final_answer``: the conversation does not end in an assistant turn;
- ``language_mismatch``: the answer is in another language than the question. Cheap: the writing
  system, then function words of the common Latin-script languages; unsure means no flag.

``quality_score`` turns the same measurements into one number in [0, 1] (the ``quality`` keeper
policy of dedup uses it; a numeric ``meta.quality`` wins when present).

Example::

    report = filter_records(records)                 # report.counts, report.examples, report.flagged
    version = apply_filters(ws, report)              # a new version without the flagged records

CLI: ``python -m curation.dedup.filters INPUT [OUTPUT] [--workspace DIR] [--min-answer-words N]
[--max-answer-words N] [--max-repeated-ngrams R] [--max-garbage R] [--skip FILTER ...] [--options FILE]
[--report flagged.jsonl]``; INPUT is a file or a version (v3, current) of the workspace, which then gets
the filtered version, as the Dedup tab's filter Apply makes it.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from core.errors import TuneloopError
from core.options import Options, add_arguments, from_args, option
from core.workspace import Workspace, atomic_write
from curation.data.records import Record
from curation.data.sources import add_source_arguments, check_output, read_source
from curation.data.versions import Version, chat_records, create_version, get_version, load_records, require_current

Progress = Callable[[float, str], None]
FILTERS = {
    "empty_answer": "no answer, or an empty one",
    "short_answer": "answer shorter than the minimum",
    "long_answer": "answer longer than the maximum",
    "repetitive": "answer repeats the same phrases",
    "garbage": "too many characters that are not text",
    "no_final_answer": "conversation does not end with an answer",
    "language_mismatch": "answer in another language than the question",
}
_EXAMPLES = 5
_ORDINARY = set(".,;:!?'\"()[]{}-–—/&%$€£#@*+=<>_~^|\\`…’‘“”«»¿¡·•°")
_WORD = re.compile(r"\w+")
# Function words that tell the common Latin-script languages apart in a sentence or two.
_FUNCTION_WORDS = {
    "en": "the and is are you your to of in it that for with this have not can be on we what how".split(),
    "de": "der die das und ist nicht ich sie es mit für auf ein eine zu wie was bitte den dem".split(),
    "fr": "le la les et est je vous pas une des que pour avec dans il ce sur qui merci".split(),
    "es": "el la los las y es que de no por para con una un se su lo como gracias está".split(),
    "it": "il lo la gli le e è che di non per con una un sono mi ti come grazie questo".split(),
    "pt": "o a os as e é que de não por para com uma um se seu como obrigado está você".split(),
    "nl": "de het een en is niet ik je u met voor op van dat wat hoe dank zijn".split(),
}
_WORD_LANGUAGES: dict[str, set[str]] = {}
for _lang, _words in _FUNCTION_WORDS.items():
    for _w in _words:
        _WORD_LANGUAGES.setdefault(_w, set()).add(_lang)


@dataclass
class FilterOptions(Options):
    """Limits of the quality filters; ``skip`` switches filters off by name."""
    what = "filter options"
    min_answer_words: int = option(2, "shortest answer in words: \"OK.\" alone teaches nothing; "
                                      "\"Yes, it does.\" is fine", min=0, label="Shortest answer (words)")
    max_answer_words: int = option(2000, "longest answer in words: longer is usually a pasted document, not an answer",
                                   min=1, label="Longest answer (words)")
    max_repeated_ngrams: float = option(0.3, "largest share of the answer's word 3-grams that repeat an earlier one "
                                             "(needs at least 10 of them)", min=0.0, max=1.0,
                                        label="Most repeated 3-grams (share)")
    max_garbage: float = option(0.25, "largest share of characters that are not text", min=0.0, max=1.0,
                                label="Most non-text characters (share)")
    skip: tuple[str, ...] = option((), "filters to switch off", choices=tuple(FILTERS), label="Filters to switch off")

    def more_problems(self) -> list[str]:
        if self.max_answer_words < self.min_answer_words:
            return [f"max_answer_words: {self.max_answer_words} is below min_answer_words ({self.min_answer_words})"]
        return []


@dataclass
class FilterReport:
    options: FilterOptions
    total: int
    flagged: dict[str, list[str]] = field(default_factory=dict)     # record id -> filters it failed
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


def guess_language(text: str) -> str | None:
    """A cheap guess: a script name for non-Latin text, a language code for Latin text, None if unsure."""
    scripts: Counter[str] = Counter()
    for c in text:
        if c.isalpha():
            name = unicodedata.name(c, "")
            scripts[name.split(" ")[0] if name else "?"] += 1
    if not scripts:
        return None
    script, count = scripts.most_common(1)[0]
    if count < 0.6 * sum(scripts.values()):
        return None
    if script != "LATIN":
        return {"CJK": "zh", "HIRAGANA": "ja", "KATAKANA": "ja", "HANGUL": "ko"}.get(script, script.lower())
    votes: Counter[str] = Counter()
    for word in _WORD.findall(text.lower()):
        for lang in _WORD_LANGUAGES.get(word, ()):
            votes[lang] += 1
    if sum(votes.values()) < 3:
        return None
    (best, top), *rest = votes.most_common(2) + [("", 0)]
    return best if top >= 2 * rest[0][1] else None


def check_record(record: Record, options: FilterOptions | None = None) -> list[str]:
    """The filters ``record`` fails, in the order of FILTERS."""
    options = options or FilterOptions()
    failed = []
    answers = _answers(record)
    answer = answers[-1] if answers else ""
    words = len(answer.split())
    if not answer.strip():
        failed.append("empty_answer")
    else:
        if words < options.min_answer_words:
            failed.append("short_answer")
        if words > options.max_answer_words:
            failed.append("long_answer")
        if repeated_ngram_share(answer) > options.max_repeated_ngrams:
            failed.append("repetitive")
    everything = "\n".join(m["content"] for m in record.messages)
    if garbage_share(everything) > options.max_garbage:
        failed.append("garbage")
    if not record.messages or record.messages[-1]["role"] != "assistant":
        failed.append("no_final_answer")
    if answer.strip() and record.prompt.strip():
        asked, answered = guess_language(record.prompt), guess_language(answer)
        if asked and answered and asked != answered:
            failed.append("language_mismatch")
    return [f for f in failed if f not in options.skip]


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
        failed = check_record(record, options)
        if failed:
            report.flagged[record.id] = failed
            for name in failed:
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
    """``filter_records`` on a dataset version (default: the current one)."""
    v = get_version(ws, version) if version is not None else require_current(ws)
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
            lines = "".join(json.dumps({"id": rid, "failed": reasons}) + "\n" for rid, reasons in report.flagged.items())
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
