"""Evidence for a summary: the document's most central sentences, spread over all of it.

One encoder pass over the sentences (the retrieval memory's embeddings), then a greedy choice within a
token budget: a sentence scores by how close it is to the whole document and to its own part (so every
part of a long document is represented), sentences too close to one already chosen are skipped, and the
choice is returned in document order. No language model runs, so this costs seconds at any length.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
from spacy.tokens import Doc

from ..io.spans import plain
from ..text.pipeline import analyse

OPENING = 5  # words tagged to tell how a sentence opens
MIN_WORDS = 8  # shorter sentences are headings, dates, fragments
REDUNDANT = 0.8  # cosine above which a sentence repeats one already chosen
LEAD_BONUS = 0.1  # documents state their subject first: the opening sentence gets a boost
_LETTERS = re.compile(r"[^\W\d_]")
def prose(text: str) -> bool:
    """A sentence worth quoting: enough words, mostly letters (not a table row, code or a list of numbers)."""
    words = text.split()
    return len(words) >= MIN_WORDS and len(_LETTERS.findall(text)) >= 0.6 * len(text.replace(" ", ""))


def refers_back(doc: Doc) -> bool:
    """Does a sentence open on a word that points at an earlier one: a personal or demonstrative pronoun
    or determiner ("They ...", "This treaty ..."), a conjunction, or a function adverb ("However",
    "There")? (spaCy's tags and morphology, its stop list.)"""
    first = next((t for t in doc if not t.is_punct and not t.is_space), None)
    if first is None:
        return False
    kind = first.morph.get("PronType")
    return bool(set(kind) & {"Prs", "Dem", "Rel"}) or first.pos_ in ("CCONJ", "PRON") or (
        first.pos_ in ("ADV", "SCONJ", "DET") and first.is_stop and "Art" not in kind)


def stands_alone(text: str) -> bool:
    """A sentence a reader understands without the one before it."""
    opening = " ".join(text.split()[:OPENING])  # the first words decide, and tag as fast as any
    return not refers_back(analyse(opening, full=False))


def select(texts: list[str], vectors: torch.Tensor, budget: int, count_tokens: Callable[[str], int],
           parts: int | None = None) -> list[int]:
    """Indices (ascending) of sentences to quote, at most `budget` tokens in all.

    `vectors`: (N, D) unit sentence embeddings, one per text. `parts`: how many stretches of the document
    must each contribute (default: as many as sentences fit the budget, so each stretch gives one)."""
    n = len(texts)
    if n == 0:
        return []
    candidates = ([i for i in range(n) if prose(texts[i]) and stands_alone(texts[i])]
                  or [i for i in range(n) if prose(texts[i])] or list(range(n)))
    lengths = {i: count_tokens(plain(texts[i])) for i in candidates}
    if sum(lengths.values()) <= budget:
        return candidates
    fit = max(1, int(budget / (sum(lengths.values()) / len(lengths))))  # ~ how many sentences fit
    parts = max(1, min(parts or fit, len(candidates)))
    centroid = torch.nn.functional.normalize(vectors[candidates].mean(0), dim=0)
    part_of = {i: min(parts - 1, k * parts // len(candidates)) for k, i in enumerate(candidates)}
    part_centroids = torch.stack([
        torch.nn.functional.normalize(vectors[[i for i in candidates if part_of[i] == p]].mean(0), dim=0)
        for p in range(parts)])  # (P, D)
    score = {i: float(vectors[i] @ centroid + vectors[i] @ part_centroids[part_of[i]]) / 2 for i in candidates}
    score[candidates[0]] += LEAD_BONUS
    # each part in turn takes its best remaining sentence: coverage first, then centrality
    queues = [sorted((i for i in candidates if part_of[i] == p), key=lambda i: -score[i]) for p in range(parts)]
    order = sorted(range(parts), key=lambda p: -max((score[i] for i in queues[p]), default=-1.0))
    order.sort(key=lambda p: p != 0)  # the opening part first: it usually states the subject
    chosen: list[int] = []
    used = 0
    while any(queues):
        for p in order:
            while queues[p]:
                i = queues[p].pop(0)
                if used + lengths[i] > budget:
                    continue
                if chosen and float((vectors[chosen] @ vectors[i]).max()) > REDUNDANT:
                    continue
                chosen.append(i)
                used += lengths[i]
                break
    return sorted(chosen) or [max(candidates, key=lambda i: score[i])]  # one sentence, even over the budget
