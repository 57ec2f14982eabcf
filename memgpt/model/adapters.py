"""Trained latent memories for pretrained backbones: LoRA (via `peft`) + the memory parameters, saved
as one small safetensors file ("adapter") with its settings in the header.

    model = load_latent_model(backbone, path)  # an adapter trained by `memgpt train`, or None
    ids = question_ids(tokenizer, "Where is Mary?")   # the question as a one-turn chat

`load_latent_model` merges LoRA into a *copy* of the backbone (W + alpha/r * B @ A), so the shared
backbone other memory kinds use is left untouched and inference needs no `peft`.

How the adapter reads (the format it was trained on, `memgpt.training.tasks.latent_train`): the document's
tokens (no BOS) in segments of `segment_size`, each folded into memory by `memory_step`; then the
question as a one-turn chat (`question_ids`) in a fresh segment after the memory, answered greedily.
The shipped adapter was trained with "Answer with one word." after each bAbI question; the suite has
asked the bare question since (the 135M reader does better without the hint).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .configuration_memgpt import MEMORY_FIELDS, memory_settings
from ..errors import MemGPTError
from .modeling_memgpt import MemGPTForCausalLM

FORMAT = "memgpt-latent-adapter/1"
HERE = Path(__file__).parent
# Where a shipped adapter for the default backbone would live. None ships: the CPU-trained one scored 0
# beyond a window (benchmarks/results/latent_adapter.json), no better than `none`.
DEFAULT_ADAPTER = HERE / "smollm2-135m-instruct-latent.safetensors"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
MEMORY_PREFIX = "memory_"  # memory_init, memory_gain, and memory_gate.* of a gated memory
QUESTION_SYSTEM = "You are a careful assistant. Answer only from the text you are given."
QUESTION_USER = "Question about the document you have read: {}\nAnswer with a few words."


def is_trained(name: str) -> bool:
    """Whether a parameter belongs to the adapter: LoRA matrices and the memory's own parameters."""
    return "lora_" in name or name.startswith(MEMORY_PREFIX)


def question_ids(tokenizer, question: str) -> list[int]:
    """The question segment's prompt: a one-turn chat, up to the assistant's reply."""
    messages = [{"role": "system", "content": QUESTION_SYSTEM}, {"role": "user", "content": QUESTION_USER.format(question)}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def backbone_signature(config) -> dict[str, Any]:
    """What an adapter must match in a backbone (shapes, not weights)."""
    keys = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "intermediate_size", "vocab_size")
    return {k: getattr(config, k, None) for k in keys}


def add_lora(model: MemGPTForCausalLM, rank: int, alpha: float, targets: list[str] | None = None) -> MemGPTForCausalLM:
    """Inject LoRA into the backbone (in place) and leave only LoRA + memory parameters trainable."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=targets or LORA_TARGETS, bias="none")
    inject_adapter_in_model(config, model.backbone)
    for name, p in model.named_parameters():
        p.requires_grad = is_trained(name)
    return model


def adapter_tensors(model: MemGPTForCausalLM) -> dict[str, torch.Tensor]:
    """The trained parameters: LoRA matrices and the memory parameters, by name."""
    return {n: p.detach() for n, p in model.named_parameters() if is_trained(n)}


def save_adapter(path: Path, model: MemGPTForCausalLM, lora_rank: int, lora_alpha: float,
                 info: dict[str, Any] | None = None) -> None:
    """Write the adapter (LoRA in bf16, memory parameters in fp32) atomically, settings in the header."""
    tensors = {n: (t.to(torch.bfloat16) if "lora_" in n else t.float()).contiguous().cpu()
               for n, t in adapter_tensors(model).items()}
    meta = {
        "format": FORMAT, "backbone": backbone_signature(model.config.text_config),
        **memory_settings(model.config),
        "lora_rank": lora_rank, "lora_alpha": lora_alpha, "info": info or {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata={"memgpt": json.dumps(meta)})
    tmp.replace(path)


def read_adapter(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and settings of an adapter file, or a clear error."""
    if not Path(path).is_file():
        raise MemGPTError(f"no adapter file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("memgpt", "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, ValueError, OSError) as e:
        raise MemGPTError(f"{path} is not a readable adapter file: {e}") from None
    if meta.get("format") != FORMAT:
        raise MemGPTError(f"{path} is not a memgpt latent adapter")
    return tensors, meta


def load_adapter_into(model: MemGPTForCausalLM, tensors: dict[str, torch.Tensor]) -> None:
    """Copy adapter tensors into a model that has LoRA injected (training resume); all must match."""
    params = dict(model.named_parameters())
    expected = set(adapter_tensors(model))
    if set(tensors) != expected:
        raise MemGPTError(f"adapter does not fit the model: {len(set(tensors) ^ expected)} parameter names differ")
    with torch.no_grad():
        for n, t in tensors.items():
            params[n].copy_(t.to(params[n].dtype))


def load_latent_model(backbone, path: Path | str | None = None) -> MemGPTForCausalLM | None:
    """A memory model for `backbone` with the adapter at `path` merged in (default: the shipped one).

    Returns None when no adapter is shipped or it was trained for another backbone shape; the given
    backbone is never modified (LoRA is merged into a copy).
    """
    path = Path(path) if path is not None else DEFAULT_ADAPTER
    if not path.is_file():
        return None
    tensors, meta = read_adapter(path)
    if meta["backbone"] != backbone_signature(backbone.config):
        return None
    dtype = backbone.dtype
    merged = copy.deepcopy(backbone)
    scale = meta["lora_alpha"] / meta["lora_rank"]
    modules = dict(merged.named_modules())
    with torch.no_grad():
        for name in [n for n in tensors if ".lora_A." in n]:
            module_name = name.split(".lora_A.")[0].removeprefix("backbone.")
            a = tensors[name].float()
            b = tensors[name.replace(".lora_A.", ".lora_B.")].float()
            layer = modules.get(module_name)
            if layer is None or layer.weight.shape != (b.shape[0], a.shape[1]):
                raise MemGPTError(f"{path}: LoRA for {module_name} does not fit the backbone")
            layer.weight.copy_((layer.weight.float() + scale * b @ a).to(layer.weight.dtype))
    memory_options = {name: meta[name] for name in MEMORY_FIELDS if name in meta}  # older adapters lack some
    model = MemGPTForCausalLM.from_backbone(merged, dtype, **memory_options)
    memory = {n: p for n, p in model.named_parameters() if n.startswith(MEMORY_PREFIX)}
    if not set(memory) <= set(tensors):
        raise MemGPTError(f"{path} lacks memory parameters {sorted(set(memory) - set(tensors))}")
    with torch.no_grad():
        for name, param in memory.items():
            if tensors[name].shape != param.shape:
                raise MemGPTError(f"{path}: {name} has shape {list(tensors[name].shape)}, expected {list(param.shape)}")
            param.copy_(tensors[name].to(dtype))
    return model.eval()


def adapter_info(path: Path | str | None = None) -> dict[str, Any] | None:
    """Settings and training record of an adapter (the shipped one by default), or None if absent."""
    path = Path(path) if path is not None else DEFAULT_ADAPTER
    return read_adapter(path)[1] if path.is_file() else None
