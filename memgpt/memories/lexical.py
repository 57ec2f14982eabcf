"""Lexical scores of a query's content terms against a document's texts (sentences or chunks).

Names and rare words such as "Brandt" or a number matter more here than in a sentence embedding. Terms
are stemmed content words (`memgpt.io.words.terms`); each text's terms, their document frequencies and
an inverted index are built once per document.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

import torch

from ..io.words import terms

SCORER = "overlap"  # "overlap" (IDF-weighted share of query terms present) or "bm25" (bm25s)


class Lexicon:
    """The content terms of each of `texts`, their document frequencies and postings."""

    def __init__(self, texts: Sequence[str]):
        self.terms = [frozenset(terms(t)) for t in texts]
        self.df = Counter(t for s in self.terms for t in s)
        self.postings: dict[str, list[int]] = {}
        for i, s in enumerate(self.terms):
            for t in s:
                self.postings.setdefault(t, []).append(i)
        self._bm25 = None
        self._tokens = [terms(t) for t in texts] if SCORER == "bm25" else None

    def __len__(self) -> int:
        return len(self.terms)

    def idf(self, term: str) -> float:
        return math.log((len(self) + 1) / (self.df.get(term, 0) + 1)) + 1

    def having(self, query: Iterable[str]) -> list[int]:
        """Ids of the texts holding any of the `query` terms, in document order."""
        return sorted({i for t in set(query) for i in self.postings.get(t, ())})

    def scores(self, query: Sequence[str]) -> torch.Tensor:
        """(N,) lexical score of each text for the query terms, about 0..1 (1: every term present)."""
        query = list(dict.fromkeys(query))
        if not query or not len(self):
            return torch.zeros(len(self))
        if SCORER == "bm25":
            return self._bm25_scores(query)
        idf = {t: self.idf(t) for t in query}
        total = sum(idf.values())
        out = torch.zeros(len(self))
        for t in query:
            for i in self.postings.get(t, ()):
                out[i] += idf[t] / total
        return out

    def _bm25_scores(self, query: list[str]) -> torch.Tensor:
        """bm25s (Lucene BM25) scores over the sum of the query terms' IDFs: a text holding each term
        once, at the average length, scores about 1; a term the document lacks still counts in the sum."""
        import bm25s

        if self._bm25 is None:
            self._bm25 = bm25s.BM25()
            self._bm25.index([t or [""] for t in self._tokens], show_progress=False)
        n = len(self)
        total = sum(math.log(1 + (n - self.df.get(t, 0) + 0.5) / (self.df.get(t, 0) + 0.5)) for t in query)
        known = [t for t in query if t in self.df]
        if not known:
            return torch.zeros(n)
        raw = torch.as_tensor(self._bm25.get_scores(known), dtype=torch.float32)
        return raw / total
