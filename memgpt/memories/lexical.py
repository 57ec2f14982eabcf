"""Lexical scores of a query's content terms against a document's texts (sentences or chunks).

Names and rare words such as "Brandt" or a number matter more here than in a sentence embedding. Terms
are content lemmas (`memgpt.text.words.terms`); each text's terms, their document frequencies and
an inverted index are built once per document.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

import torch

from ..text.words import terms_all


class Lexicon:
    """The content terms of each of `texts`, their document frequencies and postings."""

    def __init__(self, texts: Sequence[str]):
        self.terms = [frozenset(t) for t in terms_all(texts)]
        self.df = Counter(t for s in self.terms for t in s)
        self.postings: dict[str, list[int]] = {}
        for i, s in enumerate(self.terms):
            for t in s:
                self.postings.setdefault(t, []).append(i)

    def __len__(self) -> int:
        return len(self.terms)

    def idf(self, term: str) -> float:
        return math.log((len(self) + 1) / (self.df.get(term, 0) + 1)) + 1

    def having(self, query: Iterable[str]) -> list[int]:
        """Ids of the texts holding any of the `query` terms, in document order."""
        return sorted({i for t in set(query) for i in self.postings.get(t, ())})

    def scores(self, query: Sequence[str]) -> torch.Tensor:
        """(N,) IDF-weighted share of the query terms present in each text (0..1). A term the document
        lacks still counts in the whole, so a question about an absent name scores low. (bm25s, tried in
        its place on the same questions, did worse: benchmarks/results/retrieval_recall.json.)"""
        query = list(dict.fromkeys(query))
        if not query or not len(self):
            return torch.zeros(len(self))
        idf = {t: self.idf(t) for t in query}
        total = sum(idf.values())
        out = [0.0] * len(self)
        for t in query:
            for i in self.postings.get(t, ()):
                out[i] += idf[t] / total
        return torch.tensor(out, dtype=torch.float32)
