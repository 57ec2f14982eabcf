"""Multi-hop evidence by general means (a second retrieval hop from what the first hop's sentences add)
and the current-state rule: only what the reader is shown (tiny backbone, real tokenizer and encoder)."""

import pytest
from conftest import tiny_llama_engine

from memgpt.apps import read
from memgpt.text.words import STOP, terms
from memgpt.memories.base import make_memory
from memgpt.memories.chains import asks_current_state, bridge_terms, latest_per_topic
from memgpt.memories.lexical import Lexicon

FILLER = ("The Congress has given careful thought to the needs of the postal service in the western States. "
          "Our commerce with the nations of South America grew steadily during the year. "
          "The Secretary of the Treasury reports a surplus in the revenues of the Government. "
          "It is the duty of every citizen to uphold the law and to respect the courts. ")


@pytest.fixture(scope="module")
def engine():
    return tiny_llama_engine()


def evidence(document: str, question: str, engine, budget: int = 400):
    return make_memory("retrieval", engine).evidence(read(document, "retrieval", engine), question, budget)


def test_second_hop_follows_the_role_noun_across_a_long_gap_in_document_order(engine):
    first = "The miller of Fenwick Cross was a tall man called Ivo Brandt."
    second = "The miller's brother ran a tannery in the port of Saltmouth."
    document = FILLER * 3 + first + " " + FILLER * 40 + second + " " + FILLER * 3  # ~6k tokens apart
    found = evidence(document, "What business did Ivo Brandt's brother run?", engine)
    texts = [s.text for s in found.spans]
    assert first in texts and second in texts and texts.index(first) < texts.index(second)
    assert found.spans == sorted(found.spans, key=lambda s: s.start)  # document order, real offsets
    assert all(document[s.start : s.end] == s.text for s in found.spans)
    assert len(texts) <= 4  # bounded: the two facts and little else


def test_a_later_statement_with_the_same_subject_does_not_drop_a_true_fact(engine):
    document = (FILLER * 4 + "Congress approved the canal treaty. " + FILLER * 4 + "Congress approved the naval budget. "
                + FILLER * 4)
    found = evidence(document, "What did Congress approve?", engine)
    assert "Congress approved the canal treaty." in found.text
    assert "Congress approved the naval budget." in found.text


def test_a_current_state_question_sees_the_latest_statement():
    lexicon = Lexicon(["Mary went to the kitchen.", "The sky is blue.", "Mary moved to the garden.", "John left."])
    assert asks_current_state("Where is Mary?") and not asks_current_state("Where was Mary born?")
    assert latest_per_topic([0, 1, 2], terms("Where is Mary?"), lexicon) == [1, 2]


def test_capitalised_words_are_plain_terms_not_names():
    """No rule takes "President", "March" or "New York" for a person: capitalisation plays no part."""
    upper = ["In March the President sailed to New York.", "The President came back in March.", "New York was cold."]
    lower = [s.lower() for s in upper]
    assert Lexicon(upper).terms == Lexicon(lower).terms
    anchor = Lexicon(upper).terms[0]
    assert bridge_terms(terms("Where did the President sail?"), anchor, Lexicon(upper)) == (
        bridge_terms(terms("where did the president sail?"), anchor, Lexicon(lower)))
    assert {"march", "new", "york"} <= set(bridge_terms(terms("Where did he sail?"), anchor, Lexicon(upper))[0])


def test_capitalised_words_do_not_change_the_evidence(engine):
    fact = "In March the President took the red portfolio to New York."
    document = FILLER * 4 + fact + " " + FILLER * 4 + "The President went to the kitchen in March. " + FILLER * 4
    question = "Where is the portfolio?"
    upper = [s.text.lower() for s in evidence(document, question, engine).spans]
    lower = [s.text for s in evidence(document.lower(), question.lower(), engine).spans]
    assert upper == lower and fact.lower() in upper


def test_one_stop_word_list_for_the_package():
    import memgpt.apps.grounding as grounding

    assert grounding.STOP is STOP
    assert terms("What business did Ivo Brandt's brother run?") == ["business", "ivo", "brandt", "brother", "run"]
