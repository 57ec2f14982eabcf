"""Summaries side by side in one run, at the same word budget: memgpt's outline (summarize's default) and
extractive summary, sumy 0.13's LexRank / TextRank / LSA / Luhn (fed memgpt's pysbd sentences), lead-k.

- the long Wikipedia articles of gensim's test dump that benchmarks/apps.py selects (body in, lead as the
  reference): ROUGE-1/2/L, entity recall (share of the lead's capitalised names the summary names);
  the first DEV articles are the dev subset (what memgpt was tuned on), the rest the test set;
- `--extra-dev N`: N other articles of the dump (not among those 20; 800 words or more, a lead of 3
  sentences or more), scored with EXTRA_METHODS only: the "extra" split, tuned on with the dev subset
  ("tune" = dev + extra);
- 5 test-split State of the Union speeches (no reference);
- on all: names/numbers not in the document, dangling sentences (quoted sentences that open on a
  reference to an earlier one, or with a pronoun among their first words, whose previous sentence is not
  in the summary), seconds (reading included), peak RSS;
- `--story-tokens N`: a story of N tokens written by `memgpt generate` (benchmarks/apps.py's prompt, two
  named characters), then summarized: are its characters named?

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/summaries.py            # 20 articles + 5 speeches
    python benchmarks/summaries.py --articles 5 --speeches 0 --extra-dev 30   # tuning: dev + extra only
    python benchmarks/summaries.py --story-tokens 5000 --articles 0 --speeches 0 --out benchmarks/results/summaries_story.json

Prints a table, writes benchmarks/results/summaries.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from apps import long_articles, other_articles, run_story  # noqa: E402
from rss import peak_rss_kb, reset_peak_rss  # noqa: E402

from memgpt.apps import get_engine  # noqa: E402
from memgpt.apps.evidence import stands_alone  # noqa: E402
from memgpt.apps.grounding import Vocabulary, unsupported_name_share  # noqa: E402
from memgpt.text.words import STOP  # noqa: E402
from memgpt.apps.reading import _read  # noqa: E402
from memgpt.apps.summarize import summarize_reading  # noqa: E402
from memgpt.io.atomic import write_text_atomic  # noqa: E402
from memgpt.io.corpora import sotu_speeches  # noqa: E402
from memgpt.io.spans import plain  # noqa: E402
from memgpt.memories.retrieval import encoder_of  # noqa: E402
from machine import cpu_model  # noqa: E402 - benchmarks/ is on sys.path when run as a script

RESULTS = Path(__file__).resolve().parent / "results"
SUMY = ("lexrank", "textrank", "lsa", "luhn")
METHODS = ("outline", "extractive", *SUMY, "lead")
EXTRA_METHODS = ("outline", "lexrank", "lead")
BENCH_ARTICLES = 20  # long_articles' first 20: the dev and test articles
SPLITS = {"dev": {"dev"}, "test": {"test"}, "all": {"dev", "test"}, "extra": {"extra"}, "tune": {"dev", "extra"}}
PRONOUNS = frozenset("he she him his her they them their it its this these those such".split())


class Words:
    """sumy's tokenizer interface over plain word matching (sentences come from memgpt's pysbd index)."""

    language = "english"

    def to_words(self, sentence: str) -> list[str]:
        return re.findall(r"[^\W_]+(?:['’][^\W_]+)?", sentence)

    def to_sentences(self, paragraph: str) -> list[str]:
        return [paragraph]


def sumy_pick(name: str, sentences: list[str], words: int, at_most: bool = False) -> list[int]:
    """Indices of the sentences sumy's `name` summarizer picks, as few as make `words` words (`at_most`:
    as many as make no more than `words`, at least one)."""
    from sumy.models.dom import ObjectDocumentModel, Paragraph, Sentence
    from sumy.nlp.stemmers import Stemmer
    from sumy.summarizers.lex_rank import LexRankSummarizer
    from sumy.summarizers.lsa import LsaSummarizer
    from sumy.summarizers.luhn import LuhnSummarizer
    from sumy.summarizers.text_rank import TextRankSummarizer
    from sumy.utils import get_stop_words

    cls = {"lexrank": LexRankSummarizer, "textrank": TextRankSummarizer, "lsa": LsaSummarizer, "luhn": LuhnSummarizer}[name]
    summarizer = cls(Stemmer("english"))
    summarizer.stop_words = get_stop_words("english")
    tok = Words()
    doc = ObjectDocumentModel([Paragraph([Sentence(s, tok) for s in sentences])])
    where = {s: i for i, s in reversed(list(enumerate(sentences)))}
    mean = max(1, sum(len(s.split()) for s in sentences) // max(1, len(sentences)))
    k = max(1, words // mean)
    before: list[int] = []
    while at_most and k > 1 and sum(len(str(s).split()) for s in summarizer(doc, k)) > words:
        k -= 1  # its first k sentences already say more
    while True:
        ids = sorted(where[str(s)] for s in summarizer(doc, k))
        said = sum(len(sentences[i].split()) for i in ids)
        if said >= words or k >= len(sentences):
            return before if at_most and said > words and before else ids
        before = ids
        k += 1


def heading_agrees(heading: str, quotes: list[str]) -> bool:
    """Every content word of the heading is a word of its quotes, as written or by lemma (spaCy lemmatizes
    "allied" in "the allied powers" as an adjective, and alone as the verb "ally")."""
    from memgpt.text.pipeline import analyse
    from memgpt.text.words import is_content, lemma

    said = {w for t in analyse(" ".join(quotes), full=False) for w in (t.lower_, lemma(t))}
    return all(t.lower_ in said or lemma(t) in said for t in analyse(heading, full=False) if is_content(t))


def cut(text: str, words: int) -> str:
    return " ".join(text.split()[:words])


def dangling(ids: list[int], sentences: list[str]) -> int:
    """Quoted sentences that lean on one before them that the summary does not hold."""
    chosen = set(ids)
    bad = 0
    for i in ids:
        if i - 1 in chosen:
            continue
        opening = [re.sub(r"[^\w]", "", w.lower()) for w in sentences[i].split()[:6]]
        bad += not stands_alone(sentences[i]) or any(w in PRONOUNS for w in opening)
    return bad


def lead_names(lead: str) -> set[str]:
    """Capitalised words of the lead that are no sentence's first word and no function word."""
    names = set()
    for sentence in re.split(r"(?<=[.!?])\s+", lead):
        for k, w in enumerate(re.findall(r"[^\W_]+", sentence)):
            if k and w[:1].isupper() and w.lower() not in STOP and len(w) > 1:
                names.add(w)
    return names


def run_doc(engine, scorer, name: str, section: str, split: str, text: str, reference: str | None,
            words: int, max_length: int | None, methods: list[str], same_length: bool = False) -> list[dict]:
    rows = []
    encoder_of(engine).cache.clear()
    start = time.perf_counter()
    reading = _read(text, "retrieval", engine, False, 1 << 30, direct=False, kv=None)
    read_s = time.perf_counter() - start
    sentences = [plain(t) for t in reading.state.index.texts]
    vocab = Vocabulary.of([text])
    wanted = lead_names(reference) if reference else set()
    for method in methods:
        if same_length and method != "outline" and rows and rows[0]["method"] == "outline":
            words = rows[0]["words"]  # every peer says as many words as the outline
        reset_peak_rss()
        start = time.perf_counter()
        extra: list[str] = []
        if method in ("outline", "extractive"):
            summary = summarize_reading(reading, max_length, method, text)
            said = summary.said()
            ids = [sentences.index(s.text) for s in summary.sentences]
            extra = [t.text for t in summary.about] + [p.heading for p in summary.parts]
            seconds = time.perf_counter() - start + read_s
        elif method == "lead":
            ids, n = [], 0
            while n < words and len(ids) < len(sentences):
                ids.append(len(ids))
                n += len(sentences[ids[-1]].split())
            said = " ".join(sentences[i] for i in ids)
            seconds = time.perf_counter() - start
        else:
            ids = sumy_pick(method, sentences, words)
            said = " ".join(sentences[i] for i in ids)
            seconds = time.perf_counter() - start
        said = cut(said, words)
        missing, names = unsupported_name_share([sentences[i] for i in ids] + extra, vocab)
        row = {"doc": name, "section": section, "split": split, "method": method, "words": len(said.split()),
               "summary": said, "sentence_ids": ids, "names_numbers": names, "names_numbers_missing": missing,
               "sentences": len(ids), "dangling": dangling(ids, sentences), "seconds": round(seconds, 2),
               "peak_rss_mb": round(peak_rss_kb() / 1024, 1)}
        if method == "outline":
            row["headings"] = [[p.heading, p.heading_source] for p in summary.parts]
            made = [p for p in summary.parts if p.heading_source != "document"]
            row["headings_made"] = len(made)
            row["headings_agree"] = sum(heading_agrees(p.heading, [s.text for s in p.sentences]) for p in made)
        if reference is not None:
            row["rouge"] = {k: round(v.fmeasure, 4) for k, v in scorer.score(reference, said).items()}
            row["entity_recall"] = (round(sum(bool(re.search(rf"\b{re.escape(n)}\b", said)) for n in wanted) / len(wanted), 4)
                                    if wanted else None)
        rows.append(row)
        print(f"{name[:30]:30s} {split:4s} {method:10s} " + (f"R1 {row['rouge']['rouge1']:.3f} RL {row['rouge']['rougeL']:.3f} "
              f"ent {row['entity_recall'] if row['entity_recall'] is not None else '-'}  " if reference else "")
              + f"missing {missing}/{names} dangling {row['dangling']}/{len(ids)} {row['seconds']:.1f}s", flush=True)
    return rows


def table_of(rows: list[dict], methods: list[str]) -> dict:
    mean = lambda xs: round(sum(xs) / len(xs), 4) if xs else None  # noqa: E731
    out = {}
    for split, holds in SPLITS.items():
        for m in methods:
            mine = [r for r in rows if r["method"] == m and r["split"] in holds]
            if not mine or {r["split"] for r in rows if r["split"] in holds} != {r["split"] for r in mine}:
                continue  # not run on all of the split (EXTRA_METHODS only on the extra articles)
            wiki = [r for r in mine if r["section"] == "wiki"]
            out[f"{split}/{m}"] = {
                "articles": len(wiki), "documents": len(mine),
                "rouge1": mean([r["rouge"]["rouge1"] for r in wiki]), "rouge2": mean([r["rouge"]["rouge2"] for r in wiki]),
                "rougeL": mean([r["rouge"]["rougeL"] for r in wiki]),
                "entity_recall": mean([r["entity_recall"] for r in wiki if r["entity_recall"] is not None]),
                "names_numbers_missing": sum(r["names_numbers_missing"] for r in mine),
                "names_numbers": sum(r["names_numbers"] for r in mine),
                "dangling_share": round(sum(r["dangling"] for r in mine) / max(1, sum(r["sentences"] for r in mine)), 4),
                "seconds_per_doc": mean([r["seconds"] for r in mine]),
                "heading_agreement": (round(sum(r["headings_agree"] for r in mine) / max(1, sum(r["headings_made"] for r in mine)), 4)
                                      if m == "outline" and all("headings_agree" in r for r in mine)
                                      and sum(r["headings_made"] for r in mine) else None),
                "words": mean([r["words"] for r in mine]),
                "peak_rss_mb": max((r["peak_rss_mb"] for r in mine), default=None),
            }
    return out


def print_table(table: dict) -> None:
    cols = ["rouge1", "rouge2", "rougeL", "entity_recall", "names_numbers_missing", "dangling_share", "words",
            "heading_agreement", "seconds_per_doc", "peak_rss_mb"]
    print("\n| split/method | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for key, row in table.items():
        print(f"| {key} | " + " | ".join("-" if row[c] is None else f"{row[c]:.3f}" if isinstance(row[c], float)
                                        else str(row[c]) for c in cols) + " |")


def story(engine, tokens: int, max_length: int) -> dict:
    """A story of `tokens` tokens with two named characters, summarized: are they named?"""
    from memgpt.apps import summarize

    made = run_story(engine, "text", tokens)
    names = ("Ilsa", "Tomas")
    out = {"tokens": tokens, "words": made["words"], "generate_seconds": made["seconds"], "text": made["text"],
           "names_in_story": {n: made["text"].count(n) for n in names}}
    for method in ("outline", "extractive"):
        start = time.perf_counter()
        s = summarize(made["text"], max_length, extractive=method == "extractive", engine=engine)
        said = s.said()
        out[method] = {"summary": s.render("text"), "names_in_summary": {n: said.count(n) for n in names},
                       "about": [t.text for t in s.about], "seconds": round(time.perf_counter() - start, 2)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--articles", type=int, default=20)
    ap.add_argument("--dev", type=int, default=5, help="the first DEV articles are the dev subset")
    ap.add_argument("--extra-dev", type=int, default=0, help="N other articles of the dump, a further dev set")
    ap.add_argument("--speeches", type=int, default=5)
    ap.add_argument("--words", type=int, default=100, help="the word budget of every method")
    ap.add_argument("--max-length", type=int, default=200,
                    help="memgpt's token budget (0: summarize's default, by the document's length); cut to --words like every method")
    ap.add_argument("--same-length", action="store_true",
                    help="every other method says as many words as the outline did (methods must start with outline)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--story-tokens", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS / "summaries.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from rouge_score import rouge_scorer

    from memgpt.eval.longcontext.haystack import split_of

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    engine = get_engine("default", "auto", 2048)
    methods = args.methods.split(",")
    rows: list[dict] = []
    bench = long_articles(engine, max(args.articles, BENCH_ARTICLES))
    articles = bench[: args.articles]
    extra = other_articles(engine, args.extra_dev, {a.title for a in bench}) if args.extra_dev else []
    for k, art in enumerate(articles):
        rows += run_doc(engine, scorer, f"wiki:{art.title}", "wiki", "dev" if k < args.dev else "test", art.body,
                        art.lead, args.words, args.max_length or None, methods, args.same_length)
    for art in extra:
        rows += run_doc(engine, scorer, f"wiki:{art.title}", "wiki", "extra", art.body, art.lead, args.words,
                        args.max_length or None, [m for m in methods if m in EXTRA_METHODS], args.same_length)
    speeches = [p for p in sotu_speeches() if split_of(p.name) == "test" and 60_000 <= p.stat().st_size <= 140_000]
    for path in sorted(speeches, key=lambda p: -p.stat().st_size)[: args.speeches]:
        rows += run_doc(engine, scorer, f"sotu:{path.stem}", "sotu", "test", path.read_text(encoding="utf-8"), None,
                        args.words, args.max_length or None, methods, args.same_length)
    stories = [story(engine, args.story_tokens, args.max_length)] if args.story_tokens else []
    for s in stories:
        print(f"story {s['words']} words; names in it {s['names_in_story']}; outline names "
              f"{s['outline']['names_in_summary']}, extractive {s['extractive']['names_in_summary']}")
    table = table_of(rows, methods)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    payload = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "commit": commit,
               "cpu": cpu_model(), "command": " ".join(["python"] + sys.argv), "torch_threads": torch.get_num_threads(),
               "model": f"SmolLM2-135M-Instruct ({engine.dtype_name})",
               "dev_articles": [a.title for a in articles[: args.dev]], "test_articles": [a.title for a in articles[args.dev :]],
               "extra_dev_articles": [a.title for a in extra],
               "note": "memgpt was tuned on the dev and extra articles only; the test rows were not looked at while tuning",
               "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "table": table, "rows": rows, "stories": stories}
    if rows:
        print_table(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(payload, indent=1, ensure_ascii=False))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
