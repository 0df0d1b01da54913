"""More open-world evidence that a span is a person, for names no list holds and the NER engine misreads.

``curation.pii.names`` finds people on cues and the NER engine's spans; these are the contexts where an
unseen name still went through (measured on names no part of the detector reads, issue #15):

- a cue word that is also a dictionary word ("Lev, can I ...", "everyone calls me Mei", "shouted at Evens")
  stays a name when the NER engine labels the same capitalised words PERSON (``ner_backed``);
- a short family name that is also a function word ("Ye-jun No", "Mr. Ji-woo So") after a name word
  (``short_family_name``);
- a name in a sentence about an account, a booking or a name ("please change it to Ana Lim", "Maybe it's
  under Sione Fifita", "my partner's name Konul Ismayilov"), given a role ("add Ama Boateng as a
  beneficiary", "the assistant to Ha-eun Nham"), given a name ("She named him Tavita"), listed as the
  founders, children or guests of something ("our 3 founders: Masuda, Takaki and Lương"), addressed at
  the end of a sentence ("Don't go to town, Sekou!"), a speaker label after a sentence ("? User: Maha
  Barone"), the name line after "Billing address:", the name line that heads a contact card, the subject of
  what only people are or do ("Darren is a very sympathetic person", "Islande Yau, the pharmacist, said"),
  and a name before a kind of work only a person makes or gives ("a Yuna Okamoto concert") (``context_runs``);
- the subject of "is from" or "works at" an organisation, one word too ("Tomomi is from Kowhai Rail";
  ``affiliated_person``);
- a name after what only a person has or leaves behind ("the true gender of Nurislam", "the funeral of
  Sekou Diarra");
- a name right after an occupation ("our pharmacist Sekou Diarra") or said to hold one ("Tavita and Moana are
  physiotherapists"): the occupations are the one-word job titles of Faker's English job list (``occupations``),
  a source the benchmark's names and sentences do not come from.

Each rule needs the words to look like a name (``names._believable``: one of them is not an ordinary
English word, or all are listed names) unless the NER engine also says PERSON; none reads a list of names.

Example::

    context_runs("Maybe it's under Sione Fifita", [])
    # [(17, 29, 'account', "it's under")]
"""
from __future__ import annotations

import functools
import re

# Kinds of evidence found here, with what they say; names.py adds them to its own.
LABELS = {"account": "named as the holder of an account, a booking or a name",
          "role": "given a role on an account or in a will (beneficiary, guardian ...)",
          "aide": "someone's assistant, secretary or heir",
          "named": "given a name (named him, called her)",
          "members": "listed as the founders, children, guests ... of something",
          "addressee": "name line after a billing or shipping address label",
          "card": "first line of a contact card",
          "occupation": "named with an occupation",
          "attribute": "something only a person has"}
LOWERCASE = frozenset({"account", "role", "aide", "named", "members", "addressee", "card", "attribute"})

# Cue kinds whose dictionary-word names the NER engine's PERSON label may vouch for.
# Not a speaker label: a list of "Word: place" lines reads like a transcript ("Dumbbell: Gym").
NER_BACKED_KINDS = frozenset({"strong", "field", "intro", "greeting", "signoff", "vocative", "spoken",
                              "kin", "cc", "contact", "here", "named", "verb"})

ACCOUNT_TOPIC = re.compile(r"(?i)\b(?:name[sd]?|account|booking|reservation|card|policy|statement|registered|"
                           r"order|subscription|ticket)\b")
# (kind, regex ending where the name starts, regex that must follow the name).
_RULES = (
    ("account", r"\b(?:change|changed|correct|corrected|update|updated|set|put|transfer|transferred)\s+"
                r"(?:it|this|that|the\s+name|my\s+name|the\s+account)\s+(?:back\s+)?to\s+", r"[ \t]*(?:[.?!,]|$)"),
    ("account", r"\b(?:it'?s|it\s+is|is|was|booked|registered|listed|reserved|filed)\s+under\s+"
                r"(?:the\s+name\s+(?:of\s+)?)?", r"[ \t]*(?:[.?!,]|$)"),
    ("account", r"\b(?:my|his|her|their|our|your)\s+(?:[\w-]+['’]s\s+)name\s+", r"[ \t]*(?:[.?!,]|$)"),
    ("role", r"\b(?:add|added|adding|name|named|appoint|appointed|list|listed|include|included|designate|"
             r"designated|nominate|nominated|make|made|keep|kept|register|registered)\s+",
     r"\s+as\s+(?:(?:a|an|the|my|our|his|her|their|a\s+joint)\s+)?(?:co-?)?(?:guardian|beneficiary|beneficiaries|"
     r"executor|executrix|trustee|dependent|dependant|driver|cardholder|signatory|signer|holder|owner|"
     r"emergency\s+contact|contact|next\s+of\s+kin|authori[sz]ed\s+user|user|member|partner|spouse|caregiver|"
     r"carer|representative|proxy|payee|tenant|guarantor)\b"),
    ("aide", r"\b(?:the\s+|an?\s+|personal\s+)?(?:assistant|secretary|aide|deputy|advisor|adviser|successor|heir|"
             r"apprentice|intern|nanny|carer|caregiver)\s+to\s+", r""),
    ("named", r"\b(?:named|called|christened|nicknamed)\s+(?:him|her|them|the\s+(?:baby|boy|girl)|"
              r"(?:his|her|their|our|my)\s+(?:son|daughter|baby|boy|girl|child))\s+", r""),
    ("members", r"\b(?:founders|co-?founders|children|kids|sons|daughters|grandchildren|grandsons|granddaughters|"
                r"siblings|brothers|sisters|parents|guests|speakers|panellists|panelists|hosts|authors|"
                r"bridesmaids|groomsmen|godparents|roommates|flatmates|tenants|witnesses)"
                r"(?:\s+(?:are|were|include|included))?\s*:\s*", r""),
    # "the true gender of Nurislam", "the widow of Tavita Fa'asoa": what only a person has or leaves behind.
    ("attribute", r"\b(?:gender|widow|widower|ex-?wife|ex-?husband|girlfriend|boyfriend|fianc[eé]e?|funeral|"
                  r"burial|autopsy|obituary|eulogy|biography|biographer|memoirs|murder|kidnapping|custody|"
                  r"birthday|nationality|surname|godmother|godfather)\s+of\s+", r""),
    ("vocative", r",[ \t]*(?=(?:[^\W\d_][\w'’-]*[ \t])?[^\W\d_][\w'’-]*[ \t]*[!?]+(?:\s|$))", r""),
    ("field", r"[.?!][ \t]+(?:user|customer|client|caller|guest|patient|member)\s*:\s*", r""),
    ("verb", r"\b(?:said|says|asked|asks|replied|whispered|shouted|yelled)\s+(?=[A-Z])", r"[ \t]+to\b"),
    ("contact", r"\bfollow(?:s|ed|ing)?[\s-]+up\s+with\s+|\b(?:meet|meeting|met|check|checked|checking)\s+with\s+",
     r""),
)
# The subject of a verb phrase only people take ("Willemine Pas will be talking in the conference"), or said to be a
# person ("Darren is a very sympathetic person").
SUBJECT_OF = re.compile(r"(?i)[ \t]+(?:will|would|is|was|'ll|’ll)[ \t]+(?:be[ \t]+)?(?:talking|speaking|presenting|"
                        r"lecturing|performing|singing|joining\s+us|the\s+keynote\s+speaker|our\s+guest)\b"
                        r"|[ \t]+(?:lives|lived|resides|resided)[ \t]+(?:at|on|in)\b"
                        # "Islande Yau, the pharmacist, said": a speaker with their role between commas.
                        # Organisations speak too ("Acme Rail, our supplier, said"): not after a word for one.
                        r"|,[ \t]+(?:the|a|an|our|their|his|her)[ \t]+(?:[^\W\d_][\w-]*[ \t]+){0,2}"
                        r"(?!(?:company|firm|supplier|manufacturer|maker|bank|group|agency|council|ministry|department|"
                        r"government|airline|retailer|brand|start-?up|provider|vendor|club|team|charity|newspaper|paper|"
                        r"channel|network|school|university|hospital|union|party|carrier|operator|store|shop|chain|"
                        r"developer|publisher|studio|label|band|organi[sz]ation|association|authority|court|police|"
                        r"service)s?,)[^\W\d_][\w-]*,"
                        r"[ \t]+(?:said|says|told|tells|explained|explains|added|adds|wrote|writes|replied|replies)\b"
                        # "Darren is a very sympathetic person", "Mele was such a kind woman".
                        r"|[ \t]+(?:is|was)[ \t]+(?:a|an|such[ \t]+a|such[ \t]+an)[ \t]+(?:[\w-]+[ \t]+){0,2}"
                        r"(?:person|man|woman|guy|girl|boy|lady|gentleman|fellow|bloke)\b")
# What follows a person's name when the words before it are a thing's ("the Christiansen novel"): a work
# they made or gave ("a Ren Fujiwara concert", "the Amelja Chim version").
WORK_AFTER = re.compile(r"(?i)[ \t]+(?:concerts?|novels?|books?|albums?|songs?|singles?|films?|movies?|plays?|"
                        r"paintings?|poems?|biography|memoir|versions?|covers?|tours?|fans?|lectures?|interviews?|"
                        r"speech|quotes?|recordings?|gigs?|exhibitions?|retrospective)\b")
# "the Christiansen novel", "a Yuna Okamoto concert": a name before a kind of work only a person makes or gives
# (not "version", "book" or "film": "the Android version", "the Python book", "the Marvel film").
MADE_BY_BEFORE = re.compile(r"\b(?:[Tt]he|[Aa]n?)[ \t]+(?=[A-Z])")
MADE_BY = re.compile(r"(?i)[ \t]+(?:concerts?|novels?|memoirs?|biography|retrospective|gigs?|poems?|paintings?)\b")
RULES = tuple((kind, re.compile(before, re.IGNORECASE | re.MULTILINE), re.compile(after, re.IGNORECASE))
              for kind, before, after in _RULES)
ADDRESS_LABEL = re.compile(r"(?im)^[ \t>]*(?:billing|shipping|mailing|postal|delivery|home|invoice)\s+address"
                           r"\s*:[ \t]*(?=\S)")
LIST_SEP = re.compile(r"[ \t]*(?:,[ \t]*(?:and[ \t]+|&[ \t]*)?|[ \t]+(?:and|&)[ \t]+)")
CARD_FIELDS = re.compile(r"(?im)^[ \t>]*(?:phone|tel|telephone|mobile|cell|fax|e-?mail|address|website|web)\s*:")


# One-word job titles of Faker's list that also name a thing, a company or a brand right before a name ("the
# chemist Boots", "the text editor Vim", "the Python interpreter Jython", "designer Gucci", "the dealer Autohaus").
NOT_ONLY_PEOPLE = frozenset({"copy", "land", "make", "sub", "runner", "buyer", "contractor", "dealer", "chemist",
                             "editor", "interpreter", "designer", "programmer", "administrator", "producer",
                             "merchandiser", "bookseller", "gaffer"})


@functools.lru_cache(maxsize=1)
def occupations() -> frozenset[str]:
    """Occupations only people hold, lowercase: the job titles of Faker's ``en_US`` job provider that are one
    word before any comma ("Engineer, civil" gives "engineer"), less ``NOT_ONLY_PEOPLE``."""
    from faker.providers.job.en_US import Provider

    heads = {job.split(",")[0].strip().lower() for job in Provider.jobs}
    return frozenset(h for h in heads if re.fullmatch(r"[a-z]+", h)) - NOT_ONLY_PEOPLE


def _plural(word: str) -> str:
    return word[:-1] + "ves" if word == "midwife" else word + ("es" if word.endswith(("s", "sh", "ch")) else "s")


@functools.lru_cache(maxsize=1)
def occupation_patterns() -> tuple[re.Pattern, re.Pattern]:
    """(an occupation right before a name, "is/are (a) … <occupation>(s)" right after one)."""
    words = sorted(occupations() | {_plural(w) for w in occupations()}, key=len, reverse=True)
    alternatives = "|".join(words)
    before = re.compile(rf"(?i)\b(?:{alternatives})[ \t]+(?=[A-Z])")
    after = re.compile(rf"(?i)[ \t]+(?:is|was|are|were)[ \t]+(?:(?:a|an|the|our|my|his|her|their|your)[ \t]+)?"
                       rf"(?:[\w-]+[ \t]+){{0,2}}(?:{alternatives})(?![\w'’-])")
    return before, after


def ner_backed(words, kind: str, entities) -> bool:
    """Whether the NER engine labels every one of a cue's capitalised words PERSON: then a dictionary
    word is a name ("Lev, can I ...", "calls me Mei"), evidence from two sources that agree."""
    from curation.pii.names import PERSON_LABELS, _stop_words, _key

    if kind not in NER_BACKED_KINDS or not words:
        return False
    people = [(s, e) for s, e, label, _ in entities if label in PERSON_LABELS]
    return all(w[:1].isupper() and not w.isupper() and _key(w) not in _stop_words() and
               any(s <= ws and we <= e for s, e in people) for ws, we, w in words)


def short_family_name(text: str, end: int) -> int:
    """The end of a short capitalised function word that follows a name word at ``end`` as a family name
    ("Ye-jun No speak", "Mr. Ji-woo So."): two or three letters, capitalised in mid-sentence, one space
    after a word that is not a dictionary word (or a hyphenated given name), then no capitalised word.
    ``end`` itself when there is none."""
    from curation.pii.names import WORD, _stop_words, _key, is_common

    before = re.search(r"([^\W\d_][\w'’-]*)\Z", text[max(0, end - 40):end])
    m = re.compile(r" ([A-Z][a-z]{1,2})(?![\w'’-])").match(text, end)
    if not before or not m or _key(m.group(1)) not in _stop_words():
        return end
    name = before.group(1)
    if not name[:1].isupper() or is_common(name) and "-" not in name:
        return end
    nxt = WORD.match(text, m.end() + 1) if text[m.end():m.end() + 1] == " " else None
    return end if nxt and nxt.group()[:1].isupper() else m.end()


def _sentence(text: str, pos: int) -> str:
    start = max(text.rfind(ch, 0, pos) for ch in ".?!\n") + 1
    ends = [i for i in (text.find(ch, pos) for ch in ".?!\n") if i >= 0]
    return text[start:min(ends) if ends else len(text)]


def context_runs(text: str, entities) -> list[tuple[int, int, str, str]]:
    """(start, end, kind, cue) for each name-shaped run these rules find (see the module's docstring)."""
    from curation.pii.names import _believable, _run_after, _vetoed, OTHER_LABELS, is_lowercase_chat

    others = [(s, e, label) for s, e, label, _ in entities if label in OTHER_LABELS]
    lower_chat = is_lowercase_chat(text)
    out = []

    def take(words, kind: str, cue: str, vouched: bool = False) -> bool:
        # Whoever is named or called something has a name, a dictionary word or a place's name too ("named him Doha").
        believable = vouched or _believable(words, "title" if kind == "named" and not lower_chat else kind)
        if not words or not (believable or ner_backed(words, kind, entities)):
            return False
        if kind != "named" and _vetoed(others, words[0][0], words[-1][1], words, strict=False):
            return False
        out.append((words[0][0], words[-1][1], kind, re.sub(r"\s+", " ", cue.strip(" \t\n,:;!.?")).lower() or kind))
        return True

    for kind, before, after in RULES:
        for m in before.finditer(text):
            words = _run_after(text, m.end(), "strong" if kind in ("account", "role", "named") else
                               "greeting" if kind in ("contact", "aide") else kind)
            if not words or not lower_chat and any(w[2][:1].islower() for w in words):
                continue
            if after.pattern and not after.match(text, words[-1][1]):
                continue
            # "change it to ..." is about a name only in a sentence about an account or a name.
            if kind == "account" and m.group().lower().startswith(
                    ("change", "correct", "update", "set", "put", "transfer")) and \
                    not ACCOUNT_TOPIC.search(_sentence(text, m.start())):
                continue
            if kind == "members":
                # The items of the list: each a run of name words, separated by commas and "and".
                pos, items = m.end(), []
                while True:
                    run = _run_after(text, pos, "title" if not lower_chat else "strong")
                    if not run:
                        break
                    items.append(run)
                    sep = LIST_SEP.match(text, run[-1][1])
                    if not sep or sep.end() == run[-1][1]:
                        break
                    pos = sep.end()
                # One name-shaped item vouches for the capitalised others ("founders: Monjeau, Graves and Reed").
                if len(items) >= 2 and any(_believable(run, kind) for run in items):
                    for run in items:
                        take(run, kind, m.group(), vouched=all(w[:1].isupper() for _, _, w in run))
                continue
            take(words, kind, m.group())
    for m in SUBJECT_OF.finditer(text):
        words = _words_before(text, m.start(), lower_chat)
        if words and _sentence_start(text, words[0][0]) or words and text[words[0][0] - 1:words[0][0]] in "(\"“":
            take(words, "verb", "subject of " + m.group().strip().lower())
    occupation_before, occupation_after = occupation_patterns()
    for m in occupation_before.finditer(text):
        words = _run_after(text, m.end(), "occupation")
        if words and all(w[2][:1].isupper() for w in words):
            take(words, "occupation", m.group())
    for m in occupation_after.finditer(text):
        words = _name_words_before(text, m.start(), lower_chat)
        if not words or not (_sentence_start(text, words[0][0]) or
                             re.search(r"[ \t](?:and|&)[ \t]+\Z", text[:words[0][0]])):
            continue
        cue = " ".join(m.group().split()[::len(m.group().split()) - 1])      # "were … engineers"
        take(words, "occupation", cue)
        # "Testa and Okafor were engineers": the name before "and" holds the occupation too.
        both = re.search(r"[ \t]+(?:and|&)[ \t]+\Z", text[:words[0][0]])
        more = _name_words_before(text, both.start(), lower_chat) if both else []
        if more and _sentence_start(text, more[0][0]):
            take(more, "occupation", cue)
    for m in MADE_BY_BEFORE.finditer(text):
        words = _run_after(text, m.end(), "title")
        if words and MADE_BY.match(text, words[-1][1]):
            take(words, "credit", m.group().strip() + " … " + MADE_BY.match(text, words[-1][1]).group().strip())
    for m in ADDRESS_LABEL.finditer(text):
        words = _run_after(text, m.end(), "block")
        line_end = re.compile(r"[ \t]*\n[^\n]*\d").match(text, words[-1][1]) if words else None
        if line_end:
            take(words, "addressee", m.group())
    card = _card_name_line(text, others, lower_chat)
    if card:
        take(card, "card", "card")
    return out


def _words_before(text: str, end: int, lower_chat: bool) -> list[tuple[int, int, str]]:
    """One to three name words (capitalised, or lowercase in lowercase chat) that end at ``end``."""
    from curation.pii.names import WORD, PARTICLES

    words: list[tuple[int, int, str]] = []
    pos = end
    while len(words) < 3:
        m = re.compile(r"([^\W\d_][\w'’-]*)[ \t]*\Z").search(text, max(0, pos - 40), pos)
        if not m:
            break
        word = m.group(1)
        if not (word[:1].isupper() or lower_chat or word.lower() in PARTICLES and words):
            break
        words.insert(0, (m.start(1), m.end(1), word))
        pos = m.start(1)
    while words and words[0][2].lower() in PARTICLES:
        words.pop(0)
    return words


def _name_words_before(text: str, end: int, lower_chat: bool) -> list[tuple[int, int, str]]:
    """``_words_before`` after its last function word: in lowercase chat "bartók and rivo are" ends in "rivo"."""
    from curation.pii.names import _stop_words, _key

    words = _words_before(text, end, lower_chat)
    cut = max((i + 1 for i, w in enumerate(words) if _key(w[2]) in _stop_words()), default=0)
    return words[cut:]


def _sentence_start(text: str, pos: int) -> bool:
    from curation.pii.names import _sentence_start as starts

    return starts(text, pos)


def affiliated_person(words, m: re.Match, entities) -> bool:
    """A name before "of" an organisation is a person; before "from" one, a full name or one the NER engine
    calls PERSON is ("Amadeo Vitorović from Rapid Cycle Solutions"): a product is from its maker too ("Siri
    from Apple"). The subject of "is from", "works at" or "works for" an organisation is a person, one word
    too ("Tamahou is from Kowhai Rail"): a product is made by its maker, not from it."""
    from curation.pii.names import PERSON_LABELS

    if re.search(r"[ \t]of[ \t]+(?:the[ \t]+)?\Z", m.group()):
        return True
    if re.search(r"[ \t](?:is|was|works)[ \t]+(?:from|at|for)[ \t]+(?:the[ \t]+)?\Z", m.group()):
        return True
    s, e = words[0].start(), words[-1].end()
    return len(words) >= 2 or any(a <= s and e <= b and label in PERSON_LABELS for a, b, label, _ in entities)


def work_after(text: str, end: int) -> bool:
    """Whether a work someone made follows a name (``WORK_AFTER``): "the Christiansen novel" names a person."""
    return WORK_AFTER.match(text, end) is not None


def named_outright(words, kind: str) -> bool:
    """After "my name is", "calls me", "what's your last name?" any capitalised word that is not a function
    word is the name, a dictionary word too ("Boyle", "Mei")."""
    from curation.pii.names import _stop_words, _key

    return kind == "strong" and bool(words) and all(
        w[:1].isupper() and not w.isupper() and _key(w) not in _stop_words() for _, _, w in words)


def _card_name_line(text: str, others, lower_chat: bool):
    """The words of a contact card's first line: a text that opens with a line of one to four name words,
    then a blank line, and has contact fields (Phone:, E-mail:, Address: ...) or only places on its other
    lines ("Ginevra Ferraro\\n\\npharmacist\\n\\nPhone:\\n..."; "Ana Lim\\n\\nPorto\\nPortugal")."""
    from curation.pii.names import WORD, COMPANY_WORDS, _key

    m = re.match(r"[ \t>]*([^\n]{2,60})\n[ \t>]*\n", text)
    if not m:
        return None
    words = [(w.start(), w.end(), w.group()) for w in WORD.finditer(text, m.start(1), m.end(1))]
    if not 1 <= len(words) <= 4 or text[m.start(1):m.end(1)].strip() != text[words[0][0]:words[-1][1]] or \
            any(_key(w) in COMPANY_WORDS for _, _, w in words) or \
            not (all(w[:1].isupper() for _, _, w in words) or lower_chat):
        return None
    rest = [(i.start(), i.end()) for i in re.finditer(r"[^\n]*\S[^\n]*", text[m.end():])]
    if not rest:
        return None
    if CARD_FIELDS.search(text, m.end()):
        return words
    places = [(s, e) for s, e, label in others if label in ("GPE", "LOC")]
    lines = [(m.end() + a, m.end() + b) for a, b in rest]
    if len(lines) <= 3 and any(s < lines[-1][1] and lines[-1][0] < e for s, e in places):
        return words
    return None
