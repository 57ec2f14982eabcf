"""Associative memory (ARMT / DeltaNet style): a per-layer key -> value matrix that every token of a
segment writes with the delta rule and every token of the next segment reads.

Memory tokens have to learn to allocate slots before they can store a (key, value) pair; a matrix
written as `S += beta * k (v - S^T k)^T` binds the pair by construction, and the delta rule
overwrites an old value of the same key instead of piling values up (ARMT, Rodkin et al. 2024).
Queries, keys and values pass a short causal convolution first (DeltaNet, Zoology): a token can then
key its value by the tokens just before it without having to learn an attention head for that. The
convolution's last inputs are carried to the next segment (like Mamba's conv state), so a token at
the start of a segment is keyed by the end of the previous one, not by zeros.

Keys and queries can pass a feature map first (`FEATURES`), so that more pairs fit before their
writes disturb each other: trained on 7 (key, value) pairs, plain 32-d keys of different pairs kept
cosines of 0.15-0.8 and, given 31 pairs, the oldest were overwritten by the newer ones. "outer" is
`k (x) k` (K^2 features): keys with cosine c then overlap by c^2 (the degree-2 polynomial kernel).
"dpfp-N" is ARMT's DPFP (Schlag et al. 2021), products of rectified coordinates in 2 N K features:
non-negative, so random keys still overlap 2.4x less (mean squared cosine, K=16, N=3), not c^2.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F


class AssociativeMemory(nn.Module):
    """Layer `index`'s associative memory: projections from the layer's input hidden states to
    queries, keys, values and write strengths, and the read-out back into the residual stream.
    The memory itself reaches the layer as an argument of the backbone's call (`layer_hook`)."""

    def __init__(self, hidden_size: int, heads: int, key_size: int, index: int, kernel: int = 4, features: str = "plain"):
        super().__init__()
        self.heads, self.key_size, self.index, self.feature_map = heads, key_size, index, features
        self.features = feature_size(features, key_size)  # F: the size of a key after the feature map
        channels = 3 * heads * key_size
        self.norm = nn.LayerNorm(hidden_size)
        self.qkv = nn.Linear(hidden_size, channels, bias=False)
        self.conv = nn.Conv1d(channels, channels, kernel, groups=channels, bias=False)
        self.strength = nn.Linear(hidden_size, heads)
        # what is read is normalised per head: the matrix starts near zero, and without the norm the
        # read-out (and every gradient through it) would start near zero too
        self.read_norm = nn.RMSNorm(key_size, eps=1e-6)
        self.out = nn.Linear(heads * key_size, hidden_size, bias=False)

    def project(
        self, hidden: torch.Tensor, before: torch.Tensor | None, present: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries and keys `(B, H, T, F)` (unit-norm), values `(B, H, T, K)`, strengths `(B, H, T)`, the
        convolution inputs of the last `kernel - 1` positions `(B, C, kernel - 1)`, which the next call
        continues from (`before`: those of the previous call or segment; None: zeros), and the
        convolution inputs of every position `(B, C, T)`. With `present` `(B, T)`, the convolution skips
        absent (padding) positions, so padding on either side changes nothing."""
        batch, length, _ = hidden.shape
        x = self.norm(hidden)
        projected = inputs = self.qkv(x).transpose(1, 2)  # (B, C, T)
        order = None
        if present is not None:  # present positions first, in their order
            order = torch.argsort((~present.bool()).to(torch.int8), dim=-1, stable=True)[:, None, :].expand_as(projected)
            projected = projected.gather(-1, order)
        if before is None:
            before = projected.new_zeros(batch, projected.shape[1], self.conv.kernel_size[0] - 1)
        extended = torch.cat([before.to(projected.dtype), projected], dim=-1)  # (B, C, kernel - 1 + T)
        taps = self.conv.weight[:, 0]  # (C, kernel); shifted sums: a CPU depthwise conv's backward took 10% of a step
        mixed = sum(taps[:, j, None] * extended[..., j : j + length] for j in range(taps.shape[1]))  # (B, C, T)
        if order is not None:
            mixed = torch.empty_like(mixed).scatter(-1, order, mixed)
        q, k, v = mixed.view(batch, 3, self.heads, self.key_size, length).permute(1, 0, 2, 4, 3).unbind(0)  # 3 x (B, H, T, K)
        q, k = F.normalize(features(q, self.feature_map), dim=-1), F.normalize(features(k, self.feature_map), dim=-1)
        beta = torch.sigmoid(self.strength(x)).transpose(1, 2)  # (B, H, T)
        return q, k, v, beta, extended[..., extended.shape[-1] - before.shape[-1] :], inputs

    def read(self, q: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """What `state` `(B, H, F, K)` associates with queries `q` `(B, H, T, F)`, as `(B, T, d)`."""
        batch, _, length, _ = q.shape
        values = self.read_norm(q @ state)  # (B, H, T, K)
        return self.out(values.transpose(1, 2).reshape(batch, length, self.heads * self.key_size))

    def layer_hook(self, layer: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """Forward pre-hook (with kwargs) of decoder layer `index`. The backbone passes its keyword
        arguments on to every layer: `ASSOCIATIVE_KWARG` carries the `AssociativeRun` of the window being
        read (the caller passes it explicitly; the hook takes it out before the layer runs). The
        positions marked as writers write the layer's input hidden states, and every position adds what
        it reads from the memory of earlier segments.

        On the layer's input, not its output: at layer 0 the keys then come from the token embeddings
        themselves. Keyed on layer outputs (after attention had averaged the segment into every
        position), recall never learned which value belongs to which key (0.5 on two pairs)."""
        run, i = kwargs.pop(ASSOCIATIVE_KWARG, None), self.index
        if run is None:
            return args, kwargs
        hidden = args[0]  # (B, T, d)
        q, k, v, beta, run.before[i], inputs = self.project(hidden, run.before[i], run.present)
        if run.writes is not None:
            beta = beta * run.writes[:, None, :].to(beta.dtype)  # (B, H, T)
            run.written[i] = delta_write(run.written[i], k, v, beta)
            tail = run.tails[i]  # the segment tokens seen so far, then this call's writers
            kept = torch.cat([run.writes.new_ones(tail.shape[0], tail.shape[-1]), run.writes], dim=-1)  # (B, kernel-1+T)
            run.tails[i] = last_columns(torch.cat([tail, inputs.to(tail.dtype)], dim=-1), kept.bool(), tail.shape[-1])
        return (hidden + self.read(q, run.read[:, i].to(q.dtype)), *args[1:]), kwargs


ASSOCIATIVE_KWARG = "associative"  # the backbone call's keyword argument that carries an `AssociativeRun`
FEATURES = ("plain", "outer", "dpfp-N")  # dpfp-1 .. dpfp-8


def feature_size(name: str, key_size: int) -> int:
    """How many features the map `name` (one of `FEATURES`) gives a key of `key_size`."""
    if name == "plain":
        return key_size
    if name == "outer":
        return key_size * key_size
    order = name.removeprefix("dpfp-") if isinstance(name, str) and name.startswith("dpfp-") else ""
    if order.isdigit() and 1 <= int(order) <= 8:
        return 2 * int(order) * key_size
    raise ValueError(f"must be one of {', '.join(FEATURES)} (N = 1 .. 8), got {name!r}")


def features(x: torch.Tensor, name: str) -> torch.Tensor:
    """The feature map `name` of keys or queries `x` `(..., K)`, `(..., F)` (not normalised)."""
    if name == "plain":
        return x
    if name == "outer":
        return (x[..., :, None] * x[..., None, :]).flatten(-2)  # (..., K * K)
    return dpfp(x, int(name.removeprefix("dpfp-")))


def dpfp(x: torch.Tensor, order: int) -> torch.Tensor:
    """DPFP features of `x` `(..., K)`, `(..., 2 * order * K)`: `r = [relu(x), relu(-x)]` times itself
    rolled by 1..order positions (Schlag et al. 2021, as in ARMT)."""
    r = torch.cat([F.relu(x), F.relu(-x)], dim=-1)  # (..., 2K)
    return torch.cat([r * r.roll(shift, dims=-1) for shift in range(1, order + 1)], dim=-1)


def delta_write(state: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """`state` after the tokens' delta-rule writes, in order: `S <- S + beta_t k_t (v_t - S^T k_t)^T`.

    All T writes at once (DeltaNet's WY form): the written values `U` solve
    `(I + diag(beta) tril(K K^T, -1)) U = diag(beta) (V - K S)`, and the new state is `S + K^T U`.
    state `(B, H, F, K)`, k `(B, H, T, F)`, v `(B, H, T, K)`, beta `(B, H, T)` (0 writes nothing).
    """
    if k.shape[-2] == 0:
        return state
    dtype = state.dtype
    work = torch.promote_types(dtype, torch.float32)  # the triangular solve in at least fp32
    state, k, v, beta = state.to(work), k.to(work), v.to(work), beta.to(work)
    weighted = beta.unsqueeze(-1)  # (B, H, T, 1)
    system = torch.eye(k.shape[-2], dtype=work, device=k.device) + weighted * (k @ k.transpose(-1, -2)).tril(-1)  # (B, H, T, T)
    written = torch.linalg.solve_triangular(system, weighted * (v - k @ state), upper=False, unitriangular=True)
    return (state + k.transpose(-1, -2) @ written).to(dtype)


def last_columns(x: torch.Tensor, keep: torch.Tensor, n: int) -> torch.Tensor:
    """The last `n` columns of `x` `(B, C, N)` whose `keep` `(B, N)` is set, in order, `(B, C, n)`
    (at least `n` must be kept in every row)."""
    order = torch.argsort(keep.to(torch.int8), dim=-1, stable=True)[:, -n:]  # (B, n): kept columns last, in order
    return x.gather(-1, order[:, None, :].expand(-1, x.shape[1], -1))


@dataclass
class AssociativeRun:
    """The associative memory while the backbone reads one window: the matrices every token reads
    `(B, L, H, F, K)`, the convolution inputs of the last segment tokens before the window
    `(B, L, C, kernel - 1)`, and, for the current call, which positions write `(B, T)` (None: none)
    and which are not padding. Filled in as the layers run: the matrices being written, each layer's convolution input so far
    (a window read in several calls convolves as if read at once) and its last segment tokens'."""

    read: torch.Tensor
    carried: torch.Tensor
    writes: torch.Tensor | None = None
    present: torch.Tensor | None = None  # (B, T) positions that are not padding (None: all)
    written: list[torch.Tensor] = field(default_factory=list)
    before: list[torch.Tensor] = field(default_factory=list)
    tails: list[torch.Tensor] = field(default_factory=list)

    def __post_init__(self):
        self.written = list(self.read.unbind(1))
        self.before = list(self.carried.unbind(1))
        self.tails = list(self.carried.unbind(1))

    def state(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The written matrices `(B, L, H, F, K)` and the new carried inputs `(B, L, C, kernel - 1)`."""
        return torch.stack(self.written, dim=1), torch.stack(self.tails, dim=1)


def decoder_layers(backbone: nn.Module) -> nn.ModuleList:
    """The backbone's stack of decoder layers (`h` in GPT-2, `layers` in Llama, ...)."""
    base = getattr(backbone, "base_model", backbone)
    count = backbone.config.num_hidden_layers
    for module in base.children():
        if isinstance(module, nn.ModuleList) and len(module) == count:
            return module
    raise ValueError(f"cannot find the {count} decoder layers of {type(backbone).__name__}")
