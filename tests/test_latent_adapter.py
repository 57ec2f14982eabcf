"""LoRA training of a latent memory into a pretrained backbone: the task's token layout, adapter
checkpoints (only trained parameters), exact resume, and merging an adapter into a backbone copy."""

import json
import random

import pytest
import torch
from transformers import AutoModelForCausalLM

from memgpt.model.adapters import add_lora, adapter_tensors, load_latent_model, question_ids, read_adapter, save_adapter
from memgpt.errors import MemGPTError
from memgpt.model.modeling_memgpt import MemGPTForCausalLM
from memgpt.training.tasks import IGNORE, get_task
from memgpt.training import TrainArgs, Trainer


def test_task_layout_document_segments_then_question():
    task = get_task("lc-mix")
    tok = task.tokenizer
    for seed in range(4):
        x, y = task.batch(2, 3, 128, seed=seed)
        assert x.shape[1] <= 2 * 128 + 96 and x.shape == y.shape
        for ids, labels in zip(x.tolist(), y.tolist()):
            assert all(v == IGNORE for v in labels[: 2 * 128])  # nothing labelled in the document
            answer = [t for t, v in zip(ids, labels) if v != IGNORE]
            assert answer[-1] == tok.eos_token_id and tok.decode(answer[:-1]).strip()
            start = ids[2 * 128 :][: len(question_ids(tok, "x"))]
            assert tok.decode(start).startswith("<|im_start|>system")
    assert task.batch(2, 3, 128, seed=1)[0].tolist() == task.batch(2, 3, 128, seed=1)[0].tolist()
    with pytest.raises(MemGPTError, match=">= 2 segments"):
        task.batch(1, 1, 128, seed=0)


def lora_args(tmp_path, backbone, **kw):
    base = dict(task="lc-passkey", out_dir=str(tmp_path / "run"), backbone=str(backbone), lora_rank=2, lora_alpha=4.0,
                num_mem_tokens=2, segment_size=128, curriculum=[2], batch_size=2, max_steps=4, eval_every=2,
                eval_size=2, checkpoint_every=2, warmup_steps=1, lr=1e-2, progress=False, bf16=True)
    base.update(kw)
    return TrainArgs(**base)


def test_lora_training_checkpoints_only_the_adapter_and_resumes_exactly(tmp_path, tiny_backbone):
    full = Trainer(lora_args(tmp_path / "a", tiny_backbone))
    frozen = {n: p.clone() for n, p in full.model.named_parameters() if not p.requires_grad}
    full.train()
    assert all(torch.equal(p, frozen[n]) for n, p in full.model.named_parameters() if not p.requires_grad)
    ckpt = tmp_path / "a" / "run" / "checkpoint-000004"
    assert (ckpt / "adapter.safetensors").is_file() and not (ckpt / "model.safetensors").exists()
    tensors, meta = read_adapter(ckpt / "adapter.safetensors")
    assert set(tensors) == set(adapter_tensors(full.model)) and meta["lora_rank"] == 2
    assert any("lora_A" in n for n in tensors) and "memory_init" in tensors

    part = Trainer(lora_args(tmp_path / "b", tiny_backbone))
    part.args.max_steps = 2
    part.train()
    resumed = Trainer(lora_args(tmp_path / "b", tiny_backbone), resume=True)
    assert resumed.step == 2
    resumed.train()
    log_a = [json.loads(x) for x in (tmp_path / "a/run/log.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (tmp_path / "b/run/log.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in log_a] == pytest.approx([r["loss"] for r in log_b], rel=1e-4)
    with pytest.raises(MemGPTError, match="lora_rank"):
        Trainer(lora_args(tmp_path / "b", tiny_backbone, lora_rank=4), resume=True)


# a gated memory's gate and an associative memory's projections are part of the adapter
@pytest.mark.parametrize("memory", [dict(memory_update="replace"), dict(memory_update="gated"),
                                    dict(associative_heads=2, associative_size=8)])
def test_merged_adapter_equals_the_lora_model_and_leaves_the_backbone_alone(tmp_path, tiny_backbone, memory):
    model = MemGPTForCausalLM.from_backbone(str(tiny_backbone), num_mem_tokens=2, segment_size=16, **memory)
    add_lora(model, rank=2, alpha=4.0)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(len(n))) * 0.05)
    path = tmp_path / "a.safetensors"
    save_adapter(path, model, 2, 4.0, {"note": "test"})
    assert path.stat().st_size < 200_000
    fresh = AutoModelForCausalLM.from_pretrained(tiny_backbone)
    before = {n: p.clone() for n, p in fresh.named_parameters()}
    merged = load_latent_model(fresh, path)
    assert all(torch.equal(p, before[n]) for n, p in fresh.named_parameters())  # shared backbone untouched
    ids = torch.tensor([random.Random(0).choices(range(1000), k=40)])
    with torch.no_grad():
        a, b = model.eval()(ids).logits, merged(ids).logits
    torch.testing.assert_close(a, b, atol=2e-2, rtol=1e-2)  # LoRA stored in bf16
    assert load_latent_model(fresh, tmp_path / "missing.safetensors") is None
    path.write_bytes(b"not an adapter")
    with pytest.raises(MemGPTError, match="not a readable adapter"):
        load_latent_model(fresh, path)


def test_lora_needs_a_backbone(tmp_path):
    with pytest.raises(MemGPTError, match="needs --backbone"):
        Trainer(TrainArgs(task="copy", out_dir=str(tmp_path), lora_rank=4))
