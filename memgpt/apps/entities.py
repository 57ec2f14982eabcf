"""What a document is about: its recurring names (people, places, organisations: capitalised phrases
said more than once) and its key terms (content words and word pairs, frequent in the document and
rare in general English), each with its count and the first self-contained sentence that uses it.

Faithful by construction: every term is a phrase of the document, cited where it is used.

How rare a word is in general English comes from the tokenizer: byte-pair merges are learned in order of
frequency, so the id of a word's single token grows with its rank (Zipf: information ~ log rank) and a
word of several tokens is rarer than any single-token one. spaCy's small English NER (350 MB installed)
and yake were measured against this (docs/summaries.md) and not taken.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from ..io.spans import Span, plain, reference_entry
from ..text.words import STOP

COMMON_RANK = 500  # a word whose token ranks above this is as common as function words: no information
NAME_FLOOR = 1.0  # a capitalised phrase is a name even when its words are common ("United States")
MIN_COUNT = 2  # a term said once is no subject of the document
_CAPITAL = re.compile(r"[A-Z][\w'’\-]*(?:\.(?=\s[A-Z]))?")
_TOKEN = re.compile(r"[^\W_][\w'’\-]*")
_JOINERS = frozenset({"of", "de", "von", "van", "du", "la", "for"})  # inside a name: "Department of State"


@dataclass
class Term:
    """A subject of the document: `text` as it is written there, said `count` times; `mention` is the
    sentence that first uses it on its own (the citation)."""

    text: str
    kind: str  # "name" (a capitalised phrase) | "term" (a key content word or pair)
    count: int
    mention: Span
    score: float = 0.0

    def to_dict(self) -> dict:
        return {"text": self.text, "kind": self.kind, "count": self.count, "citation": self.mention.to_dict()}


def names_in(sentence: str) -> list[str]:
    """Capitalised phrases of a sentence ("Monroe Doctrine", "Department of Commerce and Labor" gives
    "Department of Commerce", "Labor"); a sentence's first word counts only as part of a longer phrase."""
    tokens = [(re.sub(r"['’]s$", "", m.group()), m.start()) for m in _TOKEN.finditer(sentence)]
    found: list[str] = []
    k = 0
    while k < len(tokens):
        word, _ = tokens[k]
        if not word[:1].isupper() or word.lower() in STOP or re.match(r"I['’]", word):  # "I'm", "I've"
            k += 1
            continue
        j = k + 1
        while j < len(tokens):
            nxt = tokens[j][0]
            if nxt[:1].isupper() and nxt.lower() not in STOP:
                j += 1
            elif nxt.lower() in _JOINERS and j + 1 < len(tokens) and tokens[j + 1][0][:1].isupper():
                j += 2
            else:
                break
        words = [t for t, _ in tokens[k:j]]
        if k == 0 and len(words) == 1:  # "Congress passed ..." cannot tell a name from a sentence start
            k = j
            continue
        phrase = " ".join(words)
        if len(phrase) >= 2:
            found.append(phrase)
        k = j
    return found


def _singular(word: str) -> str:
    """"corporations" and "corporation" are one term."""
    return word[:-1] if word.endswith("s") and not word.endswith("ss") else word


def _focus(where: set[int], deciles: int) -> float:
    """A subject is discussed somewhere (idf over the document's tenths): a word in every tenth is its
    vocabulary ("matters", the "Congress" a speech is addressed to), not a subject."""
    return math.log(1 + deciles / len(where))


def _rarity(word: str, token_ids: Callable[[str], list[int]]) -> float:
    ids = token_ids(" " + word.lower())
    rank = ids[0] if len(ids) == 1 else 1 << 16
    return max(0.0, math.log(rank / COMMON_RANK))


def about(texts: list[str], spans: list[Span], token_ids: Callable[[str], list[int]], usable: Callable[[int], bool],
          limit: int = 12) -> list[Term]:
    """The document's main names and terms, best first. `texts`/`spans`: its sentences; `token_ids`: the
    tokenizer (for rarity); `usable(i)`: whether sentence i can be cited alone (a defining mention)."""
    n = len(texts)
    if n == 0:
        return []
    deciles = max(1, min(10, n))
    name_count: Counter[str] = Counter()
    name_where: dict[str, set[int]] = defaultdict(set)
    first: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(texts):
        if reference_entry(t):  # a bibliography's authors and publishers are not what it is about
            continue
        for name in names_in(plain(t)):
            name_count[name] += 1
            name_where[name].add(i * deciles // n)
            first[name].append(i)
    lower_count: Counter[str] = Counter()
    surface: dict[str, Counter[str]] = defaultdict(Counter)
    lower_where: dict[str, set[int]] = defaultdict(set)
    for i, t in enumerate(texts):
        tokens = [w for w in _TOKEN.findall(plain(t))]
        keys = []
        for w in tokens:
            ok = w.islower() and w not in STOP and len(w) > 3 and w.isalpha()
            keys.append(_singular(w) if ok else None)
        for w, key in zip(tokens, keys):
            if key:
                lower_count[key] += 1
                surface[key][w] += 1
                lower_where[key].add(i * deciles // n)
                first[key].append(i)
        for (a, ka), (b, kb) in zip(zip(tokens, keys), zip(tokens[1:], keys[1:])):
            if ka and kb:
                key = f"{ka} {kb}"
                lower_count[key] += 1
                surface[key][f"{a} {b}"] += 1
                lower_where[key].add(i * deciles // n)
                first[key].append(i)
    terms: list[Term] = []
    for name, c in name_count.items():
        if c >= MIN_COUNT:
            info = max(NAME_FLOOR, max(_rarity(w, token_ids) for w in name.split()))
            terms.append(_term(name, "name", c, c * info * _focus(name_where[name], deciles), first[name], spans, usable))
    for key, c in lower_count.items():
        if c < MIN_COUNT:
            continue
        text = surface[key].most_common(1)[0][0]
        info = sum(_rarity(w, token_ids) for w in text.split())
        if info <= 0:
            continue
        terms.append(_term(text, "term", c, c * info * _focus(lower_where[key], deciles), first[key], spans, usable))
    terms.sort(key=lambda t: -t.score)
    chosen: list[Term] = []
    for t in terms:
        words = set(t.text.lower().split())
        if any(words & set(c.text.lower().split()) for c in chosen):  # "Panama" after "Panama Canal"
            continue
        chosen.append(t)
        if len(chosen) == limit:
            break
    return chosen


def _term(text: str, kind: str, count: int, score: float, where: list[int], spans: list[Span],
          usable: Callable[[int], bool]) -> Term:
    mention = next((i for i in where if usable(i)), where[0])
    return Term(text, kind, count, spans[mention], score)
