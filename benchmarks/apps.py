"""Applications on long documents, side by side in one run, on the default model.

- summarize: Wikipedia articles of gensim's test data longer than two windows (body in, lead as
  reference): ROUGE-1/2/L (rouge-score), and faithfulness against the document: the share of the
  summary's names and numbers that the document does not contain, and the share of its sentences the
  grounding check cannot support (memgpt.apps.grounding); State of the Union speeches (no reference:
  faithfulness and time only);
- methods: `outline` (summarize's default) and `extractive`, against each memory kind's own summary
  (`text`, `retrieval`, ...) and the backbone given only the first window (truncation) or the last;
- ask (`--qa`): questions from the articles' infoboxes, and facts planted early / middle / late in speeches;
- wall time (reading included) and peak RSS per document.

    python benchmarks/apps.py                      # 20 articles + 5 speeches, 6 methods (~1-2 h on 2 cores)
    python benchmarks/apps.py --articles 2 --speeches 1 --methods outline,window-first

Prints tables, writes benchmarks/results/apps.json.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rss import peak_rss_kb, reset_peak_rss  # noqa: E402

from memgpt.apps import get_engine  # noqa: E402
from memgpt.apps.ask import answer_reading  # noqa: E402
from memgpt.apps.grounding import Vocabulary, check, unsupported_name_share  # noqa: E402
from memgpt.apps.reading import _read  # noqa: E402
from memgpt.memories.retrieval import encoder_of  # noqa: E402
from memgpt.apps.summarize import sentence_vectors, summarize_reading  # noqa: E402
from memgpt.io.atomic import write_text_atomic  # noqa: E402
from memgpt.io.corpora import sotu_speeches, wiki_articles  # noqa: E402
from memgpt.model.hardware import native_bf16  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
GROUNDED = ("outline", "extractive")  # summarize's own methods; the rest are memory kinds
METHODS = ["outline", "extractive", "text", "retrieval", "window-first", "window-last"]
# infobox field -> question template (answers must also occur in the article body)
INFOBOX_QUESTIONS = {
    "capital": "What is the capital of {t}?",
    "largest_city": "What is the largest city of {t}?",
    "currency": "What is the currency of {t}?",
    "official_languages": "What is the official language of {t}?",
    "birth_place": "Where was {t} born?",
    "death_place": "Where did {t} die?",
    "nationality": "What was the nationality of {t}?",
    "spouse": "Who was the spouse of {t}?",
    "occupation": "What was the occupation of {t}?",
    "result": "What was the result of the {t}?",
    "founder": "Who founded {t}?",
    "country": "In which country is {t}?",
}
NAMES = ["Mary", "John", "Sandra", "Daniel", "Julie", "Fred", "Emma", "Bill", "Lucy", "Oliver", "Nina", "Paul"]
PLACES = ["kitchen", "garden", "office", "bedroom", "hallway", "bathroom", "cellar", "library", "garage", "balcony"]


def normalize(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def exact_match(prediction: str, answer: str) -> bool:
    """The normalised answer occurs as whole words in the normalised prediction."""
    return f" {normalize(answer)} " in f" {normalize(prediction)} "


def infobox_questions(article, engine, window_tokens: int) -> list[dict]:
    qs = []
    for key, template in INFOBOX_QUESTIONS.items():
        value = article.infobox.get(key, "")
        answer = re.split(r"[,;(\n]| and ", value)[0].strip(" .*")
        if not answer or len(answer) > 40 or not answer[0].isalnum():
            continue
        where = normalize(article.body).find(normalize(answer))
        if where < 0:
            continue
        prefix = article.body[: max(0, article.body.lower().find(answer.lower()))]
        qs.append({"question": template.format(t=article.title), "answer": answer,
                   "answer_token": engine.count_tokens(prefix), "in_first_window": engine.count_tokens(prefix) < window_tokens})
    return qs


def plant_facts(text: str, seed: int) -> tuple[str, list[dict]]:
    """Insert three facts at sentence boundaries near 10%, 50% and 90% of `text`."""
    g = torch.Generator().manual_seed(seed)
    people = [NAMES[i] for i in torch.randperm(len(NAMES), generator=g)[:3].tolist()]
    places = [PLACES[i] for i in torch.randperm(len(PLACES), generator=g)[:3].tolist()]
    facts = []
    for frac, who, where, label in zip((0.1, 0.5, 0.9), people, places, ("early", "middle", "late")):
        cut = text.find(". ", int(len(text) * frac)) + 2
        text = text[:cut] + f"{who} went to the {where}. " + text[cut:]
        facts.append({"question": f"Where did {who} go?", "answer": where, "position": label})
    return text, facts


def run_kind(engine, kind: str, document: str, max_length: int | None, questions: list[dict]) -> dict:
    """One method on one document: read (always into a memory: no direct shortcut), summarize, answer."""
    encoder_of(engine).cache.clear()  # each method pays for its own reading
    reset_peak_rss()
    start = time.perf_counter()
    grounded = kind in GROUNDED
    reading = _read(document, "retrieval" if grounded else kind, engine, False, 1 << 30, direct=False, kv=None)
    read_s = time.perf_counter() - start
    out: dict = {"kind": kind, "tokens": reading.state.tokens_read, "read_s": round(read_s, 2)}
    if max_length:
        summary = summarize_reading(reading, max_length, kind, document)
        out["summary"] = summary.said()
        out["summary_sentences"] = [s.to_dict() for s in summary.sentences]
        out["rejected"] = summary.rejected
    if questions:
        answers = [a.text for a in answer_reading(reading, [q["question"] for q in questions], 24)]
        out["answers"] = [{**q, "prediction": a, "correct": exact_match(a, q["answer"])} for q, a in zip(questions, answers)]
    out["seconds"] = round(time.perf_counter() - start, 2)
    out["peak_rss_mb"] = round(peak_rss_kb() / 1024, 1)
    return out


def faithfulness(engine, document: str, summary_sentences: list[str]) -> dict:
    """How much of a summary the document supports: names/numbers absent from the document (counted), and
    sentences the grounding check cannot support (counted), whatever method wrote them."""
    reading = _read(document, "retrieval", engine, False, 1 << 30, direct=False, kv=None)
    texts = reading.state.index.texts
    vectors = sentence_vectors(reading.state, engine)
    vocab = Vocabulary.of([document])
    missing, names = unsupported_name_share(summary_sentences, vocab)
    written = encoder_of(engine).encode(summary_sentences) if summary_sentences else []
    verdicts = [check(s, v, texts, vectors, vocab) for s, v in zip(summary_sentences, written)]
    return {"names_numbers": names, "names_numbers_missing": missing,
            "missing": sorted({w for v in verdicts for w in v.unsupported_names}),
            "sentences": len(verdicts), "sentences_unsupported": sum(not v.supported for v in verdicts)}


STORY = ("Write a long adventure story about a young sailor named Ilsa Marrow who sails from the port of "
         "Kestrel Bay to find her missing brother Tomas on the Glass Islands.")


def story_metrics(text: str, names: tuple[str, ...] = ("Ilsa", "Tomas")) -> dict:
    """Cheap coherence signals of a long output: 4-gram diversity (low = loops), repeated lines, and
    whether the protagonists are still named in the last quarter."""
    words = text.split()
    grams = [tuple(words[i : i + 4]) for i in range(len(words) - 3)]
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    tail = " ".join(words[len(words) * 3 // 4 :])
    return {"words": len(words), "distinct_4": round(len(set(grams)) / max(1, len(grams)), 4),
            "repeated_lines": round(1 - len(set(lines)) / max(1, len(lines)), 4),
            "names_in_last_quarter": sum(tail.count(n) for n in names)}


def run_story(engine, kind: str, tokens: int) -> dict:
    from memgpt.apps import generate

    reset_peak_rss()
    start = time.perf_counter()
    text = generate(STORY, tokens, memory=kind, engine=engine, seed=0)
    return {"kind": kind, "section": "generate", "tokens": tokens, **story_metrics(text), "text": text,
            "seconds": round(time.perf_counter() - start, 2), "peak_rss_mb": round(peak_rss_kb() / 1024, 1)}


def long_articles(engine, count: int, window: int = 2048, max_doc_tokens: int = 8_000) -> list:
    """The articles of the dump longer than two windows (and at most `max_doc_tokens`): those with the
    most infobox questions first, then the longest; the first `count`."""
    first_window = window - 192 - 24
    found = [a for a in wiki_articles() if 2 * window < engine.count_tokens(a.body) <= max_doc_tokens]
    found.sort(key=lambda a: (-len(infobox_questions(a, engine, first_window)), -len(a.body)))
    return found[:count]


def other_articles(engine, count: int, exclude: set[str], min_body_words: int = 800, min_lead_sentences: int = 3,
                   max_doc_tokens: int = 12_000) -> list:
    """The first `count` articles of the dump (in its order) that are not titled in `exclude`, have a body
    of `min_body_words` words or more (at most `max_doc_tokens` tokens) and a lead of
    `min_lead_sentences` sentences or more: a further dev set, apart from long_articles'."""
    found = []
    for a in wiki_articles(min_body_words=min_body_words):
        if len(found) == count:
            break
        if (a.title not in exclude and len(re.split(r"(?<=[.!?])\s+", a.lead.strip())) >= min_lead_sentences
                and engine.count_tokens(a.body) <= max_doc_tokens):
            found.append(a)
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--articles", type=int, default=20, help="Wikipedia articles (longer than two windows)")
    ap.add_argument("--speeches", type=int, default=5, help="State of the Union speeches of the test split")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--qa", action="store_true", help="also ask infobox questions, and facts planted in the speeches")
    ap.add_argument("--max-doc-tokens", type=int, default=8_000, help="skip longer articles (time)")
    ap.add_argument("--story-tokens", type=int, default=0, help="long generation length (0: skip)")
    ap.add_argument("--story-kinds", default="text,none")
    ap.add_argument("--max-length", type=int, default=120, help="summary length in tokens")
    ap.add_argument("--window", type=int, default=2048)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS / "apps.json")
    ap.add_argument("--resume", action="store_true", help="keep the rows already in --out, run the rest")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from rouge_score import rouge_scorer

    from memgpt.eval.longcontext.haystack import split_of

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    engine = get_engine("default", args.dtype, args.window)
    kinds = args.methods.split(",")
    first_window = args.window - 192 - 24
    articles = long_articles(engine, args.articles, args.window, args.max_doc_tokens)
    previous = json.loads(args.out.read_text()) if args.resume and args.out.exists() else {}
    rows: list[dict] = previous.get("rows", [])
    done = {(r["doc"], r["kind"]) for r in rows}

    def save(stories: list[dict] | None = None) -> dict:
        table = summarize_rows(rows, kinds)
        payload = {"settings": {**{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                                "model": f"SmolLM2-135M-Instruct ({engine.dtype_name})",
                                "torch_threads": torch.get_num_threads(), "cpu_native_bf16": native_bf16()},
                   "table": table, "rows": rows, "stories": stories if stories is not None else previous.get("stories", [])}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.out, json.dumps(payload, indent=1, ensure_ascii=False))
        return table

    def run(doc: str, section: str, kind: str, text: str, reference: str | None, questions: list[dict]) -> dict:
        r = run_kind(engine, kind, text, args.max_length, questions)
        sentences = [x["text"] for x in r["summary_sentences"]]
        r["faithfulness"] = faithfulness(engine, text, sentences)
        if reference is not None:
            r["rouge"] = {k: round(v.fmeasure, 4) for k, v in scorer.score(reference, r["summary"]).items()}
        rows.append({"doc": doc, "section": section, **r})
        save()
        f = r["faithfulness"]
        print(f"{doc[:34]:34s} {kind:12s} {r['tokens']:6d} tok  "
              + (f"RL {r['rouge']['rougeL']:.3f}  " if reference is not None else "")
              + f"names missing {f['names_numbers_missing']}/{f['names_numbers']}  "
              f"unsupported {f['sentences_unsupported']}/{f['sentences']}  "
              + (f"QA {sum(a['correct'] for a in r['answers'])}/{len(questions)}  " if questions else "")
              + f"{r['seconds']:6.1f}s  {r['peak_rss_mb']:.0f}MB", flush=True)
        return r

    for art in articles:
        qs = infobox_questions(art, engine, first_window) if args.qa else []
        for kind in kinds:
            if (f"wiki:{art.title}", kind) not in done:
                run(f"wiki:{art.title}", "wiki", kind, art.body, art.lead, qs)
    # test-split speeches of about the main job's size (15k-30k tokens), longest first
    speeches = [p for p in sotu_speeches() if split_of(p.name) == "test" and 60_000 <= p.stat().st_size <= 140_000]
    speeches = sorted(speeches, key=lambda p: -p.stat().st_size)[: args.speeches]
    for i, path in enumerate(speeches):
        text = path.read_text(encoding="utf-8")
        facts: list[dict] = []
        if args.qa:
            text, facts = plant_facts(text, seed=i)
        for kind in kinds:
            if (f"sotu:{path.stem}", kind) not in done:
                run(f"sotu:{path.stem}", "sotu", kind, text, None, facts)
    stories = []
    for kind in (args.story_kinds.split(",") if args.story_tokens else []):
        r = run_story(engine, kind, args.story_tokens)
        stories.append(r)
        print(f"story {kind:8s} {r['words']} words distinct-4 {r['distinct_4']:.3f} repeated lines "
              f"{r['repeated_lines']:.3f} names in last quarter {r['names_in_last_quarter']} {r['seconds']:.0f}s", flush=True)
    print_table(save(stories if stories else None))
    print(f"wrote {args.out}")


def summarize_rows(rows: list[dict], kinds: list[str]) -> dict:
    table = {}
    mean = lambda xs: round(sum(xs) / len(xs), 4) if xs else None  # noqa: E731
    share = lambda a, b: round(a / b, 4) if b else None  # noqa: E731
    for kind in kinds:
        mine = [r for r in rows if r["kind"] == kind]
        wiki = [r for r in mine if r["section"] == "wiki"]
        facts = [a for r in mine if r["section"] in ("facts", "sotu") for a in r.get("answers", [])]
        qa = [a for r in wiki for a in r.get("answers", [])]
        faith = [r["faithfulness"] for r in mine if "faithfulness" in r]
        table[kind] = {
            "rouge1": mean([r["rouge"]["rouge1"] for r in wiki]), "rouge2": mean([r["rouge"]["rouge2"] for r in wiki]),
            "rougeL": mean([r["rouge"]["rougeL"] for r in wiki]),
            "names_numbers_missing": sum(f["names_numbers_missing"] for f in faith),
            "names_numbers": sum(f["names_numbers"] for f in faith),
            "names_numbers_missing_share": share(sum(f["names_numbers_missing"] for f in faith), sum(f["names_numbers"] for f in faith)),
            "sentences_unsupported_share": share(sum(f["sentences_unsupported"] for f in faith), sum(f["sentences"] for f in faith)),
            "documents": len(mine), "articles": len(wiki),
            "infobox_em": mean([a["correct"] for a in qa]),
            "infobox_questions": len(qa),
            **{f"facts_{p}": mean([a["correct"] for a in facts if a["position"] == p]) for p in ("early", "middle", "late")},
            "seconds_per_doc": mean([r["seconds"] for r in mine]),
            "seconds_per_speech": mean([r["seconds"] for r in mine if r["section"] == "sotu"]),
            "peak_rss_mb": max((r["peak_rss_mb"] for r in mine), default=None),
        }
    return table


def print_table(table: dict) -> None:
    cols = ["rouge1", "rouge2", "rougeL", "names_numbers_missing", "names_numbers", "names_numbers_missing_share",
            "sentences_unsupported_share", "seconds_per_doc", "seconds_per_speech", "peak_rss_mb"]
    print("\n| method | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for kind, row in table.items():
        print(f"| {kind} | " + " | ".join("-" if row[c] is None else f"{row[c]:.3f}" if isinstance(row[c], float)
                                         else str(row[c]) for c in cols) + " |")


if __name__ == "__main__":
    main()
