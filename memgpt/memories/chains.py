"""Multi-hop evidence: from a "where is <thing>?" question, follow the people who handle the thing to
the facts the question needs but does not name ("Where is the football?" needs "John took the football
there." *and* "John went to the kitchen.").

Code only chooses what the reader sees; the reader (the model) answers. The choice is the current-state
rule of `latest_statements` generalised from people to the things they carry:

- hop 0: every sentence naming the thing, in order (a word lookup over all the document's sentences);
- hop 1: the person acting on it in each such sentence (the name nearest before the thing; names are
  capitalised words that never occur in lower case in the document);
- hop 2: that person's other sentences: while they carry the thing, all of them up to its next mention
  (where they took it); when nobody carried it on, their latest one before the mention (where they were
  when it happened). A person stops carrying a thing in a sentence with an English verb of letting go
  (RELEASE); given "to" someone, the receiver carries it on. Sentences naming another thing (a word after
  a verb of taking or letting go: TAKE, RELEASE) are left out: they are about that thing;
- "before X" in the question ends the story at the thing's last chain sentence naming X, and the reader
  is asked "Where is <thing>?" of the story up to there;
- of one person's sentences between two mentions that restate their place, the latest stays
  (`latest_statements`), and of mentions that follow each other, the last.

Everything is returned in document order: the 135M reader answers from the latest fact in front of it,
so a chain in order is one it can read ("John took the football there. John went to the kitchen." ->
kitchen). Measured on 4k haystacks before the suite run: qa2 20/20, qa3 9/12 (README).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_WORD = re.compile(r"\w+")
_STOP = frozenset("a an the is are was were be to of in on at for and or what where who whom which when how why "
                  "did do does with from by it its this that these those there he she they his her their".split())
MAX_CHAIN = 12  # sentences a chain may add
# English verbs (and particles) of letting go of a thing: after one, the person no longer carries it
RELEASE = re.compile(r"\b(?:dropped|drops|drop|discarded|discards|discard|left|leaves|put down|puts down|set down|"
                     r"sets down|threw away|throws away|gave|gives|give|handed|hands|passed|passes|sold|sells|lost|loses|"
                     r"abandoned|abandons)\b", re.IGNORECASE)
TAKE = re.compile(r"\b(?:took|takes|take|got|gets|grabbed|grabs|picked up|picks up|lifted|lifts|carried|carries|"
                  r"received|receives|bought|buys|found|finds)\b", re.IGNORECASE)
_THING_AFTER = re.compile(r"\s+(?:the|a|an)\s+(\w+)", re.IGNORECASE)
_THING = re.compile(r"^\s*where\s+(?:is|was|are|were)\s+(?:the\s+|a\s+|an\s+)?(\w+)", re.IGNORECASE)
_BEFORE = re.compile(r"\bbefore\s+(?:the\s+|a\s+|an\s+)?(\w+)", re.IGNORECASE)
_RECEIVER = re.compile(r"\bto\s+([A-Z]\w*)")


class Words:
    """Lower-case word sets of a document's sentences, and which capitalised words are names."""

    def __init__(self, sentences: Sequence[str]):
        self.sentences = sentences
        self.words = [set(_WORD.findall(s.lower())) for s in sentences]
        lower = {w for s in sentences for w in _WORD.findall(s) if w.islower()}
        self.names = {w.lower() for s in sentences for w in _WORD.findall(s) if w[:1].isupper() and w.lower() not in lower}

    def things(self) -> set[str]:
        """Words named right after a verb of taking or letting go ("took the apple", "put down the kite")."""
        found = set()
        for s in self.sentences:
            for verb in (*TAKE.finditer(s), *RELEASE.finditer(s)):
                m = _THING_AFTER.match(s, verb.end())
                if m:
                    found.add(m.group(1).lower())
        return found

    def having(self, word: str, start: int = 0, end: int | None = None) -> list[int]:
        end = len(self.sentences) if end is None else end
        return [i for i in range(start, end) if word in self.words[i]]

    def names_in(self, i: int, before: str | None = None) -> list[str]:
        """Names of sentence i in the order they occur; with `before`, the one nearest before that word
        (who acts on it: "Gentlemen of the House: Mary grabbed the violin there." -> Mary) comes first."""
        found = [w.lower() for w in _WORD.findall(self.sentences[i])]
        names = [w for w in found if w in self.names]
        if before in found:
            actors = [w for w in found[: found.index(before)] if w in self.names]
            if actors:
                names.remove(actors[-1])
                names.insert(0, actors[-1])
        return names


def question_thing(question: str, words: Words) -> str | None:
    """The thing a "where is the X?" question asks about, when X is a thing (not a person) of the document."""
    m = _THING.match(question)
    if not m:
        return None
    thing = m.group(1).lower()
    return thing if thing not in words.names and words.having(thing) else None


def thing_chain(thing: str, words: Words, cut_word: str | None = None) -> list[int]:
    """The chain of `thing` (`story`); with `cut_word`, the story of `thing` up to (not including) the
    last sentence of its chain naming that word: the chain of what happened before it."""
    chain = story(thing, words, len(words.sentences))
    named = [i for i in chain if cut_word in words.words[i]] if cut_word else []
    return story(thing, words, named[-1]) if named else chain


def story(thing: str, words: Words, limit: int) -> list[int]:
    """Sentences that place `thing`: each sentence naming it, the sentences of whoever carries it on
    until its next mention that name no other thing (where they took it), or when nobody carried it on,
    where its people were then (their latest such sentence before it); of the sentences before `limit`."""
    others = words.things() - {thing}
    mentions = words.having(thing, 0, limit)
    chain: set[int] = set(mentions)

    def placing(person: str, start: int, end: int) -> list[int]:
        return [i for i in words.having(person, start, end) if thing not in words.words[i] and not others & words.words[i]]

    for k, m in enumerate(mentions):
        end = mentions[k + 1] if k + 1 < len(mentions) else limit
        people = words.names_in(m, before=thing)
        carrier = _holder(words.sentences[m], people)
        after = placing(carrier, m + 1, end) if carrier else []  # hop 2: where the carrier took it
        chain.update(after)
        if not after:  # hop 1: where its people were when it happened (superseded when the carrier moved on)
            for person in dict.fromkeys(people[:1] + ([carrier] if carrier else [])):
                chain.update(placing(person, 0, m)[-1:])
    return sorted(chain)


def _holder(sentence: str, people: list[str]) -> str | None:
    """Who carries the thing after this sentence: its first person, unless they let go of it (then
    the person it is given "to", if any)."""
    if not people:
        return None
    if RELEASE.search(sentence):
        m = _RECEIVER.search(sentence)
        return m.group(1).lower() if m and m.group(1).lower() in people else None
    return people[0]


def expand(question: str, sentences: Sequence[str] | Words, seeds: list[int]) -> tuple[list[int], str]:
    """The sentence ids the reader should see, in document order, and the question to ask it: for
    "where is <thing>?" the thing's chain (for "where was <thing> before X?" the chain up to X, asked as
    "Where is <thing>?" of that story); for any other question the retrieved `seeds` and the question."""
    words = sentences if isinstance(sentences, Words) else Words(sentences)
    thing = question_thing(question, words)
    if thing is not None:
        cut = _BEFORE.search(question)
        chain = thing_chain(thing, words, cut.group(1).lower() if cut else None)
        if chain:
            return prune(chain, words, thing)[-MAX_CHAIN:], f"Where is the {thing}?" if cut else question
    return sorted(set(seeds)), question


def prune(ids: list[int], words: Words, thing: str) -> list[int]:
    """Between two sentences naming `thing`, of one person's sentences that restate their state
    ("went to the kitchen" ... "ran to the garden") only the latest stays (`latest_statements`); of
    sentences naming the thing, one followed at once (in the chain) by another of the same person goes
    ("grabbed the pillow", "dropped the pillow", "grabbed the pillow": the last says where it is)."""
    groups: dict[tuple[str, int], list[int]] = {}
    seen = 0  # mentions of the thing so far
    for i in ids:
        if thing in words.words[i]:
            seen += 1
            continue
        for person in words.names_in(i)[:1]:
            groups.setdefault((person, seen), []).append(i)
    dropped = {i for i, j in zip(ids, ids[1:])  # a mention restated by the next one, by the same person
               if thing in words.words[i] and thing in words.words[j]
               and words.names_in(i, before=thing)[:1] == words.names_in(j, before=thing)[:1]}
    for (person, _), mine in groups.items():
        texts = [words.sentences[i] for i in mine]
        kept = latest_statements(person, texts)
        dropped.update(i for i, t in zip(mine, texts) if t not in kept)
    return [i for i in ids if i not in dropped]


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
