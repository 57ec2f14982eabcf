"""The held-out answer split's file and its scorer (no model)."""

import importlib.util
import json
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "benchmarks"
spec = importlib.util.spec_from_file_location("heldout", ROOT / "heldout.py")
heldout = importlib.util.module_from_spec(spec)
spec.loader.exec_module(heldout)


def test_items_meet_the_split_minimums():
    items = json.loads((ROOT / "heldout_items.json").read_text())
    docs = {d["id"]: d for d in items["documents"]}
    qs = items["questions"]
    assert len(docs) >= 40 and len(qs) >= 150 and len({q["id"] for q in qs}) == len(qs)
    cats = Counter(q["category"] for q in qs)
    assert set(cats) == {"paraphrase", "subject_from_object", "two_sentence", "distractor", "unanswerable"}
    assert cats["unanswerable"] >= 0.2 * len(qs)
    assert sum(q["lang"] == "zh" for q in qs) >= 0.1 * len(qs)
    assert len({d["genre"] for d in docs.values()}) >= 8
    for q in qs:
        text = docs[q["doc"]]["text"]
        assert q["lang"] == docs[q["doc"]]["lang"]
        if q["answers"]:
            assert any(a.lower() in text.lower() or heldout.normalise(a) in heldout.normalise(text) for a in q["answers"]), q["id"]


def test_scorer_on_its_own_examples():
    assert heldout.right("It leaves at 06:50.", False, ["06:50"])
    assert heldout.right("forty-two", False, ["42"]) and heldout.right("42 crates", False, ["forty-two crates"])
    assert not heldout.right("4", False, ["42"])  # whole numbers, not digits inside others
    assert not heldout.right(heldout.ABSTAIN, True, ["Oslo"]) and heldout.right(heldout.ABSTAIN, True, [])
    assert not heldout.right("Oslo", False, [])
    assert heldout.right("北京", False, ["北京"]) and not heldout.right("上海", False, ["北京"])
    doc = "Ragnhild sold 12 baskets in Tromsø."
    assert not heldout.invented("Ragnhild", doc) and not heldout.invented("12 baskets", doc)
    assert heldout.invented("Ingrid", doc) and heldout.invented("15 baskets", doc)
    assert heldout.invented("十二个篮子", "她在市场卖了十二个篮子。") is False and heldout.invented("买了马", "她卖了篮子。")


def test_items_are_frozen():
    """The split is never edited after its first commit: a change means a new split, not this one."""
    import hashlib

    digest = hashlib.sha256((ROOT / "heldout_items.json").read_bytes()).hexdigest()
    assert digest == "848323674ad5799a562be70606ce6949b2ab36ca15a809952483a079ac568783"
