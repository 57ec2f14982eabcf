"""English function words, and the content terms of a text (what lexical matching compares).

One list for the package: retrieval's lexical score and second hop, and grounding's checks of names and
content words, all leave out the same words.
"""

from __future__ import annotations

import re
from functools import lru_cache

STOP = frozenset("""a an the and or but if then than so as of in on at to for from by with without into onto over
under about above below between through during before after since until while within upon against among is are
was were be been being am has have had do does did will would shall should can could may might must not no nor
it its this that these those there here he she they them his her their we our us you your i me my mine which
who whom whose what when where why how all any each every both either neither some such more most other
another same also very just only own too again further once also yet still even much many few s
up down out off""".split())
_WORD = re.compile(r"\w+")


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer  # PyStemmer: the Snowball English stemmer ("mended" -> "mend", "cats" -> "cat")

    return Stemmer.Stemmer("english")


def terms(text: str) -> list[str]:
    """Content terms of `text` in order: lower-case words that are not function words, stemmed."""
    words = [w for w in _WORD.findall(text.lower()) if w not in STOP]
    return _stemmer().stemWords(words) if words else []
