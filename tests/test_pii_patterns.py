"""Phones, street addresses and dates with the real presidio engine: international formats found, the
numbers of ordinary prose (year ranges, dates, ISBNs, order numbers, headings) left alone.

Every sentence here is written by hand for these tests; none comes from the recognizers' word lists."""
from __future__ import annotations

import json

import pytest

from curation.pii.review import load_settings
from curation.pii.scrub import PiiOptions, engine_for, find_pii, scrub_records
from curation.data.records import Record
from tests.old_workspace import old_workspace


def found(texts: list[str], settings: PiiOptions | None = None) -> list[list[tuple[str, str]]]:
    """(entity, covered text) of every finding in each text."""
    spans = find_pii(texts, settings or PiiOptions())
    return [[(s[2], t[s[0]:s[1]]) for s in sp] for t, sp in zip(texts, spans)]


def dates(texts: list[str], settings: PiiOptions | None = None) -> list[list[tuple[str, str]]]:
    """The date findings of each text."""
    return [[f for f in spans if f[0] in ("DATE_OF_BIRTH", "DATE_TIME")] for spans in found(texts, settings)]


def scrubbed(text: str, settings: PiiOptions | None = None) -> str:
    record = Record(id="r1", messages=[{"role": "user", "content": text}])
    return scrub_records([record], settings, salt="s", workers=1).records[0].messages[0]["content"]


PHONES = [
    ("Ring me on 0496 46 46 70 tonight.", "0496 46 46 70"),              # Belgian mobile
    ("Mon numéro : 06 12 34 56 78, merci", "06 12 34 56 78"),            # French pairs
    ("Our London desk is +44 20 7946 0958.", "+44 20 7946 0958"),        # UK, international
    ("mobile 07700 900123 after six", "07700 900123"),                   # UK, national
    ("Büro Berlin: 030 12345678", "030 12345678"),                       # German area code
    ("whatsapp +91 98765 43210 anytime", "+91 98765 43210"),             # Indian
    ("E.164 form: +14155550132", "+14155550132"),
    ("call (415) 555-0132 ext. 204 for billing", "(415) 555-0132 ext. 204"),  # extension
    ("Fax: 0161 496 0000", "0161 496 0000"),
    ("text me at 98765 43210", "98765 43210"),                           # bare, with a cue
]


def test_international_phone_formats_are_found():
    results = found([text for text, _ in PHONES])
    for (text, number), spans in zip(PHONES, results):
        assert ("PHONE_NUMBER", number) in spans, text


NOT_PHONES = [
    ("The war lasted 1939–1945 in Europe.", "1939–1945"),
    ("Standings for the 2019-2020 season and 2020-2019 reversed", "2019-2020"),
    ("Between 1998 2001 2004 the club won the title.", "1998 2001 2004"),
    ("Published 2020-05-12 and revised 12.05.2021.", "2020-05-12"),
    ("Call the office before 12-05-2021 please.", "12-05-2021"),            # "call" and "office" are phone cues
    ("He held the office 2015-2019 before he retired.", "2015-2019"),
    ("Called up for the 1939-1945 war, he came home in 1946.", "1939-1945"),
    ("Your order number is 415 555 0132; it ships on Monday.", "415 555 0132"),
    ("See ISBN 978-0-306-40615-7 for the full edition.", "978-0-306-40615-7"),
    ("The old ISBN 0-306-40615-2 still works.", "0-306-40615-2"),
    ("my order 4471-2290-13 still says processing", "4471-2290-13"),
    ("tracking 7489 2231 0095 shows it in Ghent", "7489 2231 0095"),
    ("Windows build 10.0.19041.1234 fixes it.", "10.0.19041.1234"),
    ("The villa sold for $1 299 000 last year.", "1 299 000"),
    ("The tower stands at 48.858370 2.294481 on the map.", "48.858370 2.294481"),
    ("They won 102-98 after overtime.", "102-98"),
    ("a population of 8 336 817 people", "8 336 817"),
    ("The budget grew to 2000000000 over ten years.", "2000000000"),
    ("Odd numbers 1 3 5 7 9 11 13 are on the sheet.", "1 3 5 7 9 11 13"),
]


@pytest.mark.parametrize("text,number", NOT_PHONES, ids=[n for _, n in NOT_PHONES])
def test_numbers_of_ordinary_prose_are_not_phones(text, number):
    assert not [s for s in found([text])[0] if s[0] == "PHONE_NUMBER"]
    assert number in scrubbed(text)


ADDRESSES = [
    ("Please deliver to 27 Elmfield Road, Leeds LS6 2QF today.", "27 Elmfield Road, Leeds LS6 2QF"),
    ("Our office: 350 Fifth Avenue, New York, NY 10118", "350 Fifth Avenue, New York, NY 10118"),
    ("Adresse : 8 rue des Lilas, 69003 Lyon", "8 rue des Lilas, 69003 Lyon"),
    ("Anschrift: Lindenstraße 14, 50674 Köln", "Lindenstraße 14, 50674 Köln"),
    ("Dirección: Calle de Alcalá 45, 28014 Madrid.", "Calle de Alcalá 45, 28014 Madrid"),
    ("indirizzo: Via Garibaldi 7, 16124 Genova", "Via Garibaldi 7, 16124 Genova"),
    ("Bezoekadres: Keizersgracht 123, 1015 CJ Amsterdam", "Keizersgracht 123, 1015 CJ Amsterdam"),
    ("Osoite: Hämeenkatu 20, 33200 Tampere", "Hämeenkatu 20, 33200 Tampere"),
    ("address: Drottninggatan 50, 111 21 Stockholm", "Drottninggatan 50, 111 21 Stockholm"),
    ("Flat 2, 9 Hillside Crescent, Bristol BS8 4QT", "Flat 2, 9 Hillside Crescent, Bristol BS8 4QT"),
    ("She lives at Pellervonkatu 3 B, Helsinki.", "Pellervonkatu 3 B, Helsinki"),
    ("Return it to PO Box 4410, Springfield", "PO Box 4410, Springfield"),
    ("10 Downing Street is where the Prime Minister lives.", "10 Downing Street"),
]


def test_street_addresses_in_several_countries_formats_are_found():
    results = found([text for text, _ in ADDRESSES])
    for (text, address), spans in zip(ADDRESSES, results):
        assert ("STREET_ADDRESS", address) in spans, (text, spans)


NOT_ADDRESSES = [
    "8 Simple Ways to Cut Your Energy Bill",
    "10 Things Every Runner Should Know",
    "5 Easy Street Food Recipes for Summer",
    "Top 7 Park Walks in Spring",
    "We walked 5 miles down the road to the lake.",
    "The plot covers 3 square meters of soil.",
    "In 2001, Alabama Supreme Court judges met.",
    "It runs 24/7 from home.",
    "Chapter 12 covers the French Revolution.",
]


@pytest.mark.parametrize("text", NOT_ADDRESSES)
def test_headings_measurements_and_numbered_phrases_are_not_addresses(text):
    assert not [s for s in found([text])[0] if s[0] == "STREET_ADDRESS"]


def test_dates_are_kept_except_a_date_of_birth_in_context():
    texts = ["DOB: 14/02/1988", "I was born on 3 May 1990 in Cork.", "my birthday is March 3rd",
             "The shop opens on Monday, 3 May 2021.", "Einstein was born on 14 March 1879 in Ulm.",
             "See you on Friday in June; May is busy and 2024 was worse."]
    results = dates(texts)
    assert results[0] == [("DATE_OF_BIRTH", "14/02/1988")]
    assert results[1] == [("DATE_OF_BIRTH", "3 May 1990")]
    assert results[2] == [("DATE_OF_BIRTH", "March 3rd")]
    assert results[3] == results[4] == results[5] == []
    assert scrubbed(texts[5]) == texts[5]


def test_the_dates_option_finds_every_date_or_none():
    texts = ["The shop opens on Monday, 3 May 2021.", "DOB: 14/02/1988", "Every Friday in June since 2019."]
    every = dates(texts, PiiOptions(dates="all"))
    assert every[0] == [("DATE_TIME", "3 May 2021")] and every[1] == [("DATE_OF_BIRTH", "14/02/1988")]
    assert every[2] == []                                   # a weekday, a month and a year are no date
    assert dates(texts, PiiOptions(dates="off")) == [[], [], []]
    problems = PiiOptions(entities=["PERSON", "DATE_TIME"]).problems()
    assert any(p.startswith("entities: DATE_TIME (every date) is found only with dates: all") for p in problems)
    assert not PiiOptions(entities=["PERSON", "DATE_TIME"], dates="all").problems()


def test_a_regex_allow_list_entry_keeps_a_number_that_is_otherwise_scrubbed():
    text = "Our switchboard +32 2 555 12 12 is public; my mobile is 0496 46 46 70."
    assert scrubbed(text) == "Our switchboard <PHONE_NUMBER> is public; my mobile is <PHONE_NUMBER>."
    kept = scrubbed(text, PiiOptions(allow=[r"re:\+32 2 555 \d\d \d\d"]))
    assert kept == "Our switchboard +32 2 555 12 12 is public; my mobile is <PHONE_NUMBER>."


def test_each_finding_says_why_it_was_taken():
    texts = ["call me on 0496 46 46 70", "Anschrift: Lindenstraße 14, 50674 Köln", "DOB: 14/02/1988",
             "card 4111 1111 1111 1111", "IBAN DE89 3704 0044 0532 0130 00", "SSN 123-45-6789"]
    results = engine_for(PiiOptions()).analyze(texts)
    evidence = {r.entity_type: r.recognition_metadata.get("evidence")
                for found in results for r in found if r.score >= PiiOptions().default_threshold}
    assert evidence["PHONE_NUMBER"] == "phone pattern 'national 0… with area code' + context 'call'"
    assert evidence["STREET_ADDRESS"].startswith("address shape 'name ending '-straße/-katu/-gatan…' + number'")
    assert evidence["STREET_ADDRESS"].endswith("+ postcode after it")
    assert evidence["DATE_OF_BIRTH"] == "date of birth: 'dob' before a date"
    assert evidence["CREDIT_CARD"] == "card number: 16 digits, Luhn check passes + context 'card'"
    assert evidence["IBAN_CODE"] == "IBAN: check digits pass + context 'iban'"
    assert evidence["US_SSN"] == "SSN pattern 'NNN-NN-NNNN' + context 'ssn'"


def test_a_card_or_iban_written_loosely_counts_next_to_its_word():
    texts = ["paid by credit card 031415926539 yesterday", "ticket 031415926539 is closed",
             "my iban is de89370400440532013000", "build de89370400440532013000 failed"]
    results = found(texts)
    assert ("CREDIT_CARD", "031415926539") in results[0] and not results[1]
    assert ("IBAN_CODE", "de89370400440532013000") in results[2] and not results[3]


@pytest.mark.parametrize("saved,dates,with_birth", [
    (["PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "IP_ADDRESS", "STREET_ADDRESS"],
     "birth", True),                                        # the old defaults: dates of birth as in a new workspace
    (["PERSON", "PHONE_NUMBER", "DATE_TIME"], "all", False),   # dates were chosen: every date still
    (["EMAIL_ADDRESS"], "birth", False),                       # a narrow choice stays narrow
])
def test_saved_pii_settings_upgrade_to_the_dates_setting(tmp_path, saved, dates, with_birth):
    ws = old_workspace(tmp_path / "workspace", {("curation", "m404_pii_date_settings")})
    ws.db.execute("insert into pii_settings (id, settings, salt) values (1, ?, 'salt')",
                  (json.dumps({"entities": saved, "default_threshold": 0.5}),))
    assert ws.migrate() == ["curation.m404_pii_date_settings"]
    settings = load_settings(ws)
    assert settings.dates == dates and ("DATE_OF_BIRTH" in settings.entities) == with_birth
    assert settings.default_threshold == 0.5 and not settings.problems()
