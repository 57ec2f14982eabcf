"""Multi-hop evidence, citations and abstention through `ask` (tiny backbone, real tokenizer and encoder:
what the reader is shown does not depend on the backbone), one path on the real default model through
read -> .mem -> ask, and the suite's JSONL records."""

import json
from pathlib import Path

import pytest
from conftest import tiny_llama_engine

from memgpt.memories.abstention import NOT_IN_DOCUMENT, is_abstention
from memgpt.apps import ask, get_engine, read, write_memory_file
from memgpt.memories.base import make_memory
from memgpt.eval.suite import SuiteConfig, run_suite
from memgpt.eval.longcontext import make_sample

FILLER = ("The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
          "The commissioners failed to agree within six months after the exchange of the printed cases. ")


@pytest.fixture(scope="module")
def engine():
    return tiny_llama_engine()


def story_document() -> str:
    facts = ["John went to the garden.", "Mary went to the hallway.", "John took the football there.",
             "Mary journeyed to the cellar.", "John went to the bedroom.", "John journeyed to the kitchen."]
    return "".join(FILLER * 6 + fact + " " for fact in facts) + FILLER * 6


def assert_cited(document: str, answer) -> None:
    assert answer.citations and not answer.abstained
    for c in answer.citations:
        assert document[c.start : c.end] == c.text


def two_hop_document() -> str:
    """A fact about a person and, far later, one about their role ("the miller"): a second hop links them."""
    return (FILLER * 6 + "The miller of Fenwick Cross was a tall man called Ivo Brandt. " + FILLER * 30
            + "The miller's brother ran a tannery in the port of Saltmouth. " + FILLER * 6)


TWO_HOP = ["The miller of Fenwick Cross was a tall man called Ivo Brandt.",
           "The miller's brother ran a tannery in the port of Saltmouth."]


def test_the_reader_sees_both_hops_and_the_answer_cites_them(engine):
    document = two_hop_document()
    memory = make_memory("retrieval", engine)
    found = memory.evidence(read(document, "retrieval", engine), "What business did Ivo Brandt's brother run?", 400)
    assert found.text == " ".join(TWO_HOP)
    assert [c.text for c in found.spans] == TWO_HOP
    # whether an answer is given depends on the reader (the check): the real model's is tested below


def test_a_question_about_something_the_document_never_names_is_declined(engine):
    document = story_document()
    for question in ("Where is Hugo?", "Where is the violin?"):
        answer = ask(document, question, engine=engine, max_new_tokens=4)
        assert answer.abstained and answer.text == NOT_IN_DOCUMENT and not answer.citations
        assert is_abstention(answer.text)
    state = read(document, "retrieval", engine)
    for question in ("Where is Mary?", "Where is the football?"):  # named: evidence for the reader, at its offsets
        found = make_memory("retrieval", engine).evidence(state, question, 400)
        assert not found.abstain and found.spans and all(document[c.start : c.end] == c.text for c in found.spans)


def test_suite_records_carry_citations_at_their_offsets(engine, tmp_path):
    def system(document: str, questions: list[str]) -> list:
        return ask(document, questions, memory="retrieval", engine=engine, max_new_tokens=4)

    config = SuiteConfig(["qa2", "absent"], [2048], 2, ["retrieval"], seed=0)
    run_suite({"retrieval": system}, config, tmp_path)
    for task in ("qa2", "absent"):
        for line in (tmp_path / "retrieval" / f"{task}_2k.jsonl").read_text().splitlines():
            record = json.loads(line)
            context = make_sample(task, 2048, record["index"], seed=0).context
            assert record["abstained"] or task != "absent"  # nothing named: declined (a random reader may decline more)
            assert bool(record["citations"]) != record["abstained"]
            assert all(context[c["start"] : c["end"]] == c["text"] for c in record["citations"])


def test_real_model_answers_a_chain_from_a_memory_file_with_the_same_citations(tmp_path):
    engine = get_engine("default", "auto", 1024)
    raw = two_hop_document().replace(". The commissioners", ".\r\nThe commissioners")  # CRLF kept in offsets
    book = tmp_path / "book.txt"
    book.write_bytes(raw.encode("utf-8"))
    mem = write_memory_file(tmp_path / "book.mem", read(book, "retrieval", engine))
    questions = ["What business did Ivo Brandt's brother run?", "Where is Hugo?"]
    from_file, from_text = ask(mem, questions, engine=engine, max_new_tokens=12), ask(book, questions, engine=engine,
                                                                                    max_new_tokens=12)
    assert [a.to_dict() for a in from_file] == [a.to_dict() for a in from_text]
    text = Path(book).open(encoding="utf-8", newline="").read()
    assert_cited(text, from_file[0])
    assert [c.text for c in from_file[0].citations] == TWO_HOP
    assert "tanner" in from_file[0].text.lower() and "tannery" in from_file[0].quote.text
    assert from_file[1].abstained and from_file[1].text == NOT_IN_DOCUMENT
