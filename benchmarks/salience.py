"""Learned salience for the outline's quotes: does a small model, fitted on other articles, rank the
sentences better than the unsupervised `gist`?

Data: the articles of gensim's Wikipedia test dump that are NOT the 20 benchmark articles of
benchmarks/summaries.py (`apps.long_articles`), with a body of 800 words or more (at most 12,000 tokens)
and a lead of 3 sentences or more (`apps.other_articles`): the pool. The 20 benchmark articles (5 dev, 15
test) are never read here. Cross-validation over the pool only (`--folds`, articles dealt round-robin in
the dump's order).

Per sentence: `outline.sentence_features` (what `gist` weighs, plus position, opening, section first,
names, length, numbers), each standardised within its document, plus the gist itself (standardised);
optionally (`--embedding`) its MiniLM embedding. Label (`--labels`): the share of the sentence's stemmed
words found in the lead (precision, the default: what a word of it is worth), or its ROUGE-1 recall or F1
of the lead (rouge_score's tokenizer). Model: linear, fitted with a listwise loss (softmax cross entropy
between the model's scores and softmax(`--sharpness` x the z-scored label) over the document's quotable
sentences), Adam, weight decay. Each held-out article is outlined (`outline(..., salience=...)`, summarize's default 200
tokens) with the gist and with each learned ranking, `Summary.said()` cut at 100 words, scored against its
lead: ROUGE-1, ROUGE-L (F), entity recall (benchmarks/summaries.py's). Paired differences with their
standard errors. "gist+wL": the gist plus w x the learned score (both standardised within the document).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/salience.py     # writes benchmarks/results/salience.json

The readings (sentences, spans, embeddings) are cached in --cache (a pickle, not committed).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import pickle
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from apps import long_articles, other_articles  # noqa: E402
from machine import cpu_model  # noqa: E402
from summaries import BENCH_ARTICLES, cut, lead_names  # noqa: E402

from memgpt.apps import get_engine  # noqa: E402
from memgpt.apps.outline import FEATURES, gist_of, outline, self_contained  # noqa: E402
from memgpt.apps.reading import _read  # noqa: E402
from memgpt.apps.summarize import outline_summary, sentence_vectors, trimmed  # noqa: E402
from memgpt.io.atomic import write_text_atomic  # noqa: E402
from memgpt.io.spans import plain  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SHARPNESS = 2.0  # of the label distribution: softmax(SHARPNESS x z-scored label)
METRICS = ("rouge1", "rougeL", "entity_recall")


class Index:
    """What `outline_summary` needs of a sentence index: each sentence's span."""

    def __init__(self, spans):
        self.spans_ = spans

    def span(self, i):
        return self.spans_[i]


def read_pool(engine, count: int, cache: Path, max_doc_tokens: int) -> list[dict]:
    """The pool's articles read once (sentences, spans, embeddings), cached."""
    bench = long_articles(engine, BENCH_ARTICLES)
    pool = other_articles(engine, count, {a.title for a in bench}, max_doc_tokens=max_doc_tokens)
    have = pickle.loads(cache.read_bytes()) if cache.is_file() else {}
    docs = []
    for a in pool:
        if a.title not in have:
            start = time.perf_counter()
            reading = _read(a.body, "retrieval", engine, False, 1 << 30, direct=False, kv=None)
            index = reading.state.index
            have[a.title] = {"title": a.title, "lead": a.lead, "body": a.body, "texts": list(index.texts),
                             "spans": index.spans(list(range(len(index)))),
                             "vectors": sentence_vectors(reading.state, engine).clone()}
            print(f"read {a.title} ({len(index)} sentences, {time.perf_counter() - start:.1f}s)", flush=True)
            cache.write_bytes(pickle.dumps(have))
        docs.append(have[a.title])
    return docs


def outline_said(doc: dict, engine, max_length: int, salience) -> str:
    made = outline(doc["texts"], doc["spans"], doc["vectors"], engine, max_length, doc["body"], salience=salience)
    return trimmed(outline_summary(made, doc["texts"], Index(doc["spans"])), max_length, engine).said()


def scores_of(said: str, lead: str, scorer, words: int) -> dict:
    said = cut(said, words)
    s = scorer.score(lead, said)
    wanted = lead_names(lead)
    ent = sum(bool(re.search(rf"\b{re.escape(n)}\b", said)) for n in wanted) / len(wanted) if wanted else None
    return {"rouge1": round(s["rouge1"].fmeasure, 4), "rougeL": round(s["rougeL"].fmeasure, 4),
            "entity_recall": None if ent is None else round(ent, 4)}


def zscore(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean(0)) / x.std(0).clamp(min=1e-6) if len(x) > 1 else x * 0


def inputs(feats: torch.Tensor, vectors: torch.Tensor | None) -> torch.Tensor:
    """The model's inputs: the features and the gist, standardised within the document (+ embedding)."""
    x = zscore(torch.cat([feats, gist_of(feats)[:, None]], dim=1))
    return torch.cat([x, vectors], dim=1) if vectors is not None else x


def labels(texts: list[str], lead: str, scorer, kind: str = "recall") -> torch.Tensor:
    """(N,) each sentence's ROUGE-1 recall of the lead (stemmed unigrams, clipped counts), or its F1."""
    tok = scorer._tokenizer
    ref: dict[str, int] = {}
    for w in tok.tokenize(lead):
        ref[w] = ref.get(w, 0) + 1
    total = max(1, sum(ref.values()))
    out = []
    for t in texts:
        mine: dict[str, int] = {}
        for w in tok.tokenize(plain(t)):
            mine[w] = mine.get(w, 0) + 1
        hit = sum(min(c, ref.get(w, 0)) for w, c in mine.items())
        r, p = hit / total, hit / max(1, sum(mine.values()))
        out.append(label_of(kind, r, p))
    return torch.tensor(out)


def label_of(kind: str, r: float, p: float) -> float:
    """recall | f1 | precision (the share of the sentence's words in the lead: what a word of it is worth)."""
    return {"recall": r, "precision": p, "f1": 2 * r * p / (r + p) if r + p else 0.0}[kind]


def fit(train: list[dict], key: str, label: str, epochs: int, decay: float, sharpness: float = SHARPNESS) -> torch.nn.Linear:
    """A linear scorer, listwise: softmax(scores) against softmax(SHARPNESS x the label standardised
    within the document) over each document's quotable sentences."""
    torch.manual_seed(0)
    model = torch.nn.Linear(train[0][key].shape[1], 1)
    torch.nn.init.zeros_(model.weight)
    torch.nn.init.zeros_(model.bias)
    opt = torch.optim.Adam(model.parameters(), lr=0.02, weight_decay=decay)
    for _ in range(epochs):
        opt.zero_grad()
        loss = 0.0
        for d in train:
            m = d["usable"]
            logp = torch.log_softmax(model(d[key][m]).squeeze(1), 0)
            target = torch.softmax(sharpness * zscore(d["y"][label][m]), 0)
            loss = loss - (target * logp).sum()
        (loss / len(train)).backward()
        opt.step()
    return model


def paired(rows: list[dict], a: str, b: str, metric: str) -> dict:
    xs = [r[a][metric] - r[b][metric] for r in rows if r[a][metric] is not None and r[b][metric] is not None]
    mean = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / max(1, len(xs) - 1))
    return {"mean_diff": round(mean, 4), "se": round(sd / math.sqrt(len(xs)), 4), "better": sum(x > 1e-9 for x in xs),
            "worse": sum(x < -1e-9 for x in xs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pool", type=int, default=200, help="at most this many other articles of the dump")
    ap.add_argument("--max-doc-tokens", type=int, default=100_000, help="the pool's longest body")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--words", type=int, default=100)
    ap.add_argument("--max-length", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--decay", type=float, default=1e-2)
    ap.add_argument("--mix", default="0.5", help="w of the gist + w x learned rankings")
    ap.add_argument("--labels", default="precision", help="comma list: recall, f1, precision (one model each)")
    ap.add_argument("--sharpness", type=float, default=SHARPNESS)
    ap.add_argument("--embedding", action="store_true", help="also a model with the MiniLM embedding")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/memgpt_salience_readings.pkl"))
    ap.add_argument("--out", type=Path, default=RESULTS / "salience.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    engine = get_engine("default", "auto", 2048)
    start = time.perf_counter()
    docs = read_pool(engine, args.pool, args.cache, args.max_doc_tokens)
    print(f"{len(docs)} pool articles read in {time.perf_counter() - start:.0f}s", flush=True)
    for d in docs:  # the gist's outline, recording the features it ranked by
        seen = {}

        def record(feats, seen=seen):
            seen["f"] = feats
            return gist_of(feats)

        d["said_gist"] = outline_said(d, engine, args.max_length, record)
        d["x"] = inputs(seen["f"], None)
        if args.embedding:
            d["xe"] = inputs(seen["f"], d["vectors"])
        d["y"] = {k: labels(d["texts"], d["lead"], scorer, k) for k in args.labels.split(",")}
        d["usable"] = torch.tensor([self_contained(d["texts"], i, set()) for i in range(len(d["texts"]))])
        if not d["usable"].any():
            d["usable"][:] = True
    mixes = [float(w) for w in args.mix.split(",") if w]
    kinds = args.labels.split(",")
    models = {f"L-{k}": ("x", k) for k in kinds} | ({f"L-{k}+emb": ("xe", k) for k in kinds} if args.embedding else {})
    rows, weights = [], []
    for fold in range(args.folds):
        test = [d for k, d in enumerate(docs) if k % args.folds == fold]
        train = [d for k, d in enumerate(docs) if k % args.folds != fold]
        fitted = {name: fit(train, key, label, args.epochs, args.decay, args.sharpness) for name, (key, label) in models.items()}
        for k in kinds:
            weights.append({"fold": fold, "label": k, "bias": round(float(fitted[f"L-{k}"].bias.detach()), 4),
                            "weights": dict(zip([*FEATURES, "gist"], [round(float(w), 4) for w in fitted[f"L-{k}"].weight.detach()[0]]))})
            print(f"fold {fold} {k}: {weights[-1]['weights']}", flush=True)
        for d in test:
            row = {"article": d["title"], "fold": fold, "gist": scores_of(d["said_gist"], d["lead"], scorer, args.words)}
            g = zscore(d["x"][:, -1])  # the gist, standardised
            with torch.no_grad():
                learned = {name: zscore(m(d[models[name][0]]).squeeze(1)) for name, m in fitted.items()}
            rankings = dict(learned) | {f"gist+{w:g}L-{k}": g + w * learned[f"L-{k}"] for k in kinds for w in mixes}
            for name, sal in rankings.items():
                row[name] = scores_of(outline_said(d, engine, args.max_length, sal), d["lead"], scorer, args.words)
            rows.append(row)
            print(d["title"][:28].ljust(28), "  ".join(f"{k} {v['rouge1']:.3f}/{v['rougeL']:.3f}" for k, v in row.items()
                                                       if isinstance(v, dict)), flush=True)
    final = {}
    for name, (key, label) in models.items():  # fitted on the whole pool: what would be shipped
        if key == "x":
            m = fit(docs, key, label, args.epochs, args.decay, args.sharpness)
            final[name] = {"bias": round(float(m.bias.detach()), 4),
                           "weights": dict(zip([*FEATURES, "gist"], [round(float(w), 4) for w in m.weight.detach()[0]]))}
            print(f"whole pool {name}: {final[name]['weights']}", flush=True)
    names = [k for k in rows[0] if isinstance(rows[0][k], dict)]
    mean = {n: {m: round(sum(r[n][m] for r in rows if r[n][m] is not None) / sum(r[n][m] is not None for r in rows), 4)
                for m in METRICS} for n in names}
    vs_gist = {n: {m: paired(rows, n, "gist", m) for m in METRICS} for n in names if n != "gist"}
    wins = {n: all(vs_gist[n][m]["mean_diff"] > 0 for m in ("rouge1", "rougeL")) and vs_gist[n]["entity_recall"]["mean_diff"] >= 0
            for n in vs_gist}
    for n in names:
        print(f"{n:14s} " + "  ".join(f"{m} {mean[n][m]:.4f}" for m in METRICS)
              + ("" if n == "gist" else "   vs gist " + "  ".join(f"{vs_gist[n][m]['mean_diff']:+.4f}±{vs_gist[n][m]['se']:.4f}"
                                                              f" ({vs_gist[n][m]['better']}/{vs_gist[n][m]['worse']})" for m in METRICS)))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    payload = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "commit": commit,
               "cpu": cpu_model(), "command": " ".join(["python"] + sys.argv), "torch_threads": torch.get_num_threads(),
               "note": "cross-validation over the pool only: the 20 benchmark articles (dev and test) were not read",
               "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "features": [*FEATURES, "gist"], "labels": f"ROUGE-1 {args.labels} of the lead", "sharpness": args.sharpness,
               "pool_articles": [d["title"] for d in docs], "held_out_mean": mean, "vs_gist": vs_gist,
               "wins_on_rouge1_rougeL_without_losing_entity_recall": wins, "fold_weights": weights, "pool_weights": final, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(payload, indent=1, ensure_ascii=False))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
