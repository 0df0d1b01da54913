"""Characters of fiction are kept under public_figures=keep; a real person beside the same words is not.

Every name and title here is made up for this test (no list the detector reads holds them)."""
import pytest

from curation.data.records import Record
from curation.pii.scrub import PiiOptions, scan_records


def _people(record: Record, **options) -> list[str]:
    found = scan_records([record], PiiOptions(**options), workers=1)
    return sorted(record.messages[f.message_index]["content"][f.start:f.end] for f in found if f.entity == "PERSON")


def chat(question: str, answer: str) -> Record:
    return Record("r1", [{"role": "user", "content": question}, {"role": "assistant", "content": answer}])


DIALOGUE = chat("Write a short dialogue between a librarian named Ottilie Brandvold and a student who owes late fees.",
                "Ottilie: Good morning, this is Ottilie Brandvold at the front desk. How can I help?\n"
                "Student: Hi, I got a letter about late fees.")
FRANCHISE = chat("I am making a quiz. Sort these into their games: Garrowick, Thessaly Moonbeck, Brannoch Vell.",
                 "Garrowick and Thessaly Moonbeck are characters from the Zephyrine Chronicles franchise. Brannoch "
                 "Vell is from other Mirrowind games.")
TITLE = chat("Why is Captain Ostrander Returns called the best film of its decade?",
             "Captain Ostrander Returns was the first film to use a moving camera on a ship. Ostrander's wife is "
             "played as his equal, which was new, and Ostrander's crew speaks in many accents.")


@pytest.mark.parametrize("record", [DIALOGUE, FRANCHISE, TITLE], ids=["writing request", "franchise", "title"])
def test_characters_are_kept_and_scrubbed_when_the_setting_says_scrub(record):
    assert _people(record) == []
    assert _people(record, public_figures="scrub")


def test_a_real_person_beside_the_words_of_fiction_is_still_found():
    introduced = chat("Hello, my name is Ottilie Brandvold; my son loves the cartoon characters of Paw Valley.",
                      "Thanks Ottilie, happy to help.")
    assert "Ottilie Brandvold" in _people(introduced)
    ordered = chat("The comic book order for Ottilie Brandvold has not arrived, can you check?",
                   "I'm sorry, the order for Ottilie Brandvold is delayed.")
    assert "Ottilie Brandvold" in _people(ordered)
    whole_title = chat("The film night tickets for Brannoch Vell were never emailed to him.", "We will resend them.")
    assert "Brannoch Vell" in _people(whole_title)
    # Contact data in the record: it is about someone real, so nothing in it is taken for a character.
    with_email = chat("Write a dialogue between Ottilie Brandvold and her landlord.",
                      "Ottilie: Hi, it's Ottilie Brandvold, my email is ottilie.brandvold@example.org.")
    assert "Ottilie Brandvold" in _people(with_email)
    first_person = chat("Write a story about my daughter Ottilie Brandvold for her birthday.", "Once upon a time...")
    assert "Ottilie Brandvold" in _people(first_person)


def test_a_sentences_first_word_makes_no_title_of_the_name_after_it():
    """"Unlike the Henrikssen novel": the capitalised first word is no part of a title, so the author stays found."""
    review = chat("Unlike the Henrikssen novel, it's not about ghosts. What it is about, I suppose is anyone's guess.",
                  "Noted.")
    assert _people(review) == ["Henrikssen"]
