"""World knowledge from public gazetteers, as evidence about a person span (never the gate for finding one).

Two lists ship inside the package (``curation/pii/data/``; sources, licences and how they were cut in
its README.md), read on first use and cached:

- famous people: the names of the Pantheon 1.0 dataset (11,341 people with a biography in 25 or more
  Wikipedia languages) and the full names of Pantheon 2020 (68,650 people in 15 or more, born up to about
  1980: "Theresa May", "Jamal Khashoggi", whom 1.0 predates). A name on it, found without a personal cue, is a
  public figure's: "Taylor Swift played two nights" is kept under ``public_figures=keep`` even in a blog post,
  while "my name is Taylor Swift" stays personal data (the cue decides, not the list). Only full names of two
  words or more count, or a one-word name the list holds alone ("Aristotle") that is not also a given name,
  in third-person text.
- places: the names of GeoNames' cities of 15,000 people or more. A span that is a place's name is no
  person when the only evidence for one is weak (the NER label alone, a list, a pronoun nearby) and the
  place stands where places do ("in Leipzig", "near Austin") or is named by two words or more that are not
  shaped like a person's name ("Joao Pessoa", "Vila Velha"; not "Miguel Pereira"); a surname that is a place
  ("Jackson", "Madison") stays a name otherwise, and a cue always wins.

Example::

    is_public_figure("Taylor Swift's tour")      # True (a famous person's full name)
    names_a_place("a weekend in Sydney", 15, 21)  # True
"""
from __future__ import annotations

import functools
import re
import unicodedata
from importlib import resources

WORDS = re.compile(r"[^\W\d_]+")
POSSESSIVE = re.compile(r"['’]s?\Z")
# Honorifics and offices before a name ("Dr. John Lambshead", "President Abraham Lincoln"): not part of its key.
LEADING = frozenset("mr mrs ms mx miss dr prof sir dame lord lady madam president senator governor king queen "
                    "prince princess pope saint st rev".split())
# Where a place stands in a sentence ("in Sydney", "visit Leipzig"); a person stands there rarely.
PLACE_BEFORE = re.compile(r"(?i)\b(?:in|at|near|visit|visiting|visited|downtown|outside|around)[ \t]+(?:the[ \t]+)?\Z")


def name_key(name: str, honorifics: bool = False) -> str:
    """A name as the lists hold it: lowercase, accents folded ("Frémont" -> "fremont"), no possessive, its
    words joined by single spaces; without a leading honorific unless ``honorifics`` ("St Albans" is a place)."""
    folded = unicodedata.normalize("NFKD", POSSESSIVE.sub("", name.strip()))
    words = WORDS.findall("".join(ch for ch in folded if not unicodedata.combining(ch)).lower())
    while not honorifics and len(words) > 1 and words[0] in LEADING:
        words.pop(0)
    return " ".join(words)


def _read(filename: str) -> frozenset[str]:
    text = resources.files("curation.pii").joinpath("data", filename).read_text(encoding="utf-8")
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))


@functools.lru_cache(maxsize=1)
def famous_people() -> frozenset[str]:
    """The keys (``name_key``) of the famous people's names shipped with the package."""
    return _read("famous_people.txt")


@functools.lru_cache(maxsize=1)
def place_names() -> frozenset[str]:
    """The keys (``name_key``, honorifics kept) of the city names shipped with the package."""
    return _read("places.txt")


def is_public_figure(name: str, *, third_person: bool = True, ambiguous=None) -> bool:
    """Whether ``name`` is a famous person's: two words or more on the list, or one word that the list
    holds alone ("Aristotle") when the text is in the third person and the word means nothing else
    (``ambiguous``, a callable, says which words do: given names like "Mary", ordinary words like "Slash")."""
    key = name_key(name)
    if not key or key not in famous_people():
        return False
    if " " in key:
        return True
    return third_person and len(key) > 2 and not (ambiguous and ambiguous(key))


def names_a_place(text: str, start: int, end: int, person_like=None) -> bool:
    """Whether ``text[start:end]`` is a city's name that reads as a place here: after "in", "at", "near",
    "visit" ..., or anywhere when it has two words or more and is not shaped like a person's name
    (``person_like``, a callable on the words: "Miguel Pereira" is a Brazilian town and may be anyone)."""
    key = name_key(text[start:end], honorifics=True)
    if not key or key not in place_names():
        return False
    if PLACE_BEFORE.search(text, max(0, start - 20), start):
        return True
    return " " in key and not (person_like and person_like(key.split()))
