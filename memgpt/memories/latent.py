"""Latent memory: the RMT-style memory vectors of `MemGPTForCausalLM` over the engine's backbone.

With a trained adapter for the backbone (see `memgpt.model.adapters`, `memgpt train`) the memory is learned;
without one it is the untrained memory of `from_backbone`, which carries nothing beyond a window
(measured, see the README), and a one-line warning says so. No adapter ships: the one trained on CPU
scored 0 beyond a window (benchmarks/results/latent_adapter.json), no better than `none`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from ..errors import MemGPTError
from ..model.configuration_memgpt import MEMORY_FIELDS
from ..model.generation import sampling_config
from ..model.identity import check_fingerprint, fingerprint
from ..model.modeling_memgpt import MemGPTForCausalLM
from ..model.modeling_memgpt import MemoryState as LatentState  # the model's memory; DocumentState: an app's
from ..model.engine import Engine
from .base import DocumentState, Evidence, Memory, clean, register, summary_words, trim_to_sentence

NUM_MEM_TOKENS = 16
SEGMENT_TOKENS = 512


def latent_model(engine: Engine) -> MemGPTForCausalLM:
    """The engine's memory model (built once): a shipped adapter if there is one, else fresh memory."""
    if "latent" not in engine.extras:
        from ..model.adapters import load_latent_model

        model = load_latent_model(engine.backbone)
        if model is None:
            print(f"warning: the latent memory of {engine.name} is untrained (no adapter; train one with `memgpt train`):"
                  " it carries nothing beyond a window", file=sys.stderr)
            model = MemGPTForCausalLM.from_backbone(engine.backbone, engine.dtype, num_mem_tokens=NUM_MEM_TOKENS,
                                                   segment_size=SEGMENT_TOKENS)
        engine.extras["latent"] = model.eval()
    return engine.extras["latent"]


def memory_fingerprint(model: MemGPTForCausalLM) -> str:
    """The weights fingerprint of the memory model (backbone + memory parameters) and its memory settings."""
    return fingerprint(model, "|".join(f"{name}={getattr(model.config, name)}" for name in MEMORY_FIELDS))


@register
class LatentMemory(Memory):
    kind = "latent"
    evidence_source = "latent"
    segment_tokens = SEGMENT_TOKENS

    def new_state(self) -> DocumentState:
        state = super().new_state()
        model = latent_model(self.engine)
        state.tensors = model.init_memory(1).to(torch.float32).tensors()
        state.info["fingerprint"] = memory_fingerprint(model)
        return state

    @torch.inference_mode()
    def _update(self, state: DocumentState, segment: list[int]) -> None:
        model = latent_model(self.engine)
        ids = torch.tensor([segment])
        memory = LatentState.from_tensors(state.tensors).to(model.dtype)
        _, memory = model.memory_step(model.get_input_embeddings()(ids), torch.ones_like(ids), memory)
        state.tensors = memory.to(torch.float32).tensors()

    def context(self, state: DocumentState, query: str | None, budget: int) -> str:
        return ""  # the document lives in the vectors, not in the prompt

    @torch.inference_mode()
    def _generate(self, state: DocumentState, user: str, max_new_tokens: int, **options) -> str:
        model = latent_model(self.engine)
        ids = torch.tensor([self.engine.chat_ids(user)[-model.config.segment_size :]])
        config = sampling_config(self.engine.tokenizer, max_new_tokens, **options)
        memory = LatentState.from_tensors(state.tensors).to(model.dtype)
        out = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config, memory_state=memory)
        return clean(self.engine.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))

    def free_answer(self, state: DocumentState, found: Evidence, question: str, max_new_tokens: int) -> str:
        """The answer generated over the memory vectors (checked against the document's sentences after)."""
        user = f"Question about the document you have read: {question}\nAnswer with a few words."
        return self._generate(state, user, max_new_tokens)

    def summarize(self, state: DocumentState, max_length: int) -> str:
        user = f"Summarize the document you have read in at most {summary_words(max_length)} words."
        return trim_to_sentence(self._generate(state, user, max_length, repetition_penalty=1.1))

    @classmethod
    def validate(cls, state: DocumentState, path: str | Path) -> None:
        memory = state.tensors.get("memory")
        if memory is None or memory.dim() != 3 or memory.shape[0] != 1:
            raise MemGPTError(f"{path} is a corrupt latent memory file")
        if not all(t.is_floating_point() and bool(torch.isfinite(t).all()) for t in state.tensors.values()):
            raise MemGPTError(f"{path} is corrupt: its memory is not finite floating-point numbers")

    def check_compatible(self, state: DocumentState, path: str | Path) -> None:
        model = latent_model(self.engine)
        check_fingerprint(path, state.info.get("fingerprint"), memory_fingerprint(model),
                          f"{path} was written by another latent memory (adapter) than this model's")
        if model.config.associative_heads and set(state.tensors) == {"memory"}:
            raise MemGPTError(f"{path} is a latent memory of memgpt layout 1 (associative memory packed into the "
                              f"memory rows); this memgpt reads layout 2: read the document again")
        try:
            model.check_memory(LatentState.from_tensors(state.tensors), 1)
        except MemGPTError as e:
            raise MemGPTError(f"{path} does not fit this model: {e}") from None
