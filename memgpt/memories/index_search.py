"""The sentence index as a search engine: for a memory kind allowed to consult it (`use_index=True`),
the document sentences that share the most content terms with a question (IDF-weighted).

The query is the question's terms only, never the memory's own answer: the search must not be steered
towards whatever the model already said.
"""

from __future__ import annotations

import torch

from ..io.spans import DocumentIndex, Span, plain
from ..text.words import terms
from .lexical import Lexicon

SEARCH_SENTENCES = 6  # sentences returned at most (the reader's focus)


def sentence_lexicon(index: DocumentIndex, work: dict) -> Lexicon:
    """The lexicon of the index's sentences, built once per state (`work`: the state's scratch)."""
    lexicon = work.get("lexicon_sentences")
    if lexicon is None or len(lexicon) != len(index):
        lexicon = work["lexicon_sentences"] = Lexicon([plain(t) for t in index.texts])
    return lexicon


def search(index: DocumentIndex, question: str, work: dict, k: int = SEARCH_SENTENCES) -> list[Span]:
    """The `k` sentences of `index` scoring highest for the question's content terms, in document order
    (none when no sentence shares a term with it)."""
    asked = terms(question)
    if not asked or not len(index):
        return []
    scores = sentence_lexicon(index, work).scores(asked)
    top = torch.argsort(scores, descending=True, stable=True)[:k].tolist()
    return index.spans(sorted(i for i in top if scores[i] > 0))
