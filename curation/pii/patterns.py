"""The non-name PII of chat and prose, found by shape and context: phone numbers, street addresses,
dates of birth (and, when asked, every date), card numbers, IBANs and US social security numbers.

Plain functions of the text, no presidio: ``curation.pii.recognizers.chat_recognizers`` registers each
finder of ``PATTERN_FINDERS`` as a presidio recognizer. A finder returns ``(start, end, score, evidence)``;
the evidence is a short sentence for the reviewer ("phone pattern 'national 0… with area code' + context
'call'"), carried in the presidio result's ``recognition_metadata["evidence"]``.

Precision on prose comes from what is never taken: year ranges, dates, ISBNs, decimals, round numbers and
numbers after "order", "ISBN", "population" are no phones; list headings ("8 Simple Ways to…"), numbered
phrases and measurements are no addresses; a weekday, a month or a year alone is no date. Word lists here
(street types of many languages, cue words) are written by hand, never taken from a data generator.

Example::

    find_phones("call me on 0496 46 46 70")
    # [(11, 24, 0.9, "phone pattern 'national 0… with area code' + context 'call'")]
"""
from __future__ import annotations

import functools
import re

Finding = tuple  # (start, end, score, evidence): evidence says in words why the span was taken


# -- cues -----------------------------------------------------------------------------------------


def _words(*words: str) -> re.Pattern:
    """One case-blind pattern for whole words or phrases (longest first)."""
    return re.compile(r"(?<![\w])(?:" + "|".join(sorted(words, key=len, reverse=True)) + r")(?![\w])", re.IGNORECASE)


def cue_after(text: str, end: int, cues: re.Pattern, window: int = 16) -> str | None:
    """A cue word right after ``end`` on the same line ("781 1704 office", "-Fax")."""
    after = text[end:end + window].split("\n", 1)[0]
    m = re.match(r"[\s,:;()\\-]*(" + cues.pattern + ")", after, cues.flags)
    return m.group(1).lower() if m else None


def nearest_cue(text: str, start: int, cues: re.Pattern, against: re.Pattern | None = None,
                window: int = 40) -> str | None:
    """The last of ``cues`` in the window before ``start`` (not across a blank line), lowercased;
    "not" when one of ``against`` comes after it (nearer); None when there is neither."""
    before = text[max(0, start - window):start].rsplit("\n\n", 1)[-1]
    found = [(m.end(), m.group().lower()) for m in cues.finditer(before)]
    nots = [m.end() for m in against.finditer(before)] if against is not None else []
    if nots and (not found or max(nots) > found[-1][0]):
        return "not"
    return found[-1][1] if found else None


# -- phone numbers -------------------------------------------------------------------------------
PHONE_CUES = _words(
    "phone", "phones", "phone number", "tel", "tele", "telephone", "call", "called", "calling", "ring",
    "dial", "mobile", "mob", "cell", "cellphone", "cell phone", "fax", "whatsapp", "sms", "text me", "txt",
    "landline", "desk", "direct line", "hotline", "office", "home", "work", "contact", "my number", "your number",
    "our number", "reach me", "reach us", "answering", "messages to", "registered", "ph", "handy", "portable",
    "téléphone", "telefon", "telefono", "teléfono", "telefone")
# Numbers that are something else when one of these comes just before them (nearer than a phone cue).
NOT_PHONE_CUES = _words(
    "isbn", "issn", "doi", "order", "orders", "tracking", "invoice", "ticket", "case", "ref", "reference", "account",
    "acct", "iban", "sku", "serial", "model", "part", "patent", "id", "pin", "population", r"pop\.", "inhabitants",
    "census", "coordinates", "lat", "latitude", "lon", "long", "longitude", "version", "build", "score", "scored",
    "beat", "won", "lost", "drew", "record", "votes", "isin", "vin", "policy", "claim", "member", "membership",
    "customer", "booking", "confirmation", "receipt", "transaction", "txn", "batch", "lot", "barcode", "upc", "ean",
    "zip", "postcode", "postal", "registration", "company", "vat", "a/c", "bank", "po", "purchase", "from",
    "between", "years", "seasons", "season", "during", "since", "until")
UNIT_AFTER = re.compile(
    r"[ \t]?(?:%|°|km|m\b|cm|mm|kg|g\b|lb|lbs|mi\b|miles|ft|feet|meters|metres|people|persons|inhabitants|residents|"
    r"users|visitors|copies|units|votes|km2|sq|square|acres|hectares|tons|tonnes|years|yrs|bc|ad\b|bce|ce\b|"
    r"times|words|pages|points|pts|views|downloads|followers|subscribers|dollars|euros|pounds|"
    r"rupees|yen|usd|eur|gbp|chf|inr|million|billion|thousand)(?!\w)", re.IGNORECASE)
CURRENCY_BEFORE = re.compile(r"(?:[$€£¥₹]|\b(?:USD|EUR|GBP|INR|Rs\.?|CHF|SEK|NOK|DKK|AUD|CAD))\s?$",
                             re.IGNORECASE)
# A run of digit groups with phone-like separators on one line; what kind of number it is, ``phone_kind`` decides.
PHONE_RUN = re.compile(
    r"(?<![\w+#@$€£¥./:-])(?<!\d,)(?:\+ ?|\b00)?(?:\(\+?\d{1,5}\) ?)?\d(?:\d|[ .-](?=[\d(])| ?\(0\) ?|"
    r" ?\(\d{1,5}\) ?|/(?=\d))*\d(?: ?(?:x|ext\.?|extn\.?|extension) ?\d{1,6})?(?!\w|[.,]\d|[-/]\d)",
    re.IGNORECASE)
EXTENSION = re.compile(r"(?i)\s*(?:x|ext\.?|extn\.?|extension)\s*\d{1,6}$")
NANP = re.compile(r"(?:(?:\+ ?1|001|1)[\s.-]?)?(?:\(\d{3}\) ?|\d{3}[\s.-]?)\d{3}[\s.-]?\d{4}")
YEAR = re.compile(r"1\d{3}|20\d{2}|2100")


def _digits(text: str) -> str:
    """The digits of a text, nothing else."""
    return re.sub(r"\D", "", text)


def phone_kind(run: str) -> tuple[str, float] | None:
    """What a run of digits is as a phone number: (format name, score without context), or None
    when it is no phone at all (a year range, a date, a decimal list, an ISBN, a round number)."""
    core = EXTENSION.sub("", run)
    digits = _digits(core)
    groups = re.findall(r"\d+", core.replace("(0)", ""))
    if not 7 <= len(digits) <= 15 or len(set(digits)) < 3 or re.search(r"0{5,}$", digits):
        return None
    if all(len(g) == 4 and YEAR.fullmatch(g) for g in groups):
        return None                                    # 2019-2020, 1939 1945
    if len(groups) == 3 and _is_date(groups):
        return None                                    # 12.05.1985, 2020-05-12
    separators = set(re.findall(r"[ .\-/]|\(", re.sub(r"^\+ ?", "", core)))
    if "." in separators and (len(separators) > 1 or any(len(g) < 2 for g in groups)):
        return None                                    # 0.25 0.50 0.75, 10.0.19041.1234
    if "/" in separators and (core.count("/") > 1 or not core.lstrip("(").startswith("0")):
        return None                                    # 030/1234567 only
    if sum(len(g) == 1 for g in groups[1:]) > 1 or re.fullmatch(r"\d-\d{2,7}-\d{2,7}-[\dX]", core):
        return None                                    # 1 2 3 4 5 6 7, ISBN 0-306-40615-2
    if re.fullmatch(r"97[89][\d-]{10,14}", core) and len(digits) == 13:
        return None                                    # ISBN-13
    if core.startswith("+") or (core.startswith("00") and core[2:3] not in ("", "0")):
        return ("international +country code", 0.75) if len(digits) >= 8 else None
    if NANP.fullmatch(core) and core[0] != "0" and len(groups) > 1:
        return "North American (NNN) NNN-NNNN", 0.7
    if core.lstrip("(").startswith("0") and 9 <= len(digits) <= 12:
        return "national 0… with area code", 0.6
    if re.fullmatch(r"[6-9]\d{4}[ -]\d{5}", core):
        return "Indian mobile NNNNN NNNNN", 0.5
    if re.fullmatch(r"[2-9]\d{9}", core):
        return "ten digits", 0.5
    if len(digits) <= 12:
        return "digit groups", 0.15
    return None


def _is_date(groups: list[str]) -> bool:
    """Whether three digit groups read as a day, a month and a year in some order (12.05.1985, 2020-05-12)."""
    a, b, c = (int(g) for g in groups)
    if len(groups[0]) == 4:
        return 1 <= b <= 12 and 1 <= c <= 31 or 1 <= c <= 12 and 1 <= b <= 31
    return 1 <= a <= 31 and 1 <= b <= 31 and (a <= 12 or b <= 12) and len(groups[2]) in (2, 4)


def find_phones(text: str) -> list[Finding]:
    """Phone numbers in the common national and international formats. A weak shape (bare digit
    groups) counts only next to a word like "phone", "call", "mobile" or "fax"; a word like
    "order", "ISBN", "population" or "between" just before a number rules it out."""
    out = []
    for m in PHONE_RUN.finditer(text):
        kind = phone_kind(m.group())
        if kind is None or UNIT_AFTER.match(text, m.end()) or \
                CURRENCY_BEFORE.search(text[max(0, m.start() - 5):m.start()]):
            continue
        name, score = kind
        before = nearest_cue(text, m.start(), PHONE_CUES, NOT_PHONE_CUES)
        after = cue_after(text, m.end(), PHONE_CUES)
        if before == "not" and not after:
            continue
        cue = after if before in (None, "not") else before
        if cue:
            score = round(min(0.95, score + (0.5 if score < 0.4 else 0.3)), 2)
        out.append((m.start(), m.end(), score, f"phone pattern '{name}'" + (f" + context '{cue}'" if cue else "")))
    return out


# -- street addresses ---------------------------------------------------------------------------
# The street-type words are written by hand from how addresses are written in each language; they are
# the evidence, never a list of known streets.
STRONG_SUFFIXES = ("Street", "St", "Road", "Rd", "Avenue", "Ave", "Av", "Boulevard", "Blvd", "Lane", "Ln", "Drive",
                   "Dr", "Terrace", "Ter", "Crescent", "Cres", "Parkway", "Pkwy", "Highway", "Hwy", "Mews",
                   "Expressway", "Expy", "Freeway", "Fwy", "Turnpike", "Tpke", "Causeway", "Esplanade", "Wynd",
                   "Straße", "Strasse", "Str")
# Words that are also ordinary nouns ("8 Simple Ways", "the 1973 Supreme Court"): an address only with more evidence.
WEAK_SUFFIXES = ("Way", "Place", "Pl", "Square", "Sq", "Circle", "Cir", "Trail", "Trl", "Row", "Grove", "Gardens",
                 "Walk", "Wharf", "Hill", "Rise", "Park", "Point", "Pike", "Alley", "Plaza", "Quay", "Parade", "Loop",
                 "Path", "Vale", "View", "Green", "Heights", "Crossing", "Ridge", "Bend", "Cove", "Hollow", "Route",
                 "Passage", "Junction", "Gate", "Yard", "Lodge", "Meadows", "Estate", "Centre", "Center", "Common",
                 "Court", "Ct", "Close", "Creek", "Harbor", "Harbour", "Bridge", "Island", "Landing", "Station")
# Street types written before the name (Romance, Slavic, Greek ...): "Via Roma 131", "29 Rue de Tanger".
PREFIX_TYPES = ("Rue", "Rua", "Via", "Viale", "Vicolo", "Piazza", "Piazzale", "Corso", "Largo", "Strada", "Calle",
                "Avenida", "Avda", "Carrer", "Camino", "Paseo", "Praça", "Praca", "Travessa", "Estrada", "Alameda",
                "Chemin", "Allée", "Impasse", "Quai", "Cours", "Boulevard", "Avenue", "Ulica", "Aleja", "Calea",
                "Bulevardul", "Trg", "Náměstí", "Leoforos", "Odos", "Λεωφόρος", "Οδός", "Πλατεία", "Rambla",
                "Ronda",
                "Vía", "Avinguda")
PREFIX_ABBREVIATIONS = ("Bd", "Ul", "ul", "Al", "Av", "Avda", "Pza", "Pç", "R")
# Street-type endings of one-word street names (German, Dutch, Nordic, Finnish, Icelandic ...): "Koskikatu 25".
COMPOUND_ENDINGS = ("straße", "strasse", "str.", "gasse", "weg", "platz", "allee", "damm", "ufer", "chaussee",
                    "steig", "pfad", "straat", "laan", "gracht", "plein", "kade", "dijk", "singel", "dreef",
                    "gatan", "vägen", "gränd", "torget", "stigen", "gata", "gaten", "veien", "vegen", "vei", "vej",
                    "vænget", "gade", "stræde", "allé", "katu", "tie", "kuja", "polku", "kaari", "väylä", "vegur",
                    "braut", "stræti", "straeti", "ská", "utca", "körút", "ulice", "třída", "cesta", "ulica", "sokak",
                    "caddesi")
# Separate street-type words after the name: "Rákóczi út 66", "Hegedûs Gyula utca 76".
AFTER_TYPES = ("út", "útja", "utca", "u.", "körút", "tér", "gate", "gata", "vej", "vei", "weg", "straat", "laan",
               "sokak", "caddesi", "ulica", "ulice", "cesta", "str", "str.")
# A street line never starts with these, whatever follows: "the 3 Square Meters", "During 1990", "Chapter 5".
NOT_STREET_WORDS = frozenset("""
the a an of and or to for in on at by with from into over under about my your our their his her its this that these
those is are was were be been it he she we you they i how why what when who which top best simple easy ways things
steps tips reasons facts ideas minutes hours days weeks months years times people chapter page level room floor
section figure table step day week episode season volume part track channel stage gate platform act verse grade
class mile miles km meters metres feet ft inches square cubic plan model version phase round game match number no
january february march april may june july august september october november december monday tuesday wednesday
thursday friday saturday sunday jan feb mar apr jun jul aug sep sept oct nov dec since until during after before
home
""".split())
UNIT = (r"(?:,?[ \t]*(?:\n[ \t>•*?-]*)?"
        r"(?i:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Fl|Room|Rm|Bldg|Building|Box|Lot)\.?"
        r"[ \t]*#?[ \t]*[A-Za-z]?\d[\w-]*|,?[ \t]*#[ \t]?\d[\w-]*)")
HOUSE = r"(?!24/7)\d{1,5}[A-Za-z]?(?:[/-]\d{1,4}[A-Za-z]?)?(?: [A-Z](?![\w'’.-]))?"
CAP_WORD = r"(?:(?=[^\W\d_])(?:[A-ZÀ-ÞĀ-ſΆ-ΫА-Я]|O')(?:[^\W\d_]|['’-])*(?!\d)\.?)"
LOW_WORD = r"(?:[a-zà-ÿ][\w'’-]*)"
# A capitalised word of a street name: not the unit that follows it ("Rue Ibn El-Jazzar Apt. 243").
NAME_WORD = r"(?!(?i:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Room|Bldg|Building)\b)" + CAP_WORD
POSTCODE = (r"(?:[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}|[A-Z]\d[A-Z] ?\d[A-Z]\d|\d{3} ?\d{2}|\d{4,6}(?:-\d{3,4})?|"
            r"\d{2}-\d{3}|[A-Z]{2}-\d{4,5})")
DIRECTION = r"(?:North|South|East|West|N|S|E|W|NE|NW|SE|SW)\.?"
# Cues right before a street line that has no street type ("lives at Peter Zuidhove 188").
ADDRESS_CUES = (r"address(?:es)?|addr\.?|lives? (?:at|on)|living at|located (?:at|on)|meet (?:me|you|us) at|"
                r"drops? (?:you|me) off at|sen[dt](?: it| them| a new one)? to|deliver(?:ed)?(?: it)? to|"
                r"ship(?:ped)?(?: it)? to|mail(?:ed)? to|return(?:ed)?(?: it)? to|moved to|stay(?:ing)? at|"
                r"based at|visit us at|find us at|arrived at|taxi to|pick (?:me )?up at|is on|is at|enter on|lived in|"
                r"live in|now live in|it'?s (?:in|at|on)|corner of")
CUE_THEN_STREET = re.compile(
    r"(?i:\b(?:" + ADDRESS_CUES + r")\b)[ \t]*(?:[:\-–]|(?i:is|was|it is|are|would be|with|to|as))?[ \t]*"
    r"(?i:the corner of[ \t]+)?"
    r"[ \t\n]*(?P<street>(?:\d{1,6}[ \t]+)?(?:" + CAP_WORD + r"[ \t]+){1,3}" + HOUSE + r")(?![\w%]|[.,:/-]\d)")
STREET_THEN_UNIT = re.compile(
    r"(?m)^[ \t>•*?-]*(?P<street>(?:\d{1,6}[ \t]+)?(?:" + CAP_WORD + r"[ \t]+){1,3}" + HOUSE + r")(?=" + UNIT + r")")


STREET_SUFFIX_SHAPE = "number + name + 'Street'"


def _alt(words) -> str:
    """A regex alternation of literal words, longest first."""
    return "|".join(sorted((re.escape(w) for w in set(words)), key=len, reverse=True))


@functools.lru_cache(maxsize=1)
def address_patterns() -> tuple[tuple[str, re.Pattern, bool, frozenset | tuple], ...]:
    """(name, street-line pattern, strong, keyword): a strong shape is an address on its own, a weak one
    needs a unit, postcode or town after it; the pattern is only tried where one of its keywords (street
    types, lowercase) or, for a tuple, a word ending in one of them, is near a number."""
    strong, weak = _alt(STRONG_SUFFIXES), _alt(WEAK_SUFFIXES)
    prefix, abbreviation = _alt(PREFIX_TYPES), _alt(PREFIX_ABBREVIATIONS)
    after, endings = _alt(AFTER_TYPES), _alt(COMPOUND_ENDINGS)
    particle = (r"(?:(?:de|da|do|dos|das|del|della|delle|dei|degli|di|des|du|la|le|les|el|los|las|of|the|von|van)"
                r"[ \t]+|[dl]['’])")
    name_words = r"(?:" + particle + r")*(?:" + NAME_WORD + r"[ \t]+(?:" + particle + r")*){0,3}" + NAME_WORD
    low_name = r"(?:" + particle + r")*(?:" + LOW_WORD + r"[ \t]+(?:" + particle + r")*){0,3}?" + LOW_WORD
    direction = r"(?:" + DIRECTION + r"[ \t]+)?"
    cap_words = r"(?:" + CAP_WORD + r"[ \t]+){1,4}?"
    low_words = r"(?:" + LOW_WORD + r"[ \t]+){1,3}?"
    lead = r"(?:(?i:Flat|Apartment|Apt|Unit|Suite)\.?[ \t]+\w{1,5},?[ \t]+)?(?:\d{1,6}[ \t]+)?"
    start = r"(?<![\w.,/-])"
    end = r"(?![\w%]|[.,:/-]\d)"
    suffix_tail = r"\b\.?(?:[ \t]+" + DIRECTION + r"(?![\w]))?"
    romance = r"(?i:rue|rua|via|calle|avenida|avenue|boulevard|chemin|piazza|corso)"
    lowercase = (r"(?i:street|st|road|rd|avenue|ave|lane|ln|drive|dr|boulevard|blvd|terrace|crescent|close|way|place|"
                 r"court|parkway|highway)")
    lower = lambda words: frozenset(w.lower().rstrip(".") for w in words)  # noqa: E731
    near = {"military address": lower(("APO", "FPO", "DPO")), "PO box": lower(("box", "postfach")),
            "strong": lower(STRONG_SUFFIXES), "prefix": lower(PREFIX_TYPES + PREFIX_ABBREVIATIONS),
            "romance": lower(("rue", "rua", "via", "calle", "avenida", "avenue", "boulevard", "chemin", "piazza",
                              "corso")),
            "after": lower(w for t in AFTER_TYPES for w in t.split(".") if w), "weak": lower(WEAK_SUFFIXES),
            "compound": tuple(e.rstrip(".") for e in COMPOUND_ENDINGS),
            "lowercase": lower(("street", "st", "road", "rd", "avenue", "ave", "lane", "ln", "drive", "dr", "boulevard",
                                "blvd", "terrace", "crescent", "close", "way", "place", "court", "parkway", "highway"))}
    return (
        ("military address", re.compile(
            r"(?i:\b(?:(?:USNS|USNV|USS|USCGC)[ \t]+[A-Z][\w'-]*|PSC[ \t]+\d{3,5},[ \t]*Box[ \t]+\d{3,5}|"
            r"Unit[ \t]+\d{3,5}[ \t]+Box[ \t]+\d{3,5})(?:[ \t]*\n[ \t]*|,?[ \t]+)"
            r"(?:APO|FPO|DPO)[ \t]+A[AEP][ \t]+\d{5}\b)"),
         True, near["military address"]),
        ("PO box", re.compile(start + lead + r"(?i:\b(?:P\.?[ \t]?O\.?[ \t]*Box|Post[ \t]+Office[ \t]+Box|Postfach)"
                              r"[ \t]+\d{1,6})\b"), True, near["PO box"]),
        (STREET_SUFFIX_SHAPE, re.compile(
            start + lead + HOUSE + r"[ \t]+" + direction + cap_words + r"(?:" + strong + r")" + suffix_tail +
            r"(?:[ \t]+" + HOUSE + end + r")?"), True, near["strong"]),
        ("street type + name + number", re.compile(
            start + lead + r"(?:(?P<house>" + HOUSE + r"),?[ \t]+)?(?:(?:" + prefix + r")|(?:" + abbreviation + r")\.)"
            r"[ \t]+" + name_words + r"(?:,?[ \t]+(?P<house2>" + HOUSE + r")" + end + r"\.?)?"), True, near["prefix"]),
        ("number + street type + name", re.compile(
            start + lead + HOUSE + r",?[ \t]+" + romance + r"[ \t]+" + low_name +
            r"(?:[ \t]+" + NAME_WORD + r"){0,2}\b(?:[ \t]+" + HOUSE + end + r")?"),
         True, near["romance"]),
        ("name + street type + number", re.compile(
            start + lead + r"(?:" + CAP_WORD + r"[ \t]+){1,3}(?:" + LOW_WORD + r"[ \t]+)?(?:" + after + r")[ \t]+" +
            HOUSE + end + r"\.?"), True, near["after"]),
        ("name ending '-straße/-katu/-gatan…' + number", re.compile(
            start + lead + r"(?:" + CAP_WORD + r"[ \t]+){0,2}" + r"(?=[A-ZÀ-ÞĀ-ſ])[^\W\d_][\w'’-]{1,30}(?i:" +
            endings +
            r")[ \t]+" + HOUSE + end + r"\.?"), True, near["compound"]),
        ("number + name + street type", re.compile(
            start + lead + HOUSE + r",?[ \t]+" + direction + cap_words + r"(?:" + weak + r")" + suffix_tail), False,
         near["weak"]),
        ("number + name + street type", re.compile(start + lead + HOUSE + r"[ \t]+" + low_words + lowercase + r"\b\.?"),
         False, near["lowercase"]),
    )


def find_addresses(text: str) -> list[Finding]:
    """Street addresses in the formats of many countries, with their unit, town, region, postcode and
    country lines. A street line with an unambiguous street type ("Street", "Rue", "-straße", "PO Box")
    counts alone; an ambiguous one ("8 Simple Ways", "Peter Zuidhove 188") needs an address cue before it
    ("lives at", "address:") or a unit, postcode or town after it. Titles and numbered phrases are left."""
    found: list[Finding] = []
    windows = digit_windows(text, 100, 60)
    for lo, hi in windows:
        words = frozenset(re.findall(r"[^\W\d_]+", text[lo:hi].lower()))
        for name, pattern, strong, keywords in address_patterns():
            if not (any(w.endswith(keywords) for w in words) if isinstance(keywords, tuple) else words & keywords):
                continue
            for m in pattern.finditer(text, lo, hi):
                start = _skip_leading_words(text, m.start(), m.end())
                if start is None or "house" in pattern.groupindex and not (m.group("house") or m.group("house2")):
                    continue
                _add_address(text, found, start, m.end(), name, strong)
    for name, pattern in (("name + number after an address cue", CUE_THEN_STREET),
                          ("name + number on the line before a unit", STREET_THEN_UNIT)):
        for m in (m for lo, hi in windows for m in pattern.finditer(text, lo, hi)):
            start = _skip_leading_words(text, m.start("street"), m.end("street"))
            if start is not None:
                _add_address(text, found, start, m.end("street"), name, pattern is STREET_THEN_UNIT)
    return sorted(found)


def digit_windows(text: str, before: int, after: int) -> list[tuple[int, int]]:
    """The stretches of ``text`` around its numbers, merged: every address and date holds a digit, so
    their patterns only search there (prose is mostly words)."""
    windows: list[list[int]] = []
    for m in re.finditer(r"\d+", text):
        lo, hi = max(0, m.start() - before), min(len(text), m.end() + after)
        if windows and lo <= windows[-1][1]:
            windows[-1][1] = hi
        else:
            windows.append([lo, hi])
    return [(lo, hi) for lo, hi in windows]


def _add_address(text: str, found: list[Finding], start: int, end: int, name: str, strong: bool) -> None:
    """Add the address whose street line is ``text[start:end]`` to ``found``, with its tail and its evidence,
    unless it overlaps one already found or lacks the evidence a weak street line needs."""
    if any(s < end and start < e for s, e, *_ in found):
        return
    tail_end, tail = _address_tail(text, end)
    corner_of = CORNER.search(text, max(0, start - 20), start)
    before = text[max(0, start - 60):start]
    said = re.search(r"(?i:\b(" + ADDRESS_CUES + r"))\b[\s:,\-–]*(?:(?i:is|was|it is|with|to|as)[ \t]*)?"
                     r"(?:the corner of[ \t]+)?$", before)
    if not strong and not said and not tail:
        return
    if name == STREET_SUFFIX_SHAPE and not said and not tail and _title_continues(text, end):
        return
    if corner_of and corner_of.end() == start:            # "the corner of X Street and Y Road"
        start = corner_of.start()
        other_street = re.match(r"[ \t]+and[ \t]+(?:" + CAP_WORD + r"[ \t]*){1,4}", text[tail_end:])
        if other_street:
            tail_end += len(other_street.group().rstrip())
    evidence = f"address shape '{name}'" + (f" + context '{said.group(1).lower()}'" if said else "") + \
        (f" + {tail} after it" if tail else "")
    found.append((start, tail_end, 0.85, evidence))


CORNER = re.compile(r"(?i)\bthe corner of[ \t]+")


def _skip_leading_words(text: str, start: int, end: int) -> int | None:
    """Where a street line really starts once words like "The", "During" or "Chapter" are skipped
    (None when nothing of a street is left)."""
    while True:
        m = re.match(r"([^\W\d_][\w'’.-]*)[ \t]+", text[start:end])
        if not m or m.group(1).lower().strip(".") not in NOT_STREET_WORDS:
            break
        start += m.end()
    rest = text[start:end]
    if not re.search(r"[^\W\d_]", rest) or not re.search(r"\d", rest):
        return None
    first = re.match(r"(\d{1,6})[ \t,]", rest)
    if first and YEAR.fullmatch(first.group(1)) and re.match(r"\d{4},", rest):
        return None                                    # "In 2001, Alabama Supreme Court"
    return start


def _title_continues(text: str, end: int) -> bool:
    """A capitalised word straight after the street type: a title ("5 Easy Street Food Recipes")."""
    return re.match(r"[ \t]+(?:[A-Z][a-z]+|to|for|of|that|you)\b", text[end:end + 20]) is not None


LOCALITY = re.compile(
    r"(?:[ \t]*,[ \t]*(?:\n[ \t>•*?-]*)?|[ \t]*\n[ \t]*(?:\n[ \t]*)?[>•*?-]*[ \t]*,?[ \t]*|[ \t]+)"
    r"(?P<part>(?:" + POSTCODE + r"[ \t]+)?(?:" + CAP_WORD + r"(?:[ \t]+|-)?|(?:de|la|le|du|u|v|am|an|upon|on|sur|"
    r"del|di)[ \t]+){0,4}(?:\([^\W\d_]+\))?(?:[ \t]*" + POSTCODE + r")?)")


def _address_tail(text: str, end: int) -> tuple[int, str]:
    """How far an address goes on after its street line (units, town, region, postcode, country lines),
    and what was found there ("unit", "postcode", "town"), or ""."""
    what = ""
    m = re.compile(UNIT + r"+").match(text, end)
    if m:
        end, what = m.end(), "unit"
    for _ in range(4):
        m = LOCALITY.match(text, end)
        part = m.group("part").strip() if m else ""
        if re.search(r"[^\W\d_]{4,}\.$", part):
            part = part[:-1]                             # the sentence's full stop, not an abbreviation's
        if not part or len(part) > 48:
            break
        separator = text[m.start():m.start("part")]
        has_post = re.search(r"(?<!\w)" + POSTCODE + r"(?!\w)", part) is not None
        words = re.findall(r"[^\W\d_][\w'’.-]*", part)
        shouting = re.match(r"[A-ZÀ-ÞĀ-ſΆ-Ϋ]{2,}(?![\w'’-]*[a-zà-ÿ])", part) is not None
        line_end = re.match(r"[ \t]*(?:$|\n|[.,;?!])", text[m.start("part") + len(part):]) is not None
        if not has_post and "\n" not in separator and "," not in separator and \
                not (what and (shouting or line_end and words and all(w[:1].isupper() for w in words))):
            break                                        # "12 Baker Street London" needs a postcode
        if separator.count("\n") > 1 and not has_post:
            break
        if words and words[0].lower().strip(".") in NOT_STREET_WORDS:
            break
        end = m.start("part") + len(part)
        what = "postcode" if has_post else what or "town"
    return end, what


# -- cards, IBANs, SSNs ---------------------------------------------------------------------------
def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a card number's digits."""
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


CARD_PATTERN = r"(?<![\w-])\d(?:[ -]?\d){11,18}(?![\w-])"
IBAN_PATTERN = r"\b[A-Z]{2}\d{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?)\b"


def iban_valid(text: str) -> bool:
    """ISO 13616 check digits (mod 97); the length is not checked per country, so that
    IBANs from generators and from countries that change formats still count."""
    compact = re.sub(r"\s", "", text).upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def card_valid(text: str) -> bool:
    """Whether a digit run is printed like a card number and passes the Luhn check."""
    digits = _digits(text)
    groups = [len(g) for g in re.split(r"[ -]", text.strip())]
    # Printed cards group digits 4-4-4-4(-3) or 4-6-5 / 4-6-4; other groupings are order or account numbers.
    if len(groups) > 1 and not (all(g == 4 for g in groups[:-1]) or groups[:2] == [4, 6]):
        return False
    if len(digits) == 12:
        return digits[0] in "56" and luhn_valid(digits)
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


SSN_PATTERNS = (
    ("NNN-NN-NNNN", r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])", 0.6),
    ("NNN NN NNNN", r"(?<![\w.])\d{3}[ .]\d{2}[ .]\d{4}(?![\w.])", 0.5),
    ("nine digits", r"(?<![\w-])\d{9}(?![\w-])", 0.1),
)
SSN_CUES = _words("ssn", "ssn#", "social", "security", "ss", "ss#", "taxpayer", "tin", "itin")
NOT_SSN_CUES = _words("phone", "call", "order", "tracking", "invoice", "account", "routing", "zip")
CARD_CUES = _words("card", "credit", "debit", "visa", "mastercard", "amex", "cc", "discover")
IBAN_CUES = _words("iban", "bank", "account", "wire", "transfer")


def find_cards(text: str) -> list[Finding]:
    """Payment card numbers: 12-19 digits grouped as printed cards are, passing the Luhn check (any
    Luhn-valid run of 12-19 digits right after a word like "card" or "visa")."""
    out = []
    for m in re.finditer(CARD_PATTERN, text):
        cue = nearest_cue(text, m.start(), CARD_CUES)
        if card_valid(m.group()) or cue and 12 <= len(_digits(m.group())) <= 19 and luhn_valid(_digits(m.group())):
            out.append((m.start(), m.end(), 0.95 if cue else 0.9,
                        f"card number: {len(_digits(m.group()))} digits, Luhn check passes"
                        + (f" + context '{cue}'" if cue else "")))
    return out


def find_ibans(text: str) -> list[Finding]:
    """IBANs whose ISO 13616 check digits are right (written in lowercase too, after a word like "IBAN")."""
    out = []
    for m in re.finditer(IBAN_PATTERN, text, re.IGNORECASE):
        cue = nearest_cue(text, m.start(), IBAN_CUES)
        if iban_valid(m.group()) and (cue or m.group()[:2].isupper()):
            out.append((m.start(), m.end(), 0.95 if cue else 0.9,
                        "IBAN: check digits pass" + (f" + context '{cue}'" if cue else "")))
    return out


def find_ssns(text: str) -> list[Finding]:
    """US social security numbers; a bare nine-digit run counts only next to "SSN", "social security" ..."""
    out = []
    for name, rx, score in SSN_PATTERNS:
        for m in re.finditer(rx, text):
            digits = _digits(m.group())
            if len(set(digits)) < 2 or digits[:3] in ("000", "666") or digits[3:5] == "00" or digits[5:] == "0000":
                continue
            cue = nearest_cue(text, m.start(), SSN_CUES, NOT_SSN_CUES)
            cue = None if cue == "not" else cue
            out.append((m.start(), m.end(), min(0.95, score + 0.35) if cue else score,
                        f"SSN pattern '{name}'" + (f" + context '{cue}'" if cue else "")))
    return out


# -- dates ---------------------------------------------------------------------------------------
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec")
_MONTH = r"(?:" + "|".join(sorted(MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(?:[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?"
_YEAR = r"(?:1[89]\d{2}|20\d{2})"
# A calendar date needs a day and a month, or a month and a year: a weekday, a month or a year alone never is one.
DATE = re.compile(
    r"(?<![\w.,/-])(?:"
    r"(?:the\s+)?" + _DAY + r"(?:\s+of)?[\s-]+" + _MONTH + r"(?:,?[\s-]+" + _YEAR + r")?"
    r"|" + _MONTH + r"\s+(?:the\s+)?" + _DAY + r"(?:,?\s+" + _YEAR + r")?"
    r"|" + _MONTH + r",?\s+" + _YEAR +
    r"|(?:[12]\d|3[01]|0?[1-9])([./-])(?:1[0-2]|0?[1-9])\1(?:" + _YEAR + r"|\d{2})"
    r"|(?:1[0-2]|0?[1-9])([./-])(?:[12]\d|3[01]|0?[1-9])\2(?:" + _YEAR + r"|\d{2})"
    r"|" + _YEAR + r"([./-])(?:1[0-2]|0[1-9])\3(?:[12]\d|3[01]|0[1-9])"
    r")(?![\w]|[./-]\d)", re.IGNORECASE)
# What makes a date a date of birth: a form field or a sentence about the writer's (or reader's) own birth.
BIRTH_FIELD = re.compile(
    r"(?i)(?:\bd\.?o\.?b\.?|\bdate\s+of\s+birth|\bbirth\s*date|\bbirthdate|\bbirthday|\bborn|\bgeboren(?:\s+am)?|"
    r"\bnée?\s+le|\bfecha\s+de\s+nacimiento|\bdata\s+di\s+nascita|\bdata\s+de\s+nascimento)"
    r"(?:\s+(?:is|was|on|am|:))*\s*[:=\-–]?\s*(?:on\s+|is\s+|the\s+)?$")
BIRTH_WORDS = ("birth", "born", "dob", "d.o.b", "geboren", "née", "ne le", "né le", "nacimiento", "nascita",
               "nascimento")
PERSONAL = re.compile(r"(?i)\b(?:i|i'm|im|me|my|we|our|you|your)\b")


def find_dates(text: str) -> list[Finding]:
    """Calendar dates ("3 March 1985", "March 3", "03/04/1990", "2020-05-12", "March 2020")."""
    return [(m.start(), m.end(), 0.6, "calendar date")
            for lo, hi in digit_windows(text, 30, 12) for m in DATE.finditer(text, lo, hi)]


def find_dates_of_birth(text: str) -> list[Finding]:
    """Dates in a birth context: a form field ("DOB:", "Date of birth", "Birthday:") or a birth
    sentence in the first or second person ("I was born on ...", "my son's birthday is ...").
    Encyclopedic birth dates ("Einstein was born on 14 March 1879") are public facts and stay."""
    lowered = text.lower()
    if not any(w in lowered for w in BIRTH_WORDS):
        return []
    out = []
    for m in (m for lo, hi in digit_windows(text, 30, 12) for m in DATE.finditer(text, lo, hi)):
        before = text[max(0, m.start() - 40):m.start()]
        cue = BIRTH_FIELD.search(before)
        if not cue:
            continue
        word = cue.group().strip(" :=-–").lower()
        sentence = re.split(r"[.!?\n]\s", before[:cue.start()])[-1]
        line_start = not before[:cue.start()].split("\n")[-1].strip()
        if not word.startswith(("born", "birthday")) or PERSONAL.search(sentence) or line_start:
            out.append((m.start(), m.end(), 0.85, f"date of birth: '{word}' before a date"))
    return out


# (entity, finder, recognizer name): what ``curation.pii.recognizers.chat_recognizers`` registers from here.
PATTERN_FINDERS = (
    ("PHONE_NUMBER", find_phones, "ChatPhoneRecognizer"),
    ("CREDIT_CARD", find_cards, "ChatCardRecognizer"),
    ("US_SSN", find_ssns, "ChatSsnRecognizer"),
    ("IBAN_CODE", find_ibans, "ChatIbanRecognizer"),
    ("STREET_ADDRESS", find_addresses, "StreetAddressRecognizer"),
    ("DATE_OF_BIRTH", find_dates_of_birth, "DateOfBirthRecognizer"),
    ("DATE_TIME", find_dates, "DateRecognizer"),
)
