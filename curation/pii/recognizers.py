"""The recognizers behind PII scrubbing, tuned for chat and support-ticket text.

Presidio's stock recognizers are built for documents: its phone matcher misses numbers with
made-up area codes, it has no street-address recognizer, and its spaCy model misses lowercase
names ("hey its mike lol"). These recognizers fill those gaps and stay narrow so that order
numbers, SKUs, versions, error codes and prices survive. Presidio is imported on first use.

Example::

    recognizers = chat_recognizers()          # list of presidio EntityRecognizer
    spans = protected_spans(text, DEFAULT_PROTECTED)
"""
from __future__ import annotations

import functools
import re
from typing import Iterable

from curation.pii.patterns import PATTERN_FINDERS

NAME_LOCALES = ("en_US", "en_GB", "en_IE", "en_NZ", "en_IN", "es_ES", "es_MX", "fr_FR", "de_DE", "it_IT",
                "pt_BR", "nl_NL")

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

TITLES = r"(?:Mr|Mrs|Ms|Mx|Miss|Dr|Prof|Sir|Madam|Mme|Mlle|Herr|Frau|Sr|Sra|Srta)"
# Words before a name in chat: "hey its mike", "thanks, sarah", "my name is Ana", "-- dave".
NAME_CUES = re.compile(
    r"(?:\b(?:i'?m|i am|its|it's|it is|this is|here is|name is|names|name's|name|called|call me|ask for|"
    r"hi|hey|hello|hiya|dear|thanks|thank you|thx|ty|cheers|regards|sincerely|best|yours|signed|cc|"
    r"spoke to|spoke with|talked to|talked with|speak to|speak with|contact|agent|manager|customer|user|"
    r"colleague|boss|wife|husband|son|daughter|mom|dad|friend|from|by|attn|attention|owner|holder|"
    r"" + TITLES + r")\.?\s*[,:;!?-]*|(?:^|\n|[!.,)]\s)\s*(?:--?|—|–|~))\s*$", re.IGNORECASE)
SIGN_OFF = re.compile(r"(?i)(?:regards|thanks|thank you|thx|cheers|best|sincerely|yours|ttyl|bye|love|xoxo|"
                      r"talk soon|take care|br|kr)[\s!.,]*$")
WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?(?:-[^\W\d_]+)*")
INITIAL = re.compile(r"[A-Z]\.?$")

# Names that are also everyday English words: a name only with a second name, a title or a cue.
COMMON_WORD_NAMES = frozenset("""
will may mark bill grant rose hope joy faith grace dawn june april august summer autumn
winter amber crystal ruby jade pearl daisy holly ivy iris lily violet olive ginger candy sandy
rich frank chase chance hunter angel destiny harmony heaven unique precious gay earl guy jack pat
sue don ray gene art dean drew glen glenn lance miles major king young long short
brown black white green gray grey best good price cook baker miller banks bell hill lane
wood woods stone rivers fields ford cross case key house church hall park love day bush
branch bond glass golden horn hood huff hull hunt knight lamb mills page parks pierce pope
powers reed rice ross salt sharp shaw sims snow spears stark steel strong swift walls ward
wall waters watts webb west wolf york max pro team plus scale ace sky star sun
rain storm river forest lake brook field meadow clay sterling diamond gold silver bronze ivory cash
penny buck bud dusty rusty sunny stormy sage cole cherry berry honey sugar melody lyric journey
kind bright free able north south east holiday christmas easter patience prudence constance mercy charity gates
cannon fox bird crane drake hawk swan bear fish salmon ball bass bean berg brand bridges
brooks coal cotton cox dale flowers fry gamble gill gross guard hand hardy head lucky marsh
monk moon small spring plan basic premium starter growth business enterprise standard advanced essentials unlimited lite
ultimate family student individual developer startup professional elite core prime select mini
""".split())
STOP_NAMES = frozenset("""
a an the and or but if of in on at to by for with from as is it its be are was were not no yes so do
de la le el da do di du van von der den dos das del ter ten al bin ben mac mc st san santa
lol lmao omg pls plz thx ty hey hi yo btw asap ok okay hello thanks name email phone plan customer
""".split())


@functools.lru_cache(maxsize=1)
def name_gazetteer() -> tuple[frozenset[str], frozenset[str]]:
    """(names, ambiguous): lowercase given and family names from Faker's person data in several
    locales, and those of them that are also ordinary words or too short to stand alone."""
    import importlib

    names: set[str] = set()
    for locale in NAME_LOCALES:
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        for attr in ("first_names", "first_names_male", "first_names_female", "last_names"):
            for name in getattr(provider, attr, ()) or ():
                for part in re.split(r"[\s-]+", str(name)):
                    part = part.strip().lower()
                    if part and part not in STOP_NAMES and WORD.fullmatch(part):
                        names.add(part)
    try:
        from spacy.lang.en.stop_words import STOP_WORDS
    except ImportError:
        STOP_WORDS = set()
    ambiguous = {n for n in names if len(n) < 3 or n in COMMON_WORD_NAMES or n in STOP_WORDS}
    return frozenset(names), frozenset(ambiguous)


@functools.lru_cache(maxsize=1)
def english_names() -> frozenset[str]:
    """Given and family names of the English-speaking locales (lowercase)."""
    import importlib

    names = set()
    for locale in ("en_US", "en_GB", "en_IE", "en_NZ"):
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        for attr in ("first_names", "first_names_male", "first_names_female", "last_names"):
            names.update(str(n).lower() for n in getattr(provider, attr, ()) or ())
    return frozenset(names)


def _name_key(word: str) -> str:
    return word.lower().replace("’", "'")


def needs_ner(text: str) -> bool:
    """Whether spaCy's NER could add a person here: a capitalised known name that ``find_names``
    did not already take (NER spans without a known name are never kept)."""
    names, _ = name_gazetteer()
    found = find_names(text)
    for m in WORD.finditer(text):
        word = m.group()
        if word[:1].isupper() and _is_name_part(word, names) and \
                not any(s <= m.start() and m.end() <= e for s, e, _ in found):
            return True
    return False


@functools.lru_cache(maxsize=4096)
def find_names(text: str) -> list[tuple[int, int, float]]:
    """Person-name spans in chat text: (start, end, score). Runs of known given/family names,
    initials, particles and titles; a lone ambiguous name needs a title or a cue ("its",
    "thanks", a signature line)."""
    names, ambiguous = name_gazetteer()
    words = [(m.start(), m.end(), m.group()) for m in WORD.finditer(text)]
    out: list[tuple[int, int, float]] = []
    i = 0
    while i < len(words):
        if not (_is_name_part(words[i][2], names) or _is_title(words[i][2])):
            i += 1
            continue
        run = [i]
        j = i + 1
        while j < len(words) and _joins(text, words[j - 1], words[j], names) and \
                _could_continue_name(words[j][2], names):
            run.append(j)
            j += 1
        score = 0.0
        while run and not score:
            while len(run) > 1 and not _may_end_name(words[run[-1]][2], names, [words[k] for k in run], ambiguous):
                run.pop()
            score = _run_score(text, [words[k] for k in run], names, ambiguous)
            if not score and len(run) > 1:
                run.pop()
            elif not score:
                break
        if score:
            s, e = _extend_titles(text, words[run[0]][0], words[run[-1]][1])
            out.append((s, e, score))
            i = run[-1] + 1
        else:
            i += 1
    return out


PARTICLES = frozenset("de la le da di du van von der den dos das del ter ten al bin ben mac mc st".split())


def _is_title(word: str) -> bool:
    return re.fullmatch(TITLES, word, re.IGNORECASE) is not None


def _is_name_part(word: str, names) -> bool:
    key = _name_key(word)
    return key in names or key.replace("'", "") in names or (
        "-" in key and all(p in names for p in key.split("-")))


def _could_continue_name(word: str, names) -> bool:
    return (_is_name_part(word, names) or (word[:1].isupper() and not word.isupper()) or len(word) == 1
            or word.lower() in PARTICLES)


def _may_end_name(word: str, names, run, ambiguous) -> bool:
    """A run may end on a known name, or on an unknown capitalised word after a strong name."""
    if _is_name_part(word, names):
        return True
    if word[:1].isupper() and len(word) > 1:
        return any(_name_key(w[2]) in names and _name_key(w[2]) not in ambiguous for w in run[:-1])
    return False


def _joins(text: str, a, b, names) -> bool:
    gap = text[a[1]:b[0]]
    if gap in (" ", "  ", "\t"):
        return True
    if gap in (". ", "."):
        return len(a[2]) == 1 or _is_title(a[2])
    return gap in (", ", ",") and _is_name_part(a[2], names) and _is_name_part(b[2], names) and \
        a[2][:1].isupper() == b[2][:1].isupper()


def _run_score(text: str, run: list[tuple[int, int, str]], names, ambiguous) -> float:
    parts = [w for w in run if not _is_title(w[2]) and w[2].lower() not in PARTICLES]
    if not parts:
        return 0.0
    known = [w for w in parts if _is_name_part(w[2], names)]
    strong = [w for w in known if _name_key(w[2]) not in ambiguous]
    titled = len(parts) < len(run) and _is_title(run[0][2]) or \
        re.search(r"\b" + TITLES + r"\.?\s*$", text[max(0, run[0][0] - 6):run[0][0]], re.IGNORECASE)
    english = english_names()
    # A lowercase word counts alone only as an English-locale name ("job" is a Dutch name, and a word).
    if len(known) < 2:
        strong = [w for w in strong if w[2][:1].isupper() or _name_key(w[2]) in english]
    if strong or titled:
        return 0.85
    if len(known) >= 2 and all(w[2][:1].isupper() for w in parts) and \
            not any(_name_key(w[2]) in PRODUCT_WORDS for w in parts):
        return 0.85
    return 0.85 if known and _has_cue(text, run[0][0]) else 0.0


def name_like(text: str) -> bool:
    """Whether an NER 'PERSON' span is believable: it holds a strong known name, or known names
    and no product words."""
    names, ambiguous = name_gazetteer()
    words = [w.group() for w in WORD.finditer(text)]
    keys = [_name_key(w) for w in words]
    if any(k in names and k not in ambiguous for k in keys):
        return True
    return bool(keys) and all(k in names for k in keys) and not any(k in PRODUCT_WORDS for k in keys)


PRODUCT_WORDS = frozenset("""
pro max plus premium family starter basic growth business enterprise team scale standard advanced essentials
unlimited lite ultimate student individual developer startup professional elite core prime select mini air
home office cloud suite studio one gold silver platinum bronze diamond free trial
""".split())


def _has_cue(text: str, start: int) -> bool:
    before = text[max(0, start - 40):start]
    if NAME_CUES.search(before):
        return True
    line_start = text.rfind("\n", 0, start) + 1
    if text[line_start:start].strip() == "" and line_start > 0:
        prev_line = text[text.rfind("\n", 0, line_start - 1) + 1:line_start - 1]
        if SIGN_OFF.search(prev_line.strip()):
            return True
    after = text[start:start + 60]
    here = re.match(r"[^\W\d_]+(?:\s+[^\W\d_]+)?\s+here\b(?P<end>[,!.:]|\s*$)?", after, re.IGNORECASE)
    return here is not None and (here.group("end") is not None or text[line_start:start].strip() == "")


def _extend_titles(text: str, s: int, e: int) -> tuple[int, int]:
    """Take in titles and suffixes around a name (Dr., Sig.ra, Univ.Prof., Jr., B.Sc.)."""
    prefixes, suffixes = _affixes()
    window = text[max(0, s - 16):s]
    m = prefixes.search(window)
    if m:
        s -= len(window) - m.start()
    m = suffixes.match(text, e)
    if m:
        e = m.end()
    return s, e


@functools.lru_cache(maxsize=1)
def _affixes() -> tuple[re.Pattern, re.Pattern]:
    import importlib

    prefixes, suffixes = {"Mr", "Mrs", "Ms", "Mx", "Miss", "Dr", "Prof", "Sir", "Madam", "Mme", "Mlle"}, {
        "Jr", "Sr", "II", "III", "IV", "MD", "DDS", "PhD", "DVM", "Esq", "CPA", "RN"}
    for locale in NAME_LOCALES:
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        for attr in ("prefixes", "prefixes_male", "prefixes_female", "prefixes_nonbinary"):
            prefixes.update(p.rstrip(".") for p in getattr(provider, attr, ()) or () if len(p) > 1)
        for attr in ("suffixes", "suffixes_male", "suffixes_female", "suffixes_nonbinary"):
            suffixes.update(p.rstrip(".") for p in getattr(provider, attr, ()) or () if len(p) > 1)
    alt = lambda items: "|".join(sorted((re.escape(i) for i in items), key=len, reverse=True))  # noqa: E731
    return (re.compile(r"(?<![\w.])(?:(?:" + alt(prefixes) + r")\.?\s*)+$", re.IGNORECASE),
            re.compile(r",?\s+(?:" + alt(suffixes) + r")(?![\w-])\.?", re.IGNORECASE))


def chat_recognizers(ner_entities: Iterable[str] = ("PERSON",)) -> list:
    """Presidio recognizers for the default chat entity types, spaCy NER included."""
    from presidio_analyzer import EntityRecognizer, RecognizerResult
    from presidio_analyzer.predefined_recognizers import EmailRecognizer, IpRecognizer, SpacyRecognizer

    class NerRecognizer(SpacyRecognizer):
        """spaCy's entities, with PERSON spans cut before digits or line breaks (the small model
        sometimes runs a name into a whole CSV row) and kept only when they look like a name."""

        def analyze(self, text, entities, nlp_artifacts=None):
            out = []
            for r in super().analyze(text, entities, nlp_artifacts):
                if r.entity_type == "PERSON":
                    cut = re.search(r"[\d\n|@:;/()\[\]<>]|,(?! )", text[r.start:r.end])
                    end = r.start + cut.start() if cut else r.end
                    while end > r.start and not text[end - 1].isalpha():
                        end -= 1
                    # "Customer Jane Doe": start at the first known name when words before it are not names.
                    words = list(WORD.finditer(text, r.start, end))
                    known = [w for w in words if _is_name_part(w.group(), name_gazetteer()[0])]
                    if known and words and known[0].start() > words[0].start():
                        r.start = known[0].start()
                    if end <= r.start:
                        continue
                    r.end = end
                    r.score = 0.85 if name_like(text[r.start:end]) else 0.3
                out.append(r)
            return out

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

    return [
        NerRecognizer(supported_entities=sorted(set(ner_entities))),
        OfflineEmailRecognizer(),
        IpRecognizer(),
        CallbackRecognizer("PERSON", find_names, "ChatNameRecognizer"),
        *[CallbackRecognizer(entity, finder, name) for entity, finder, name in PATTERN_FINDERS],
    ]


@functools.lru_cache(maxsize=1)
def offline_tld_extract():
    """tldextract on the public-suffix snapshot bundled with the package: no download, no cache dir."""
    import tldextract

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def protected_spans(text: str, patterns: Iterable[re.Pattern]) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for p in patterns for m in p.finditer(text) if m.end() > m.start()]
