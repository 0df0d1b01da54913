"""Precision on prose: things, ordinary words and published people are not scrubbed as private persons.

Real presidio and the real spaCy model. Every sentence here was written by hand for this test (none comes
from the benchmark's prose); each case was seen to fail with its rule switched off.
"""
from __future__ import annotations

from curation.pii import names
from curation.pii.scrub import PiiOptions, find_pii

ARTICLE = ("Psychological altruism is contrasted with psychological egoism, which refers to the motivation to increase "
           "one's own welfare. There has been some debate on whether humans are truly capable of psychological altruism. "
           "Some definitions specify a self-sacrificial nature to altruism and a lack of external rewards for altruistic "
           "behaviours. The social exchange theory postulates that altruism only exists when benefits to the self "
           "outweigh costs to the self. Tomasz Wierzbicki is a psychologist who examined this question and argues "
           "against the theory.")


def _people(texts, public_figures="keep"):
    found = find_pii(texts, PiiOptions(public_figures=public_figures))
    return [[t[s:e] for s, e, entity, *_ in spans if entity == "PERSON"] for t, spans in zip(texts, found)]


def test_a_name_in_a_things_place_is_not_a_person():
    texts = ["In addition to the looks, the Dyson hair dryer is very quiet. Dyson took people's needs into "
             "consideration during the design.",
             "Other startups doing well are Dinghy, which insures laptops, as well as Zego which is offering insurance "
             "for scooter drivers.",
             'The actor is now working on "Aurangzeb", produced by a large studio, after his film "Aiyaa" last year.',
             "Hunt said the company has refunded the payments to the growers."]
    assert _people(texts) == [[], [], [], ["Hunt"]]


def test_one_ordinary_word_alone_is_a_word_unless_it_speaks():
    texts = ["Cook pasta until al dente, according to package directions. Drain and set aside.",
             "Students like these services because they are cheap. Very Good essay writing is not a simple job.",
             "Hunt said the company has refunded the payments to the growers.",
             "We waited an hour before Jensen finally arrived with the keys."]
    # "Jensen" is in the lexicon (WordNet's famous bearers), but only as a noun: a family name, not a word.
    assert _people(texts) == [[], [], ["Hunt"], ["Jensen"]]


def test_a_lone_ordinary_word_beside_a_pronoun_is_not_a_name():
    texts = ["Milana Knowles, our VP Day Spa Sales and Marketing, held a retreat there. She invited 35 owners."]
    assert _people(texts) == [["Milana Knowles"]]


def test_people_in_a_reference_list_entry_are_public_figures():
    texts = ["Whitcombe, Emma. Alain Resnais. Manchester, UK: Manchester University Press, 2006.",
             "Liang, Mei-Ling, and Tomasz Wierzbicki. Rivers of Memory. Oxford: Clarendon Press, 2004."]
    assert _people(texts) == [[], []]
    scrubbed = _people(texts, "scrub")
    assert "Emma" in scrubbed[0] and "Tomasz Wierzbicki" in scrubbed[1]
    # A sign-off with a year on its line is no reference entry.
    assert not names._in_citation("Thanks, Priya. See you at the 2019 reunion.", 8)
    assert names._in_citation("Whitcombe, Emma. Alain Resnais. Manchester: Manchester University Press, 2006.", 11)


def test_an_expository_article_without_dates_keeps_its_public_figures():
    personal = ARTICLE + " I met Tomasz Wierzbicki at the clinic last week and he told me about my results."
    open_quote = ARTICLE + ' He wrote: "I believe this theory cannot stand. I do not expect'
    data_word_far_off = ARTICLE.replace("against the theory.", "against the theory, as did others who wrote about "
                                                               "the age of consent in 1970 and 1985.")
    assert _people([ARTICLE, open_quote, data_word_far_off]) == [[], [], []]
    assert _people([ARTICLE], "scrub") == [["Tomasz Wierzbicki"]]
    assert "Tomasz Wierzbicki" in _people([personal])[0]


def test_age_near_a_name_is_personal_only_as_someones_age():
    history = ("The law changed in 1885 after a long campaign in London and Manchester. Reformers such as Tobias "
               "Wrenfield argued that the age of consent should rise, and Parliament raised it to sixteen that year.")
    own_age = history.replace("argued that the age of consent should rise", "gave their age as 34 in the petition")
    assert _people([history, own_age]) == [[], ["Tobias Wrenfield"]]
    assert _people([history], "scrub") == [["Tobias Wrenfield"]]
    assert names.PERSONAL_DATA.search("Name: Ines Barros, Age: 34") and names.PERSONAL_DATA.search("aged 71")
    assert not names.PERSONAL_DATA.search("at an earlier age, in the Middle Ages")


def test_a_family_in_a_biography_is_no_personal_cue_but_a_phone_number_is():
    bio = ("Born in 1802 in a village near Lyon, the engraver trained in Paris before settling in Geneva. Odile "
           "Carrasquer's father ran a print shop there, and her prints of the lake sold across Switzerland and France "
           "for decades.")
    phone = bio.replace("father ran a print shop there", "phone number was listed in every directory")
    chat = "Odile Carrasquer's father called again about the late delivery, can someone ring him back?"
    assert _people([bio, phone, chat]) == [[], ["Odile Carrasquer"], ["Odile Carrasquer"]]
    assert _people([bio], "scrub") == [["Odile Carrasquer"]]


def test_a_lone_word_only_the_ner_engine_calls_a_person_in_published_prose_is_a_public_figure():
    # A drug, a militia, a brand or a minister's surname: the small engine calls each a person.
    # One sentence with hardly a date or a place: no encyclopedic article, only the lone-word rule keeps it.
    news = ("Shares in the drug maker rose sharply after regulators approved its new antibiotic for hospital use, and "
            "analysts expect Vorlantix to reach pharmacies within months, although supply of the raw material remains "
            "tight and prices may rise.")
    personal = news.replace("analysts expect Vorlantix", "I told Vorlantix")
    short = "Analysts expect Vorlantix to reach pharmacies by spring."
    assert _people([news, personal, short]) == [[], ["Vorlantix"], ["Vorlantix"]]
    assert _people([news], "scrub") == [["Vorlantix"]]


def test_credited_authors_of_published_works_are_public_figures_in_third_person_text():
    third = ("The Span of Empire, the latest novel by Kerryn Offord and Davi Carrico, came out in the spring and sold "
             "well. Its sequel follows the same crew through the next decade of the war and is due next year.")
    review = "I listened to the story as an audiobook narrated by Kerryn Offord and I would recommend it to anyone."
    assert _people([third, review]) == [[], ["Kerryn Offord"]]
    assert _people([third], "scrub") == [["Kerryn Offord", "Davi Carrico"]]


def test_a_titles_full_stop_ends_no_sentence_and_an_ordinary_one_does():
    text = "The podcast had Tavita Leota on the new book by Dr. Aminu Danjuma, out in May. Next week: gardening."
    start = text.index("Tavita")
    a, b = names._sentence_bounds(text, start, start + len("Tavita Leota"))
    assert text[a:b] == "The podcast had Tavita Leota on the new book by Dr. Aminu Danjuma, out in May."
    assert [m.end() for m in names.SENTENCE_END.finditer("Ask Mrs. Oyunchimeg. Plan B. Then stop.")] == [20, 28, 39]


def test_the_lone_word_rule_reads_the_whole_third_person_text_but_never_a_name_spoken_to():
    # A review in the third person with one aside in the first: the brand in the aside is no private person.
    review = ("The outdoor market covers everything from professional mountain climbing to light trekking, and the "
              "backpacks sold for each niche differ in weight, frame and price. Most buyers compare capacity, fabric "
              "and warranty before anything else. I am aware that the first brand most shoppers think of is "
              "Vorlantix, but smaller makers often offer better frames and longer warranties.")
    # A first-person post: a sentence about someone else in it still names a colleague.
    post = ("I asked around at work yesterday about the broken printer and nobody knew anything about it at all. "
            "Ajibola thinks the toner is empty. Honestly I am not so sure about that one.")
    # A commenter thanked at the end of a third-person text is spoken to, not written about.
    thanked = ("The outdoor market covers everything from professional mountain climbing to light trekking, and the "
               "backpacks sold for each niche differ in weight, frame and price. Most buyers compare capacity, fabric "
               "and warranty before anything else. Thanks, Tavita. More reviews of frames follow next week.")
    assert _people([review, post, thanked]) == [[], ["Ajibola"], ["Tavita"]]
    assert _people([review], "scrub") == [["Vorlantix"]]
