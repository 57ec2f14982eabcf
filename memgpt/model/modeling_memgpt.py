"""The memory-augmented GPT: any HF causal LM reading text segment by segment with a latent memory.

Each segment of S tokens is framed as ``[read memory (M) | segment (S) | write slots (M)]``. The
backbone's last hidden states at the write slots become the memory for the next segment; nothing
else crosses a segment boundary (RMT). Positions restart in every window and are passed explicitly,
so learned (GPT-2) and rotary (Llama) position schemes see the same layout. Optionally the first
layers also carry an associative key -> value memory (`associative_memory.py`): the backbone call
passes it to them as a keyword argument. What crosses a boundary is one `MemoryState`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable

import torch
from torch import nn
from transformers import AutoModelForCausalLM, DynamicCache, GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache
from transformers.modeling_outputs import ModelOutput

from .associative_memory import ASSOCIATIVE_KWARG, AssociativeMemory, AssociativeRun, decoder_layers
from .configuration_memgpt import MemGPTConfig, check_memory_settings
from ..errors import MemGPTError


@dataclass
class MemoryState:
    """The memory carried from one segment to the next (a value: save it, load it, pass it back in).

    tokens: `(B, M, d)`, the memory vectors.
    associative: `(B, L, H, F, K)`, each associative layer's key -> value matrices (None without them).
    carry: `(B, L, 3*H*K, conv - 1)`, the associative convolution's inputs of the last segment tokens.
    """

    tokens: torch.Tensor
    associative: torch.Tensor | None = None
    carry: torch.Tensor | None = None

    FILE_NAMES = {"tokens": "memory", "associative": "associative", "carry": "associative_carry"}

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> MemoryState:
        """A state with `fn` applied to each tensor."""
        return MemoryState(*(None if t is None else fn(t) for t in self.parts()))

    def parts(self) -> tuple[torch.Tensor | None, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))

    def detach(self) -> MemoryState:
        return self.map(torch.Tensor.detach)

    def to(self, *args, **kwargs) -> MemoryState:
        return self.map(lambda t: t.to(*args, **kwargs))

    def where(self, keep: torch.Tensor, other: MemoryState) -> MemoryState:
        """Per row: this state where `keep` `(B,)` is set, else `other`."""
        picked = (torch.where(keep.view(-1, *[1] * (t.dim() - 1)), t, o.to(t.dtype))
                  for t, o in zip(self.parts(), other.parts()) if t is not None)
        return MemoryState(*picked)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The named tensors of a memory file."""
        return {self.FILE_NAMES[f.name]: t for f, t in zip(fields(self), self.parts()) if t is not None}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> MemoryState:
        """The inverse of `tensors`."""
        return cls(**{field: tensors.get(name) for field, name in cls.FILE_NAMES.items()})


@dataclass
class MemGPTOutput(ModelOutput):
    """Output of [`MemGPTForCausalLM.forward`].

    loss: mean cross-entropy over labelled positions (or sum / `num_items_in_batch`).
    logits: `[B, T, V]` (or the last `logits_to_keep` positions).
    memory_state: the memory after the last segment.
    memory_states: memory after every segment, when `output_memory_states=True`.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    memory_state: MemoryState | None = None
    memory_states: tuple[MemoryState, ...] | None = None
    generation_state: GenerationState | None = None


@dataclass
class SegmentWindow:
    """A segment being read, framed as `[read memory | segment tokens | write slots]`: in one call
    (`forward`) or in several that share a KV cache (decoding)."""

    memory: MemoryState  # what this window reads
    read: torch.Tensor  # (B, M, d): the memory vectors as the backbone reads them
    associative: AssociativeRun | None  # the associative memory being read and written
    cache: Cache | None = None  # the backbone's KV cache over the window so far (several calls)
    tokens: int = 0  # segment tokens read so far
    started: bool = False  # the read memory has been read


@dataclass
class GenerationState:
    """Decoding state carried by `generate()`: the memory after the last full segment, the window of
    the segment being read (None between segments), and how many input tokens were consumed."""

    memory: MemoryState | None = None
    window: SegmentWindow | None = None
    consumed: int = 0


class MemGPTPreTrainedModel(PreTrainedModel):
    config_class = MemGPTConfig
    base_model_prefix = "memgpt"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_attention_backend = True

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, MemGPTForCausalLM):
            std = getattr(module.config.text_config, "initializer_range", 0.02)
            nn.init.normal_(module.memory_init, mean=0.0, std=std)
            # read memory at the scale of the backbone's token embeddings (see `read_memory`)
            weight = module.get_input_embeddings().weight.detach()
            squares = sum(float(rows.float().pow(2).sum()) for rows in weight.split(4096))  # no full fp32 copy
            nn.init.constant_(module.memory_gain, (squares / weight.numel()) ** 0.5)
        elif hasattr(self, "backbone"):
            self.backbone._init_weights(module)


class MemGPTForCausalLM(MemGPTPreTrainedModel, GenerationMixin):
    """A causal LM with a fixed-size latent memory carried between segments."""

    def __init__(self, config: MemGPTConfig, backbone: PreTrainedModel | None = None):
        attn = backbone.config._attn_implementation if backbone is not None else None
        super().__init__(config)
        if backbone is not None:
            # the composite init resets the shared backbone config's attention to None, which
            # silently drops the causal mask; restore what the backbone was loaded with
            backbone.config._attn_implementation = attn or "sdpa"
        self.backbone = backbone if backbone is not None else AutoModelForCausalLM.from_config(config.text_config)
        self.memory_init = nn.Parameter(torch.empty(config.num_mem_tokens, config.hidden_size))
        self.memory_gain = nn.Parameter(torch.ones(config.hidden_size))
        if config.memory_update == "gated":
            self.memory_gate = nn.Linear(2 * config.hidden_size, config.hidden_size)
        if config.associative_heads:
            layers = decoder_layers(self.backbone)[: config.associative_layers or None]
            self.memory_associative = nn.ModuleList(
                AssociativeMemory(
                    config.hidden_size, config.associative_heads, config.associative_size, index,
                    config.associative_conv, config.associative_features,
                )
                for index in range(len(layers))
            )
            for layer, memory in zip(layers, self.memory_associative):
                layer.register_forward_pre_hook(memory.layer_hook, with_kwargs=True)  # bound: deepcopy re-binds it
        self.post_init()

    @classmethod
    def from_backbone(
        cls, backbone: str | PreTrainedModel = "default", dtype: torch.dtype = torch.float32, **memory_options
    ) -> MemGPTForCausalLM:
        """Wrap a pretrained causal LM with a fresh memory: a loaded model, or a name ("default": the
        packaged SmolLM2-135M-Instruct, offline; a local folder; a hub id). `memory_options`: any
        memory settings of `MemGPTConfig` (`MEMORY_FIELDS`). Tokenizer: `memgpt.load_backbone`."""
        check_memory_settings(memory_options)
        if isinstance(backbone, str):
            from .pretrained import load_backbone

            backbone = load_backbone(backbone, dtype=dtype)[0]
        config = MemGPTConfig(text_config=backbone.config, **memory_options)
        with torch.random.fork_rng(devices=[]):  # an untrained memory must be the same every time it is built
            torch.manual_seed(0)
            model = cls(config, backbone=backbone)
        with torch.no_grad():
            g = torch.Generator().manual_seed(0)
            std = getattr(backbone.config, "initializer_range", 0.02)
            model.memory_init.copy_(torch.randn(model.memory_init.shape, generator=g) * std)
        return model.to(dtype).eval()

    # -- plumbing the backbone -------------------------------------------------------------
    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.backbone.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.backbone.get_output_embeddings()

    @property
    def num_mem_tokens(self) -> int:
        return self.config.num_mem_tokens

    @property
    def associative_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Shapes of one row's associative memory: the matrices `(L, H, F, K)` (F: the size of a key
        after its feature map) and the convolution inputs carried to the next segment `(L, 3*H*K, conv - 1)`;
        `()` without one."""
        cfg = self.config
        if not cfg.associative_heads:
            return ()
        memory = self.memory_associative[0]
        layers, heads, size = len(self.memory_associative), memory.heads, memory.key_size
        return (layers, heads, memory.features, size), (layers, 3 * heads * size, cfg.associative_conv - 1)

    def init_memory(self, batch_size: int) -> MemoryState:
        """The initial memory: the learned vectors and an empty associative memory."""
        tokens = self.memory_init.unsqueeze(0).expand(batch_size, -1, -1)  # (B, M, d)
        return MemoryState(tokens, *(tokens.new_zeros(batch_size, *shape) for shape in self.associative_shapes))

    def check_memory(self, memory: MemoryState, batch_size: int) -> None:
        """Raise a `MemGPTError` unless `memory` is a state of this model's shapes for `batch_size` rows."""
        if not isinstance(memory, MemoryState):
            raise MemGPTError(f"memory_state must be a MemoryState, got {type(memory).__name__}")
        shapes = ((self.num_mem_tokens, self.config.hidden_size), *self.associative_shapes)
        expected = [(batch_size, *shape) for shape in shapes] + [None] * (3 - len(shapes))
        got = [None if t is None else tuple(t.shape) for t in memory.parts()]
        if got != expected:
            raise MemGPTError(f"memory_state has shapes {got}, expected {expected} (tokens, associative, carry)")

    def read_memory(self, memory: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """RMS-normalise memory to the token embeddings' scale before it enters the backbone.

        The write slots' outputs come after the backbone's final norm, often far larger than token
        embeddings; fed back raw, they swamp the residual stream and the memory barely changes.
        """
        if not self.config.memory_norm:
            return memory.to(dtype)
        m = memory.float()
        m = m * m.pow(2).mean(-1, keepdim=True).add(1e-6).rsqrt()
        return (m * self.memory_gain.float()).to(dtype)

    def update_memory(self, memory: torch.Tensor, written: torch.Tensor) -> torch.Tensor:
        """The next memory from the write slots' states: replace (RMT), add to the old memory, or
        mix with it through a learned gate."""
        old = memory.to(written.dtype)
        if self.config.memory_update == "residual":
            return old + written
        if self.config.memory_update == "gated":
            gate = torch.sigmoid(self.memory_gate(torch.cat([written, old], dim=-1)).float()).to(written.dtype)  # (B, M, d)
            return old + gate * (written - old)
        return written

    # -- one segment ---------------------------------------------------------------------------
    def open_window(self, memory: MemoryState, dtype: torch.dtype, cached: bool = False) -> SegmentWindow:
        """A window that reads `memory`; `cached`: read in several calls that share a KV cache."""
        associative = None if memory.associative is None else AssociativeRun(memory.associative, memory.carry)
        cache = DynamicCache(config=self.config.text_config) if cached else None
        return SegmentWindow(memory, self.read_memory(memory.tokens, dtype), associative, cache)

    def run_window(
        self, window: SegmentWindow, embeds: torch.Tensor, mask: torch.Tensor | None = None, write: bool = False
    ) -> tuple[torch.Tensor, MemoryState | None]:
        """The segment runner: read the next segment tokens `embeds` `(B, T, d)` of `window` (`mask`
        `(B, T)`: 0 at padding), after its read memory on the first call and, with `write`, followed by
        the write slots. Returns the tokens' last hidden states `(B, T, d)` and, with `write`, the next
        memory. `forward` reads a window in one call; cached decoding token by token."""
        batch, length, _ = embeds.shape
        m, device = self.num_mem_tokens, embeds.device
        if mask is None:
            mask = torch.ones(batch, length, dtype=torch.long, device=device)
        ones, slots = mask.new_ones(batch, m), torch.arange(m, device=device).expand(batch, m)
        # Positions: read memory 0..M-1, then the segment's real tokens, then the write slots
        # right after the last real token, whichever side the padding is on.
        pieces = [(embeds, mask, m + window.tokens + (mask.long().cumsum(-1) - 1).clamp(min=0), mask)]  # (x, mask, position, writes)
        read_first = not window.started and m > 0
        if read_first:
            pieces.insert(0, (window.read, ones, slots, ones * 0))
        if write and m:
            n_real = window.tokens + mask.long().sum(-1, keepdim=True)  # (B, 1)
            pieces.append((window.read, ones, m + n_real + slots, ones * 0))
        x, full_mask, position_ids, writes = (torch.cat(part, dim=1) for part in zip(*pieces))  # (B, [M+]T[+M], ...)
        attention_mask = None if bool(full_mask.all()) else full_mask
        extra = {}
        if window.associative is not None:  # only the segment's real tokens write
            window.associative.writes = writes if length else None
            window.associative.present = attention_mask
            extra[ASSOCIATIVE_KWARG] = window.associative
        out = self.backbone.base_model(
            inputs_embeds=x, attention_mask=attention_mask, position_ids=position_ids,
            cache=window.cache, use_cache=window.cache is not None, **extra,
        )
        hidden = out.last_hidden_state  # (B, [M+]T[+M], d)
        start = m if read_first else 0
        window.started, window.tokens = True, window.tokens + length
        if not write:
            return hidden[:, start : start + length], None
        tokens = window.memory.tokens
        if m:
            tokens = self.update_memory(tokens, hidden[:, start + length :])
        associative = window.associative.state() if window.associative is not None else ()
        return hidden[:, start : start + length], MemoryState(tokens, *associative)

    def memory_step(
        self, segment_embeds: torch.Tensor, segment_mask: torch.Tensor, memory: MemoryState
    ) -> tuple[torch.Tensor, MemoryState]:
        """Read one segment `(B, S, d)` with `memory`; return its hidden states `(B, S, d)` and the new
        memory. A row whose segment is all padding keeps its memory unchanged."""
        window = self.open_window(memory, segment_embeds.dtype)
        hidden, new_memory = self.run_window(window, segment_embeds, segment_mask, write=True)
        new_memory = new_memory.where(segment_mask.bool().any(-1), memory)
        # Padded rows with no memory to attend to can produce NaN in SDPA; they carry no loss.
        return torch.where(segment_mask.bool()[..., None], hidden, 0.0), new_memory

    # -- the whole sequence --------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        memory_state: MemoryState | None = None,
        inputs_embeds: torch.Tensor | None = None,
        shift_labels: torch.LongTensor | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        logits_to_keep: int = 0,
        output_memory_states: bool = False,
        bptt_depth: int | None = None,
        generation_state: GenerationState | None = None,
        **kwargs,
    ) -> MemGPTOutput:
        """Split the input into segments of `segment_size`, carry memory, return loss/logits/memory.

        `labels` follow the HF convention (unshifted, `-100` ignored); `shift_labels` are already
        aligned with the logits (lets a caller split one sequence over several calls exactly).
        `bptt_depth` overrides the config: memory is detached every `bptt_depth` segments.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise MemGPTError("pass exactly one of input_ids or inputs_embeds")
        if generation_state is not None:
            return self._decode_step(input_ids, memory_state, generation_state, logits_to_keep)
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
        batch, total_len, _ = inputs_embeds.shape
        if total_len == 0 or batch == 0:
            raise MemGPTError(f"the input is empty ({batch} rows of {total_len} tokens)")
        if attention_mask is None:
            attention_mask = torch.ones(batch, total_len, dtype=torch.long, device=inputs_embeds.device)
        if shift_labels is None and labels is not None:
            shift_labels = nn.functional.pad(labels[:, 1:], (0, 1), value=-100)  # (B, T)
        memory = self.init_memory(batch) if memory_state is None else memory_state
        self.check_memory(memory, batch)
        depth = self.config.bptt_depth if bptt_depth is None else bptt_depth
        seg = self.config.segment_size
        keep_from = 0 if logits_to_keep <= 0 else max(0, total_len - logits_to_keep)
        logits_parts, memory_states = [], []
        loss_sum = inputs_embeds.new_zeros((), dtype=torch.float32)
        for index, start in enumerate(range(0, total_len, seg)):
            if depth > 0 and index > 0 and index % depth == 0:
                memory = memory.detach()  # truncated BPTT: reassign, so the graph really stops here
            end = min(start + seg, total_len)
            hidden, memory = self.memory_step(inputs_embeds[:, start:end], attention_mask[:, start:end], memory)
            if output_memory_states:
                memory_states.append(memory)
            need_logits = end > keep_from
            if shift_labels is not None:
                seg_labels = shift_labels[:, start:end]
                if bool((seg_labels != -100).any()):
                    seg_logits = self.get_output_embeddings()(hidden)
                    loss_sum = loss_sum + nn.functional.cross_entropy(
                        seg_logits.float().flatten(0, 1), seg_labels.flatten(), ignore_index=-100, reduction="sum"
                    )
                    if need_logits:
                        logits_parts.append(seg_logits[:, max(keep_from - start, 0) :])
                    continue
            if need_logits:
                logits_parts.append(self.get_output_embeddings()(hidden[:, max(keep_from - start, 0) :]))
        loss = None
        if shift_labels is not None:
            denom = num_items_in_batch if num_items_in_batch is not None else (shift_labels != -100).sum()
            loss = loss_sum / torch.as_tensor(denom, device=loss_sum.device).clamp(min=1)
        return MemGPTOutput(
            loss=loss,
            logits=torch.cat(logits_parts, dim=1) if logits_parts else None,
            memory_state=memory,
            memory_states=tuple(memory_states) if output_memory_states else None,
        )

    # -- generation ------------------------------------------------------------------------------
    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # the backbone's cache lives inside GenerationState, reset at each segment

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        memory_state: MemoryState | None = None,
        generation_state: GenerationState | None = None,
        use_cache: bool = True,
        logits_to_keep: int = 1,
        **kwargs,
    ) -> dict:
        inputs = {"input_ids": input_ids, "memory_state": memory_state, "logits_to_keep": logits_to_keep}
        if use_cache and (attention_mask is None or bool(attention_mask.all())):
            inputs["generation_state"] = generation_state if generation_state is not None else GenerationState()
        else:  # padded batches re-read everything each step (exact, slower)
            inputs["attention_mask"] = attention_mask
        return inputs

    def _expand_inputs_for_generation(self, expand_size: int = 1, is_encoder_decoder: bool = False, input_ids=None,
                                      **model_kwargs):
        """As transformers' (beams, `num_return_sequences`), and the memory state row by row too."""
        memory = model_kwargs.get("memory_state")
        if expand_size > 1 and memory is not None:
            model_kwargs["memory_state"] = memory.map(lambda t: t.repeat_interleave(expand_size, dim=0))
        return super()._expand_inputs_for_generation(expand_size, is_encoder_decoder, input_ids, **model_kwargs)

    def _update_model_kwargs_for_generation(self, outputs, model_kwargs, is_encoder_decoder=False, num_new_tokens=1):
        model_kwargs = super()._update_model_kwargs_for_generation(
            outputs, model_kwargs, is_encoder_decoder=is_encoder_decoder, num_new_tokens=num_new_tokens
        )
        model_kwargs["generation_state"] = outputs.generation_state
        return model_kwargs

    def _decode_step(
        self,
        input_ids: torch.LongTensor,
        memory_state: MemoryState | None,
        state: GenerationState,
        logits_to_keep: int,
    ) -> MemGPTOutput:
        """Read the tokens of `input_ids` not yet consumed, with a KV cache inside the current segment;
        when a segment fills, write memory and open the next window (`run_window`, as `forward`)."""
        seg = self.config.segment_size
        new = input_ids[:, state.consumed :]
        if state.memory is None:
            state.memory = self.init_memory(input_ids.shape[0]) if memory_state is None else memory_state
            self.check_memory(state.memory, input_ids.shape[0])
        embeds = self.get_input_embeddings()(new)
        hidden_parts = []
        pos = 0
        while pos < new.shape[1]:
            if state.window is None:
                state.window = self.open_window(state.memory, embeds.dtype, cached=True)
            take = min(seg - state.window.tokens, new.shape[1] - pos)
            full = state.window.tokens + take == seg  # the segment fills: write memory, drop the window
            hidden, memory = self.run_window(state.window, embeds[:, pos : pos + take], write=full)
            hidden_parts.append(hidden)
            pos += take
            if full:
                state.memory, state.window = memory, None
        state.consumed = input_ids.shape[1]
        hidden = torch.cat(hidden_parts, dim=1)
        if logits_to_keep > 0:
            hidden = hidden[:, -logits_to_keep:]
        return MemGPTOutput(
            logits=self.get_output_embeddings()(hidden), memory_state=state.memory, generation_state=state
        )
