"""What a document is about, read by spaCy (`memgpt.text`): its names (named entities, as written) and its
key terms (content nouns, alone or with the noun or adjective before them in a noun chunk), each with its
count and the first self-contained sentence that uses it; and, when the document tells a story, its
characters (the people who are its most frequent subjects).

A term is a content noun or a name, by the library's knowledge, not a word list: a noun is a word the
lemmatizer's noun index (WordNet's nouns, shipped with spaCy's English pipeline) holds and the tagger
tags as a noun in most of its uses in the document ("thou" is a noun there, for a thousand, but is
tagged a pronoun, an adverb or a lower-case proper noun in a Bible); a name is a named entity of a
naming kind (not a date, number or quantity) whose proper nouns are capitalised.

How rare a word is in general English comes from the tokenizer: byte-pair merges are learned in order of
frequency, so the id of a word's single token grows with its rank (Zipf: information ~ log rank) and a
word of several tokens is rarer than any single-token one.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from spacy.tokens import Doc, Token

from ..io.spans import Span, reference_entry
from ..text.pipeline import analyse_all
from ..text.words import is_content, lemma, noun_index

COMMON_RANK = 500  # a word whose token ranks above this is as common as function words: no information
NAME_FLOOR = 1.0  # a name is information even when its words are common ("United States")
MIN_COUNT = 2  # a term said once is no subject of the document
NAMING = frozenset({"PERSON", "NORP", "FAC", "ORG", "GPE", "LOC", "PRODUCT", "EVENT", "WORK_OF_ART", "LAW",
                    "LANGUAGE"})  # spaCy's entity kinds that name something (not DATE, CARDINAL, ...)
STORY_SUBJECTS = 3  # a story: most of the document's 3 most frequent subjects are its characters


@dataclass
class Term:
    """A subject of the document: `text` as it is written there, said `count` times; `mention` is the
    sentence that first uses it on its own (the citation)."""

    text: str
    kind: str  # "character" (a person a story is told of) | "name" (a named entity) | "term" (a content noun)
    count: int
    mention: Span
    score: float = 0.0

    def to_dict(self) -> dict:
        return {"text": self.text, "kind": self.kind, "count": self.count, "citation": self.mention.to_dict()}


@dataclass
class Profile:
    """What spaCy finds in each sentence of a document: `names[i]` its names, `nouns[i]` its key-term
    lemmas (single nouns and pairs "interstate commerce"), `actors[i]` the names that are a subject of
    one of its verbs; `kind[name]` the name's most frequent entity label, `surface[key]` a term as most
    often written; `characters`: the people a story tells of, most frequent first ([] for no story)."""

    docs: list[Doc]
    names: list[list[str]]
    nouns: list[list[str]]
    actors: list[set[str]]
    kind: dict[str, str]
    surface: dict[str, str]
    characters: list[str] = field(default_factory=list)

    def items(self, i: int) -> set[str]:
        """The names and key-term lemmas of sentence i."""
        return set(self.names[i]) | set(self.nouns[i])


def _name(ent) -> str | None:
    """An entity as a name: leading determiners and a trailing possessive dropped; None when it names
    nothing (a date, a number) or its proper nouns are not capitalised ("thou" tagged a place)."""
    start = ent.start + (ent[0].pos_ == "DET")
    end = ent.end - (ent[-1].tag_ == "POS")  # "Ford's Theatre" stays as written; "Ford's" is "Ford"
    tokens = ent.doc[start:end] if start < end else []
    if ent.label_ not in NAMING or not len(tokens) or not tokens[0].text[:1].isupper():
        return None
    if any(t.pos_ == "PROPN" and not t.text[:1].isupper() for t in tokens) or not any(t.is_alpha for t in tokens):
        return None
    return tokens.text


def profile(texts: list[str]) -> Profile:
    """Analyse the sentences `texts` (plain text) once: names, key terms, acting names, characters."""
    docs = analyse_all(texts, full=True)
    nouns_known = noun_index()
    tagged: dict[str, Counter[str]] = defaultdict(Counter)  # lemma -> how the tagger tags it here
    for doc in docs:
        for t in doc:
            if t.is_alpha:  # a lower-case "proper noun" ("thou") is no name
                tagged[lemma(t)]["NOUN" if t.pos_ == "NOUN" or (t.pos_ == "PROPN" and t.text[:1].isupper())
                                 else t.pos_ if t.pos_ == "ADJ" else "other"] += 1

    def usually(t: Token, pos: str) -> bool:
        return t.is_alpha and is_content(t) and tagged[lemma(t)].most_common(1)[0][0] == pos

    def is_noun(t: Token) -> bool:
        return t.pos_ == "NOUN" and len(lemma(t)) > 2 and lemma(t) in nouns_known and usually(t, "NOUN")

    names, nouns, actors = [], [], []
    labels: dict[str, Counter[str]] = defaultdict(Counter)
    written: dict[str, Counter[str]] = defaultdict(Counter)
    for doc, text in zip(docs, texts):
        found, where = [], {}
        if not reference_entry(text):  # a bibliography's authors and publishers are not what it is about
            for ent in doc.ents:
                name = _name(ent)
                if name:
                    found.append(name)
                    labels[name][ent.label_] += 1
                    for t in ent:
                        where[t.i] = name
        names.append(found)
        keys = []
        for t in doc:
            if t.i in where or not is_noun(t):
                continue
            keys.append(lemma(t))
            written[lemma(t)][t.text.lower()] += 1
            before = doc[t.i - 1] if t.i > 0 else None
            if (before is not None and before.head.i == t.i and before.i not in where
                    and ((before.pos_ == "ADJ" and usually(before, "ADJ")) or is_noun(before))):
                pair = f"{lemma(before)} {lemma(t)}"
                keys.append(pair)
                written[pair][f"{before.text.lower()} {t.text.lower()}"] += 1
        nouns.append(keys)
        actors.append({where[t.i] for t in doc if t.dep_ in ("nsubj", "nsubjpass") and t.i in where})
    kind = {n: c.most_common(1)[0][0] for n, c in labels.items()}
    surface = {k: c.most_common(1)[0][0] for k, c in written.items()}
    made = Profile(docs, names, nouns, actors, kind, surface)
    made.characters = characters(made)
    return made


def characters(p: Profile) -> list[str]:
    """The people a story tells of, most mentioned first, when the document is a story: most of its
    STORY_SUBJECTS most frequent sentence subjects (pronouns aside) are people; else []."""
    subjects: Counter[str] = Counter()
    for doc, acting in zip(p.docs, p.actors):
        for t in doc:
            if t.dep_ in ("nsubj", "nsubjpass") and t.pos_ != "PRON" and not t.ent_type_:
                subjects[lemma(t)] += 1
        subjects.update(acting)
    top = [s for s, _ in subjects.most_common(STORY_SUBJECTS)]
    people = [s for s in top if p.kind.get(s) == "PERSON"]
    if len(people) * 2 <= len(top):
        return []
    counts = Counter(n for found in p.names for n in found if p.kind.get(n) == "PERSON")
    acted = Counter(n for acting in p.actors for n in acting)
    return [n for n, c in counts.most_common() if c >= MIN_COUNT and acted[n]]


def _focus(where: set[int], deciles: int) -> float:
    """A subject is discussed somewhere (idf over the document's tenths): a word in every tenth is its
    vocabulary ("matters", the "Congress" a speech is addressed to), not a subject."""
    return math.log(1 + deciles / len(where))


def _rarity(word: str, token_ids: Callable[[str], list[int]]) -> float:
    ids = token_ids(" " + word.lower())
    rank = ids[0] if len(ids) == 1 else 1 << 16
    return max(0.0, math.log(rank / COMMON_RANK))


def about(p: Profile, spans: list[Span], token_ids: Callable[[str], list[int]], usable: Callable[[int], bool],
          limit: int = 12) -> list[Term]:
    """The document's characters (a story's), then its main names and terms, best first: count x rarity
    (`token_ids`: the tokenizer) x focus. `usable(i)`: whether sentence i can be cited alone."""
    n = len(p.names)
    if n == 0:
        return []
    deciles = max(1, min(10, n))
    count: Counter[str] = Counter()
    where: dict[str, set[int]] = defaultdict(set)
    first: dict[str, list[int]] = defaultdict(list)
    for i in range(n):
        for key in p.names[i] + p.nouns[i]:
            count[key] += 1
            where[key].add(i * deciles // n)
            first[key].append(i)
    terms: list[Term] = []
    cast = set(p.characters)
    for key, c in count.items():
        if c < MIN_COUNT:
            continue
        if key in p.kind:
            info = max(NAME_FLOOR, max(_rarity(w, token_ids) for w in key.split()))
            kind = "character" if key in cast else "name"
            terms.append(_term(key, kind, c, c * info * _focus(where[key], deciles), first[key], spans, usable))
        else:
            text = p.surface[key]
            info = sum(_rarity(w, token_ids) for w in text.split())
            if info > 0:
                terms.append(_term(text, "term", c, c * info * _focus(where[key], deciles), first[key], spans, usable))
    terms.sort(key=lambda t: (t.kind != "character", -t.score))
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
