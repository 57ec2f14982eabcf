"""Words as the package compares them: spaCy's tokens, lemmas and stop list; numbers by value (text2num).

    terms("The keepers mended the lamps.")      -> ["keeper", "mend", "lamp"]
    number_values("thirty-one ships and 1,250 men") -> {31.0, 1250.0}
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

import spacy
from spacy.tokens import Doc, Span, Token
from text_to_num import alpha2digit

from .pipeline import analyse, analyse_all, language_of, pipeline

_DIGITS = re.compile(r"\d+(?:[,\u00a0]\d{3})*(?:\.\d+)?")
_NUMBER_LANGS = {"en", "fr", "es", "pt", "de", "nl", "da", "it"}  # what text2num reads


@lru_cache(maxsize=None)
def stop_words(lang: str = "en") -> frozenset[str]:
    """spaCy's stop list for `lang` (function words: "the", "would", "upon", ...); no model is loaded."""
    return frozenset(spacy.util.get_lang_class(lang).Defaults.stop_words)


STOP = stop_words("en")


def is_content(token: Token) -> bool:
    """A word that carries content: not a stop word, punctuation, space or symbol."""
    return not (token.is_stop or token.is_punct or token.is_space or token.pos_ in ("SYM", "X")
                or token.lower_ in stop_words(token.doc.lang_))


@lru_cache(maxsize=None)
def noun_index(lang: str = "en") -> frozenset[str]:
    """The nouns the pipeline's lemmatizer knows (English: WordNet's noun index, shipped with spaCy's
    rule lemmatizer); empty where it has none."""
    from .pipeline import pipeline

    nlp = pipeline(lang)
    if "lemmatizer" not in nlp.pipe_names:
        return frozenset()
    lookups = nlp.get_pipe("lemmatizer").lookups
    if not lookups.has_table("lemma_index"):
        return frozenset()
    return frozenset(lookups.get_table("lemma_index").get("noun", ()))


def lemma(token: Token) -> str:
    """The token's lemma, lower case ("mended" -> "mend", "universities" -> "university"); the text itself
    where the pipeline has no lemmatizer (a blank pipeline: one character of Chinese)."""
    return (token.lemma_ or token.text).lower()


def doc_terms(doc: Doc | Span) -> list[str]:
    """The content lemmas of an analysed text, in order."""
    return [lemma(t) for t in doc if is_content(t)]


def terms(text: str) -> list[str]:
    """Content terms of `text` in order: lemmas of the words that are not stop words or punctuation."""
    return doc_terms(analyse(text, full=False))


def terms_all(texts: Iterable[str]) -> list[list[str]]:
    """`terms` of many texts at once (batched through the pipeline)."""
    return [doc_terms(d) for d in analyse_all(texts, full=False)]


@lru_cache(maxsize=100_000)
def tokens(text: str) -> tuple[str, ...]:
    """The words, numbers and signs of `text` as spaCy's tokenizer cuts them (no tagger: fast enough for
    every sentence of a long document); spaces left out."""
    nlp = pipeline(language_of(text))
    return tuple(t.text for t in nlp.tokenizer(text) if not t.is_space)


def value(text: str) -> float | None:
    """The number a short phrase states ("thirty-one" -> 31, "1,250" -> 1250, "$4.50" -> 4.5), else None."""
    found = _values(text)
    return found[0] if len(found) == 1 else None


def number_values(text: str) -> set[float]:
    """Every number `text` states, in digits or words, by value."""
    return set(_values(text))


def _values(text: str) -> list[float]:
    lang = language_of(text)
    if lang in _NUMBER_LANGS:
        try:
            text = alpha2digit(text, lang, threshold=0)  # "thirty-one" -> "31", "one" -> "1"
        except (ValueError, IndexError):  # text2num on odd input; the digits are still read
            pass
    out = []
    for m in _DIGITS.finditer(text):
        try:
            out.append(float(m.group().replace(",", "").replace("\u00a0", "")))
        except ValueError:
            continue
    return out
