"""The memory-augmented GPT: any HF causal LM reading text segment by segment with a latent memory.

Each segment of S tokens is framed as ``[read memory (M) | segment (S) | write slots (M)]``. The
backbone's last hidden states at the write slots become the memory for the next segment; nothing
else crosses a segment boundary (RMT). Positions restart in every window and are passed explicitly,
so learned (GPT-2) and rotary (Llama) position schemes see the same layout. Optionally every layer
also carries an associative key -> value memory (`associative_memory.py`), packed into the same
memory state after the M vectors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModelForCausalLM, DynamicCache, GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache
from transformers.modeling_outputs import ModelOutput

from .associative_memory import AssociativeMemory, AssociativeRun, decoder_layers
from .configuration_memgpt import MemGPTConfig
from .errors import MemGPTError


@dataclass
class MemGPTOutput(ModelOutput):
    """Output of [`MemGPTForCausalLM.forward`].

    loss: mean cross-entropy over labelled positions (or sum / `num_items_in_batch`).
    logits: `[B, T, V]` (or the last `logits_to_keep` positions).
    memory_state: `[B, M, d]`, the memory after the last segment.
    memory_states: memory after every segment, when `output_memory_states=True`.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    memory_state: torch.Tensor | None = None
    memory_states: tuple[torch.Tensor, ...] | None = None
    generation_state: GenerationState | None = None


@dataclass
class GenerationState:
    """Decoding state carried by `generate()`: the memory read by the current segment, the
    backbone's KV cache over `[read memory | tokens of this segment]`, and token counts."""

    memory: torch.Tensor | None = None
    cache: Cache | None = None
    segment_tokens: int = 0
    consumed: int = 0
    associative: AssociativeRun | None = None  # the associative memory this segment reads and writes


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
                layer.register_forward_pre_hook(memory.layer_hook)  # a bound method: deepcopy re-binds it
        self.post_init()

    @classmethod
    def from_backbone(
        cls,
        backbone: str | PreTrainedModel = "default",
        num_mem_tokens: int = 8,
        segment_size: int = 512,
        bptt_depth: int = -1,
        memory_update: str = "replace",
        dtype: torch.dtype = torch.float32,
        **memory_options,
    ) -> MemGPTForCausalLM:
        """Wrap a pretrained causal LM with a fresh memory: a loaded model, or a name ("default": the
        packaged SmolLM2-135M-Instruct, offline; a local folder; a hub id). `memory_options`: other
        `MemGPTConfig` fields (e.g. `associative_heads`). Tokenizer: `memgpt.load_backbone`."""
        if isinstance(backbone, str):
            from .pretrained import load_backbone

            backbone = load_backbone(backbone, dtype=dtype)[0]
        config = MemGPTConfig(
            text_config=backbone.config, num_mem_tokens=num_mem_tokens, segment_size=segment_size,
            bptt_depth=bptt_depth, memory_update=memory_update, **memory_options,
        )
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
    def associative_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Shapes of one row's associative memory: the matrices `(L, H, F, K)` (F: the size of a key
        after its feature map) and the convolution inputs carried to the next segment `(L, 3*H*K, conv - 1)`;
        `((0,), (0,))` without one."""
        cfg = self.config
        if not cfg.associative_heads:
            return (0,), (0,)
        memory = self.memory_associative[0]
        layers, heads, size = len(self.memory_associative), memory.heads, memory.key_size
        return (layers, heads, memory.features, size), (layers, 3 * heads * size, cfg.associative_conv - 1)

    @property
    def memory_shape(self) -> tuple[int, int]:
        """Shape of one row's memory state: M vectors, then the associative memory packed into rows of d."""
        d = self.config.hidden_size
        return self.num_mem_tokens + -(-sum(map(math.prod, self.associative_shapes)) // d), d

    def init_memory(self, batch_size: int) -> torch.Tensor:
        """The initial memory, `[B, M + A, d]`: the learned vectors, then an empty associative memory."""
        tokens = self.memory_init.unsqueeze(0).expand(batch_size, -1, -1)
        if not self.config.associative_heads:
            return tokens
        empty = [tokens.new_zeros(batch_size, *shape) for shape in self.associative_shapes]
        return self.join_memory(tokens, (empty[0], empty[1]))  # (matrices, carried inputs)

    def split_memory(self, memory: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """`[B, M + A, d]` -> the M vectors `[B, M, d]` and the associative memory (matrices and carried
        convolution inputs, see `associative_shapes`; None without one)."""
        m = self.num_mem_tokens
        if not self.config.associative_heads:
            return memory, None
        sizes = [math.prod(shape) for shape in self.associative_shapes]
        packed = memory[:, m:].flatten(1)[:, : sum(sizes)]  # (B, sum of sizes)
        matrices, carried = (part.reshape(memory.shape[0], *shape)
                             for part, shape in zip(packed.split(sizes, dim=1), self.associative_shapes))
        return memory[:, :m], (matrices, carried)

    def join_memory(self, tokens: torch.Tensor, associative: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        """The inverse of `split_memory` (the last row is zero-padded to d)."""
        if associative is None:
            return tokens
        batch, d = tokens.shape[0], self.config.hidden_size
        rows = self.memory_shape[0] - self.num_mem_tokens
        flat = torch.cat([part.flatten(1).to(tokens.dtype) for part in associative], dim=1)
        packed = nn.functional.pad(flat, (0, rows * d - flat.shape[1]))
        return torch.cat([tokens, packed.view(batch, rows, d)], dim=1)  # (B, M + A, d)

    def _run_backbone(self, associative: AssociativeRun | None, **kwargs):
        """The backbone's base model on `kwargs`, with `associative` read and written by its layers."""
        memories = self.memory_associative if associative is not None else []
        for memory in memories:
            memory.run = associative
        try:
            return self.backbone.base_model(**kwargs)
        finally:
            for memory in memories:
                memory.run = None

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
    def memory_step(
        self,
        segment_embeds: torch.Tensor,
        segment_mask: torch.Tensor,
        memory: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Read one segment with `memory`; return its hidden states `[B, S, d]` and the new memory.

        A row whose segment is all padding keeps its memory unchanged.
        """
        batch, seg_len, _ = segment_embeds.shape
        m = self.num_mem_tokens
        tokens, associative = self.split_memory(memory)
        read = self.read_memory(tokens, segment_embeds.dtype)
        embeds = torch.cat([read, segment_embeds, read], dim=1)  # (B, M+S+M, d)
        mem_mask = segment_mask.new_ones(batch, m)
        mask = torch.cat([mem_mask, segment_mask, mem_mask], dim=1)  # (B, M+S+M)

        # Positions: read memory 0..M-1, then the segment's real tokens, then the write slots
        # right after the last real token, whichever side the padding is on.
        seg_pos = (segment_mask.long().cumsum(-1) - 1).clamp(min=0) + m  # (B, S)
        n_real = segment_mask.long().sum(-1, keepdim=True)  # (B, 1)
        read_pos = torch.arange(m, device=embeds.device).expand(batch, m)
        write_pos = m + n_real + torch.arange(m, device=embeds.device)  # (B, M)
        position_ids = torch.cat([read_pos, seg_pos, write_pos], dim=1)  # (B, M+S+M)

        attention_mask = None if bool(mask.all()) else mask
        run = None
        if associative is not None:  # only the segment's real tokens write
            writes = torch.cat([torch.zeros_like(mem_mask), segment_mask, torch.zeros_like(mem_mask)], dim=1)  # (B, M+S+M)
            run = AssociativeRun(*associative, writes, present=attention_mask)
        out = self._run_backbone(
            run, inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        )
        hidden = out.last_hidden_state  # (B, M+S+M, d)
        segment_hidden = hidden[:, m : m + seg_len]
        new_memory = self.join_memory(self.update_memory(tokens, hidden[:, m + seg_len :]), run and run.state())
        has_tokens = segment_mask.bool().any(-1)[:, None, None]  # (B, 1, 1)
        new_memory = torch.where(has_tokens, new_memory, memory.to(new_memory.dtype))
        # Padded rows with no memory to attend to can produce NaN in SDPA; they carry no loss.
        segment_hidden = torch.where(segment_mask.bool()[..., None], segment_hidden, 0.0)
        return segment_hidden, new_memory

    # -- the whole sequence --------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        memory_state: torch.Tensor | None = None,
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
        if memory.shape[0] != batch or tuple(memory.shape[1:]) != self.memory_shape:
            raise MemGPTError(f"memory_state has shape {tuple(memory.shape)}, expected ({batch}, {', '.join(map(str, self.memory_shape))})")
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
        memory_state: torch.Tensor | None = None,
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

    def _update_model_kwargs_for_generation(self, outputs, model_kwargs, is_encoder_decoder=False, num_new_tokens=1):
        model_kwargs = super()._update_model_kwargs_for_generation(
            outputs, model_kwargs, is_encoder_decoder=is_encoder_decoder, num_new_tokens=num_new_tokens
        )
        model_kwargs["generation_state"] = outputs.generation_state
        return model_kwargs

    def _backbone_pass(
        self, embeds: torch.Tensor, start: int, cache: Cache, associative: AssociativeRun | None, writes: bool = False
    ) -> torch.Tensor:
        """Run `embeds` at positions `start..` against `cache` (updated in place); last hidden states.
        They read `associative` and, with `writes`, write to it."""
        batch, length, _ = embeds.shape
        position_ids = torch.arange(start, start + length, device=embeds.device).expand(batch, length)
        if associative is not None:
            associative.writes = embeds.new_ones(batch, length, dtype=torch.bool) if writes else None
        out = self._run_backbone(associative, inputs_embeds=embeds, position_ids=position_ids, cache=cache, use_cache=True)
        return out.last_hidden_state

    def _decode_step(
        self,
        input_ids: torch.LongTensor,
        memory_state: torch.Tensor | None,
        state: GenerationState,
        logits_to_keep: int,
    ) -> MemGPTOutput:
        """Read the tokens of `input_ids` not yet consumed, with a KV cache inside the current segment;
        when a segment fills, write memory and start the next window. Same maths as `forward`."""
        m, seg = self.num_mem_tokens, self.config.segment_size
        new = input_ids[:, state.consumed :]
        if state.memory is None:
            state.memory = self.init_memory(input_ids.shape[0]) if memory_state is None else memory_state
        embeds = self.get_input_embeddings()(new)
        hidden_parts = []
        pos = 0
        while pos < new.shape[1]:
            tokens, associative = self.split_memory(state.memory)
            read = self.read_memory(tokens, embeds.dtype)
            if state.cache is None:
                state.cache = DynamicCache(config=self.config.text_config)
                state.associative = None if associative is None else AssociativeRun(*associative, None)
                if m:
                    self._backbone_pass(read, 0, state.cache, state.associative)
                state.segment_tokens = 0
            take = min(seg - state.segment_tokens, new.shape[1] - pos)
            hidden_parts.append(self._backbone_pass(
                embeds[:, pos : pos + take], m + state.segment_tokens, state.cache, state.associative, writes=True
            ))
            state.segment_tokens += take
            pos += take
            if state.segment_tokens == seg:  # the segment is full: write memory, drop the window
                if m:
                    tokens = self.update_memory(tokens, self._backbone_pass(read, m + seg, state.cache, state.associative))
                state.memory = self.join_memory(tokens, state.associative and state.associative.state())
                state.cache = None
        state.consumed = input_ids.shape[1]
        hidden = torch.cat(hidden_parts, dim=1)
        if logits_to_keep > 0:
            hidden = hidden[:, -logits_to_keep:]
        return MemGPTOutput(
            logits=self.get_output_embeddings()(hidden), memory_state=state.memory, generation_state=state
        )
