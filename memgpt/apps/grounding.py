"""Checking what the model wrote against the document it wrote about.

A sentence is *supported* when
- every name and number in it occurs in the document (spaCy's proper nouns and named entities, words
  with a digit: "Roosevelt", "1903", "$5,000"), and
- its content words are found in the document sentences nearest to it (nearest by sentence embedding;
  words compared by lemma, so "ratified" meets "ratify"): those sentences are its citations.

Sentences that fail are what a summary must not say: invented people, numbers, topics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from ..text.pipeline import analyse, analyse_all
from ..text.words import STOP, is_content, lemma, tokens

NEAREST = 3  # document sentences a summary sentence is compared with (its candidate citations)
MIN_COVERAGE = 0.6  # share of content words that must be found in the cited sentences
MIN_SIMILARITY = 0.35  # a cited sentence is at least this close (cosine) to the summary sentence


def words(text: str) -> list[str]:
    """The words and numbers of `text` (spaCy's tokens without punctuation)."""
    return [t for t in tokens(text) if any(c.isalnum() for c in t)]


def number_key(word: str) -> str:
    """"5,000" and "5000" are the same number; "1903." is "1903"."""
    return re.sub(r"[,.](?=\d{3}\b)", "", word).rstrip(".,").lower()


def names_and_numbers(sentence: str) -> list[str]:
    """The sentence's names (proper nouns, named entities other than numbers) and words with a digit."""
    found = []
    for t in analyse(sentence):
        if any(c.isdigit() for c in t.text) or (
                (t.pos_ == "PROPN" or t.ent_iob_ != "O" and not t.like_num) and t.text[:1].isupper() and t.lower_ not in STOP):
            found.append(t.text)
    return found


def content_words(sentence: str) -> list[str]:
    return [w for w in words(sentence) if w.lower() not in STOP and not w.isdigit() and len(w) > 2]


@dataclass
class Vocabulary:
    """The document's words as the checker compares them: lowercased words, numbers without separators."""

    words: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, texts: list[str]) -> Vocabulary:
        vocab = cls()
        for t in texts:
            for w in words(t):
                vocab.words.add(number_key(w) if any(c.isdigit() for c in w) else w.lower().replace("’", "'"))
        return vocab

    def has(self, word: str) -> bool:
        key = number_key(word) if any(c.isdigit() for c in word) else word.lower().replace("’", "'")
        return key in self.words or key.split("'")[0] in self.words


@dataclass
class Support:
    """The verdict on one sentence: supported or not, why not, and the document sentences it rests on."""

    supported: bool
    citations: list[int]  # sentence indices into the document index, in document order
    unsupported_names: list[str] = field(default_factory=list)
    coverage: float = 0.0


def check(sentence: str, vector: torch.Tensor, texts: list[str], vectors: torch.Tensor, vocab: Vocabulary) -> Support:
    """Is `sentence` (embedded as `vector`) supported by the document (`texts`, embedded as `vectors`)?"""
    missing = [w for w in names_and_numbers(sentence) if not vocab.has(w)]
    if len(texts) == 0:
        return Support(False, [], missing)
    sims = vectors @ vector  # (N,)
    nearest = torch.topk(sims, min(NEAREST, len(texts))).indices.tolist()
    cited = [i for i in nearest if float(sims[i]) >= MIN_SIMILARITY]
    found = {lemma(t) for d in analyse_all([texts[i] for i in cited], full=False) for t in d}
    content = [lemma(t) for t in analyse(sentence, full=False) if is_content(t) and len(t) > 2 and not t.like_num]
    coverage = sum(w in found for w in content) / len(content) if content else 1.0
    ok = not missing and bool(cited) and coverage >= MIN_COVERAGE
    return Support(ok, sorted(cited), missing, coverage)


def repeats(text: str) -> bool:
    """Does `text` say a phrase (three words) twice, as a small model's loops do?"""
    low = [w.lower() for w in words(text)]
    grams = [tuple(low[k : k + 3]) for k in range(max(0, len(low) - 2))]
    return len(set(grams)) != len(grams)


def unsupported_name_share(summary_sentences: list[str], vocab: Vocabulary) -> tuple[int, int]:
    """(names and numbers not in the document, names and numbers in all) over a summary: the benchmark's
    faithfulness figure, the same test the checker applies."""
    found = [w for s in summary_sentences for w in names_and_numbers(s)]
    return sum(not vocab.has(w) for w in found), len(found)
