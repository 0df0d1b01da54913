"""World knowledge as evidence about people: famous people's names, and places taken for people.

Real presidio and the real spaCy model. The sentences were written by hand for this test; the famous names
are on the shipped list (Pantheon), the private ones and the cue-found surname are not drawn from it. Each
case was seen to fail with the knowledge hooks in curation/pii/names.py switched off.
"""
from __future__ import annotations

import pytest

from curation.pii import knowledge
from curation.pii.scrub import PiiOptions, find_pii

NEWS = "Fans queued overnight outside the stadium, and Taylor Swift played for almost three hours."


def _people(texts, public_figures="keep"):
    found = find_pii(texts, PiiOptions(public_figures=public_figures))
    return [[t[s:e] for s, e, entity, *_ in spans if entity == "PERSON"] for t, spans in zip(texts, found)]


def test_the_shipped_lists_hold_famous_people_and_cities_not_private_names():
    assert "taylor swift" in knowledge.famous_people() and "abraham lincoln" in knowledge.famous_people()
    assert "priyanka okafor" not in knowledge.famous_people()
    assert {"sydney", "leipzig", "santa rosa"} <= knowledge.place_names()
    assert knowledge.name_key("Frémont’s") == "fremont" and knowledge.name_key("Dr. Ada Obi") == "ada obi"


def test_a_famous_name_in_a_news_sentence_is_kept_under_keep_and_scrubbed_under_scrub():
    # One short news sentence is no encyclopedic article: only the list says she is a public figure.
    assert _people([NEWS]) == [[]]
    assert _people([NEWS], public_figures="scrub") == [["Taylor Swift"]]


def test_the_list_holds_people_famous_since_pantheon_1_and_only_their_full_names():
    # Pantheon 1.0 (2013) predates them; Pantheon 2020's list holds them. One sentence of news, no article.
    text = "Investors cheered when Marissa Mayer took over the struggling company in the summer."
    assert {"marissa mayer", "jamal khashoggi", "theresa may"} <= knowledge.famous_people()
    assert _people([text]) == [[]]
    assert _people([text], public_figures="scrub") == [["Marissa Mayer"]]
    # Pantheon 2020's one-word names are not taken: a given name held out of the detector's list could be one.
    assert "justina" not in knowledge.famous_people()
    assert _people(["Hi, this is Marissa Mayer, my parcel is late."]) == [["Marissa Mayer"]]


def test_a_famous_name_introduced_by_a_personal_cue_is_personal_data():
    texts = ["Hi, my name is Taylor Swift and my order never arrived.",
             "Thanks for your help!\nCheers,\nTaylor Swift"]
    assert _people(texts) == [["Taylor Swift"], ["Taylor Swift"]]


def test_a_private_name_in_the_same_sentence_is_still_scrubbed():
    text = "Fans queued overnight outside the stadium, and Wanjiru Okonkwo played for almost three hours."
    assert _people([text]) == [["Wanjiru Okonkwo"]]


def test_a_given_name_alone_is_never_a_famous_one():
    # The list holds "John" and "Mary" alone (an apostle, a saint): a given name alone stays a private person's.
    assert not knowledge.is_public_figure("Mary", ambiguous=lambda w: w in {"mary"})
    assert knowledge.is_public_figure("Aristotle", ambiguous=lambda w: False)
    assert not knowledge.is_public_figure("Aristotle", third_person=False)


def test_a_city_on_weak_evidence_where_a_place_stands_is_not_a_person():
    # The NER engine calls each of these a person; only the city list says otherwise.
    texts = ["The tour stopped at Eugene on the second night.",
             "The team trained in Vila Velha before the final.",
             "Rain fell across Joao Pessoa all week."]
    assert _people(texts) == [[], [], []]
    # A one-word city needs a place's position in the sentence: "Eugene" alone may be anyone.
    assert not knowledge.names_a_place("Eugene stopped the tour.", 0, 6)


@pytest.mark.parametrize("text, name", [
    # Miguel Pereira is a Brazilian town on the city list: a cue outweighs it, and so does a person's shape.
    ("Hi, my name is Miguel Pereira and my card was charged twice.", "Miguel Pereira"),
    ("Miguel Pereira called twice about the refund this morning.", "Miguel Pereira"),
    ("Thanks for sorting out the refund so quickly.\nRegards,\nMadison", "Madison"),
    ("Please forward the invoice to Mr. Lincoln before Friday.", "Mr. Lincoln"),
])
def test_a_surname_that_is_a_place_is_still_found_with_a_cue(text, name):
    assert _people([text]) == [[name]]


def test_a_famous_name_in_chat_is_a_private_persons():
    # A customer may share a famous name: chat (short replies, lowercase, first person) is no published prose.
    texts = ["Sure, Jennifer Lopez.", "jennifer lopez called about the order",
             "I told Taylor Swift at the front desk that her parcel had come in."]
    assert _people(texts) == [["Jennifer Lopez"], ["jennifer lopez"], ["Taylor Swift"]]


def test_a_famous_name_beside_contact_details_is_a_contact():
    texts = ["Ask Jennifer Lopez or support@acme.com about the delivery date.",
             "Jennifer Lopez from accounts can be reached on 415 555 0132 until six."]
    assert _people(texts) == [["Jennifer Lopez"], ["Jennifer Lopez"]]
