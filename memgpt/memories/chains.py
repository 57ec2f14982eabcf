"""Multi-hop evidence by general means: a second retrieval hop queried with what the first hop's
sentences add (MDR / IRCoT / Baleen style), and the latest statement of a current state.

"What business did Ivo Brandt's brother run?" finds "The miller of Fenwick Cross was a tall man called
Ivo Brandt." (the anchor). What the anchor adds to the question (its terms the question lacks:
"miller", "Fenwick", "Cross", ...) and what the question still asks (its terms the anchor lacks:
"business", "brother", "run") make the second query; it finds "The miller's brother ran a tannery in
the port of Saltmouth." however far away. A sentence is linked only through a term the anchor adds that
is not common in the document (a word in more than BRIDGE_MAX_SHARE of its sentences links everything).

Code only chooses what the reader sees; the reader (the model) answers. No verb list, sentence shape or
vocabulary: only content terms, their frequencies in the document, and the question's own words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from spacy.tokens import Doc

from ..text.pipeline import analyse, analyse_all
from ..text.words import lemma
from .lexical import Lexicon

HOP2_ANCHORS = 2  # first-hop sentences (the best) a second hop starts from
BRIDGE_MAX_SHARE = 0.05  # a term in more of the document's sentences than this does not link two of them
BRIDGE_MIN_DF = 8  # ... unless it is in at most this many (a short document's every word is "common")
_CURRENT = re.compile(r"^\W*where\s+(?:is|are)\b", re.IGNORECASE)


def bridge_terms(question: Sequence[str], anchor: frozenset[str], lexicon: Lexicon) -> tuple[list[str], list[str]]:
    """(what the anchor adds: its terms the question lacks that are rare enough to link sentences,
    what the question still asks: its terms the anchor lacks)."""
    limit = max(BRIDGE_MIN_DF, BRIDGE_MAX_SHARE * len(lexicon))
    asked = set(question)
    adds = sorted(t for t in anchor - asked if lexicon.df.get(t, 0) <= limit)
    return adds, [t for t in dict.fromkeys(question) if t not in anchor]


def linked(adds: Sequence[str], lexicon: Lexicon, exclude: set[int]) -> list[int]:
    """Sentences sharing a term with the anchor's additions, other than `exclude` (document order)."""
    return [i for i in lexicon.having(adds) if i not in exclude]


def asks_current_state(question: str) -> bool:
    """A question about where something is now ("Where is the football?"): its answer is the latest
    statement, not every statement the document ever made."""
    return bool(_CURRENT.match(question))


def latest_per_topic(ids: Sequence[int], question: Sequence[str], lexicon: Lexicon) -> list[int]:
    """Of sentences holding the same (non-empty) set of question terms, the latest: for a question
    about a current state, a later sentence about the same things supersedes an earlier one. Sentences
    with no question term (second-hop links) are kept. Document order."""
    asked = set(question)
    latest: dict[frozenset[str], int] = {}
    kept = []
    for i in sorted(set(ids)):
        topic = lexicon.terms[i] & asked
        if topic:
            latest[topic] = max(latest.get(topic, i), i)
        else:
            kept.append(i)
    return sorted(kept + list(latest.values()))


# -- where a thing is, or was: subject, verb, object and place from the dependency parse ----------------
@dataclass(frozen=True)
class Clause:
    """One verb of a sentence read from its parse: its subject, direct objects and the places its
    prepositions name (`(preposition, place)`, e.g. ("to", "garden")); all lemmas."""

    sentence: int
    subject: str | None
    person: bool  # the subject is a proper noun or a PERSON entity (someone who can carry a thing)
    objects: frozenset[str]
    places: tuple[tuple[str, str], ...]
    span: tuple[int, int]  # the character range, in the sentence's text, of the parser's sentence holding it


@dataclass(frozen=True)
class LocationQuestion:
    """"Where is the X?" (`thing`), or "Where was the X before the Y?" (`relation` "before", `reference` Y)."""

    thing: str
    relation: str | None = None
    reference: str | None = None


def location_question(question: str) -> LocationQuestion | None:
    """The thing a where-question asks about, and the place it is asked relative to, from its parse."""
    doc = analyse(question)
    if not any(lemma(t) == "where" for t in doc):
        return None
    root = next((t for t in doc if t.dep_ == "ROOT"), None)
    if root is None:
        return None
    thing = next((t for t in root.children if t.dep_ in ("nsubj", "nsubjpass", "dobj", "attr")
                  and t.pos_ in ("NOUN", "PROPN")), None)
    if thing is None:
        return None
    for prep in [*root.children, *thing.children]:  # "before the Y" hangs on the verb or on the thing
        place = next((c for c in prep.children if c.dep_ == "pobj"), None) if prep.dep_ == "prep" else None
        if place is not None:
            return LocationQuestion(lemma(thing), lemma(prep), lemma(place))
    return LocationQuestion(lemma(thing))


def clauses(sentence: int, doc: Doc) -> list[Clause]:
    """The clauses of a parsed sentence that have a subject or an object."""
    out = []
    for verb in doc:
        if verb.pos_ not in ("VERB", "AUX"):
            continue
        kids = list(verb.children)
        subject = next((c for c in kids if c.dep_ in ("nsubj", "nsubjpass")), None)
        objects = frozenset(lemma(c) for c in kids if c.dep_ in ("dobj", "obj") and c.pos_ in ("NOUN", "PROPN"))
        places = []
        for head in [verb] + [c for c in kids if c.dep_ in ("advmod", "prt")]:  # "went back to the hall"
            for prep in head.children:
                if prep.dep_ != "prep":
                    continue
                for place in prep.children:
                    if place.dep_ == "pobj" and place.pos_ in ("NOUN", "PROPN"):
                        places.append((lemma(prep), lemma(place)))
        if subject is None and not objects:
            continue
        person = subject is not None and (subject.pos_ == "PROPN" or subject.ent_type_ == "PERSON")
        out.append(Clause(sentence, lemma(subject) if subject is not None else None, person, objects, tuple(places),
                          (verb.sent.start_char, verb.sent.end_char)))
    return out


def _destination(c: Clause) -> str | None:
    """Where a clause puts its subject: the place of a preposition other than "from" (an origin)."""
    return next((p for prep, p in c.places if prep != "from"), None)


Piece = tuple[int, int, int]  # (sentence id, start, end): the part of a document sentence a clause stands in


def object_trail(question: str, texts: Sequence[str], lexicon: Lexicon) -> list[Piece] | None:
    """For "Where is the X?" / "Where was the X before the Y?": the sentences that follow X through the
    person who last handled it (in document order; each as the parser's sentence inside the document
    sentence, which may run long: a wrapped paragraph), or None when the question is no such question or the
    document has no person handling X.

    Current place: the latest sentence in which a person has X as its object, that person's latest move
    before it (where it was taken or left) and the latest move after it (where it went if it was kept).
    A person asked about: their latest move. "Before Y": the places of X in order (where it was handled,
    then its handler's moves up to its next handling), and the place before Y there, with the sentence
    that links X to its handler."""
    asked = location_question(question)
    if asked is None:
        return None
    ids = lexicon.having([asked.thing])
    parsed = [c for i, d in zip(ids, analyse_all([texts[i] for i in ids])) for c in clauses(i, d)]
    handled = [c for c in parsed if asked.thing in c.objects and c.person]
    if not handled:  # the thing is itself a person who moves: its latest move
        moves = [c for c in parsed if c.subject == asked.thing and _destination(c)]
        return [_piece(moves[-1])] if moves and asked.relation is None else None
    carriers = {c.subject for c in handled}
    move_ids = lexicon.having(carriers)
    moves = {who: [c for i, d in zip(move_ids, analyse_all([texts[i] for i in move_ids])) for c in clauses(i, d)
                   if c.subject == who and _destination(c) and asked.thing not in c.objects] for who in carriers}
    if asked.relation is None:
        last = handled[-1]
        before = [c for c in moves[last.subject] if _order(c) < _order(last)]
        after = [c for c in moves[last.subject] if _order(c) > _order(last)]
        return sorted({_piece(c) for c in (last, *before[-1:], *after[-1:])})
    return _place_before(asked, handled, moves)


def _order(c: Clause) -> tuple[int, int]:
    return c.sentence, c.span[0]


def _piece(c: Clause) -> Piece:
    return c.sentence, *c.span


def _place_before(asked: LocationQuestion, handled: list[Clause], moves: dict[str, list[Clause]]) -> list[Piece] | None:
    """The sentences giving the place X was at before `asked.reference` (see `object_trail`)."""
    trail: list[tuple[Clause, Clause]] = []  # (the move to a place, the handling that links X to it), in order
    for k, h in enumerate(handled):
        upto = _order(handled[k + 1]) if k + 1 < len(handled) else None
        mine = moves[h.subject]
        before = [c for c in mine if _order(c) < _order(h)]
        trail += [(c, h) for c in before[-1:]]
        trail += [(c, h) for c in mine if _order(c) > _order(h) and (upto is None or _order(c) < upto)]
    at = [k for k, (c, _) in enumerate(trail) if _destination(c) == asked.reference]
    if not at:
        return None
    k = ([j for j in at if _order(trail[j][0]) <= _order(handled[-1])] or at)[-1]
    prev = next((j for j in range(k - 1, -1, -1) if _destination(trail[j][0]) != asked.reference), None)
    if prev is None:
        return None
    return sorted({_piece(trail[prev][0]), _piece(trail[prev][1])})
