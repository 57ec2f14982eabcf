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
