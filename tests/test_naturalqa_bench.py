"""The natural-QA benchmark (benchmarks/naturalqa.py): the frozen item file is well-formed, the scorer
follows its rules on hand-made predictions, and the haystack documents hold the facts where they should."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))
import naturalqa as nq  # noqa: E402

FROZEN_SHA256 = "89ee5a725ae2b16de070546f63b8c2e7bda1e3d5bf814e2e296f75ee0b7bd123"


@pytest.fixture(scope="module")
def items() -> dict:
    return nq.load_items()


def test_items_frozen():
    assert nq.sha256(nq.ITEMS) == FROZEN_SHA256, "naturalqa_items.json is frozen: do not change its items"


def test_item_counts_and_splits(items):
    minimum = {"one_hop": 80, "two_hop": 30, "absent_attribute": 30, "absent_entity": 10, "tiny": 20}
    ids = [x["id"] for c in nq.CATEGORIES for x in items[c]]
    assert len(ids) == len(set(ids))
    for category, n in minimum.items():
        xs = items[category]
        assert len(xs) >= n, category
        assert {x["split"] for x in xs} == {"dev", "test"}, category  # both splits, nothing else
        assert all(x["question"].strip().endswith("?") and x["type"] for x in xs)


def test_answers_are_in_their_facts(items):
    for x in items["one_hop"]:
        assert x["answer"] in x["fact"], x["id"]
    for x in items["two_hop"]:
        assert len(x["facts"]) == 2 and x["answer"] in x["facts"][1], x["id"]
        assert x["answer"] not in x["facts"][0], x["id"]  # the second hop is needed
    for x in items["tiny"]:
        assert 1 <= len(re.findall(r"[.!?](?:\s|$)", x["document"])) <= 5, x["id"]
        assert x["answer"] is None or x["answer"] in x["document"], x["id"]
    assert any(x["answer"] is None for x in items["tiny"])


def test_absent_entities_named_nowhere(items):
    texts = [s for c in nq.CATEGORIES for x in items[c] for s in nq.fact_sentences(x) + [x.get("document", "")]]
    texts += [x["question"] for c in nq.CATEGORIES if c != "absent_entity" for x in items[c]]
    for x in items["absent_entity"]:
        names = re.findall(r"(?<=\w )[A-Z][a-z]+", x["question"])
        assert names, x["id"]
        for name in names:
            assert not any(re.search(rf"\b{name}\b", t) for t in texts), (x["id"], name)


def test_numbers_compared_by_value():
    assert nq.contains("Tobias taught for 31 winters.", "thirty-one")
    assert nq.contains("one hundred and seventeen sheep", "117")
    assert nq.contains("It cost $1,200.", "$1200")
    assert nq.contains("on the 14th of July", "fourteenth of July")
    assert nq.contains("7.5 pounds", "7.50 pounds")
    assert not nq.contains("forty quilts", "forty-two")
    assert not nq.contains("42 quilts", "forty")
    assert not nq.contains("Veldhavenish", "Veldhaven")  # whole words only


def test_verdict_rules(monkeypatch):
    gold, aliases = "forty-two", ["42"]
    right = nq.verdict("one_hop", "She sewed 42 quilts.", gold, aliases)
    assert right == {"correct": True, "abstained": False, "answerable": True, "false_abstention": False}
    assert not nq.verdict("one_hop", "She sewed 24 quilts.", gold, aliases)["correct"]
    abstained = nq.verdict("two_hop", "The document does not say.", "prize marrows", [])
    assert abstained["abstained"] and abstained["false_abstention"] and not abstained["correct"]
    assert nq.verdict("absent_attribute", "the document does not say", None, [])["correct"]
    assert not nq.verdict("absent_entity", "It was built in Leith.", None, [])["correct"]
    tiny_none = nq.verdict("tiny", "Agnetha's husband is Olaf.", None, [])
    assert not tiny_none["answerable"] and not tiny_none["correct"]
    # an answer that quotes the gold inside an abstention is still an abstention when it is the phrase only
    assert not nq.verdict("one_hop", "The document does not say. 42", gold, aliases)["abstained"]


def test_names_and_numbers_not_in_document():
    vocab = nq.DocumentVocabulary("The innkeeper, a widow named Greta Solberg, charged nine pennies a night in 1853.")
    assert vocab.unsupported("Greta Solberg was 18 years old.") == ["#18"]
    assert vocab.unsupported("Greta charged 9 pennies in 1853.") == []
    assert vocab.unsupported("Greta Olsen of Bergen.") == ["Olsen", "Bergen"]
    assert vocab.unsupported("She charged 12 pennies. Red wine, 12.") == ["#12"]  # common words open sentences
    assert vocab.unsupported("Hefebeel.") == ["Hefebeel"]  # a name, even at the start
    assert vocab.unsupported("The document does not say.") == []


def test_haystack_document_places_the_facts(items):
    """A real 4k dev document (default tokenizer, test-split speeches): every fact in it, two-hop first
    sentences in the first third and second sentences in the last, within the length, same seed same text."""
    from memgpt.eval.longcontext.haystack import count_tokens

    groups = nq.groups_of(items, "dev", count_tokens)
    assert len(groups) >= 2  # a split's facts do not fit one 4k document
    assert sorted(x["id"] for g in groups for x in g["one_hop"]) == sorted(x["id"] for x in items["one_hop"] if x["split"] == "dev")
    exclude = nq.rare_names(items)
    doc = nq.haystack_document(groups[0], "dev", 4096, 0, exclude)
    assert doc["tokens"] <= 4096 and doc["split"] == "dev" and doc["length"] == "4k"
    text = doc["text"]
    for q in doc["questions"]:
        if q["category"] == "two_hop":
            first, second = q["positions"]
            assert first <= 0.4 and second >= 0.6, q
    for x in groups[0]["one_hop"] + groups[0]["two_hop"] + groups[0]["absent_attribute"]:
        assert all(s in text for s in nq.fact_sentences(x))
    for x in items["absent_entity"]:
        assert not any(re.search(rf"\b{n}\b", text) for n in re.findall(r"(?<=\w )[A-Z][a-z]+", x["question"]))
    assert nq.haystack_document(groups[0], "dev", 4096, 0, exclude)["text"] == text


def test_worker_resumes_from_its_cache(tmp_path):
    """The worker on the real default model: one tiny document through the `new` path, one cached line;
    a second run answers nothing again."""
    doc = {"doc": "tiny-x", "text": "Anna lives in Oslo. Bob lives in Rome.",
           "questions": [{"qid": "x1", "question": "Where does Anna live?"}]}
    jobs, cache = tmp_path / "jobs.json", tmp_path / "new.jsonl"
    jobs.write_text(json.dumps([doc]))
    nq.worker("new", jobs, cache, 16, "test")
    lines = cache.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["key"] == "new|tiny-x|x1" and json.loads(lines[0])["answer"]
    nq.worker("new", jobs, cache, 16, "test")
    assert cache.read_text().splitlines() == lines
