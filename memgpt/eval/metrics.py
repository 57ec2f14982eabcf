"""Scoring long-context answers (BABILong's rule, on normalised words; passkey: first integer).

Normalisation (`normalize`): Unicode NFKC, lower case, every character that is not a letter or a
digit becomes a space, whitespace collapsed. So "The Kitchen." , "kitchen!" and "KITCHEN" all read
"kitchen"; matching is by whole words ("bathroom" does not match "bath").

`label_correct(prediction, target, labels, question)`: correct iff the target appears in the
prediction and no *other* candidate label of the task does, ignoring labels that the question itself
names (a prediction may repeat the question: "Who gave the cake to Fred?" -> "Mary gave the cake to
Fred" is correct). A comma-separated target needs all its parts and nothing else.

`first_integer_correct(prediction, target)`: the first run of digits in the prediction (thousands
separators "12,345" are joined) equals the target number.
"""

from __future__ import annotations

import re
import unicodedata

from ..memories.abstention import is_abstention, normalize

def _contains(words: str, phrase: str) -> bool:
    """Whether normalised `phrase` occurs as whole words in normalised `words`."""
    p = normalize(phrase)
    return bool(p) and f" {p} " in f" {words} "


def label_correct(prediction: str, target: str, labels: list[str], question: str = "") -> bool:
    """BABILong's rule on normalised words (see module doc)."""
    pred, q = normalize(prediction), normalize(question)
    targets = [t for t in (normalize(x) for x in target.split(",")) if t] if "," in target else [normalize(target)]
    candidates = {normalize(x) for x in labels} | set(targets)
    present = {c for c in candidates if _contains(pred, c) and not _contains(q, c)}
    return present == set(targets)


def first_integer(prediction: str) -> int | None:
    """The first integer written in `prediction` ("12,345" -> 12345), or None."""
    m = re.search(r"\d{1,3}(?:,\d{3})+(?!\d)|\d+", unicodedata.normalize("NFKC", prediction))
    return int(m.group(0).replace(",", "")) if m else None


def first_integer_correct(prediction: str, target: str) -> bool:
    return first_integer(prediction) == int(target)


def score(task: str, prediction: str, target: str, labels: list[str], question: str = "") -> bool:
    """The suite's metric for `task`: first integer for passkey tasks, the abstention phrase for
    `absent` (a question the document cannot answer), BABILong's rule otherwise."""
    if task == "absent":
        return is_abstention(prediction)
    if task.startswith("passkey"):
        return first_integer_correct(prediction, target)
    return label_correct(prediction, target, labels, question)
