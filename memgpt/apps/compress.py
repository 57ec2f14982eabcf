"""encode / decode: text -> a few memory vectors -> the same text ("cramming", Kuratov et al. 2025).

The backbone is frozen. For each text we optimise `n` input vectors `[n, d]` (initialised as random
token embeddings, so at their scale) that sit before the text, so that the frozen model, given only
those vectors, predicts the text. A text counts as encoded only when *greedy decoding* from the
vectors alone (no token of the text given) reproduces its token ids exactly; teacher-forced argmax
is used only as a free trigger for that check.

Layout: `[document-start token] [v_1 .. v_n] [text]`. One fixed token the backbone saw at the start
of its training documents (`<|endoftext|>` for SmolLM2, whose tokenizer adds no BOS; the BOS for
tokenizers that add one) takes position 0, where Llama-style models park their attention sink, so
the vectors sit at positions 1..n. In a one-off check on SmolLM2-135M (a 19-token sentence, one
vector, lr 0.01) every teacher-forced token was right after 149 steps with `<|endoftext|>` first,
against 95% after 150 steps with no prefix or with `<|im_start|>` (a single seed: indicative only).

A memory file stores the vectors, the token count and what backbone they were made for -- never
the token ids.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import MemGPTError
from ..model.identity import backbone_name, check_fingerprint, fingerprint

KIND = "vectors"
MAX_TOKENS = 4096  # far beyond what a small backbone crams in a few vectors; keeps runs bounded
DEFAULT_STEPS = 1000
DEFAULT_LR = 0.01
DEFAULT_MARGIN = 0.5  # logits the target must lead by, so decoding elsewhere (threads, kernels) agrees


@dataclass
class Encoded:
    """Memory vectors for one text, and how they were found."""

    vectors: torch.Tensor  # [n, d] float32
    num_tokens: int
    prefix_ids: tuple[int, ...]  # the fixed document-start token(s) before the vectors
    exact: bool  # greedy decoding from `vectors` reproduces the token ids
    steps: int  # optimiser steps used (for the chosen vector count)
    total_steps: int = 0  # steps over every vector count tried
    seconds: float = 0.0
    loss: float = float("nan")
    margin: float = float("nan")  # min over positions of (target logit - best other logit)

    @property
    def num_vectors(self) -> int:
        return self.vectors.shape[0]

    @property
    def ratio(self) -> float:
        """Text tokens per memory vector."""
        return self.num_tokens / self.num_vectors

    def summary(self) -> dict:
        return {"num_tokens": self.num_tokens, "num_vectors": self.num_vectors, "tokens_per_vector": round(self.ratio, 3),
                "exact": self.exact, "steps": self.steps, "total_steps": self.total_steps,
                "seconds": round(self.seconds, 2), "loss": round(self.loss, 5), "margin": round(self.margin, 3)}


def _load_default(model: PreTrainedModel | None, tokenizer: PreTrainedTokenizerBase | None):
    if model is None or tokenizer is None:
        from ..model.pretrained import load_backbone

        loaded, loaded_tok = load_backbone("default")
        model, tokenizer = model or loaded, tokenizer or loaded_tok
    return model, tokenizer


def text_to_ids(text: str, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Token ids of `text` (no special tokens added); refuse text the tokenizer cannot give back."""
    if not text.strip():
        raise MemGPTError("the input is empty")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) > MAX_TOKENS:
        raise MemGPTError(f"the text has {len(ids)} tokens; encode takes at most {MAX_TOKENS}")
    back = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    if back != text:
        raise MemGPTError("this tokenizer does not give the text back exactly (normalised characters?); cannot encode it losslessly")
    return ids


def prefix_ids(tokenizer: PreTrainedTokenizerBase | None) -> list[int]:
    """The document-start token put before the vectors: the tokenizer's own BOS when it adds one,
    else `<|endoftext|>` if the vocabulary has it, else EOS (GPT-2 style), else nothing."""
    if tokenizer is None:
        return []
    bos = tokenizer.bos_token_id
    if bos is not None and tokenizer("a")["input_ids"][:1] == [bos]:
        return [bos]
    vocab = tokenizer.get_vocab()
    if "<|endoftext|>" in vocab:
        return [vocab["<|endoftext|>"]]
    return [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []


def _target_margin(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Per position: target logit minus the best other logit (`[L, V]`, `[L]` -> `[L]`)."""
    target = logits.gather(1, ids[:, None])[:, 0]
    other = logits.scatter(1, ids[:, None], float("-inf")).amax(1)
    return target - other


@torch.no_grad()
def greedy_ids(model: PreTrainedModel, vectors: torch.Tensor, max_new_tokens: int, prefix: list[int] | tuple[int, ...] = (),
               eos_token_id: int | None = None) -> list[int]:
    """Greedy continuation of `prefix` + the vectors `[n, d]` alone (stops after `max_new_tokens` or at EOS)."""
    embed = model.get_input_embeddings()
    start = embed(torch.tensor(list(prefix), dtype=torch.long, device=embed.weight.device))  # [p, d]
    inputs = torch.cat([start, vectors.to(start)], 0)[None]  # [1, p+n, d]
    out = model(inputs_embeds=inputs, use_cache=True)
    tokens: list[int] = []
    for _ in range(max_new_tokens):
        nxt = out.logits[0, -1].float().argmax()
        tokens.append(int(nxt))
        if (eos_token_id is not None and tokens[-1] == eos_token_id) or len(tokens) == max_new_tokens:
            break
        out = model(input_ids=nxt.view(1, 1), cache=out.cache, use_cache=True)
    return tokens


def cram(
    model: PreTrainedModel,
    ids: list[int],
    num_vectors: int,
    *,
    prefix: list[int] | tuple[int, ...] = (),
    steps: int = DEFAULT_STEPS,
    lr: float = DEFAULT_LR,
    margin: float = DEFAULT_MARGIN,
    seed: int = 0,
    progress: bool = False,
    bf16: bool = False,
) -> Encoded:
    """Optimise `num_vectors` vectors so that greedy decoding from them alone gives `ids` (backbone frozen).

    Stops at the first step where every teacher-forced prediction leads by `margin` logits *and*
    an actual greedy decode reproduces `ids`; `steps=0` scores the random initialisation. `bf16`
    runs the optimisation under bfloat16 autocast; the greedy checks run in the model's dtype."""
    if not ids:
        raise MemGPTError("the input is empty")
    if num_vectors < 1:
        raise MemGPTError(f"the number of vectors must be >= 1, got {num_vectors}")
    limit = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    if limit and len(prefix) + num_vectors + len(ids) > limit:
        raise MemGPTError(f"{len(ids)} tokens + {num_vectors} vectors exceed the model's {limit} positions")
    start = time.perf_counter()
    embed = model.get_input_embeddings()
    device = embed.weight.device
    target = torch.tensor(ids, device=device)  # [L]
    length = len(ids)
    gen = torch.Generator().manual_seed(seed)
    rows = torch.randint(embed.weight.shape[0], (num_vectors,), generator=gen)
    memory = embed.weight.detach()[rows.to(device)].float().clone().requires_grad_(True)  # [n, d]
    with torch.no_grad():
        start_emb = embed(torch.tensor(list(prefix), dtype=torch.long, device=device)).float()  # [p, d]
        text_emb = embed(target[:-1]).float()  # [L-1, d]: the text as input, last token never fed
    opt = torch.optim.AdamW([memory], lr=lr, betas=(0.9, 0.9), weight_decay=0.01)
    frozen = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    was_training = model.training
    model.eval()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=f"encode ({num_vectors} vectors)", unit="step", leave=False)
    loss_v, margin_v, exact, step, next_check, checked = float("nan"), float("nan"), False, 0, 0, -1
    try:
        while True:
            inputs = torch.cat([start_emb, memory, text_emb], 0)[None].to(embed.weight.dtype)  # [1, p+n+L-1, d]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = model(inputs_embeds=inputs, use_cache=False, logits_to_keep=length).logits[0].float()  # [L, V]
            loss = F.cross_entropy(logits, target)
            loss_v = float(loss.detach())
            margin_v = float(_target_margin(logits.detach(), target).min())
            if margin_v > margin and step >= next_check:
                exact, checked = greedy_ids(model, memory.detach(), length, prefix) == ids, step
                if exact:
                    break
                next_check = step + 10  # numerics disagree with teacher forcing: train on a little
            if step >= steps:
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_v:.3f}", margin=f"{margin_v:.2f}", refresh=False)
        if not exact and checked != step:  # the budget ran out: say honestly whether greedy is exact anyway
            exact = greedy_ids(model, memory.detach(), length, prefix) == ids
    finally:
        if bar is not None:
            bar.close()
        for p, flag in zip(model.parameters(), frozen):
            p.requires_grad_(flag)
        model.train(was_training)
    return Encoded(memory.detach().float().cpu(), length, tuple(prefix), exact, step, step, time.perf_counter() - start, loss_v, margin_v)


def vector_counts(num_tokens: int) -> list[int]:
    """Vector counts `encode` tries when none is given: 1, 2, 4, ... up to one per token."""
    counts = [1 << k for k in range(int(math.log2(num_tokens)) + 1)]
    return counts if counts[-1] == num_tokens else counts + [num_tokens]


def encode_ids(
    model: PreTrainedModel, ids: list[int], *, num_vectors: int | None = None, prefix: list[int] | tuple[int, ...] = (),
    steps: int = DEFAULT_STEPS,
    lr: float = DEFAULT_LR, margin: float = DEFAULT_MARGIN, seed: int = 0, progress: bool = False, bf16: bool = False,
) -> Encoded:
    """Memory vectors for token ids: `num_vectors` of them, else the fewest of 1, 2, 4, ... that
    reconstruct the ids exactly within `steps` steps each (the last try if none does)."""
    if not ids:
        raise MemGPTError("the input is empty")
    counts = [num_vectors] if num_vectors is not None else vector_counts(len(ids))
    total, seconds = 0, 0.0
    for n in counts:
        result = cram(model, ids, n, prefix=prefix, steps=steps, lr=lr, margin=margin, seed=seed, progress=progress, bf16=bf16)
        total += result.steps
        seconds += result.seconds
        if result.exact:
            break
    result.total_steps, result.seconds = total, seconds
    return result


def encode(
    text: str,
    *,
    num_vectors: int | None = None,
    model: PreTrainedModel | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    steps: int = DEFAULT_STEPS,
    lr: float = DEFAULT_LR,
    margin: float = DEFAULT_MARGIN,
    progress: bool = False,
    seed: int = 0,
    bf16: bool = False,
) -> Encoded:
    """Turn `text` into memory vectors from which the frozen backbone greedily decodes it back.

    `num_vectors=None` picks the fewest of 1, 2, 4, ... that reconstruct exactly within `steps`
    optimiser steps each. `result.exact` says whether greedy decoding reproduces the text."""
    model, tokenizer = _load_default(model, tokenizer)
    ids = text_to_ids(text, tokenizer)
    return encode_ids(model, ids, num_vectors=num_vectors, prefix=prefix_ids(tokenizer), steps=steps, lr=lr, margin=margin, seed=seed,
                      progress=progress, bf16=bf16)


def decode(
    encoded: Encoded | torch.Tensor,
    *,
    max_new_tokens: int | None = None,
    model: PreTrainedModel | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> str:
    """Greedy text from memory vectors alone: `encoded.num_tokens` tokens for an `Encoded`; for raw
    vectors `[n, d]`, up to `max_new_tokens` (default 256) or the first EOS."""
    model, tokenizer = _load_default(model, tokenizer)
    if isinstance(encoded, Encoded):
        vectors, count, eos, prefix = encoded.vectors, max_new_tokens or encoded.num_tokens, None, encoded.prefix_ids
    else:
        vectors, count, eos, prefix = encoded, max_new_tokens or 256, tokenizer.eos_token_id, prefix_ids(tokenizer)
    hidden = model.get_input_embeddings().weight.shape[1]
    if vectors.dim() != 2 or vectors.shape[1] != hidden or vectors.shape[0] < 1:
        raise MemGPTError(f"memory vectors of shape {tuple(vectors.shape)} do not fit this model (expected [n, {hidden}])")
    ids = greedy_ids(model, vectors, count, prefix, eos)
    if eos is not None and ids and ids[-1] == eos:
        ids = ids[:-1]
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


# ---- input and memory files ---------------------------------------------------------------------

OUTPUT_SUFFIXES = (".mem", ".safetensors")


def read_source(source: str | Path | None, text: str | None = None) -> str:
    """The text to encode: `text` as given, else a file path or `-` (stdin); refuse empty, binary,
    invalid UTF-8, directories and missing files with one clear message."""
    from ..io.streaming import iter_text

    if (source is None) == (text is None):
        raise MemGPTError("give either SOURCE (a file, or - for stdin) or --text, not both" if source is not None
                          else "nothing to encode: give SOURCE (a file, or - for stdin) or --text")
    content = text if text is not None else "".join(iter_text(source))
    if not content.strip():
        raise MemGPTError("the input is empty")
    return content


def check_output(path: str | Path) -> Path:
    """Refuse an output path that is not a memory file name, sits in a missing folder, or would
    overwrite something that is not a memgpt memory file."""
    from ..memories.files import read_state_file

    path = Path(path)
    if path.suffix not in OUTPUT_SUFFIXES:
        raise MemGPTError(f"the output should end in .mem or .safetensors, got {path.name!r} (refusing to overwrite other files)")
    if path.is_dir():
        raise MemGPTError(f"{path} is a directory")
    if not path.parent.is_dir():
        raise MemGPTError(f"folder {path.parent} does not exist")
    if path.exists():
        try:
            read_state_file(path)
        except MemGPTError:
            raise MemGPTError(f"{path} exists and is not a memgpt memory file; refusing to overwrite it") from None
    return path


def read_state_kind(path: str | Path) -> dict[str, str]:
    """Validate that `path` is a readable vectors memory file (no model needed); its metadata."""
    from ..memories.files import read_state_file

    return read_state_file(path, KIND)[1]


# ---- memory files --------------------------------------------------------------------------------


def save_encoded(path: str | Path, encoded: Encoded, model: PreTrainedModel) -> Path:
    """Write the vectors and token count (never the token ids) to a memory file, atomically."""
    from ..memories.files import write_state_file

    metadata = {"backbone": backbone_name(model), "fingerprint": fingerprint(model),
                "num_tokens": str(encoded.num_tokens),
                "prefix_ids": ",".join(map(str, encoded.prefix_ids)), "exact": str(encoded.exact).lower(), "steps": str(encoded.steps)}
    return write_state_file(path, KIND, {"vectors": encoded.vectors.float()}, metadata)


def load_encoded(path: str | Path, model: PreTrainedModel) -> Encoded:
    """Read a vectors memory file made for `model`; refuse other kinds, other backbones, bad shapes."""
    from ..memories.files import read_state_file

    tensors, meta = read_state_file(path, KIND)
    vectors = tensors.get("vectors")
    if vectors is None or set(tensors) != {"vectors"}:
        raise MemGPTError(f"{path} is not a vectors memory file (tensors: {', '.join(sorted(tensors)) or 'none'})")
    name, current = backbone_name(model), fingerprint(model)
    mismatch = (f"{path} was made for backbone {meta.get('backbone')!r} (weights {meta.get('fingerprint')}), "
                f"not this model ({name!r}, weights {current})")
    if meta.get("backbone") != name:
        raise MemGPTError(mismatch)
    check_fingerprint(path, meta.get("fingerprint"), current, mismatch)
    hidden = model.get_input_embeddings().weight.shape[1]
    if vectors.dim() != 2 or vectors.shape[0] < 1 or vectors.shape[1] != hidden or not torch.isfinite(vectors).all():
        raise MemGPTError(f"{path} holds vectors of shape {tuple(vectors.shape)}, expected finite [n, {hidden}]")
    vocab = model.get_input_embeddings().weight.shape[0]
    try:
        num_tokens = int(meta.get("num_tokens", ""))
        prefix = tuple(int(i) for i in meta.get("prefix_ids", "").split(",") if i)
        steps = int(meta.get("steps", "0"))
    except ValueError:
        raise MemGPTError(f"{path} has corrupt metadata (token count, prefix or steps)") from None
    if not 1 <= num_tokens <= MAX_TOKENS:
        raise MemGPTError(f"{path} has an invalid token count {num_tokens}")
    if any(not 0 <= i < vocab for i in prefix):
        raise MemGPTError(f"{path} has prefix token ids outside this model's vocabulary")
    return Encoded(vectors.float(), num_tokens, prefix, meta.get("exact") == "true", steps)
