"""Task generators and config validation."""

import pytest
import torch

from memgpt import MemGPTConfig, MemGPTError, memgpt_config
from memgpt.training.tasks import IGNORE, TASKS, FactRecallTask, get_task
from memgpt.training import Curriculum


@pytest.mark.parametrize("name", list(TASKS))
@pytest.mark.parametrize("segments", [3, 4, 8])
def test_tasks_are_exact_length_deterministic_and_labelled_only_at_answers(name, segments):
    task = get_task(name)
    x, y = task.batch(16, segments, 16, seed=3)
    x2, y2 = task.batch(16, segments, 16, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, task.batch(16, segments, 16, seed=4)[0])
    assert x.shape == (16, segments * 16) and x.max() < task.vocab_size and x.min() >= 0
    scored = y != IGNORE
    assert scored.any(-1).all()
    assert torch.equal(y[scored], x[scored])  # labels are the answer tokens themselves


def test_recall_answers_are_the_values_of_the_queried_keys():
    task = get_task("recall")
    x, y = task.batch(32, 6, 8, seed=0)
    for row, lab in zip(x.tolist(), y.tolist()):
        q = row.index(task.query)
        pairs = {row[i]: row[i + 1] for i in range(q) if row[i] < task.num_keys}
        asked = [(row[i - 1], row[i]) for i in range(q, len(row)) if lab[i] != IGNORE]
        assert len(asked) == 3 and all(pairs[k] == v for k, v in asked)


def test_facts_every_question_has_its_fact_exactly_once():
    task = FactRecallTask()
    x, y = task.batch(32, 8, 16, seed=0)
    for row, lab in zip(x.tolist(), y.tolist()):
        words = task.decode(row).split()
        n_q = 5 * task.num_facts
        body, tail = " ".join(words[:-n_q]), words[-n_q:]
        assert [w for w, l in zip(row, lab) if l != IGNORE] == [task.index[tail[i + 4]] for i in range(0, n_q, 5)]
        for i in range(0, n_q, 5):
            person, answer = tail[i + 2], tail[i + 4]
            assert body.count(f"{person} ") == 1
            assert f" to the {answer} ." in f" {body} ".split(person, 1)[1]


def test_tasks_refuse_what_does_not_fit():
    with pytest.raises(MemGPTError):
        get_task("facts").batch(1, 2, 16, seed=0)
    with pytest.raises(MemGPTError):
        get_task("recall").batch(1, 2, 3, seed=0)
    with pytest.raises(MemGPTError, match="unknown task"):
        get_task("nope")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(segment_size=0), "segment_size"),
        (dict(segment_size=-3), "segment_size"),
        (dict(num_mem_tokens=-1), "num_mem_tokens"),
        (dict(bptt_depth=0), "bptt_depth"),
        (dict(segment_size=10_000), "positions"),
        (dict(memory_update="mix"), "memory_update"),
        (dict(associative_heads=-1), "associative_heads"),
        (dict(associative_heads=2, associative_size=0), "associative_size"),
        (dict(associative_heads=1.5), "associative_heads"),
        (dict(associative_heads=2, associative_conv=0), "associative_conv"),
        (dict(associative_heads=1024, associative_size=4096), "too large"),
        (dict(associative_heads=2, associative_features="square"), "associative_features"),
        (dict(associative_heads=2, associative_layers=3), "associative_layers"),
        (dict(associative_heads=2, associative_layers=-1), "associative_layers"),
        (dict(associative_heads=2, associative_features="dpfp-9"), "associative_features"),
        (dict(associative_heads=2, associative_features=3), "associative_features"),
        (dict(associative_heads=64, associative_size=256, associative_features="outer"), "too large"),
    ],
)
def test_config_that_does_not_fit_is_refused(kwargs, match):
    base = memgpt_config("tiny", "gpt2").to_dict()
    base.update(kwargs)
    with pytest.raises(MemGPTError, match=match):
        MemGPTConfig(**base)


def test_curriculum_advances_on_accuracy_or_schedule_and_revisits():
    import random

    c = Curriculum([1, 2, 4], advance_at=0.9)
    assert not c.update(0.5, 10) and c.current == 1
    assert c.update(0.95, 20) and c.current == 2
    counts = [c.sample(random.Random(i)) for i in range(400)]
    assert set(counts) == {1, 2} and counts.count(2) > 250
    timed = Curriculum([1, 2], advance_at=2.0, stage_steps=100)
    assert not timed.update(0.0, 50) and timed.update(0.0, 100) and timed.is_last


def test_memory_settings_have_one_source():
    """MemGPTConfig declares the memory settings; training options, memgpt_config and from_backbone
    take every one of them, and refuse a misspelt one."""
    from dataclasses import fields

    from transformers import AutoModelForCausalLM

    from memgpt import MemGPTForCausalLM, backbone_config
    from memgpt.model.configuration_memgpt import MEMORY_DEFAULTS, MEMORY_FIELDS, memory_settings
    from memgpt.training import TrainArgs, build_model

    options = {f.name: f.default for f in fields(TrainArgs)}
    assert {name: options[name] for name in MEMORY_FIELDS} == MEMORY_DEFAULTS | {"segment_size": 8}
    chosen = dict(num_mem_tokens=3, segment_size=6, bptt_depth=2, memory_update="gated", memory_norm=False,
                  associative_heads=2, associative_size=8, associative_conv=3, associative_features="outer",
                  associative_layers=1)
    assert set(chosen) == set(MEMORY_FIELDS) and all(chosen[k] != v for k, v in MEMORY_DEFAULTS.items())
    assert memory_settings(memgpt_config("tiny", "gpt2", **chosen)) == chosen
    model = build_model(TrainArgs(task="copy", size="tiny", curriculum=[1], **chosen), get_task("copy"))
    assert memory_settings(model.config) == chosen
    backbone = AutoModelForCausalLM.from_config(backbone_config("tiny", "gpt2"))
    assert memory_settings(MemGPTForCausalLM.from_backbone(backbone, **chosen).config) == chosen
    for make in (lambda: memgpt_config("tiny", "gpt2", memory_nrom=False),
                 lambda: MemGPTForCausalLM.from_backbone(backbone, memory_nrom=False)):
        with pytest.raises(MemGPTError, match="unknown memory settings: memory_nrom"):
            make()
    with pytest.raises(MemGPTError, match="--memory-norm must be true or false"):
        TrainArgs(memory_norm="no").validate()
