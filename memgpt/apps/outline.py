"""An outline of a document: what it is about (its characters when it tells a story, its main names and
terms, cited), then, for each of its topics, the sentence that best stands for it, quoted and cited under
the heading of its part, in document order.

Its length grows with the document: a part per TOKENS_PER_PART tokens (MIN_PARTS to MAX_PARTS), each a
topic segment: the document's own sections (headings given, or found in plain text) grouped to that
many, else TextTiling on the sentence embeddings; each part's PIECES sub-topics give a quote first.
`max_length` tokens bound the whole, as printed, when given. A quote is a sentence a reader understands alone that names something its segment is about (a
name or term said more there than elsewhere: no procedural or transitional sentence); in a story, one in
which a character acts. A part without a heading of its own is headed by its quotes' own names and terms,
so a heading says nothing its quotes do not. Everything printed is the document's own text.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..io.spans import Span, plain, reference_entry
from ..memories.base import SUMMARY_TOKENS
from ..model.engine import Engine
from .entities import Profile, Term, about, profile
from .evidence import prose, stands_alone
from .grounding import content_words
from .topics import Heading, Section, by_headings, by_shifts, headings

TOKENS_PER_PART = 2000  # of the document, a part of the outline
MIN_PARTS, MAX_PARTS = 3, 12
PER_PART = 48  # tokens of a given budget a part needs at least: its heading and a sentence and a half
PART_TOKENS = 110  # of the default budget per part: its heading and three quotes
ABOUT_TOKENS = 48  # of the default budget for About
PIECES = 3  # topics within a part (TextTiling within its segment, or its sections) that each give a quote first
HEADING_COST = 6  # tokens held back for a heading still to be made from the quotes
ABOUT_SHARE = 0.25  # of the budget, at most, for the About line
MAX_ABOUT = 12
KEY_TERMS = 30  # names and terms whose mentions make a sentence say what the document is about
SEGMENT_TERMS = 10  # a segment's own names and terms: what its quote must name one of
HEADING_TERMS = 3
SEGMENT_WEIGHT = 0.5  # of a sentence's closeness to its segment and the segment's terms it names, against salience
LOCAL = 0.5  # a quote's closeness to its stretch's centroid, against the document's
LEXICAL_WEIGHT = 0.5  # of its words' closeness to the document's (tf-idf), against its embedding's
TERMS_WEIGHT = 0.5  # of the key names and terms a sentence holds (saturating), against its centrality
PLACE_WEIGHT = 0.2  # of its place in the document
REDUNDANT = 0.8  # cosine above which a sentence says what a quote already says
DIVERSITY = 1.0  # of a further quote's likeness to those chosen, against its (standardised) score
MIN_QUOTE_WORDS = 12  # shorter sentences are transitions ("No subject better warrants the attention of the Congress.")
MAX_QUOTE_WORDS = 40
_POINTING = re.compile(r"\b(this|these|those|such)\s+(is|was|are|were|has|have|will|would|can|must|should)\b"
                       r"|\b(since|after|before|until|by)\s+then\b|\b(of|from|with|like)\s+(these|those|them)\b", re.I)
_PRONOUN = frozenset("he she him his her hers they them their theirs it its this these those such".split())


@dataclass
class Part:
    heading: str
    heading_source: str  # "document" (its own heading) | "terms" (its quotes' names and terms)
    first: int  # sentence ids of the part, first..last
    last: int
    quotes: list[int] = field(default_factory=list)  # sentence ids quoted, in document order


@dataclass
class Outline:
    about: list[Term]
    parts: list[Part]
    budget: int  # the tokens it was made within
    characters: list[str] = field(default_factory=list)  # a story's people, most mentioned first


def self_contained(texts: list[str], i: int, quoted: set[int], named_subject: bool = False) -> bool:
    """Sentence i means the same quoted alone: it is prose of some length, opens on no reference to an
    earlier sentence, has no pronoun among its first words unless the sentence before it is quoted too,
    and is no entry of a reference list. `named_subject`: its subject is a name before any pronoun ("And
    Naomi said unto her ..."), so that an opening conjunction or a later pronoun leans on nothing before."""
    text = plain(texts[i])
    words = text.split()
    opens = text[:1].isupper() or text[:1].isdigit() or text[:1] in "\"“‘'("  # not a fragment ("making a total ...")
    if not opens or not prose(text) or not MIN_QUOTE_WORDS <= len(words) <= MAX_QUOTE_WORDS or reference_entry(text):
        return False
    if text.rstrip().endswith(":"):  # it introduces what follows it ("... is as follows:")
        return False
    if (i - 1) in quoted or named_subject:
        return not _POINTING.search(text) if named_subject and (i - 1) not in quoted else True
    opening = [re.sub(r"[^\w]", "", w.lower()) for w in words[:6]]
    return stands_alone(text) and not any(w in _PRONOUN for w in opening) and not _POINTING.search(text)


def named_subject(p: Profile, i: int) -> bool:
    """Sentence i's first subject is a name (an actor of it) and no pronoun comes before it."""
    doc = p.docs[i]
    subject = next((t for t in doc if t.dep_ in ("nsubj", "nsubjpass")), None)
    if subject is None or not subject.ent_type_ or not p.actors[i]:
        return False
    return not any(t.pos_ == "PRON" for t in doc[: subject.i])


def writer_acts(p: Profile, i: int) -> bool:
    """Sentence i's main verb has the writer as subject ("I transmit a return of ...", "I deem it proper to
    present ..."): it speaks of the document itself, a procedural sentence."""
    root = next((t for t in p.docs[i] if t.dep_ == "ROOT"), None)
    return root is not None and any(c.dep_ in ("nsubj", "nsubjpass") and c.pos_ == "PRON" and c.morph.get("Person") == ["1"]
                                    and c.morph.get("Number") == ["Sing"] for c in root.children)


def parts_for(tokens: int) -> int:
    """How many parts a document of `tokens` tokens is outlined in."""
    return max(MIN_PARTS, min(MAX_PARTS, round(tokens / TOKENS_PER_PART)))


def length_for(parts: int) -> int:
    """The default budget (tokens) of an outline of `parts` parts: PART_TOKENS each, and About's (at
    most the longest summary accepted)."""
    return min(SUMMARY_TOKENS[1], parts * PART_TOKENS + ABOUT_TOKENS)


def outline(texts: list[str], spans: list[Span], vectors: torch.Tensor, engine: Engine, max_length: int | None = None,
            document: str | None = None, found: list[Heading] | None = None,
            salience: torch.Tensor | Callable[[torch.Tensor], torch.Tensor] | None = None) -> Outline:
    """The outline of a document of sentences `texts` (cited as `spans`, embedded as `vectors` (N, D)),
    within `max_length` tokens (None: `length_for` its `parts_for`); `found`: the document's own
    headings (offset, level, title), else they are looked for in `document`, its full text when at hand;
    `salience`: (N,) scores that rank the quotes instead of `salience_of` (the learned ranking), or a
    function of the (N, F) `sentence_features` that gives them (`gist_of`: the unsupervised gist alone)."""
    n = len(texts)
    plains = [plain(t) for t in texts]
    prof = profile(plains)
    story = bool(prof.characters)
    named = [story and named_subject(prof, i) for i in range(n)]
    usable = [self_contained(texts, i, set(), named[i]) for i in range(n)]
    wanted = parts_for(sum(engine.count_tokens(t) for t in plains))
    if max_length is None:
        max_length = length_for(wanted)
    terms = about(prof, spans, lambda w: engine.tokenizer(w, add_special_tokens=False)["input_ids"],
                  lambda i: usable[i], KEY_TERMS)
    kept, used = [], 0
    for t in terms[:MAX_ABOUT]:
        cost = engine.count_tokens(f"{t.text}, ")  # as `Summary.said` counts it
        if used + cost > min(ABOUT_SHARE * max_length, ABOUT_TOKENS):
            break
        kept.append(t)
        used += cost
    room = max_length - used
    wanted = max(1, min(wanted, room // PER_PART))
    guessed = found is None
    if guessed and document:
        found = headings(document)
    sections = by_headings(found or [], [s.start for s in spans], [s.end for s in spans], texts)
    if guessed and len(sections) < wanted:  # a few short lines of a long text taken for headings: its topics
        sections = []
    stretches = grouped(sections, wanted) if sections else by_shifts(vectors, wanted)
    shown = sections or stretches  # a quote is shown under its own section
    per = PIECES if room >= len(stretches) * PART_TOKENS else 1  # sub-topics where a part has room for their quotes
    if sections:  # what each takes its best quote from first: the sections themselves, or groups of them
        pieces = sections if len(sections) <= per * len(stretches) else grouped(sections, per * len(stretches))
    else:
        pieces = [Section(s.first + p.first, s.first + p.last)
                  for s in stretches for p in by_shifts(vectors[s.first : s.last + 1], per)]
    part_of, stretch_of = [-1] * n, [-1] * n
    for k, sec in enumerate(shown):
        for i in sec.ids:
            part_of[i] = k
    for k, sec in enumerate(stretches):
        for i in sec.ids:
            stretch_of[i] = k
    own = segment_terms(prof, stretches)
    acting = [bool(prof.actors[i] & set(prof.characters)) for i in range(n)]  # a character of the story acts
    informs = [stretch_of[i] >= 0 and (acting[i] or bool(prof.items(i) & own[stretch_of[i]].keys()))
               and not writer_acts(prof, i) for i in range(n)]
    if salience is None or callable(salience):
        features = sentence_features(texts, vectors, stretches, terms, prof)
        score = (salience or salience_of)(features)
    else:
        score = salience
    # what stands for a segment: close to its centroid and naming what it is about
    held = torch.tensor([sum(own[k].get(x, 0.0) for x in prof.items(i)) / (max(own[k].values(), default=0) or 1)
                         if (k := stretch_of[i]) >= 0 else 0.0 for i in range(n)])
    local = torch.zeros(n)
    for s in stretches:
        ids = list(s.ids)
        local[ids] = vectors[ids] @ torch.nn.functional.normalize(vectors[ids].mean(0), dim=0)
    score = _z(score) + SEGMENT_WEIGHT * (_z(local) + _z(held / (1 + held)))
    heading_cost = [engine.count_tokens(f"{sec.heading}. ") if sec.heading else HEADING_COST for sec in shown]
    quotable = []
    for i in range(n):
        k = stretch_of[i]
        ok = usable[i] and informs[i]
        if ok and story and any(acting[j] and usable[j] and informs[j] for j in stretches[k].ids):
            ok = acting[i]  # a story's quote tells who does what
        quotable.append(ok)
    if not any(quotable):
        quotable = usable
    quoted = choose_quotes(texts, vectors, pieces, part_of, heading_cost, quotable, room, engine, score)
    parts = [Part(shown[k].heading, "document", shown[k].first, shown[k].last, sorted(i for i in quoted if part_of[i] == k))
             for k in sorted({part_of[i] for i in quoted})]
    for part in parts:
        if not part.heading:
            k = stretch_of[part.quotes[0]]
            part.heading, part.heading_source = heading_of(part.quotes, prof, own[k], story) or "Part", "terms"
    return Outline(kept, parts, max_length, prof.characters)


def segment_terms(p: Profile, stretches: list[Section]) -> list[dict[str, float]]:
    """Each stretch's own names and terms (SEGMENT_TERMS of them, with weights): said twice or more in
    it, and more there than in the other stretches (count x log(stretches / stretches saying it))."""
    counts = [Counter(x for i in s.ids for x in p.items(i)) for s in stretches]
    df = Counter(x for c in counts for x in c)
    out = []
    for c in counts:
        weight = {x: k * (math.log(len(stretches) / df[x]) if len(stretches) > 1 else 1.0)
                  for x, k in c.items() if k >= 2}
        best = sorted((x for x in weight if weight[x] > 0), key=lambda x: -weight[x])[:SEGMENT_TERMS]
        out.append({x: weight[x] for x in best})
    return out


def heading_of(quotes: list[int], p: Profile, own: dict[str, float], story: bool) -> str:
    """A part's heading from its quotes' own names and terms (a story's acting characters first), the
    segment's most its own first: nothing its quotes do not say."""
    said = [x for i in quotes for x in (sorted(p.actors[i] & set(p.characters)) if story else [])]
    items = [x for i in quotes for x in p.names[i] + p.nouns[i]]
    counts = Counter(items)
    ranked = sorted(dict.fromkeys(items), key=lambda x: (-own.get(x, 0.0), -counts[x]))
    picked: list[str] = []
    for x in list(dict.fromkeys(said)) + ranked:
        text = x if x in p.kind else p.surface.get(x, x)
        if not any(set(text.lower().split()) & set(q.lower().split()) for q in picked):
            picked.append(text)
        if len(picked) == HEADING_TERMS:
            break
    return ", ".join(picked)


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


def sentence_features(texts: list[str], vectors: torch.Tensor, stretches: list[Section], terms: list[Term],
                      prof: Profile | None = None) -> torch.Tensor:
    """(N, len(FEATURES)) what `gist` weighs, and more, for each sentence: its cosine to its stretch's
    centroid (local) and to the document's (central), its tf-idf closeness to the document's words
    (`lexical`), the key names and terms it holds (saturating: h / (1 + h), h their scores over the
    best's), a place prior that halves by the end of the first tenth; then its relative position, whether
    it is among the first 5% of sentences (opening), opens its stretch (section_first), its share of
    names (names), its words / 40 (at most 2: length), whether it holds a number."""
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
    prof = prof or profile(plains)
    names = torch.tensor([float(len(found)) for found in prof.names]) / words
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
    best of the rest, each less by DIVERSITY x its cosine to the nearest quote. `part_of[i]`: the part sentence i is shown under (-1: none); the first quote of
    part k also pays `heading_cost[k]` tokens for its heading."""
    inside = [i for i, k in enumerate(part_of) if k >= 0]
    if not inside:
        return set()
    candidates = [i for i in inside if usable[i]] or [i for i in inside if prose(plain(texts[i]))] or inside
    ranked = sorted(candidates, key=lambda i: -float(score[i]))
    firsts = {b for b in (next((i for i in ranked if s.first <= i <= s.last), None) for s in stretches) if b is not None}
    chosen: set[int] = set()
    opened: set[int] = set()
    used = 0

    def take(i: int) -> bool:
        nonlocal used
        cost = engine.count_tokens(plain(texts[i])) + (heading_cost[part_of[i]] if part_of[i] not in opened else 0)
        if used + cost > budget or (chosen and float((vectors[sorted(chosen)] @ vectors[i]).max()) > REDUNDANT):
            return False
        chosen.add(i)
        opened.add(part_of[i])
        used += cost
        return True

    for i in (i for i in ranked if i in firsts):
        take(i)
    rest = [i for i in ranked if i not in firsts]
    while rest and chosen:  # then the best of the rest, each less for its likeness to what is quoted
        like = (vectors[rest] @ vectors[sorted(chosen)].T).max(1).values  # (R,)
        order = torch.argsort(score[rest] - DIVERSITY * like, descending=True).tolist()
        picked = next((k for k in order if take(rest[k])), None)
        if picked is None:
            break
        rest.pop(picked)
    if not chosen:  # nothing fits: the best sentence, even over the budget
        chosen.add(ranked[0])
    return chosen
