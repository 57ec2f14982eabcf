"""Which document sentences a kv memory's attention read for a question: the token ranges of the blocks
its layers retrieved (most votes first), of the sink tokens and of the local window, mapped to the
document index through each token's character offset (recorded while reading).

Token offsets: `token_ends[p]` is the document offset just after the token at store position `p` (tokens
that are not the document's, such as the chat frame before it, end at 0).
"""

from __future__ import annotations

import bisect

from ...io.spans import DocumentIndex
from .store import KVStore


def char_ends(tokenizer, ids: list[int], base: int) -> list[int]:
    """The document offset after each token of `ids` (whose text starts at offset `base`). A token that
    is part of a character (a multi-byte UTF-8 sequence cut in two) ends with the character's last token."""
    if not ids:
        return []
    whole = tokenizer.decode(ids, skip_special_tokens=False)
    pieces = tokenizer.batch_decode([[t] for t in ids], skip_special_tokens=False)
    ends, pos, i = [], base, 0
    while i < len(ids):
        j, text = i + 1, pieces[i]
        while "\ufffd" in text and j < len(ids) and j - i < 4:  # bytes of one character over several tokens
            j += 1
            text = tokenizer.decode(ids[i:j], skip_special_tokens=False)
        if "\ufffd" in text:  # a replacement character of the document itself
            j, text = i + 1, pieces[i]
        ends += [pos] * (j - i - 1) + [pos + len(text)]
        pos += len(text)
        i = j
    if pos - base != len(whole):  # a tokenizer whose tokens do not decode one by one (word-initial spaces): exact, slower
        ends = [base + len(tokenizer.decode(ids[: k + 1], skip_special_tokens=False)) for k in range(len(ids))]
    return ends


def retrieved_blocks(store: KVStore) -> list[int]:
    """Every block some layer retrieved during the tracked session (the question and its answer tokens),
    in document order. (The few blocks retrieved by the most layers, or those that received the most
    attention, missed a pass key's block that the answer was read from: the first block after the sinks
    draws attention as the sinks do.)"""
    return sorted({b for chosen in store.retrieved.values() for step in chosen for b in step})


def read_ranges(store: KVStore) -> list[tuple[int, int]]:
    """Token ranges `[a, b)` the question's attention read: sinks, its retrieved blocks, the local window."""
    layer = store.layers[0]
    B = store.settings.block_tokens
    ranges = [(0, layer.sink_k.shape[1])]
    ranges += [(int(layer.block_pos[b]), int(layer.block_pos[b]) + B) for b in retrieved_blocks(store)]
    ranges.append((layer.local_start, layer.tokens))
    return ranges


def sentences_in(index: DocumentIndex, token_ends: list[int], ranges: list[tuple[int, int]]) -> list[int]:
    """The sentences of `index` overlapping the text of the token ranges, in document order."""
    found: set[int] = set()
    n = len(token_ends)
    for a, b in ranges:
        a, b = max(0, a), min(b, n)
        if b <= a:
            continue
        start, end = (token_ends[a - 1] if a else 0), token_ends[b - 1]
        if end <= start:
            continue
        first = bisect.bisect_right(index.ends, start)  # the first sentence ending after `start`
        last = bisect.bisect_left(index.starts, end)  # sentences starting before `end`
        found.update(range(first, last))
    return sorted(found)
