"""An outline of a document: what it is about (its main names and terms, cited), then the sentences that
say most of it (`gist`), each one a reader understands alone, quoted and cited under the heading of its
part (its section, or its topic found by TextTiling), in document order. `max_length` tokens bound the
whole, as printed.

Only the headings a part lacks (a TextTiling topic, a document's untitled opening) are written by the
model, and each is kept only when the grounding check supports it and it is nearer to its own part than
to any other; otherwise the heading is the part's key terms. Everything else is the document's own text.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..io.spans import Span, plain, reference_entry
from ..model.engine import Engine
from .entities import Term, about, names_in
from .evidence import prose, stands_alone
from ..text.words import STOP
from .grounding import Vocabulary, check, content_words, repeats
from .topics import Section, by_headings, by_shifts

PER_PART = 48  # tokens of the budget per part: its heading and a sentence and a half
HEADING_COST = 6  # tokens held back for a heading the model is still to write
ABOUT_SHARE = 0.25  # of the budget, at most, for the About line
MAX_PARTS = 8
MAX_ABOUT = 12
KEY_TERMS = 30  # names and terms whose mentions make a sentence say what the document is about
LOCAL = 0.5  # a quote's closeness to its stretch's centroid, against the document's
LEXICAL_WEIGHT = 0.5  # of its words' closeness to the document's (tf-idf), against its embedding's
TERMS_WEIGHT = 0.5  # of the key names and terms a sentence holds (saturating), against its centrality
PLACE_WEIGHT = 0.2  # of its place in the document
REDUNDANT = 0.8  # cosine above which a sentence says what a quote already says
MIN_QUOTE_WORDS = 12  # shorter sentences are transitions ("No subject better warrants the attention of the Congress.")
MAX_QUOTE_WORDS = 40
HEADING_TOKENS = 12
HEADING = "Write a short title (2 to 5 words) for this passage.\n\nPassage: {text}"
_POINTING = re.compile(r"\b(this|these|those|such)\s+(is|was|are|were|has|have|will|would|can|must|should)\b"
                       r"|\b(since|after|before|until|by)\s+then\b|\b(of|from|with|like)\s+(these|those|them)\b", re.I)
_PRONOUN = frozenset("he she him his her hers they them their theirs it its this these those such".split())


@dataclass
class Part:
    heading: str
    heading_source: str  # "document" (its own heading) | "model" (written and checked) | "terms" (key terms)
    first: int  # sentence ids of the part, first..last
    last: int
    quotes: list[int] = field(default_factory=list)  # sentence ids quoted, in document order


@dataclass
class Outline:
    about: list[Term]
    parts: list[Part]
    rejected: list[str] = field(default_factory=list)  # model headings the check refused


def self_contained(texts: list[str], i: int, quoted: set[int]) -> bool:
    """Sentence i means the same quoted alone: it is prose of some length, opens on no reference to an
    earlier sentence, has no pronoun among its first words unless the sentence before it is quoted too,
    and is no entry of a reference list."""
    text = plain(texts[i])
    words = text.split()
    if not prose(text) or not MIN_QUOTE_WORDS <= len(words) <= MAX_QUOTE_WORDS or reference_entry(text):
        return False
    if text.rstrip().endswith(":"):  # it introduces what follows it ("... is as follows:")
        return False
    if (i - 1) in quoted:
        return True
    opening = [re.sub(r"[^\w]", "", w.lower()) for w in words[:6]]
    return stands_alone(text) and not any(w in _PRONOUN for w in opening) and not _POINTING.search(text)


def outline(texts: list[str], spans: list[Span], vectors: torch.Tensor, engine: Engine, max_length: int,
            document: str | None = None, write_headings: bool = True,
            salience: torch.Tensor | Callable[[torch.Tensor], torch.Tensor] | None = None) -> Outline:
    """The outline of a document of sentences `texts` (cited as `spans`, embedded as `vectors` (N, D)),
    within `max_length` tokens; `document`: its full text when at hand (to find its own headings);
    `salience`: (N,) scores that rank the quotes instead of `salience_of` (the learned ranking), or a
    function of the (N, F) `sentence_features` that gives them (`gist_of`: the unsupervised gist alone)."""
    n = len(texts)
    usable = [self_contained(texts, i, set()) for i in range(n)]
    terms = about(texts, spans, lambda w: engine.tokenizer(w, add_special_tokens=False)["input_ids"],
                  lambda i: usable[i], KEY_TERMS)
    kept, used = [], 0
    for t in terms[:MAX_ABOUT]:
        cost = engine.count_tokens(f"{t.text}, ")  # as `Summary.said` counts it
        if used + cost > ABOUT_SHARE * max_length:
            break
        kept.append(t)
        used += cost
    room = max_length - used
    wanted = max(1, min(MAX_PARTS, room // PER_PART))
    sections = by_headings(document, [s.start for s in spans], [s.end for s in spans]) if document else []
    stretches = grouped(sections, wanted) if sections else by_shifts(vectors, wanted)
    shown = sections or stretches  # a quote is shown under its own section
    part_of = [-1] * n
    for k, sec in enumerate(shown):
        for i in sec.ids:
            part_of[i] = k
    if salience is None or callable(salience):
        score = (salience or salience_of)(sentence_features(texts, vectors, stretches, terms))
    else:
        score = salience
    heading_cost = [engine.count_tokens(f"{sec.heading}. ") if sec.heading else HEADING_COST for sec in shown]
    quoted = choose_quotes(texts, vectors, stretches, part_of, heading_cost, usable, room, engine, score)
    parts = [Part(shown[k].heading, "document", shown[k].first, shown[k].last, sorted(i for i in quoted if part_of[i] == k))
             for k in sorted({part_of[i] for i in quoted})]
    rejected = name_parts(parts, texts, vectors, kept, engine, write_headings)
    return Outline(kept, parts, rejected)


def grouped(sections: list[Section], wanted: int) -> list[Section]:
    """At most `wanted` stretches covering all the sections: neighbours merged into stretches of about
    equal length (what a quote's closeness to its stretch is measured against)."""
    if len(sections) <= wanted:
        return sections
    total = sum(len(s.ids) for s in sections)
    groups: list[list[Section]] = [[]]
    done = 0
    for s in sections:
        if groups[-1] and done >= total * len(groups) / wanted and len(groups) < wanted:
            groups.append([])
        groups[-1].append(s)
        done += len(s.ids)
    return [Section(g[0].first, g[-1].last) for g in groups]


FEATURES = ("local", "central", "lexical", "terms", "place", "position", "opening", "section_first", "names",
            "length", "numbers")  # the columns of `sentence_features`


def sentence_features(texts: list[str], vectors: torch.Tensor, stretches: list[Section], terms: list[Term]) -> torch.Tensor:
    """(N, len(FEATURES)) what `gist` weighs, and more, for each sentence: its cosine to its stretch's
    centroid (local) and to the document's (central), its tf-idf closeness to the document's words
    (`lexical`), the key names and terms it holds (saturating: h / (1 + h), h their scores over the
    best's), a place prior that halves by the end of the first tenth; then its relative position, whether
    it is among the first 5% of sentences (opening), opens its stretch (section_first), its share of
    capitalised names (names), its words / 40 (at most 2: length), whether it holds a number."""
    n = len(texts)
    if not n:
        return torch.zeros(0, len(FEATURES))
    centroid = torch.nn.functional.normalize(vectors.mean(0), dim=0)
    local = torch.zeros(n)
    section_first = torch.zeros(n)
    for s in stretches:
        ids = list(s.ids)
        local[ids] = vectors[ids] @ torch.nn.functional.normalize(vectors[ids].mean(0), dim=0)
        section_first[s.first] = 1.0
    top = max((t.score for t in terms), default=0.0) or 1.0
    said = [(re.compile(rf"\b{re.escape(t.text)}(?:s|es)?\b"), t.score) for t in terms]  # whole words: no "tori" in "history"
    plains = [plain(t) for t in texts]
    held = torch.tensor([sum(w for pattern, w in said if pattern.search(p)) / top for p in plains])
    idx = torch.arange(n, dtype=torch.float)
    words = torch.tensor([max(1, len(p.split())) for p in plains], dtype=torch.float)
    names = torch.tensor([float(len(names_in(p))) for p in plains]) / words
    numbers = torch.tensor([float(bool(re.search(r"\d", p))) for p in plains])
    return torch.stack([local, vectors @ centroid, lexical(texts), held / (1 + held), 1 / (1 + 10 * idx / n),
                        idx / max(1, n - 1), (idx < max(1, n // 20)).float(), section_first, names,
                        (words / 40).clamp(max=2), numbers], dim=1)


def gist_of(features: torch.Tensor) -> torch.Tensor:
    """(N,) the unsupervised gist from `sentence_features`' first five columns."""
    local, central, lex, held, place = features[:, :5].unbind(1)
    return LOCAL * local + (1 - LOCAL) * central + LEXICAL_WEIGHT * lex + TERMS_WEIGHT * held + PLACE_WEIGHT * place


# Learned salience (benchmarks/salience.py, results in benchmarks/results/salience.json): a linear scorer
# of FEATURES and the gist, each standardised within the document, fitted with a listwise loss (softmax
# of the scores against softmax(2 x the z-scored label) over the quotable sentences; label: the share of
# a sentence's stemmed words found in the article's lead) on the 56 articles of gensim's Wikipedia test
# dump that are not the 20 benchmark articles of benchmarks/summaries.py. The quotes are ranked by
# z(gist) + LEARNED_MIX x z(learned): in 5-fold cross-validation over those 56 it beat the gist alone
# (ROUGE-1 / ROUGE-L / entity recall +0.002 / +0.004 / +0.017, docs/summaries.md "Learned salience").
LEARNED = {  # weights of the standardised FEATURES and gist (the bias ranks nothing)
    "local": -0.0777, "central": 0.5972, "lexical": 0.5975, "terms": -0.0945, "place": -0.2521,
    "position": -0.3339, "opening": 0.18, "section_first": -0.0291, "names": -0.0156, "length": -0.8829,
    "numbers": -0.0623, "gist": 0.1174
}
LEARNED_MIX = 0.5


def _z(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean(0)) / x.std(0).clamp(min=1e-6) if len(x) > 1 else x * 0


def salience_of(features: torch.Tensor) -> torch.Tensor:
    """(N,) the outline's ranking: the gist plus LEARNED_MIX x the learned score, both standardised
    within the document."""
    g = gist_of(features)
    if len(features) < 2:
        return g
    x = _z(torch.cat([features, g[:, None]], dim=1))
    learned = x @ torch.tensor([LEARNED[f] for f in (*FEATURES, "gist")])
    return _z(g) + LEARNED_MIX * _z(learned)


def gist(texts: list[str], vectors: torch.Tensor, stretches: list[Section], terms: list[Term]) -> torch.Tensor:
    """(N,) how much each sentence says of what the document is about: its closeness to the document's
    centroid and to its stretch's (centrality), its words' closeness to the document's (`lexical`), the
    share of the document's key names and terms it holds, and its place (documents state their subject
    first: a prior that halves by the end of the first tenth)."""
    return gist_of(sentence_features(texts, vectors, stretches, terms))


def lexical(texts: list[str]) -> torch.Tensor:
    """(N,) each sentence's tf-idf cosine to the document's centroid (the sum of the sentences' unit
    vectors), scaled to a maximum of 1: the words the document repeats, as ROUGE and a reader see them."""
    bags = [Counter(w.lower() for w in content_words(plain(t))) for t in texts]
    n = len(bags)
    df = Counter(w for bag in bags for w in bag)
    vecs = []
    for bag in bags:
        v = {w: c * math.log(n / df[w]) for w, c in bag.items()}
        norm = math.sqrt(sum(x * x for x in v.values())) or 1.0
        vecs.append({w: x / norm for w, x in v.items()})
    centroid: Counter = Counter()
    for v in vecs:
        centroid.update(v)
    norm = math.sqrt(sum(x * x for x in centroid.values())) or 1.0
    out = torch.tensor([sum(x * centroid[w] for w, x in v.items()) / norm for v in vecs])
    return out / (float(out.max()) or 1.0)


def choose_quotes(texts: list[str], vectors: torch.Tensor, stretches: list[Section], part_of: list[int],
                  heading_cost: list[int], usable: list[bool], budget: int, engine: Engine, score: torch.Tensor) -> set[int]:
    """Sentences a reader understands alone, never two alike, while `budget` tokens last: the best of each
    stretch first (the best stretches first), so that every part of the document is represented, then the
    best of the rest. `part_of[i]`: the part sentence i is shown under (-1: none); the first quote of
    part k also pays `heading_cost[k]` tokens for its heading."""
    inside = [i for i, k in enumerate(part_of) if k >= 0]
    if not inside:
        return set()
    candidates = [i for i in inside if usable[i]] or [i for i in inside if prose(plain(texts[i]))] or inside
    ranked = sorted(candidates, key=lambda i: -float(score[i]))
    firsts = {b for b in (next((i for i in ranked if s.first <= i <= s.last), None) for s in stretches) if b is not None}
    ranked = [i for i in ranked if i in firsts] + [i for i in ranked if i not in firsts]
    chosen: set[int] = set()
    opened: set[int] = set()
    used = 0
    for i in ranked:
        cost = engine.count_tokens(plain(texts[i])) + (heading_cost[part_of[i]] if part_of[i] not in opened else 0)
        if used + cost > budget:
            continue
        if chosen and float((vectors[sorted(chosen)] @ vectors[i]).max()) > REDUNDANT:
            continue
        chosen.add(i)
        opened.add(part_of[i])
        used += cost
    if not chosen:  # nothing fits: the best sentence, even over the budget
        chosen.add(ranked[0])
    return chosen


def name_parts(parts: list[Part], texts: list[str], vectors: torch.Tensor, about_terms: list[Term], engine: Engine,
               write: bool) -> list[str]:
    """Give each part without a heading of its own one: the model's short title where the grounding check
    supports it and it is nearest to its own part, else the part's key terms. Returns the refused titles."""
    rejected: list[str] = []
    todo = [p for p in parts if not p.heading]
    if not todo:
        return rejected
    vocab = Vocabulary.of(texts)
    centroids = torch.stack([torch.nn.functional.normalize(vectors[p.first : p.last + 1].mean(0), dim=0)
                             for p in parts])  # (P, D)
    from ..memories.retrieval import encoder_of

    drafts = [title(engine, " ".join(plain(texts[i]) for i in p.quotes)) if write else "" for p in todo]
    draft_vectors = encoder_of(engine).encode([d or "-" for d in drafts])  # (len(todo), D)
    for part, draft, v in zip(todo, drafts, draft_vectors):
        k = parts.index(part)
        ok = len(content_words(draft)) >= 2 and not repeats(draft)  # "Bite this" says nothing checkable
        if ok:
            verdict = check(draft, v, texts, vectors, vocab)
            ok = verdict.supported and int((centroids @ v).argmax()) == k
        if ok:
            part.heading, part.heading_source = draft, "model"
            continue
        if draft:
            rejected.append(draft)
        part.heading, part.heading_source = key_terms(texts, part, parts, about_terms), "terms"
    return rejected


def title(engine: Engine, passage: str) -> str:
    """The model's title for a passage: its first line, without quotes or a trailing full stop."""
    out = engine.chat(HEADING.format(text=passage), HEADING_TOKENS, repetition_penalty=1.1)
    line = out.replace("\ufffd", "").strip().split("\n")[0]
    line = re.sub(r"^(title|heading)\s*:\s*", "", line, flags=re.I).strip(" \"'*#“”")
    line = line.rstrip(".").strip()
    return line if 1 <= len(line.split()) <= 8 else ""


def key_terms(texts: list[str], part: Part, parts: list[Part], about_terms: list[Term]) -> str:
    """A heading of the names and terms said most in this part compared with the others."""
    inside = " ".join(plain(texts[i]) for i in range(part.first, part.last + 1))
    counts: dict[str, float] = {}
    for name in names_in(inside):
        counts[name] = counts.get(name, 0) + 1
    for t in about_terms:
        c = inside.count(t.text)
        if c:
            counts[t.text] = counts.get(t.text, 0) + c * 2
    words = [w for w in re.findall(r"\b[a-z]{5,}\b", inside) if w not in STOP]
    for w in words:
        counts[w] = counts.get(w, 0) + 0.25
    others = " ".join(plain(texts[i]) for p in parts if p is not part for i in range(p.first, p.last + 1))
    ranked = sorted(counts, key=lambda t: -counts[t] / (1 + others.count(t) / max(1, len(parts) - 1)))
    picked: list[str] = []
    for t in ranked:
        if not any(t.lower() in p.lower() or p.lower() in t.lower() for p in picked):
            picked.append(t)
        if len(picked) == 3:
            break
    return ", ".join(picked) if picked else "Part"
