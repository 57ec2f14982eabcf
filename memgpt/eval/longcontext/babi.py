"""bAbI-style question answering hidden in long prose (BABILong-style), tasks qa1..qa5.

Each story is simulated in a tiny world (people move, pick up, drop and give objects), rendered from
templates with names, places and objects drawn from the lists below, and its sentences are inserted
in order at random sentence boundaries of a haystack (speeches of the sample's split). Haystack
sentences that mention any name or candidate answer of the task are skipped, so every answer word
in the context comes from a fact.

| task | needs | question |
|---|---|---|
| qa1 single supporting fact | last move of a person | Where is Mary? |
| qa2 two supporting facts | who holds the object, where they went | Where is the football? |
| qa3 three supporting facts | the object's path | Where was the football before the kitchen? |
| qa4 two-argument relations | a relation or its inverse | What is north of the kitchen? / What is the kitchen north of? |
| qa5 three-argument relations | who gave what to whom | Who gave the cake to Fred? (and four other forms) |
| absent | nothing: the person or thing is nowhere in the document | Where is Hugo? / Where is the kite? |

`absent` is correct when the answer is the abstention phrase ("The document does not say.").
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from .haystack import count_tokens, draw_haystack, insert_sorted
from .sample import Sample

NAMES = ["Mary", "John", "Sandra", "Daniel", "Emma", "Fred", "Julie", "Jeff", "Yann", "Olivia", "Lucas",
         "Nora", "Hugo", "Chloe", "Oscar", "Ruby"]
PLACES = ["kitchen", "garden", "hallway", "bedroom", "bathroom", "cellar", "attic", "garage", "balcony",
          "pantry", "playground", "studio"]
OBJECTS = ["football", "apple", "milk", "cake", "guitar", "umbrella", "kettle", "violin", "lantern", "pillow",
           "backpack", "notebook", "banana", "kite"]
MOVES = ["went to", "moved to", "journeyed to", "travelled to", "went back to", "walked to", "ran to"]
TAKES = ["picked up", "got", "grabbed", "took"]
DROPS = ["dropped", "put down", "left", "discarded"]
GIVES = ["gave", "handed", "passed"]
DIRECTIONS = {"north": "south", "south": "north", "east": "west", "west": "east"}


@dataclass
class Story:
    facts: list[str]
    question: str
    answer: str


class _World:
    """People with a known place, objects held or lying somewhere; facts recorded as they happen."""

    def __init__(self, rng: random.Random, people: int, objects: int = 0):
        self.rng = rng
        self.people = rng.sample(NAMES, people)
        self.objects = rng.sample(OBJECTS, objects)
        self.at: dict[str, str] = {}  # person -> place
        self.holder: dict[str, str | None] = {o: None for o in self.objects}
        self.obj_at: dict[str, str | None] = {o: None for o in self.objects}
        self.path: dict[str, list[str]] = {o: [] for o in self.objects}  # places the object has been in
        self.facts: list[str] = []

    def _place_object(self, obj: str, place: str) -> None:
        self.obj_at[obj] = place
        if not self.path[obj] or self.path[obj][-1] != place:
            self.path[obj].append(place)

    def move(self, person: str) -> None:
        place = self.rng.choice([p for p in PLACES if p != self.at.get(person)])
        self.at[person] = place
        self.facts.append(f"{person} {self.rng.choice(MOVES)} the {place}.")
        for obj, who in self.holder.items():
            if who == person:
                self._place_object(obj, place)

    def take(self, person: str, obj: str) -> None:
        self.holder[obj] = person
        self._place_object(obj, self.at[person])
        self.facts.append(f"{person} {self.rng.choice(TAKES)} the {obj} there.")

    def drop(self, obj: str) -> None:
        person = self.holder[obj]
        self.holder[obj] = None
        self.facts.append(f"{person} {self.rng.choice(DROPS)} the {obj}.")

    def random_event(self) -> None:
        """A move, or a take/drop when one is possible."""
        rng = self.rng
        placed = [p for p in self.people if p in self.at]
        takeable = [(p, o) for p in placed for o in self.objects
                    if self.holder[o] is None and self.obj_at[o] in (None, self.at[p])]
        held = [o for o in self.objects if self.holder[o] is not None]
        r = rng.random()
        if takeable and r < 0.35:
            self.take(*rng.choice(takeable))
        elif held and r < 0.5:
            self.drop(rng.choice(held))
        else:
            self.move(rng.choice(self.people))


def _qa1(rng: random.Random) -> Story:
    world = _World(rng, rng.randint(2, 4))
    for _ in range(rng.randint(2, 8)):
        world.move(rng.choice(world.people))
    person = rng.choice(sorted(world.at))
    return Story(world.facts, f"Where is {person}?", world.at[person])


def _object_world(rng: random.Random, people: tuple[int, int], objects: tuple[int, int],
                  events: tuple[int, int]) -> _World:
    """Everyone placed, someone holding an object, then a random number of events (ranges inclusive)."""
    world = _World(rng, rng.randint(*people), rng.randint(*objects))
    for p in world.people:
        world.move(p)
    world.take(rng.choice(world.people), rng.choice(world.objects))
    for _ in range(rng.randint(*events)):
        world.random_event()
    return world


def _qa2(rng: random.Random) -> Story:
    while True:
        world = _object_world(rng, (2, 3), (1, 3), (2, 8))
        # asked about an object someone took: its place needs the take and where the taker was
        known = [o for o in world.objects if world.path[o]]
        if known:
            obj = rng.choice(sorted(known))
            return Story(world.facts, f"Where is the {obj}?", world.obj_at[obj])


def _qa3(rng: random.Random) -> Story:
    while True:
        world = _object_world(rng, (1, 3), (1, 2), (3, 9))
        ok = [o for o in world.objects if len(world.path[o]) >= 2 and world.path[o].count(world.path[o][-1]) == 1]
        if ok:
            obj = rng.choice(sorted(ok))
            last, before = world.path[obj][-1], world.path[obj][-2]
            return Story(world.facts, f"Where was the {obj} before the {last}?", before)


def _qa4(rng: random.Random) -> Story:
    a, b, c = rng.sample(PLACES, 3)
    d1, d2 = rng.sample(list(DIRECTIONS), 2)
    facts = [f"The {a} is {d1} of the {b}.", f"The {c} is {d2} of the {b}."]
    rng.shuffle(facts)
    if rng.random() < 0.5:
        return Story(facts, f"What is {d1} of the {b}?", a)
    return Story(facts, f"What is the {b} {DIRECTIONS[d1]} of?", a)  # b is opposite(d1) of a


def _qa5(rng: random.Random) -> Story:
    while True:
        people = rng.sample(NAMES, rng.randint(3, 4))
        objects = rng.sample(OBJECTS, rng.randint(1, 3))
        holder = {o: rng.choice(people) for o in objects}
        facts = [f"{holder[o]} {rng.choice(TAKES)} the {o}." for o in objects]
        gives: list[tuple[str, str, str]] = []
        for _ in range(rng.randint(2, 5)):
            obj = rng.choice(objects)
            giver = holder[obj]
            receiver = rng.choice([p for p in people if p != giver])
            gives.append((giver, obj, receiver))
            holder[obj] = receiver
            facts.append(f"{giver} {rng.choice(GIVES)} the {obj} to {receiver}.")
        g, o, r = rng.choice(gives)
        forms = []
        if len({x[0] for x in gives if x[1:] == (o, r)}) == 1:
            forms.append((f"Who gave the {o} to {r}?", g))
        if len({x[2] for x in gives if x[:2] == (g, o)}) == 1:
            forms.append((f"Who did {g} give the {o} to?", r))
        if len({x[1] for x in gives if (x[0], x[2]) == (g, r)}) == 1:
            forms.append((f"What did {g} give to {r}?", o))
        last = [x for x in gives if x[1] == o][-1]
        forms.append((f"Who received the {o}?", last[2]))
        forms.append((f"Who gave the {o}?", last[0]))
        question, answer = rng.choice(forms)
        return Story(facts, question, answer)


def _absent(rng: random.Random) -> Story:
    """A qa1 or qa2 story, asked about a person or a thing it never names (nor does the haystack):
    the right answer is the abstention phrase."""
    from ...memories.abstention import NOT_IN_DOCUMENT

    if rng.random() < 0.5:
        world = _World(rng, rng.randint(2, 4))
        for _ in range(rng.randint(2, 8)):
            world.move(rng.choice(world.people))
        return Story(world.facts, f"Where is {rng.choice([n for n in NAMES if n not in world.people])}?", NOT_IN_DOCUMENT)
    world = _object_world(rng, (2, 3), (1, 3), (2, 8))
    thing = rng.choice([o for o in OBJECTS if o not in world.objects])
    return Story(world.facts, f"Where is the {thing}?", NOT_IN_DOCUMENT)


STORIES = {"qa1": _qa1, "qa2": _qa2, "qa3": _qa3, "qa4": _qa4, "qa5": _qa5}
UNANSWERABLE = {"absent": _absent}  # stories whose question the document cannot answer
LABELS = {name: [p.lower() for p in PLACES] for name in ("qa1", "qa2", "qa3", "qa4", "absent")}
LABELS["qa5"] = [n.lower() for n in NAMES] + [o.lower() for o in OBJECTS]


def _exclusion() -> re.Pattern[str]:
    words = sorted({*NAMES, *PLACES, *OBJECTS}, key=len, reverse=True)
    return re.compile(r"\b(?:" + "|".join(map(re.escape, words)) + r")\b", re.IGNORECASE)


EXCLUDE = _exclusion()


def make_babi(name: str, length: int, index: int, seed: int, split: str, rng: random.Random) -> Sample:
    """One qa sample: the story's facts in order at random boundaries of a haystack of ~`length` tokens."""
    story = (STORIES | UNANSWERABLE)[name](rng)
    budget = max(0, length - sum(count_tokens(story.facts)))
    haystack, docs, _ = draw_haystack(budget, split, rng, exclude=EXCLUDE) if budget else ([], [], 0)
    sentences, positions = insert_sorted(haystack, story.facts, rng)
    return Sample(
        task=name, length=length, index=index, seed=seed, split=split, context=" ".join(sentences),
        question=story.question, prompt=story.question, answer=story.answer,
        labels=list(LABELS[name]), facts=story.facts, fact_positions=positions, documents=docs,
    )
