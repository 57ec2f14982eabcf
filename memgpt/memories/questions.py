"""What a question asks and which evidence spans could answer it, from spaCy's parse: the answer type
from the wh-word (who -> PERSON, ORG, NORP; "which room" -> spans naming a room, by lemma), candidates
(entities, noun chunks), and each one's *parse reading*: how many of the question's words stand to it as
to the wh-word ("Bob lives in Rome." for "Who lives in Rome?": the subject of `live`, `Rome` under `in`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from spacy.tokens import Doc, Span, Token

from ..text.pipeline import analyse
from ..text.words import is_content, lemma, number_values

PERSON = frozenset({"PERSON", "ORG", "NORP"})
PLACE = frozenset({"GPE", "LOC", "FAC", "ORG"})
TIME = frozenset({"DATE", "TIME"})
NUMBER = frozenset({"CARDINAL", "QUANTITY", "MONEY", "PERCENT", "DATE", "TIME"})
NAMED = frozenset({"PERSON", "ORG", "NORP", "GPE", "LOC", "FAC", "PRODUCT", "EVENT", "WORK_OF_ART", "LANGUAGE", "LAW"})
SUBJECT = ("nsubj", "nsubjpass", "csubj", "expl")
TOWARD, AWAY = "to", "from"  # the prepositions of a new value and an old one ("moved from Tuesday to Thursday")


@dataclass
class Question:
    """A parsed question: wh-word, answer type, asked noun, content lemmas, names, tense ("now" is present)."""
    text: str
    doc: Doc
    wh: Token | None
    kind: str  # "person", "place", "time", "number", "noun" (which/what + noun), "other"
    noun: str | None = None  # lemma of the asked noun
    terms: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    past: bool = False

    @classmethod
    def of(cls, text: str) -> Question:
        doc = analyse(text)
        wh = next((t for t in doc if t.tag_ in ("WP", "WP$", "WDT", "WRB")), None)
        kind, noun = _kind(doc, wh)
        terms = {lemma(t) for t in doc if is_content(t) and t is not wh}
        names = {lemma(t) for t in doc if t.i > 0 and (t.pos_ == "PROPN" or t.ent_type_ in NAMED) and is_content(t)}
        past = any(t.tag_ in ("VBD", "VBN") and t.dep_ in ("ROOT", "aux", "auxpass") for t in doc) and not any(
            t.lower_ == "now" for t in doc)
        return cls(text, doc, wh, kind, noun, terms, names, past)


def _kind(doc: Doc, wh: Token | None) -> tuple[str, str | None]:
    """The answer type from the wh-word and its parse (and the asked noun's lemma, for "which X")."""
    if wh is None:
        return "other", None
    attr = next((t for t in doc if t.dep_ in SUBJECT + ("attr",) and t is not wh and t.pos_ == "NOUN"), None)
    if wh.tag_ == "WP$" or (wh.tag_ == "WP" and wh.lower_ != "what"):  # who, whom, whose
        said = attr is not None and wh.head.lemma_ == "be"
        return "person", lemma(attr) if said else None  # "who was the first keeper": a keeper
    if wh.tag_ == "WRB":
        if wh.i + 1 < len(doc) and doc[wh.i + 1].pos_ in ("ADJ", "ADV"):
            return "number", None  # how many, how much, how old, how long
        return {"where": ("place", None), "when": ("time", None)}.get(wh.lower_, ("other", None))
    if wh.dep_ == "det":  # "which room", "what colour", "in what year" (spaCy tags "what year" DATE)
        kind = "time" if wh.head.ent_type_ in TIME else "number" if wh.head.ent_type_ in NUMBER else "noun"
        return kind, lemma(wh.head) if kind == "noun" else None
    # "what was the name of X's father", "what is the capital of X": the noun the wh-word equals
    if attr is not None and wh.dep_ in ("attr", "nsubj") and wh.head.lemma_ == "be":
        named = [c for p in attr.children if p.dep_ == "prep" for c in p.children if c.dep_ == "pobj"]
        if attr.lemma_ == "name" and named:  # the name of X's father: a name, said of a father
            return "person", lemma(named[0]) if named[0].pos_ == "NOUN" else None
        return "noun", lemma(attr)
    return "other", None


@dataclass(frozen=True)
class Candidate:
    text: str
    sentence: int  # index into the evidence sentences; start, end: character offsets in it
    start: int
    end: int
    reading: int = 0  # how many of the question's words stand to it as they stand to the wh-word


def _path(a: Token, b: Token) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """The dependency labels from `a` up to the lowest common ancestor and down to `b` (prepositions by
    lemma: "prep:in"), or None when they are not in one tree."""
    up_a, up_b = [a, *a.ancestors], [b, *b.ancestors]
    common = next((t for t in up_a if t in up_b), None)
    if common is None:
        return None
    return _labels(up_a[: up_a.index(common)]), _labels(up_b[: up_b.index(common)][::-1])


def _labels(chain: list[Token]) -> tuple[str, ...]:
    """Dependency labels, the passive read as the active ("built by Hale": Hale the subject)."""
    labels = "/".join("dobj" if t.dep_ == "nsubjpass" else _label(t) for t in chain)
    return tuple(labels.replace("pobj/agent", "subj").replace("agent/pobj", "subj").split("/")) if chain else ()


def _label(t: Token) -> str:
    return "prep:" + t.lower_ if t.dep_ == "prep" else "subj" if t.dep_ in SUBJECT[:1] + SUBJECT[2:] else t.dep_


def _wh_anchor(ask: Question) -> list[tuple[tuple, tuple]]:
    """(lemma, path from the wh-word) of the question's other words: what a parse reading looks for around
    a candidate. A stranded preposition ("Who did Hugo hand the lantern to?") takes the wh-word as object."""
    wh = ask.wh
    if wh is None:
        return []
    target = wh.head if wh.dep_ == "det" or wh.dep_ == "poss" else wh
    stranded = next((t for t in target.head.children if t.dep_ == "prep" and not any(
        c.dep_ == "pobj" for c in t.children)), None) if target.dep_ in ("dobj", "attr") else None
    out = []
    for t in ask.doc:
        if t is target or t is wh or t is stranded or t.dep_ in ("aux", "auxpass") or not (
                is_content(t) or t.dep_ == "prep" or t.pos_ in ("VERB", "AUX")):
            continue
        path = _path(target, t)
        if path is not None:
            out.append((lemma(t), path if stranded is None else (("pobj", _label(stranded), *path[0][1:]), path[1])))
    return out


def _reading(anchor: list[tuple[str, tuple]], token: Token, sentence: Span) -> int:
    """How many question words stand to `token` as they stand to the wh-word (same lemma, same path)."""
    return sum(any(lemma(t) == word and _path(token, t) == path for t in sentence if t is not token)
               for word, path in anchor)


def _fits(ask: Question, tokens: list[Token], ents: dict[int, str]) -> bool:
    """Is a span (a noun chunk, an entity or a word) of the kind the question asks for?"""
    head = max(tokens, key=lambda t: t.is_ancestor(tokens[0]) or t is tokens[-1])
    labels = {ents[t.i] for t in tokens if t.i in ents}
    if ask.kind == "person":
        return not labels & NUMBER and (bool(labels & PERSON) or head.pos_ == "PROPN" or (
            head.pos_ == "NOUN" and head.dep_ in SUBJECT + ("dobj", "pobj", "appos", "attr", "oprd")))
    if ask.kind == "place":
        return bool(labels & PLACE) or (head.pos_ in ("NOUN", "PROPN") and head.dep_ == "pobj"
                                        and not labels & (NUMBER | PERSON - PLACE))
    if ask.kind in ("time", "number"):
        numeric = ask.kind == "number" and any(t.like_num for t in tokens)
        return numeric or bool(labels & (TIME if ask.kind == "time" else NUMBER))
    if ask.kind == "noun":
        return any(lemma(t) == ask.noun for t in tokens) or head.dep_ == "appos" and lemma(head.head) == ask.noun
    return True


def candidates(ask: Question, sentences: list[Span]) -> list[Candidate]:
    """Entities, noun chunks and words of `sentences` of the asked kind, none restating the question, with
    their parse readings ("which X" falls back to any span when none names an X)."""
    anchor = _wh_anchor(ask)
    asked_numbers = number_values(ask.text)
    out: list[Candidate] = []
    for i, sent in enumerate(sentences):
        if ask.kind == "person" and ask.noun and all(lemma(t) != ask.noun for t in sent):
            continue  # "the captain of X": only a sentence that speaks of a captain answers
        ents = {t.i: e.label_ for e in sent.ents for t in e}
        spans = [list(e) for e in sent.ents] + [list(c) for c in sent.noun_chunks]
        if ask.kind == "other":  # a clause: "because the projector was broken"
            spans += [list(t.subtree) for t in sent if t.dep_ in ("advcl", "ccomp", "xcomp")]
        spans += [[t] for t in sent if t.pos_ in ("NOUN", "PROPN", "NUM", "ADJ") and t.i not in ents and is_content(t)
                  and not any(t in c for c in sent.noun_chunks)]
        for tokens in spans:
            tokens = [t for t in tokens if not t.is_punct]
            words = {lemma(t) for t in tokens if is_content(t) or t.like_num}  # "eleven" is a stop word
            root = max(tokens, key=lambda t: sum(1 for c in t.subtree if c in tokens))
            if not words or words <= ask.terms or number_values(" ".join(t.text for t in tokens)) & asked_numbers \
                    or not _fits(ask, tokens, ents) or lemma(root) in ask.terms and ask.kind not in ("noun", "number"):
                continue  # restates the question, or is headed by its word ("a young heifer" for "a heifer")
            start, end = tokens[0].idx - sent.start_char, tokens[-1].idx + len(tokens[-1]) - sent.start_char
            heads = [root, root.head] if root.dep_ == "appos" else [root]  # "the engineer Margaret Hale"
            out.append(Candidate(sent.text[start:end], i, start, end, max(_reading(anchor, h, sent) for h in heads)))
    if not out and ask.kind == "noun":
        return candidates(Question(ask.text, ask.doc, ask.wh, "other", None, ask.terms, ask.names, ask.past), sentences)
    return _prefer_new_values(ask, sentences, list({(c.sentence, c.start, c.end): c for c in out}.values()))


def _prefer_new_values(ask: Question, sentences: list[Span], found: list[Candidate]) -> list[Candidate]:
    """An updated value ("moved from Tuesday to Thursday", "cut to thirty minutes"): a question about the
    present drops the old one (the object of `from`, or one of the same type as the object of `to`)."""
    if ask.past:
        return found
    def role(c: Candidate) -> tuple[str | None, str]:
        root = sentences[c.sentence].char_span(c.start, c.end, alignment_mode="expand").root
        return (root.head.lower_ if root.head.dep_ == "prep" else None), root.ent_type_
    new = {(c.sentence, role(c)[1]) for c in found if role(c)[0] == TOWARD}
    return [c for c in found if role(c)[0] == TOWARD or not any(s == c.sentence for s, _ in new) or (
        role(c)[0] != AWAY and (c.sentence, role(c)[1]) not in new)]


# -- languages without a pipeline ---------------------------------------------------------------------
def character_spans(question: str, sentence: str, longest: int = 8) -> list[tuple[int, int]]:
    """(start, end) of the runs of `sentence` made of characters the question lacks, and their pieces of two
    to `longest` characters: what a question in Chinese can be answered with."""
    asked = "".join({c for c in question if c.isalnum()})
    runs = [(m.start(), m.end()) for m in re.finditer(rf"[^\W{re.escape(asked)}]+", sentence)]
    return [(s, e) for s, e in runs] + [(a, b) for s, e in runs for a in range(s, e)
                                        for b in range(a + 2, min(e, a + longest) + 1) if (a, b) != (s, e)]
