"""Long-context suite: generators (deterministic, answers where they belong, disjoint splits), the
metric, and the runner end to end with a rule-based reader."""

import json
import re

import pytest

from memgpt.errors import MemGPTError
from memgpt.eval.suite import SuiteConfig, run_suite, table
from memgpt.eval.metrics import first_integer, label_correct, normalize, score
from memgpt.eval.longcontext import LONG_TASKS, make_sample, parse_length
from memgpt.eval.longcontext.babi import EXCLUDE, NAMES, STORIES
from memgpt.eval.longcontext.haystack import documents, split_of
from memgpt.eval.longcontext.passkey import needle

QA = list(STORIES)


@pytest.mark.parametrize("task", LONG_TASKS)
def test_same_seed_same_sample_other_seed_other_sample(task):
    a, b = make_sample(task, 1024, 3, seed=7), make_sample(task, 1024, 3, seed=7)
    assert a == b
    c = make_sample(task, 1024, 3, seed=8)
    assert (c.context, c.answer) != (a.context, a.answer)
    assert make_sample(task, 1024, 4, seed=7).context != a.context


@pytest.mark.parametrize("task", LONG_TASKS)
@pytest.mark.parametrize("length", [0, 1024, 4096])
def test_length_in_tokens_and_facts_in_order(task, length):
    for i in range(3):
        s = make_sample(task, length, i, seed=1)
        assert s.context_tokens <= max(length, 80)
        if length:
            assert s.context_tokens >= 0.9 * length
        at = -1
        for fact in s.facts:  # the facts, in story order
            at = s.context.find(fact, at + 1)
            assert at >= 0
        for fact in s.facts:  # as often as the story tells them, no more
            assert s.context.count(fact) == s.facts.count(fact)


@pytest.mark.parametrize("task", QA)
def test_answer_words_come_only_from_the_facts(task):
    for i in range(5):
        s = make_sample(task, 2048, i, seed=2)
        assert s.answer.lower() in s.labels
        assert s.documents and all(split_of(d) == "test" for d in s.documents)
        haystack = s.context
        for fact in s.facts:
            haystack = haystack.replace(fact, " ")
        assert not EXCLUDE.search(haystack)  # no name, place or object outside the facts
        assert any(re.search(rf"\b{s.answer}\b", f) for f in s.facts)


@pytest.mark.parametrize("task", ["passkey", "passkey-prose"])
def test_passkey_is_in_the_needle_only_once_at_each_position(task):
    positions = []
    for i in range(6):
        s = make_sample(task, 2048, i, seed=3)
        key = s.answer
        assert 1 <= int(key) <= 50_000
        assert s.context.count(needle(int(key))) == 1
        assert len(re.findall(rf"(?<!\d){key}(?!\d)", s.context)) == 2  # twice, both inside the needle
        positions.append(s.extra["position"])
        where = s.context.find(needle(int(key))) / len(s.context)
        assert {"start": where < 0.2, "middle": 0.3 < where < 0.7, "end": where > 0.8}[s.extra["position"]]
    assert positions == ["start", "middle", "end"] * 2


def test_train_and_test_haystacks_are_disjoint_documents():
    train, test = {d.name for d in documents("train")}, {d.name for d in documents("test")}
    assert train and test and not train & test
    assert 0.1 < len(test) / (len(train) + len(test)) < 0.3
    test_sentences = {s for d in documents("test") for s in d.sentences if len(s) > 80}
    for task in ("qa1", "passkey-prose"):
        s = make_sample(task, 4096, 0, seed=0, split="train")
        assert all(split_of(d) == "train" for d in s.documents)
        assert not any(sent in s.context for sent in test_sentences)


def test_every_story_is_answerable_and_names_vary():
    seen_names = set()
    for task in QA:
        for i in range(40):
            s = make_sample(task, 0, i, seed=5, measure=False)
            seen_names |= {n for n in NAMES if n in s.context}
            assert s.question.endswith("?") and s.prompt.startswith(s.question)
    assert len(seen_names) >= 12


def test_bad_lengths_and_tasks():
    assert parse_length("16k") == 16384 and parse_length("0k") == 0 and parse_length("3000") == 3000
    for bad in ("k", "-1k", "4m", ""):
        with pytest.raises(MemGPTError):
            parse_length(bad)
    with pytest.raises(MemGPTError, match="unknown long-context task"):
        make_sample("qa9", 0, 0)
    with pytest.raises(MemGPTError, match="usable tokens"):
        make_sample("qa1", 10_000_000, 0)


def test_metric_normalisation():
    labels = ["kitchen", "garden", "bathroom"]
    assert normalize("  The KITCHEN!\n") == "the kitchen"
    assert label_correct("Kitchen.", "kitchen", labels)
    assert label_correct("She is in the kitchen", "kitchen", labels)
    assert not label_correct("kitchen or garden", "kitchen", labels)  # another candidate: wrong
    assert not label_correct("kitchens", "kitchen", labels)  # whole words only
    assert not label_correct("", "kitchen", labels)
    assert label_correct("Mary gave the cake to Fred.", "mary", ["mary", "fred", "cake"], "Who gave the cake to Fred?")
    assert not label_correct("Fred", "mary", ["mary", "fred", "cake"], "Who gave the cake to Fred?")
    assert label_correct("garden, kitchen", "kitchen,garden", labels)
    assert first_integer("The pass key is 12,345.") == 12345 and first_integer("no digits") is None
    assert score("passkey", "It is 4211 and 77", "4211", [])
    assert not score("passkey", "77, then 4211", "4211", [])


def rule_reader(document: str, questions: list[str]) -> list[str]:
    """A trivial system that reads by rules: the pass key, or the last place a person went to."""
    out = []
    for q in questions:
        if "pass key" in q:
            m = re.search(r"The pass key is (\d+)\.", document)
            out.append(m.group(1) if m else "")
        else:
            who = re.match(r"Where is (\w+)\?", q).group(1)
            places = re.findall(rf"{who} [\w ]+? the (\w+)\.", document)
            out.append(places[-1] if places else "nowhere")
    return out


def blind(document: str, questions: list[str]) -> list[str]:
    return ["kitchen 1" for _ in questions]


def test_suite_end_to_end_with_rule_reader(tmp_path):
    config = SuiteConfig(["passkey", "qa1"], [0, 1024, 4096], 4, ["rules", "blind"], seed=0,
                         limits={"blind": 1024})
    results = run_suite({"rules": rule_reader, "blind": blind}, config, tmp_path)
    assert all(v == 1.0 for v in results["accuracy"]["rules"]["passkey"].values())
    assert all(v == 1.0 for v in results["accuracy"]["rules"]["qa1"].values())
    assert results["accuracy"]["blind"]["qa1"]["4k"] is None  # beyond its limit
    assert results["accuracy"]["blind"]["passkey"]["1k"] == 0.0
    records = [json.loads(x) for x in (tmp_path / "rules" / "qa1_4k.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(r["correct"] and r["prediction"] == r["answer"] for r in records)
    settings = json.loads((tmp_path / "rules" / "qa1_4k.json").read_text())
    assert settings["seed"] == 0 and settings["samples"] == 4 and settings["accuracy"] == 1.0
    assert (tmp_path / "heatmap.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "results.json").read_text())["accuracy"] == results["accuracy"]
    assert "qa1" in table(results) and " -" in table(results)
    again = run_suite({"rules": rule_reader, "blind": blind}, config, tmp_path / "again")
    strip = [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in
             (tmp_path / "again" / "rules" / "qa1_4k.jsonl").read_text().splitlines()]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in records]  # same seed, same run
    assert again["accuracy"] == results["accuracy"]


def test_suite_config_errors():
    with pytest.raises(MemGPTError, match="no system"):
        run_suite({}, SuiteConfig(["qa1"], [0], 1, ["latent"]))
    with pytest.raises(MemGPTError, match="--samples"):
        SuiteConfig(["qa1"], [0], 0, ["x"]).validate()
    with pytest.raises(MemGPTError, match="--limit"):
        SuiteConfig(["qa1"], [0], 1, ["x"], limits={"y": 5}).validate()
