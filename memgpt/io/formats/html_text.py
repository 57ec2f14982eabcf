"""HTML main text (selectolax): no script, style, navigation, header, footer or form text; headings kept.
The tree is walked with an explicit stack, so deep nesting cannot exhaust the Python stack."""

from __future__ import annotations

import re
from pathlib import Path

from ...errors import MemGPTError
from .sourcemap import Loaded, TextBuilder

SKIP = {"script", "style", "nav", "header", "footer", "aside", "noscript", "template", "form", "svg", "iframe",
        "button", "select", "head", "title", "-comment"}
HEADINGS = {f"h{i}": i for i in range(1, 7)}
MAX_DEPTH = 4096  # lexbor's tree building slows quadratically with nesting (20k levels: ~2 s); real pages nest < 100
# elements that never hold others (void) or whose end tag the parser implies at the next sibling
_FLAT = {"br", "img", "hr", "meta", "link", "input", "area", "base", "col", "embed", "source", "track", "wbr", "p",
         "li", "dt", "dd", "option", "tr", "td", "th"}
_TAG = re.compile(r"<(/?)([a-zA-Z][\w:-]*)[^>]*?(/?)>")
BLOCKS = {"p", "div", "li", "td", "th", "tr", "blockquote", "pre", "section", "article", "main", "dd", "dt",
          "figcaption", "br", "table", "ul", "ol", "body"}


def load(path: Path, max_bytes: int) -> Loaded:
    return load_markup(path.read_bytes().decode("utf-8", errors="replace"), TextBuilder("html"))


def load_markup(markup: str, out: TextBuilder, level_shift: int = 0) -> Loaded:
    """Add the main text of one HTML document to `out` (headings shifted down by `level_shift`)."""
    from selectolax.lexbor import LexborHTMLParser

    check_depth(markup)
    try:
        tree = LexborHTMLParser(markup)
    except Exception as e:  # noqa: BLE001 - lexbor raises plain errors on hostile input
        raise MemGPTError(f"unreadable HTML ({str(e)[:120]})") from None
    root = tree.body or tree.root
    if root is None:
        return out.result()
    line: list[str] = []
    stack = [(root, False)]
    while stack:
        node, closing = stack.pop()
        tag = node.tag
        if closing:
            if tag in HEADINGS:
                out.block(" ".join(line), HEADINGS[tag] + level_shift)
                line.clear()
            elif tag in BLOCKS:
                out.block(" ".join(" ".join(line).split()))
                line.clear()
            continue
        if tag == "-text":
            line.append(node.text_content or "")
            continue
        if tag in SKIP or (node.attributes.get("role") or "") in ("navigation", "banner", "contentinfo"):
            continue
        if tag in HEADINGS or tag in BLOCKS:
            out.block(" ".join(" ".join(line).split()))
            line.clear()
            stack.append((node, True))
        children = []
        child = node.child
        while child is not None:
            children.append(child)
            child = child.next
        stack.extend((c, False) for c in reversed(children))
    out.block(" ".join(" ".join(line).split()))
    return out.result()


def check_depth(markup: str) -> None:
    """Refuse markup nested deeper than MAX_DEPTH (an HTML bomb), by one linear scan of its tags."""
    depth = 0
    for m in _TAG.finditer(markup):
        closing, tag, empty = m.groups()
        if empty or tag.lower() in _FLAT:
            continue
        depth = max(0, depth - 1) if closing else depth + 1
        if depth > MAX_DEPTH:
            raise MemGPTError(f"HTML nested deeper than {MAX_DEPTH} elements (an HTML bomb?)")
