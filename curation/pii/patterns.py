"""Pattern recognisers for the non-name PII of chat text: phone numbers, street addresses, card
numbers, IBANs and US social security numbers.

Plain functions and regexes, no presidio: ``curation.pii.recognizers.chat_recognizers`` wraps them as
presidio recognizers.
"""
from __future__ import annotations

import functools
import re

STREET_SUFFIXES_EXTRA = ("St", "Ave", "Av", "Rd", "Blvd", "Dr", "Ln", "Ct", "Pl", "Sq", "Hwy", "Pkwy", "Ter", "Cir",
                         "Trl", "Cres", "Ctr", "Expy", "Fwy", "Mt", "Pt", "Rte", "Wy", "Close", "Gardens", "Mews",
                         "Wharf", "Hollow", "Green")
LOWERCASE_SUFFIXES = ("street", "st", "avenue", "ave", "road", "rd", "lane", "ln", "drive", "dr", "boulevard", "blvd",
                      "court", "ct", "place", "pl", "terrace", "way", "circle", "cir", "parkway", "pkwy",
                      "highway", "hwy", "square", "sq", "trail", "crescent", "close")


@functools.lru_cache(maxsize=1)
def address_patterns() -> tuple[re.Pattern, ...]:
    """Street addresses: US/UK/AU street lines with unit and city/state/ZIP or postcode lines,
    military addresses, PO boxes, German street-first addresses."""
    import importlib

    suffixes: set[str] = set(STREET_SUFFIXES_EXTRA)
    for locale in ("en_US", "en_GB", "en_CA", "en_AU", "en_IE"):
        suffixes.update(getattr(importlib.import_module(f"faker.providers.address.{locale}").Provider,
                                "street_suffixes", ()))
    cap_suffix = "|".join(sorted((re.escape(s) for s in suffixes), key=len, reverse=True))
    low_suffix = "|".join(sorted(LOWERCASE_SUFFIXES, key=len, reverse=True))
    number = r"\b\d{1,6}[A-Za-z]?(?:[/-]\d{1,5}[A-Za-z]?)?"
    unit_before = r"(?:Flat|Apartment|Apt\.?|Studio|Unit|Suite|Level)\s+\d+[A-Za-z]?,?\s*\n?\s*"
    direction = r"(?:(?:[NSEW]|NE|NW|SE|SW|North|South|East|West)\.?\s+)?"
    cap_words = r"(?:(?!(?:GB|TB|MB|KB)\b)(?:[A-Z][\w'’.-]*|O'[A-Z]\w*)\s+){1,4}?"
    low_words = r"(?:[a-z][\w'’-]*\s+){1,3}?"
    unit_after = (r"(?:,?\s+(?:(?:Apt|Apartment|Suite|Ste|Unit|Room|Rm|Floor|Fl|Flat|Bldg|Building)\b\.?|#)"
                  r"\s*#?\s*[A-Za-z0-9-]+)?")
    city = r"(?:,\s*|\s*\n\s*|\s+)(?:[A-Z][\w'’.-]*\s+){0,3}[A-Z][\w'’.-]*"
    us_city = (city + r",?\s+[A-Z]{2,3}\.?,?(?:\s+\d{5}(?:-\d{4})?|\s+[A-Z]\d[A-Z]\s?\d[A-Z]\d|,?\s+\d{4})?\b")
    uk_city = city + r"(?:,\s*|\s*\n\s*|\s+)[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}\b"
    low_city = r"(?:,\s*|\s*\n\s*)(?:[a-z][\w'-]*\s+){0,2}[a-z][\w'-]*,?\s+[A-Za-z]{2}\s+\d{5}(?:-\d{4})?\b"
    street_cap = (r"(?:" + unit_before + r"(?:" + number + r"\s+)?|" + number + r"\s+)" + direction + cap_words + r"(?:" + cap_suffix + r")\b\.?"
                  + unit_after + r"(?:" + uk_city + r"|" + us_city + r")?")
    street_low = (number + r"\s+" + direction + low_words + r"(?:" + low_suffix + r")\b\.?" + unit_after
                  + r"(?:" + low_city + r"|" + us_city + r")?")
    military = (r"\b(?:(?:USNS|USNV|USS|USCGC)\s+[A-Z][\w'-]*|PSC\s+\d{3,5},\s*Box\s+\d{3,5}|"
                r"Unit\s+\d{3,5}\s+Box\s+\d{3,5})(?:\s*\n\s*|,?\s+)(?:APO|FPO|DPO)\s+A[AEP]\s+\d{5}\b")
    po_box = r"\b(?:P\.?\s?O\.?\s*Box|Post Office Box)\s+\d{1,6}(?:" + us_city + r")?"
    german = (r"\b[A-ZÄÖÜ][\wäöüß-]*(?:straße|strasse|str\.|weg|ring|platz|allee|gasse|damm|ufer|chaussee)"
              r"\s+\d{1,4}[a-z]?(?:-\d{1,4})?(?:,?\s*\n?\s*\d{5}\s+[A-ZÄÖÜ][\wäöüß-]+)?")
    return (re.compile(street_cap), re.compile(street_low), re.compile(military), re.compile(po_box),
            re.compile(german))


def find_addresses(text: str) -> list[tuple[int, int, float]]:
    out = []
    for pattern in address_patterns():
        for m in pattern.finditer(text):
            out.append((m.start(), m.end(), 0.85))
    return out


PHONE_PATTERNS = (
    # North American: (415) 555-0132, 415.555.0132, +1-415-555-0132x123, 001-415-555-0132
    (r"(?<![\w+.-])(?:(?:\+?1|001)[\s.-]?)?(?:\(\d{3}\)[\s.-]?|\d{3}[\s.-])\d{3}[\s.-]\d{4}"
     r"(?:\s*(?:x|ext\.?|extension|#)\s*\d{1,6})?(?![\w-]|\.\d)", 0.7),
    # International with +: +44 20 7946 0958, +49 (0)30 1234567, +4428 9018 0286
    (r"(?<![\w+])\+\d{1,3}(?:\s?\(0\)\s?|[\s.-])?(?:\(\d{1,5}\)[\s.-]?)?\d{1,5}(?:[\s.-]?\d{2,5}){1,4}"
     r"(?:\s*(?:x|ext\.?)\s*\d{1,6})?(?![\w-]|\.\d)", 0.7),
    # National with trunk 0: 020 7946 0958, (0161) 496 0000, 07700 900123, (02328) 60129
    (r"(?<![\w.-])(?:\(0\d{1,4}\)|0\d{1,4})[\s.-]?\d{3,8}(?:[\s.-]\d{3,4})?(?![\w-]|\.\d)", 0.55),
    # French style pairs: 02 38 30 39 64
    (r"(?<![\w.-])0\d(?:[\s.-]\d{2}){4}(?![\w-]|\.\d)", 0.6),
    # Ten bare digits: 4155550132
    (r"(?<![\w.+-])\d{10}(?:\s*(?:x|ext\.?)\s*\d{1,6})?(?![\w-]|\.\d)", 0.55),
    # Other short or long digit runs count only next to a word like "phone" or "call".
    (r"(?<![\w.+#-])(?:\d{7,9}|\d{11,12}|\d{3,5}[.\s-]\d{3,5})(?![\w-]|\.\d)", 0.1),
)
PHONE_CONTEXT = ["phone", "call", "callback", "cell", "mobile", "mob", "tel", "telephone", "ph", "m", "text", "fax",
                 "reach", "whatsapp", "contact", "landline", "line"]


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def plausible_phone(text: str) -> bool:
    core = re.split(r"(?i)\s*(?:x|ext\.?|extension|#)\s*\d+$", text)[0]
    digits = _digits(core)
    if not 7 <= len(digits) <= 15 or len(set(digits)) < 3:
        return False
    if re.fullmatch(r"(?:19|20)\d{2}[-./]\d{1,2}[-./]\d{1,2}", core):
        return False
    return True


def luhn_valid(digits: str) -> bool:
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
    digits = _digits(text)
    groups = [len(g) for g in re.split(r"[ -]", text.strip())]
    # Printed cards group digits 4-4-4-4(-3) or 4-6-5 / 4-6-4; other groupings are order or account numbers.
    if len(groups) > 1 and not (all(g == 4 for g in groups[:-1]) or groups[:2] == [4, 6]):
        return False
    if len(digits) == 12:
        return digits[0] in "56" and luhn_valid(digits)
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


SSN_PATTERNS = (
    (r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])", 0.6),
    (r"(?<![\w.])\d{3}[ .]\d{2}[ .]\d{4}(?![\w.])", 0.5),
    (r"(?<![\w-])\d{9}(?![\w-])", 0.1),
)
SSN_CONTEXT = ["ssn", "social", "security", "ss", "ssn#", "taxpayer", "tin", "itin"]
