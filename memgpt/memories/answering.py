"""Answers that rest on the document, for every memory kind: spaCy reads the question and the evidence
(`questions`); the model scores each candidate span as log P(span | evidence, question) beside "The
document does not say.", and the best must beat it by MIN_MARGIN; a parse reading, or the model's free
answer naming a candidate, picks first. Without a pipeline (Chinese): character spans (docs/answering.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


from ..io.spans import Span, plain, reference_entry
from ..model.engine import Engine
from ..model.scoring import span_logprobs
from ..text.pipeline import analyse_all, language_of
from ..text.words import is_content, lemma, number_values, stop_words
from .abstention import NOT_IN_DOCUMENT, is_abstention
from .questions import SUBJECT, Candidate, Question, candidates, character_spans

# calibrated on the dev split of benchmarks/naturalqa_items.json (benchmarks/answering_dev.py)
MIN_MARGIN = -0.75  # a chosen span's mean log P per token over the abstention phrase's
MIN_COVERAGE = 0.75  # share of the question's words (found in the evidence) that the answer's sentence holds
MAX_FOCUS = 6  # evidence sentences the candidates are drawn from (most relevant first)
MAX_CANDIDATES = 32  # spans scored per question
COVERAGE_WEIGHT = 2.0  # added to a span's log P per share of the question's words its sentence holds


@dataclass
class Grounded:
    """The answer, the sentence it rests on (None: declined), the evidence that bears on the question."""
    text: str
    quote: Span | None
    cited: list[Span]
    how: str  # "free" (the model's answer, verified), "span" (chosen from the evidence), "abstain"
    margin: float | None = None  # the chosen span's log P over the abstention phrase's (the span path)


def reader_prompt(question: str, context: str) -> str:
    """The question before and after the text: the best of 9 prompt forms tried with SmolLM2-135M."""
    return f"Question: {question}\n\nText: {context}\n\nQuestion: {question}"


def score_candidates(engine: Engine, question: str, context: str, spans: list[str]) -> tuple[list[float], float]:
    """Each span's log P(span | evidence, question), mean per token, and the abstention phrase's."""
    scores = span_logprobs(engine, engine.chat_ids(reader_prompt(question, context), prefix="Answer:"),
                           spans + [NOT_IN_DOCUMENT])
    return scores[:-1], scores[-1]


def first_sentence(text: str) -> str:
    """A free answer's first line and sentence (small models run on into new questions)."""
    line = text.strip().split("\n")[0].strip()
    m = re.search(r"(?<=[.!?])\s|(?<=[。！？])", line)
    return line[: m.start()].strip() if m else line


def grounded_answer(engine: Engine, question: str, evidence: list[Span], free: str | None) -> Grounded:
    """The answer to `question` from `evidence` (document sentences), checked; `free`: the model's own."""
    evidence = sorted((s for s in evidence if not reference_entry(s.text)), key=lambda s: s.start)
    texts = [plain(s.text) for s in evidence]
    free = first_sentence(free) if free and not is_abstention(free) else None
    if language_of(question) != "en":
        return _characters(engine, question, evidence, texts, free)
    ask = Question.of(question)
    sents = [d[:] for d in analyse_all(texts, lang="en")]
    focus, cover = _focus(ask, sents)
    found = [Candidate(c.text, focus[c.sentence], c.start, c.end, c.reading)
             for c in (candidates(ask, [sents[i] for i in focus]) if focus else [])]
    found = sorted(found, key=lambda c: (-c.reading, -cover[c.sentence], c.sentence))[:MAX_CANDIDATES]
    if not found:
        return Grounded(NOT_IN_DOCUMENT, None, [], "abstain")
    cited = [evidence[i] for i in sorted(focus)]
    context = engine.clip(" ".join(texts[i] for i in sorted(focus)), max(64, engine.window // 2))
    scores, abstain = score_candidates(engine, question, context, [c.text for c in found])
    ranked = [s + COVERAGE_WEIGHT * cover[c.sentence] / max(1, len(ask.terms)) for s, c in zip(scores, found)]
    named = [k for k, c in enumerate(found) if _names(free, c.text)] if free and _supported(free, ask, sents, focus) else []
    pool = _readings(ask, sents, found) or named or list(range(len(found)))
    best = max(pool, key=lambda k: (found[k].reading, ranked[k], found[k].sentence))
    chosen, margin = found[best], scores[best] - abstain
    if best in named:  # the longest candidate it names there ("the Wexley Courier", not "Wexley")
        chosen = max((found[k] for k in named if found[k].sentence == chosen.sentence and found[k].start < chosen.end
                      and chosen.start < found[k].end), key=lambda c: len(c.text))
        return Grounded(chosen.text, evidence[chosen.sentence], cited, "free")
    if margin < MIN_MARGIN:
        return Grounded(NOT_IN_DOCUMENT, None, [], "abstain", margin)
    return Grounded(chosen.text, evidence[chosen.sentence], cited, "span", margin)


def _focus(ask: Question, sents: list) -> tuple[list[int], dict[int, int]]:
    """Sentences naming what the question names (else with its words) and those sharing a noun with them,
    best first, with the question words each covers; none when a name of the question is nowhere."""
    words = [{lemma(t) for t in s if is_content(t)} for s in sents]
    key = ask.names or ask.terms
    direct = [i for i, w in enumerate(words) if w & key]
    if not direct or (ask.names and not ask.names <= set().union(*words) | ask.terms - ask.names):
        return [], {}
    nouns = [{lemma(t) for t in s if t.pos_ in ("NOUN", "PROPN") and is_content(t)} - ask.terms for s in sents]
    cover = {i: len(words[i] & ask.terms) for i in direct}
    for i in range(len(sents)):
        anchors = [f for f in direct if f != i and nouns[i] & nouns[f]]
        if i not in cover and anchors:
            cover[i] = max(len((words[i] | words[f]) & ask.terms) for f in anchors)
    order = sorted(cover, key=lambda i: (-cover[i] - (i in direct), i))
    return order[:MAX_FOCUS], cover


def _readings(ask: Question, sents: list, found: list[Candidate]) -> list[int]:
    """The candidates a parse reading picks, else []: the latest place of the question's subject (or of who
    took it), or its place before a named one; else the latest of those standing to two or more of the
    question's words as the wh-word does (a later sentence updates an earlier)."""
    if ask.kind == "place" and ask.wh is not None and ask.wh.head.lemma_ == "be":
        track, held = _places(ask, sents, found)
        before = [lemma(c) for t in ask.doc if t.lower_ == "before" for c in t.children if c.dep_ == "pobj"]
        if before:  # the last place before the last sentence that puts it at the named one
            at = [i for i in held if any(lemma(t) == before[0] for t in sents[i])]
            track = [j for j in track if at and found[j].sentence < at[-1]]
        if track:
            return [track[-1]]
    top = max(c.reading for c in found)
    if top < 2:
        return []
    last = max(c.sentence for c in found if c.reading == top)
    return [k for k, c in enumerate(found) if c.reading == top and c.sentence == last]


def _places(ask: Question, sents: list, found: list[Candidate]) -> tuple[list[int], list[int]]:
    """Place candidates (indices of `found`) in the order the evidence puts the question's subject there, and
    the sentences whose subject is it or whoever holds it (the subject of a sentence with it as object)."""
    subject = [lemma(t) for t in ask.doc if t.dep_ in SUBJECT and t is not ask.wh]
    holders, track, held = set(subject[:1]), [], []
    for i in range(len(sents)):
        subj = {lemma(t) for t in sents[i] if t.dep_ in SUBJECT}
        if subject and subject[0] in {lemma(t) for t in sents[i] if t.dep_ == "dobj"} and subj:
            holders = {subject[0]} | subj
        if subj & holders:
            held.append(i)
            track += [k for k, c in enumerate(found) if c.sentence == i]
    return track, held


def _supported(free: str | None, ask: Question, sents: list, focus: list[int]) -> bool:
    """Is the free answer's every name and number (by value) in the evidence or the question?"""
    held = " ".join(sents[i].text for i in focus) + " " + ask.text
    words = {lemma(t) for s in (sents[i] for i in focus) for t in s} | ask.terms | ask.names
    return number_values(free) <= number_values(held) and all(
        lemma(t) in words for t in analyse_all([free], lang="en")[0] if t.pos_ == "PROPN" or t.ent_type_)


def _names(free: str, text: str) -> bool:
    """Does a free answer name this candidate (its words, or its number by value)?"""
    return bool(number_values(text) & number_values(free)) or (
        f" {' '.join(text.lower().split())} " in f" {' '.join(free.lower().replace('.', ' ').split())} ")


# -- languages without a pipeline --------------------------------------------------------------------
def _characters(engine: Engine, question: str, evidence: list[Span], texts: list[str], free: str | None) -> Grounded:
    """Chinese (no spaCy pipeline here): a span of characters the question lacks, from the sentence that
    holds the most of what the question says that the evidence says anywhere (at least MIN_COVERAGE of
    it: the subject with its predicate, never an attribute of another entity), chosen by the model."""
    known = {c for c in question if c.isalnum()} & set("".join(texts))
    said = {k for w in stop_words(language_of(question)) if w in question  # interrogatives, function words
            for m in re.finditer(re.escape(w), question) for k in range(m.start(), m.end())}
    gaps = {k for k, c in enumerate(question) if c.isalnum() and c not in known and k not in said}
    if any(k + 1 in gaps for k in gaps):  # two characters in a row the evidence never writes: a name it lacks
        return Grounded(NOT_IN_DOCUMENT, None, [], "abstain")
    share = [len(known & set(t)) / len(known) if known else 0.0 for t in texts]
    focus = [i for i, s in enumerate(share) if s == max(share) and s >= MIN_COVERAGE]
    found = [(i, texts[i][s:e]) for i in focus for s, e in character_spans(question, texts[i])][:MAX_CANDIDATES]
    if not found:
        return Grounded(NOT_IN_DOCUMENT, None, [], "abstain")
    cited, inside = [evidence[i] for i in focus], [(i, t) for i, t in found if free and t in free]
    if inside:  # the longest candidate the free answer holds
        i, t = max(inside, key=lambda x: len(x[1]))
        return Grounded(t, evidence[i], cited, "free")
    context = engine.clip(" ".join(texts[i] for i in focus), max(64, engine.window // 2))
    scores, abstain = score_candidates(engine, question, context, [t for _, t in found])
    best = max(range(len(found)), key=lambda k: scores[k])
    if scores[best] - abstain < MIN_MARGIN:
        return Grounded(NOT_IN_DOCUMENT, None, [], "abstain", scores[best] - abstain)
    return Grounded(found[best][1], evidence[found[best][0]], cited, "span", scores[best] - abstain)
