"""An outline of a document: what it is about (its main names and terms, cited), then its parts (its
sections, or its topics found by TextTiling), each with a heading and its most representative sentence
that a reader understands alone, quoted and cited. `max_length` tokens bound the whole, as printed.

Only the headings of parts found by TextTiling are written by the model, and each is kept only when the
grounding check supports it and it is nearer to its own part than to any other; otherwise the heading
is the part's key terms. Everything else is the document's own text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from ..io.spans import Span, plain
from ..model.engine import Engine
from .entities import Term, about, names_in
from .evidence import prose, reference_entry, stands_alone
from ..io.words import STOP
from .grounding import Vocabulary, check, content_words, repeats
from .topics import Section, by_headings, by_shifts

PER_PART = 32  # tokens a part takes: its heading and one sentence
ABOUT_SHARE = 0.25  # of the budget, at most, for the About line
MAX_PARTS = 8
LOCAL = 0.5  # a quote's closeness to its part's centroid, against the document's
MAX_ABOUT = 12
MIN_QUOTE_WORDS = 12  # shorter sentences are transitions ("No subject better warrants the attention of the Congress.")
MAX_QUOTE_WORDS = 40
HEADING_TOKENS = 12
HEADING = "Write a short title (2 to 5 words) for this passage.\n\nPassage: {text}"
_POINTING = re.compile(r"\b(this|these|those|such)\s+(is|was|are|were|has|have|will|would|can|must|should)\b", re.I)
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
    if (i - 1) in quoted:
        return True
    opening = [re.sub(r"[^\w]", "", w.lower()) for w in words[:6]]
    return stands_alone(text) and not any(w in _PRONOUN for w in opening) and not _POINTING.search(text)


def outline(texts: list[str], spans: list[Span], vectors: torch.Tensor, engine: Engine, max_length: int,
            document: str | None = None, write_headings: bool = True, salience: torch.Tensor | None = None) -> Outline:
    """The outline of a document of sentences `texts` (cited as `spans`, embedded as `vectors` (N, D)),
    within `max_length` tokens; `document`: its full text when at hand (to find its own headings);
    `salience`: (N,) scores that rank each part's quotes instead of centrality (benchmarks/salience.py)."""
    n = len(texts)
    usable = [self_contained(texts, i, set()) for i in range(n)]
    terms = about(texts, spans, lambda w: engine.tokenizer(w, add_special_tokens=False)["input_ids"],
                  lambda i: usable[i], MAX_ABOUT)
    kept, used = [], 0
    for t in terms:
        cost = engine.count_tokens(f"{t.text}, ")  # as `Summary.said` counts it
        if used + cost > ABOUT_SHARE * max_length:
            break
        kept.append(t)
        used += cost
    room = max_length - used
    wanted = max(1, min(MAX_PARTS, room // PER_PART))
    sections = by_headings(document, [s.start for s in spans], [s.end for s in spans]) if document else []
    if sections:
        sections = grouped(sections, wanted)
    else:
        sections = by_shifts(vectors, wanted)
    parts = [Part(s.heading, "document", s.first, s.last) for s in sections]
    quoted = choose_quotes(texts, vectors, sections, usable, room - sum(engine.count_tokens(p.heading) for p in parts),
                           engine, salience)
    for part in parts:
        part.quotes = sorted(i for i in quoted if part.first <= i <= part.last)
    parts = [p for p in parts if p.quotes] or parts[:1]
    rejected = name_parts(parts, texts, vectors, kept, engine, write_headings)
    return Outline(kept, parts, rejected)


def grouped(sections: list[Section], wanted: int) -> list[Section]:
    """At most `wanted` parts covering all the sections: neighbours merged into stretches of about equal
    length, each under the heading of its longest section."""
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
    return [Section(g[0].first, g[-1].last, max(g, key=lambda s: len(s.ids)).heading) for g in groups]


def choose_quotes(texts: list[str], vectors: torch.Tensor, sections: list[Section], usable: list[bool], budget: int,
                  engine: Engine, salience: torch.Tensor | None = None) -> set[int]:
    """One sentence per part first, then more while the budget lasts: each part's sentences closest to its
    own centroid and to the document's (its gist, in the document's terms), never two alike."""
    if not len(vectors):
        return set()
    centroid = torch.nn.functional.normalize(vectors.mean(0), dim=0)
    queues = []
    for s in sections:
        ids = [i for i in s.ids if usable[i]] or [i for i in s.ids if prose(plain(texts[i]))]
        if not ids:
            queues.append([])
            continue
        local = torch.nn.functional.normalize(vectors[ids].mean(0), dim=0)
        score = LOCAL * (vectors[ids] @ local) + (1 - LOCAL) * (vectors[ids] @ centroid)  # (len(ids),)
        if salience is not None:
            score = salience[ids]
        queues.append([ids[k] for k in score.argsort(descending=True).tolist()])
    chosen: set[int] = set()
    used = 0
    progress = True
    while progress:
        progress = False
        for q in queues:
            while q:
                i = q.pop(0)
                cost = engine.count_tokens(plain(texts[i]))
                if used + cost > budget:
                    continue
                if chosen and float((vectors[sorted(chosen)] @ vectors[i]).max()) > 0.8:
                    continue
                chosen.add(i)
                used += cost
                progress = True
                break
    inside = [i for s in sections for i in s.ids]
    if not chosen and inside:  # nothing fits: the most central sentence of a part, even over the budget
        chosen.add(inside[int((vectors[inside] @ centroid).argmax())])
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
