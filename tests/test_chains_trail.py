"""Where a thing is, or was, read from the parse: the person who last handled it and their moves
(memgpt.memories.chains.object_trail), and the sentences that reach the reader."""

from memgpt.memories.chains import clauses, location_question, object_trail
from memgpt.memories.lexical import Lexicon
from memgpt.text.pipeline import analyse


def trail(sentences: list[str], question: str) -> list[str] | None:
    pieces = object_trail(question, sentences, Lexicon(sentences))
    return None if pieces is None else [sentences[i][a:b] for i, a, b in pieces]


def test_a_where_question_names_its_thing_and_the_place_it_is_asked_against():
    assert location_question("Where is the lantern?").thing == "lantern"
    asked = location_question("Where was the lantern before the harbour?")
    assert (asked.thing, asked.relation, asked.reference) == ("lantern", "before", "harbour")
    assert location_question("Who lit the lantern?") is None


def test_clauses_read_subject_object_and_places_from_the_parse():
    (c,) = [c for c in clauses(0, analyse("Ingrid carried the lantern back to the harbour.")) if c.objects]
    assert c.subject == "ingrid" and c.person and c.objects == {"lantern"} and ("to", "harbour") in c.places


def test_the_thing_follows_whoever_last_handled_it():
    doc = ["Ingrid sailed to the island.", "Ingrid lifted the lantern.", "The wind rose in the night.",
           "Piet rowed to the harbour.", "Ingrid rowed to the lighthouse.", "Piet walked to the market."]
    assert trail(doc, "Where is the lantern?") == ["Ingrid sailed to the island.", "Ingrid lifted the lantern.",
                                                   "Ingrid rowed to the lighthouse."]  # document order, nothing of Piet


def test_the_latest_handling_counts_and_only_that_persons_moves():
    doc = ["Piet rowed to the harbour.", "Piet lifted the lantern.", "Ingrid sailed to the island.",
           "Ingrid lifted the lantern.", "Piet walked to the market."]
    assert trail(doc, "Where is the lantern?") == ["Ingrid sailed to the island.", "Ingrid lifted the lantern."]


def test_before_a_place_is_the_place_of_the_trail_before_it():
    doc = ["Ingrid sailed to the island.", "Ingrid lifted the lantern.", "Ingrid rowed to the harbour.",
           "Ingrid climbed to the lighthouse.", "Ingrid set the lantern down."]
    assert trail(doc, "Where was the lantern before the lighthouse?") == ["Ingrid lifted the lantern.",
                                                                           "Ingrid rowed to the harbour."]
    assert trail(doc, "Where was the lantern before the harbour?") == ["Ingrid sailed to the island.",
                                                                        "Ingrid lifted the lantern."]
    assert trail(doc, "Where was the lantern before the market?") is None  # not on its trail


def test_a_person_asked_about_is_where_they_last_went():
    doc = ["Ingrid sailed to the island.", "Piet rowed to the harbour.", "Ingrid climbed to the lighthouse."]
    assert trail(doc, "Where is Ingrid?") == ["Ingrid climbed to the lighthouse."]


def test_no_trail_without_a_person_handling_the_thing():
    assert trail(["The lantern was old.", "Ingrid sailed to the island."], "Where is the lantern?") is None
    assert trail(["Ingrid sailed to the island."], "What did Ingrid eat?") is None


def test_a_long_document_sentence_gives_the_parsers_sentence_that_holds_the_clause():
    wrapped = "The tide was high that week and the boats stayed in. Ingrid lifted the lantern. The gulls were loud."
    pieces = object_trail("Where is the lantern?", [wrapped], Lexicon([wrapped]))
    assert [wrapped[a:b] for _, a, b in pieces] == ["Ingrid lifted the lantern."]
