"""The summary check: invented names, numbers and topics are refused, supported paraphrases kept; the
evidence covers the whole document; citations point at the original text."""

import pytest
import torch

from memgpt.apps.evidence import select
from memgpt.apps.grounding import Vocabulary, check, names_and_numbers, unsupported_name_share

DOC = [
    "President Roosevelt signed the canal treaty with Panama in 1903.",
    "The treaty gave the United States the right to build a canal across the isthmus.",
    "Congress appropriated $40,000,000 for the purchase of the French company's rights.",
    "The army engineers began digging at Culebra the next spring.",
    "Yellow fever was fought by draining the swamps around Colon.",
]


@pytest.fixture(scope="module")
def encoder():
    from memgpt.memories.retrieval import SentenceEncoder

    return SentenceEncoder()


def verdict(encoder, sentence):
    vectors = encoder.encode(DOC)
    return check(sentence, encoder.encode([sentence])[0], DOC, vectors, Vocabulary.of(DOC))


@pytest.mark.parametrize("sentence", [
    "Roosevelt signed a treaty with Panama in 1903 to build a canal.",
    "Congress paid $40000000 for the rights of the French company.",
    "Army engineers started digging at Culebra.",
])
def test_supported_paraphrases_are_kept_with_citations(encoder, sentence):
    v = verdict(encoder, sentence)
    assert v.supported, v
    assert v.citations and all(0 <= i < len(DOC) for i in v.citations)


@pytest.mark.parametrize("sentence, invented", [
    ("President Roosevelt signed the canal treaty with Nicaragua in 1903.", "Nicaragua"),
    ("Roosevelt signed the canal treaty with Panama in 1907.", "1907"),
    ("Congress appropriated $55,000,000 for the French company's rights.", "55,000,000"),
    ("His three sons, Edward, Milo and Jasper, dug the canal.", "Edward"),
])
def test_invented_names_and_numbers_are_refused(encoder, sentence, invented):
    v = verdict(encoder, sentence)
    assert not v.supported and invented in v.unsupported_names


@pytest.mark.parametrize("sentence", [
    "The nation's economy has become increasingly reliant on foreign aid.",
    "The law requires the government to take an active role in addressing climate change.",
    "The United States has implemented a ban on animal agriculture.",
])
def test_invented_topics_are_refused(encoder, sentence):
    assert not verdict(encoder, sentence).supported


def test_benchmark_share_counts_what_the_check_refuses():
    vocab = Vocabulary.of(DOC)
    assert names_and_numbers("In 1903 Roosevelt met Hay.") == ["1903", "Roosevelt", "Hay"]
    assert unsupported_name_share(["In 1903 Roosevelt met Hay."], vocab) == (1, 3)


def test_evidence_covers_every_part_in_document_order_within_budget():
    torch.manual_seed(0)
    texts = [f"Sentence number {i} talks about topic {i // 25} in some detail here." for i in range(100)]
    topics = torch.nn.functional.normalize(torch.randn(4, 16), dim=-1)
    vectors = torch.nn.functional.normalize(topics[torch.arange(100) // 25] + 0.3 * torch.randn(100, 16), dim=-1)
    ids = select(texts, vectors, budget=8 * 16, count_tokens=lambda t: 16)
    assert ids == sorted(ids) and len(ids) <= 8
    assert {i // 25 for i in ids} == {0, 1, 2, 3}  # every quarter of the document is quoted
    assert len(set(ids)) == len(ids)


# -- the check's own gaps: each rule has a case that only it decides (hand-made unit vectors) ------------
WORDS = ["Treaty signed with Panama for the canal.", "Engineers dug through the mountain at Culebra.",
         "Doctors drained the swamps against fever.", "Ships carried cement across the ocean."]


def unit(*weights: float) -> torch.Tensor:
    v = torch.zeros(8)
    v[: len(weights)] = torch.tensor(weights)
    return torch.nn.functional.normalize(v, dim=0)


DOC_VECTORS = torch.eye(8)[:4]  # document sentence k points along axis k


def test_a_sentence_far_from_every_document_sentence_cites_none():
    """Its words are all in the document, but no sentence is near it in meaning (similarity floor)."""
    v = check("Engineers dug through the mountain.", unit(0, 0, 0, 0, 0, 0, 1), WORDS, DOC_VECTORS, Vocabulary.of(WORDS))
    assert not v.supported and v.citations == []


def test_a_near_sentence_whose_words_are_elsewhere_is_refused():
    """Near sentence 0 in meaning, but its content words are not in it (coverage)."""
    v = check("Doctors drained swamps against fever.", unit(1), WORDS, DOC_VECTORS, Vocabulary.of(WORDS))
    assert v.citations == [0] and v.coverage < 0.6 and not v.supported


def test_a_sentence_without_content_words_is_covered():
    v = check("It was all of them.", unit(1), WORDS, DOC_VECTORS, Vocabulary.of(WORDS))
    assert v.coverage == 1.0 and v.supported and v.citations == [0]


def test_a_sentence_drawing_on_three_document_sentences_cites_all_three():
    """Its words come from sentences 0, 1 and 2, each about as near: all three are needed."""
    v = check("Treaty signed, engineers dug, doctors drained swamps.", unit(1, 1, 1, 0.2), WORDS, DOC_VECTORS,
              Vocabulary.of(WORDS))
    assert v.citations == [0, 1, 2] and v.supported


def test_a_phrase_said_twice_is_a_loop():
    from memgpt.apps.grounding import repeats

    assert repeats("The canal will be built and the canal will be built.")
    assert not repeats("The army engineers will build the canal across Panama.")
