"""Multi-hop evidence chains over a document's sentences (no model: the choice of what the reader sees)."""

from memgpt.memories.chains import Words, expand, question_thing

FILLER = ["The grass is green.", "Congress met in the winter.", "The sky is blue over the kitchen garden."]


def doc(*facts: str) -> list[str]:
    out = []
    for k, fact in enumerate(facts):
        out += [FILLER[k % len(FILLER)], fact]
    return out + FILLER


def chosen(question: str, sentences: list[str], seeds: list[int] | None = None) -> tuple[list[str], str]:
    ids, asked = expand(question, sentences, seeds or [])
    assert ids == sorted(ids)  # document order
    return [sentences[i] for i in ids], asked


def test_names_are_capitalised_words_never_seen_in_lower_case():
    words = Words(["John went to the kitchen.", "The kitchen is warm.", "Mary took the apple.", "the end"])
    assert words.names == {"john", "mary"}  # "The" occurs in lower case too
    assert words.things() == {"apple"}
    assert question_thing("Where is the apple?", words) == "apple"
    assert question_thing("Where is Mary?", words) is None  # a person: the restatement rule's business
    assert question_thing("Where is the violin?", words) is None  # nowhere in the document


def test_where_is_a_thing_follows_its_carrier():
    sentences = doc("John went to the garden.", "Mary went to the hallway.", "John took the football there.",
                    "Mary went to the cellar.", "John went to the bedroom.", "John journeyed to the kitchen.")
    got, asked = chosen("Where is the football?", sentences)
    assert got == ["John took the football there.", "John journeyed to the kitchen."] and asked == "Where is the football?"


def test_a_dropped_thing_stays_where_its_carrier_was():
    sentences = doc("John went to the garden.", "John took the football there.", "John went to the cellar.",
                    "John dropped the football.", "John went to the kitchen.")
    got, _ = chosen("Where is the football?", sentences)
    assert got == ["John took the football there.", "John went to the cellar.", "John dropped the football."]


def test_a_given_thing_follows_its_receiver_and_other_things_are_left_out():
    sentences = doc("John went to the garden.", "Mary went to the garden.", "John took the kite there.",
                    "John gave the kite to Mary.", "Mary picked up the apple there.", "Mary ran to the attic.")
    got, _ = chosen("Where is the kite?", sentences)
    assert got == ["John went to the garden.", "John gave the kite to Mary.", "Mary ran to the attic."]


def test_restated_mentions_give_way_and_the_actor_is_the_name_before_the_thing():
    sentences = doc("Jeff walked to the balcony.", "Jeff grabbed the pillow there.", "Jeff dropped the pillow.",
                    "Gentlemen of the House: Jeff grabbed the pillow there.", "Jeff walked to the garage.")
    got, _ = chosen("Where was the pillow before the garage?", sentences)
    assert got == ["Jeff walked to the balcony.", "Gentlemen of the House: Jeff grabbed the pillow there."]


def test_before_cuts_the_story_and_asks_for_the_state_then():
    sentences = doc("Emma went to the garage.", "Emma took the violin there.", "Emma went back to the bedroom.",
                    "Emma travelled to the garden.", "Emma left the violin.", "Emma moved to the attic.")
    got, asked = chosen("Where was the violin before the garden?", sentences)
    assert got == ["Emma took the violin there.", "Emma went back to the bedroom."]
    assert asked == "Where is the violin?"


def test_other_questions_keep_the_retrieved_sentences():
    sentences = doc("The garden is north of the kitchen.", "Mary gave the cake to Fred.")
    assert expand("What is north of the kitchen?", sentences, [3, 1]) == ([1, 3], "What is north of the kitchen?")
    assert expand("Where is Mary?", sentences, [3]) == ([3], "Where is Mary?")
