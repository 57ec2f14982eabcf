"""The text-analysis layer: spaCy lemmas, stop words and entities; numbers by value; scripts by Unicode."""

from memgpt.text.pipeline import analyse, language_of
from memgpt.text.words import STOP, number_values, terms, value


def test_lemmas_keep_words_apart_that_a_crude_stem_merges():
    got = terms("Universities and the universe; presidents preside; international and internal affairs.")
    assert {"university", "universe", "president", "preside", "international", "internal"} <= set(got)
    assert terms("She mended three lamps.") == ["mend", "lamp"]  # "three" is on spaCy's stop list; numbers go by value


def test_stop_words_come_from_spacy():
    assert {"the", "would", "upon", "whereas"} <= STOP and "harbour" not in STOP


def test_numbers_in_words_and_digits():
    assert number_values("a hundred goats, thirty-one ships and 1,250 men") == {100.0, 31.0, 1250.0}
    assert value("twenty-two") == 22.0 and value("$4.50") == 4.5 and value("the harbour") is None
    assert number_values("half a loaf, once a week") == set()  # no number is stated


def test_entities_and_noun_chunks_of_english():
    doc = analyse("Tomasz Wierzba opened a bakery in Gdynia in 1998.")
    assert ("Tomasz Wierzba", "PERSON") in [(e.text, e.label_) for e in doc.ents]
    assert "a bakery" in [c.text for c in doc.noun_chunks]


def test_script_decides_the_pipeline():
    assert language_of("张伟在杭州开了一家书店。") == "zh"
    assert language_of("Ein kleines Haus am See.") == "en"  # Latin script: the English pipeline's tokenizer
    doc = analyse("张伟在杭州开了一家书店。")
    assert doc.lang_ == "zh" and len(doc) >= 10  # one token per character
