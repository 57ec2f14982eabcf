"""Fact recall in noise: bAbI-style facts ("mary went to the kitchen .") scattered among filler
sentences across many segments, then "where is mary ?" answered by one word."""

from __future__ import annotations

import random

from ...errors import MemGPTError
from .base import IGNORE, Task

NAMES = ["mary", "john", "sandra", "daniel", "emma", "fred", "julie", "bill"]
PLACES = ["kitchen", "garden", "office", "hallway", "bedroom", "bathroom", "cellar", "park"]
VERBS = ["went", "moved", "journeyed", "travelled"]
NOUNS = ["grass", "sky", "sun", "sea", "road", "wind", "tree", "house", "river", "stone"]
ADJECTIVES = ["green", "blue", "yellow", "calm", "long", "cold", "tall", "old", "wide", "grey"]
GLUE = ["the", "to", "is", "where", "?", ".", "and", "very"]


class FactRecallTask(Task):
    """`num_facts` facts about distinct people hidden among filler, then one question per person in
    random order ("where is mary ? kitchen where is john ? park ..."); every answer word is scored."""

    name = "facts"
    min_segment_size = 5

    def __init__(self, num_facts: int = 3):
        self.num_facts = num_facts
        self.words = NAMES + PLACES + VERBS + NOUNS + ADJECTIVES + GLUE
        self.index = {w: i for i, w in enumerate(self.words)}
        self.vocab_size = len(self.words)

    def _ids(self, text: str) -> list[int]:
        return [self.index[w] for w in text.split()]

    def _filler(self, rng: random.Random) -> str:
        noun, adj = rng.choice(NOUNS), rng.choice(ADJECTIVES)
        return f"the {noun} is very {adj} ." if rng.random() < 0.3 else f"the {noun} is {adj} ."

    def sample(self, num_segments: int, segment_size: int, rng: random.Random) -> tuple[list[int], list[int]]:
        total = num_segments * segment_size
        people = rng.sample(NAMES, self.num_facts)
        places = [rng.choice(PLACES) for _ in people]
        facts = [self._ids(f"{p} {rng.choice(VERBS)} to the {pl} .") for p, pl in zip(people, places)]
        order = rng.sample(range(self.num_facts), self.num_facts)
        questions = [self._ids(f"where is {people[q]} ? {places[q]}") for q in order]
        room = total - sum(map(len, questions)) - sum(map(len, facts))
        if room < 0:
            raise MemGPTError(f"facts: {total} tokens cannot hold {self.num_facts} facts and their questions")
        sentences: list[list[int]] = []
        while room > 0:
            s = self._ids(self._filler(rng))[:room]
            sentences.append(s)
            room -= len(s)
        for fact in facts:  # at random sentence boundaries, anywhere before the question
            sentences.insert(rng.randrange(len(sentences) + 1), fact)
        ids = [tok for s in sentences for tok in s]
        labels = [IGNORE] * len(ids)
        for question in questions:  # the answer is each question's last word
            ids += question
            labels += [IGNORE] * (len(question) - 1) + [question[-1]]
        return ids, labels

    def decode(self, ids: list[int]) -> str:
        return " ".join(self.words[i] for i in ids)
