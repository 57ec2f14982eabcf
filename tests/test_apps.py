"""Applications over memory kinds, on a tiny random backbone with the real tokenizer (fast):
reading, the state files of every kind, the window baselines, bounded notes, and bad input."""

import sys

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from memgpt.apps import ask, generate, load_state, make_memory, read, summarize, write_memory_file
from memgpt.memories.base import Answer
from memgpt.model.engine import Engine
from memgpt.apps.reading import open_document
from memgpt.memories.text import NOTES_BUDGET, notes_of
from memgpt.errors import MemGPTError
from memgpt.model.pretrained import resolve_backbone

KINDS = ["text", "retrieval", "latent", "window-first", "window-last", "none"]


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_backbone("default"))


def tiny_engine(tokenizer, name: str = "tiny-llama", seed: int = 0) -> Engine:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096)
    backbone = LlamaForCausalLM(config).eval()
    backbone.config.name_or_path = name
    return Engine(name=name, backbone=backbone, tokenizer=tokenizer, window=512)


@pytest.fixture(scope="module")
def engine(tokenizer):
    return tiny_engine(tokenizer)


DOC = " ".join(f"Sentence number {i} says that the {['cat', 'dog', 'owl'][i % 3]} sat on mat {i}." for i in range(150))


@pytest.mark.parametrize("kind", KINDS)
def test_read_save_load_answer_identically(engine, tmp_path, kind):
    state = read(DOC, kind, engine)
    assert state.kind == kind and state.tokens_read == len(engine.tokenizer(DOC, add_special_tokens=False)["input_ids"])
    path = write_memory_file(tmp_path / "doc.mem", state)
    loaded = load_state(path, engine)
    assert loaded.tokens_read == state.tokens_read and loaded.info == state.info
    assert loaded.tensors.keys() == state.tensors.keys()
    for key in state.tensors:
        assert torch.equal(loaded.tensors[key], state.tensors[key])
    memory = make_memory(kind, engine)
    question = ["Where did the owl sit?"]
    answers = memory.answer(state, question, 4)
    assert all(isinstance(a, Answer) for a in answers) and len(answers) == 1  # every kind answers with an Answer
    assert memory.answer(loaded, question, 4) == answers
    assert ask(path, question[0], engine=engine, max_new_tokens=4) == answers[0]


EXPECTED_SOURCE = {"retrieval": "retrieved", "window-first": "window", "window-last": "window", "none": "window",
                   "text": "notes", "latent": "latent"}


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_answers_from_what_it_holds_and_says_so(engine, kind):
    """Without the index a kind answers from its own evidence; notes and vectors are no document text, so
    their answers quote nothing. With the index such a kind's evidence is the index search's, and says so."""
    state = read(DOC, kind, engine)
    question = "Where did the owl sit?"
    off = ask(state, question, engine=engine, max_new_tokens=4)
    assert off.evidence_source == EXPECTED_SOURCE[kind] and off.to_dict()["evidence_source"] == off.evidence_source
    if kind in ("text", "latent"):
        assert off.quote is None and off.citations == []
    on = ask(state, question, engine=engine, max_new_tokens=4, use_index=True)
    assert on.evidence_source == ("index" if kind in ("text", "latent") else off.evidence_source)
    for answer in (off, on):
        for span in [answer.quote] * (answer.quote is not None) + answer.citations:  # document sentences, verbatim
            assert DOC[span.start : span.end] == span.text
    if kind == "window-first":  # its window's sentences only: none from past it
        window_end = len(engine.tokenizer.decode(state.tensors["ids"].tolist()))
        assert all(c.end <= window_end for c in off.citations)


def test_the_index_search_asks_with_the_questions_terms_only():
    from memgpt.io.spans import DocumentIndex, Span
    from memgpt.memories.index_search import search

    texts = ["The ferry left at dawn.", "Gulls followed the ferry.", "The harbour master slept.", "Rain fell."]
    index, start = DocumentIndex(), 0
    for t in texts:
        index.add([Span(start, start + len(t), t)])
        start += len(t) + 1
    found = search(index, "When did the ferry leave?", {})
    assert [s.text for s in found] == texts[:2]  # by terms, in document order
    assert search(index, "Who painted the mural?", {}) == []  # no term shared: nothing


def test_use_index_must_be_a_bool(engine):
    with pytest.raises(MemGPTError, match="use_index"):
        ask(DOC, "Where did the owl sit?", engine=engine, use_index="yes")


def test_window_baselines_keep_first_last_and_last_segment(engine):
    ids = engine.tokenizer(DOC, add_special_tokens=False)["input_ids"]
    first, last, none = (read(DOC, k, engine) for k in ("window-first", "window-last", "none"))
    cap = make_memory("window-first", engine).capacity
    assert first.tensors["ids"].tolist() == ids[:cap]
    assert last.tensors["ids"].tolist() == ids[-cap:]
    seg = make_memory("none", engine).segment_tokens
    assert none.tensors["ids"].tolist() == ids[(len(ids) - 1) // seg * seg :]


def test_text_notes_stay_bounded_by_the_models_rewrite(engine):
    """Notes past their budget are rewritten by the model (to at most half the budget), not merely cut."""
    memory = make_memory("text", engine)
    state = memory.new_state()
    ids = engine.tokenizer(DOC * 3, add_special_tokens=False)["input_ids"]
    step = memory.segment_tokens
    rewrites = []
    for start in range(0, len(ids), step):
        before = notes_of(state)
        notes = notes_of(memory.update(state, ids[start : start + step]))
        assert engine.count_tokens(notes) <= NOTES_BUDGET
        if not notes.startswith(before):  # not the notes plus new facts: rewritten
            rewrites.append(engine.count_tokens(notes))
    assert rewrites and max(rewrites) <= 0.75 * NOTES_BUDGET, rewrites


def test_short_document_is_read_directly_and_long_one_into_memory(engine):
    assert open_document("A short note.", "ask", None, engine, False, 1 << 20).kind == "direct"
    assert open_document(DOC, "ask", None, engine, False, 1 << 20).kind == "retrieval"


def test_retrieval_finds_the_needle(engine):
    filler = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
    doc = filler * 40 + "The pass key is 7261. Remember it. 7261 is the pass key. " + filler * 40
    memory = make_memory("retrieval", engine)
    context = memory.context(read(doc, "retrieval", engine), "What is the pass key?", 400)
    assert "7261" in context and engine.count_tokens(context) <= 400


def test_retrieval_keeps_the_latest_statement_of_an_updated_fact(engine):
    filler = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
    treaty = ("The commissioners failed to agree within six months after the exchange of the printed cases, so the "
              "briefs were presented at the Hague before the arbitral tribunal of the Permanent Court. ")
    doc = (filler * 30 + "Mary went to the kitchen. " + filler * 30 + treaty * 2 + "Mary journeyed to the garden. "
           + treaty * 2 + filler * 30 + "John went back to the office. " + filler * 30)  # the update's chunk: mostly treaty
    context = make_memory("retrieval", engine).context(read(doc, "retrieval", engine), "Where is Mary?", 400)
    assert "Mary journeyed to the garden." in context and "kitchen" not in context


def test_sentences_end_before_closing_quotes_and_brackets():
    from memgpt.io.spans import SentenceSplitter

    splitter = SentenceSplitter()
    text = 'Oscar ran. He said: "We decided." Oscar moved (twice). Then he left.\n\n我们走了。他来了。'
    parts = [s.text for s in splitter.feed(text) + splitter.close()]
    assert parts == ["Oscar ran.", 'He said: "We decided."', "Oscar moved (twice).", "Then he left.", "我们走了。", "他来了。"]


@pytest.mark.parametrize("text,sentences", [
    ("The report was written by J. D. Unwin of Leeds. It was short.", 2),  # initials do not end a sentence
    ("Mr. Hay paid $3.50 at 5 p.m. on Monday. It rained.", 2),
    ("The U.S. Navy grew in 1904. Congress paid for it.", 2),
])
def test_sentence_segmenter_knows_abbreviations(text, sentences):
    from memgpt.io.spans import SentenceSplitter

    splitter = SentenceSplitter()
    assert len(splitter.feed(text) + splitter.close()) == sentences


def test_memory_files_are_refused_for_another_backbone_or_kind(engine, tokenizer, tmp_path):
    path = write_memory_file(tmp_path / "doc.mem", read(DOC, "retrieval", engine))
    other = tiny_engine(tokenizer, name="another-model")
    with pytest.raises(MemGPTError, match="made with backbone"):
        ask(path, "Who?", engine=other)
    with pytest.raises(MemGPTError, match="holds a 'retrieval' memory"):
        ask(path, "Who?", memory="text", engine=engine)
    cut = tmp_path / "cut.mem"
    cut.write_bytes(path.read_bytes()[:200])
    with pytest.raises(MemGPTError, match="truncated or corrupt"):
        ask(cut, "Who?", engine=engine)


def test_latent_file_from_another_memory_is_refused(engine, tokenizer, tmp_path):
    path = write_memory_file(tmp_path / "doc.mem", read(DOC, "latent", engine))
    other = tiny_engine(tokenizer, seed=1)  # same name, other weights: other memory fingerprint
    with pytest.raises(MemGPTError, match="another latent memory"):
        ask(path, "Who?", engine=other)


def test_write_refuses_to_overwrite_a_user_file(engine, tmp_path):
    precious = tmp_path / "notes.mem"
    precious.write_bytes(b"my own notes, not a memory file")
    with pytest.raises(MemGPTError, match="refusing to overwrite"):
        write_memory_file(precious, read(DOC, "none", engine))
    assert precious.read_bytes() == b"my own notes, not a memory file"
    with pytest.raises(MemGPTError, match="should end in .mem"):
        write_memory_file(tmp_path / "doc.txt", read(DOC, "none", engine))


@pytest.mark.parametrize(
    "call,needle",
    [
        (lambda e: ask("", "Who?", engine=e), "empty"),
        (lambda e: ask("   \n ", "Who?", engine=e), "empty"),
        (lambda e: ask("text\x00bin", "Who?", engine=e), "NUL"),
        (lambda e: ask("bad \ud800 text", "Who?", engine=e), "not valid Unicode"),
        (lambda e: ask(DOC, "  ", engine=e), "question is empty"),
        (lambda e: ask(DOC, [], engine=e), "no question"),
        (lambda e: ask(DOC, "Who?", engine=e, max_new_tokens=0), "max_new_tokens"),
        (lambda e: ask(DOC, "Who?", memory="magic", engine=e), "unknown memory kind"),
        (lambda e: ask(DOC, "Who?", engine=e, max_bytes=100), "input limit"),
        (lambda e: ask(DOC, "\ud800", engine=e), "not valid Unicode"),  # found by the fuzz
        (lambda e: generate("\x00", 1, memory="text", engine=e, temperature=1e308, top_p=0.5), "temperature"),
        (lambda e: summarize(DOC, max_length=0, engine=e), "max_length"),
        (lambda e: summarize(DOC, max_length="50", engine=e), "max_length"),
    ],
)
def test_bad_input_is_a_clear_error(engine, call, needle):
    with pytest.raises(MemGPTError, match=needle):
        call(engine)


def test_bad_files(engine, tmp_path):
    (tmp_path / "bin.txt").write_bytes(b"\x00\x01\x02")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9")
    cases = {tmp_path / "missing.txt": "does not exist", tmp_path: "directory", tmp_path / "bin.txt": "binary",
             tmp_path / "latin1.txt": "not valid UTF-8"}
    for path, needle in cases.items():
        with pytest.raises(MemGPTError, match=needle):
            summarize(path, engine=engine)


def test_huge_file_is_refused_before_reading(engine, tmp_path):
    huge = tmp_path / "huge.txt"
    with open(huge, "wb") as f:  # 1 GiB, sparse: costs no disk
        f.seek((1 << 30) - 1)
        f.write(b"a")
    with pytest.raises(MemGPTError, match="over the 64 MiB input limit"):
        summarize(huge, engine=engine)


@pytest.mark.parametrize(
    "questions,needle",
    [("  ", "question is empty"), ("why " * 200, "longer than 128 tokens"), (5, "string or a list"),
     (["Who?", 3], "must be text"), ([], "no question"), ("bad \ud800", "not valid Unicode")],
)
def test_bad_question_is_refused_before_the_document_is_read(engine, tmp_path, monkeypatch, questions, needle):
    # the document is a file that does not exist, and reading is a trap: the question must fail first
    def trap(*args, **kwargs):
        raise AssertionError("the document was read before the question was checked")

    monkeypatch.setattr(sys.modules["memgpt.apps.ask"], "open_document", trap)
    with pytest.raises(MemGPTError, match=needle):
        ask(tmp_path / "missing.txt", questions, engine=engine)
