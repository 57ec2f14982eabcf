"""Product code holds no hand-written word list: language knowledge comes from spaCy and text2num.
The check walks the AST of every module of the package and fails on a literal collection of more than
25 strings (set, list, tuple, dict keys or values) or on `"...".split()` of a literal with more than 25
words."""

import ast
from pathlib import Path

import pytest

import memgpt

LIMIT = 25
MODULES = sorted(Path(memgpt.__file__).parent.rglob("*.py"))


def word_lists(source: str) -> list[tuple[int, int]]:
    """(line, entries) of every literal word collection over LIMIT entries in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Set, ast.List, ast.Tuple)):
            strings = [e for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
        elif isinstance(node, ast.Dict):
            strings = [e for e in [*node.keys, *node.values] if isinstance(e, ast.Constant) and isinstance(e.value, str)]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "split"
              and isinstance(node.func.value, ast.Constant) and isinstance(node.func.value.value, str)):
            strings = node.func.value.value.split()
        else:
            continue
        if len(strings) > LIMIT:
            found.append((node.lineno, len(strings)))
    return found


def test_the_check_finds_each_form_of_word_list():
    words = [f"w{k}" for k in range(LIMIT + 1)]
    for source in (repr(set(words)), repr(words), repr(tuple(words)), repr(dict.fromkeys(words, 1)),
                   repr(" ".join(words)) + ".split()"):
        assert word_lists(f"X = {source}\n"), source
    assert not word_lists(f"X = {words[:LIMIT]!r}\nY = {' '.join(words[:LIMIT])!r}.split()\n")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(Path(memgpt.__file__).parent)))
def test_no_literal_word_collection_in_product_code(path):
    assert word_lists(path.read_text(encoding="utf-8")) == [], f"{path}: a literal list of words; use memgpt.text"
