"""The recognizers behind PII scrubbing, tuned for chat and support-ticket text.

Presidio's stock recognizers are built for documents: its phone matcher misses numbers with
made-up area codes, it has no street-address recognizer, and its spaCy model misses lowercase
names ("hey its mike lol"). These recognizers fill those gaps and stay narrow so that order
numbers, SKUs, versions, error codes and prices survive. People are found on evidence (NER label,
cues, repetition) by ``curation.pii.names``. Presidio is imported on first use.

Example::

    recognizers = chat_recognizers()          # list of presidio EntityRecognizer
    spans = protected_spans(text, DEFAULT_PROTECTED)
"""
from __future__ import annotations

import functools
import re
from typing import Iterable

from curation.pii.names import find_person_names
from curation.pii.patterns import PATTERN_FINDERS

# Domain identifiers that look like PII to a generic recognizer; (label, regex). A finding that
# overlaps one of these is dropped. They never match an email, a phone number, a card, an IBAN or an IP.
DEFAULT_PROTECTED: tuple[tuple[str, str], ...] = (
    ("code with a letter prefix (SKU-4471-BLK, ORD-2024-0012, ERR_TIMEOUT)",
     r"(?<![\w.@-])[A-Z][A-Z0-9]{0,9}(?:[-_][A-Z0-9]+)+(?![\w@-]|\.\w)"),
    ("order, ticket, invoice or tracking number",
     r"(?i:\b(?:order|ticket|invoice|inv|case|ref|reference|tracking|confirmation|booking|shipment|rma|"
     r"incident|request|req|po|receipt|transaction|txn|sku|item|part|model|serial)s?\s*(?:no\.?|number|num|id|#)?)"
     r"\s*[:#]?\s*#?(?=[A-Z0-9-]*\d)[A-Z0-9][A-Z0-9-]{3,}\b"),
    ("#-number (#482913)", r"(?<![\w&])#\d{3,}\b"),
    ("version (v2.4.1, version 4.12.0-beta)",
     r"(?i)(?:\bv|\b(?:version|ver|release|build|firmware|update|patch|sdk|api|app|ios|android|macos|windows|"
     r"chrome|python|node)\s*v?)\d+(?:\.\d+)+(?:[-+][0-9A-Za-z.]+)?\b"),
    ("semantic version (1.14.0, 2.0.0-rc.1)", r"(?<![\w.:])(?!\d{3}\.\d{3}\.\d{4}\b)\d{1,3}\.\d{1,3}\.\d{1,4}(?:[-+][0-9A-Za-z.]+)?(?![\w.:])"),
    ("price ($49.99, 1,299.00 EUR)",
     r"(?:[$€£¥]\s?\d[\d,]*(?:\.\d+)?|\b\d[\d,]*(?:\.\d{1,2})?\s?(?:USD|EUR|GBP|CAD|AUD|dollars|euros)\b)"),
    ("hex error code (0x80070005)", r"\b0x[0-9A-Fa-f]+\b"),
    ("error or status code (error 503, code E1042)",
     r"(?i)\b(?:error|err|code|status|http|exit code|errno)\s*[:#]?\s*[A-Z]{0,3}-?\d{2,6}\b(?![-./]\d|\s\d)"),
    ("plan or tier name (Pro Max plan, Business Plus tier)",
     r"\b(?:[A-Z][A-Za-z+]*[ \t]+){1,3}(?i:plan|tier|subscription|edition|package|bundle|license|licence)\b"),
)

def chat_recognizers(ner_entities: Iterable[str] = ("PERSON",)) -> list:
    """Presidio recognizers for the default chat entity types, spaCy NER included."""
    from presidio_analyzer import EntityRecognizer, RecognizerResult
    from presidio_analyzer.predefined_recognizers import EmailRecognizer, IpRecognizer, SpacyRecognizer

    class PersonRecognizer(EntityRecognizer):
        """People found on evidence (``curation.pii.names``): the NER engine's spans of every label
        (``nlp_artifacts.ner_spans``), cues, repetition; each result carries its evidence."""

        def load(self) -> None:
            pass

        def analyze(self, text, entities, nlp_artifacts=None):
            if "PERSON" not in entities:
                return []
            spans = getattr(nlp_artifacts, "ner_spans", ())
            return [RecognizerResult("PERSON", n.start, n.end, n.score, recognition_metadata={
                        "evidence": n.evidence, "public_figure": n.public})
                    for n in find_person_names(text, spans)]

    class OfflineEmailRecognizer(EmailRecognizer):
        """Presidio's email recognizer with tldextract on its bundled suffix list (never the network)."""

        def validate_result(self, pattern_text: str):
            return offline_tld_extract()(pattern_text.rsplit("@", 1)[-1]).suffix != ""

    class CallbackRecognizer(EntityRecognizer):
        """A recognizer whose spans come from a plain function of the text: (start, end, score) or
        (start, end, score, evidence); the evidence goes to ``recognition_metadata["evidence"]``."""

        def __init__(self, entity: str, finder, name: str):
            self._finder = finder
            super().__init__(supported_entities=[entity], name=name, supported_language="en")

        def load(self) -> None:
            pass

        def analyze(self, text, entities, nlp_artifacts=None):
            entity = self.supported_entities[0]
            if entity not in entities:
                return []
            return [RecognizerResult(entity, s, e, score, recognition_metadata={"evidence": evidence[0]}
                                     if evidence else None) for s, e, score, *evidence in self._finder(text)]

    others = sorted(set(ner_entities) - {"PERSON"})
    return [
        PersonRecognizer(supported_entities=["PERSON"], name="PersonRecognizer", supported_language="en"),
        *([SpacyRecognizer(supported_entities=others)] if others else []),
        OfflineEmailRecognizer(),
        IpRecognizer(),
        *[CallbackRecognizer(entity, finder, name) for entity, finder, name in PATTERN_FINDERS],
    ]


@functools.lru_cache(maxsize=1)
def offline_tld_extract():
    """tldextract on the public-suffix snapshot bundled with the package: no download, no cache dir."""
    import tldextract

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def protected_spans(text: str, patterns: Iterable[re.Pattern]) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for p in patterns for m in p.finditer(text) if m.end() > m.start()]
