"""Learned salience for the outline's quotes: does a small model beat the unsupervised choice?

Sentence features: closeness to the document's centroid and to its neighbourhood's (+-10 sentences),
position, entity density, length, whether it stands alone, and its MiniLM embedding (391 numbers in all),
scored by logistic regression in torch (392 weights, ~1.5 KB). Label: the sentence is among the 5 of its
article whose words best match the lead (unigram F1). Fitted by 5-fold cross-validation over the 20
benchmark articles (plus `--extra` other articles of the dump in every training fold); each held-out
article is then outlined twice, quotes ranked by the model and by centrality, and scored against its lead
(ROUGE-1/L at the same word budget). Weights are shipped only if the model wins on the held-out folds.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/salience.py     # writes benchmarks/results/salience.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from apps import long_articles  # noqa: E402
from summaries import cpu_model, cut  # noqa: E402

from memgpt.apps import get_engine  # noqa: E402
from memgpt.apps.entities import names_in  # noqa: E402
from memgpt.apps.evidence import stands_alone  # noqa: E402
from memgpt.apps.outline import outline  # noqa: E402
from memgpt.apps.reading import _read  # noqa: E402
from memgpt.apps.summarize import outline_summary, sentence_vectors, trimmed  # noqa: E402
from memgpt.io.atomic import write_text_atomic  # noqa: E402
from memgpt.io.corpora import wiki_articles  # noqa: E402
from memgpt.io.spans import plain  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def features(texts: list[str], vectors: torch.Tensor) -> torch.Tensor:
    """(N, 7 + D) sentence features."""
    n = len(texts)
    centroid = torch.nn.functional.normalize(vectors.mean(0), dim=0)
    csum = torch.cat([torch.zeros(1, vectors.shape[1]), vectors.cumsum(0)])  # (N+1, D)
    idx = torch.arange(n)
    local = csum[(idx + 11).clamp(max=n)] - csum[(idx - 10).clamp(min=0)]  # (N, D) neighbourhood sums
    local = torch.nn.functional.normalize(local, dim=1)
    words = [len(plain(t).split()) for t in texts]
    rows = [[float(vectors[i] @ centroid), float(vectors[i] @ local[i]), i / max(1, n - 1), float(i < max(1, n // 20)),
             len(names_in(plain(t))) / max(1, words[i]), min(words[i], 80) / 40, float(stands_alone(plain(t)))]
            for i, t in enumerate(texts)]
    return torch.cat([torch.tensor(rows), vectors], dim=1)


def labels(texts: list[str], lead: str, top: int = 5) -> torch.Tensor:
    ref = set(re.findall(r"\w+", lead.lower()))
    f1 = []
    for t in texts:
        w = set(re.findall(r"\w+", t.lower()))
        both = len(w & ref)
        f1.append(2 * both / (len(w) + len(ref)) if both else 0.0)
    y = torch.zeros(len(texts))
    y[torch.tensor(f1).argsort(descending=True)[:top]] = 1.0
    return y


def fit(x: torch.Tensor, y: torch.Tensor, epochs: int = 300) -> torch.nn.Linear:
    torch.manual_seed(0)
    model = torch.nn.Linear(x.shape[1], 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=1e-3)
    pos = float((1 - y).sum() / y.sum().clamp(min=1))
    for _ in range(epochs):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x).squeeze(1), y, pos_weight=torch.tensor(pos))
        loss.backward()
        opt.step()
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--articles", type=int, default=20)
    ap.add_argument("--extra", type=int, default=20, help="other articles of the dump, for training only")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--words", type=int, default=100)
    ap.add_argument("--max-length", type=int, default=150)
    ap.add_argument("--out", type=Path, default=RESULTS / "salience.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    engine = get_engine("default", "auto", 2048)
    bench = long_articles(engine, args.articles)
    titles = {a.title for a in bench}
    extra = [a for a in wiki_articles(min_body_words=800) if a.title not in titles][: args.extra]

    def load(a):
        reading = _read(a.body, "retrieval", engine, False, 1 << 30, direct=False, kv=None)
        texts = reading.state.index.texts
        vectors = sentence_vectors(reading.state, engine)
        return {"article": a, "reading": reading, "x": features(texts, vectors), "y": labels(texts, a.lead)}

    docs = [load(a) for a in bench]
    others = [load(a) for a in extra]
    results = []
    for fold in range(args.folds):
        test = [d for k, d in enumerate(docs) if k % args.folds == fold]
        train = [d for k, d in enumerate(docs) if k % args.folds != fold] + others
        model = fit(torch.cat([d["x"] for d in train]), torch.cat([d["y"] for d in train]))
        for d in test:
            state, index = d["reading"].state, d["reading"].state.index
            vectors = sentence_vectors(state, engine)
            with torch.no_grad():
                learned = model(d["x"]).squeeze(1)
            row = {"article": d["article"].title, "fold": fold}
            for name, sal in (("centrality", None), ("learned", learned)):
                made = outline(index.texts, index.spans(list(range(len(index)))), vectors, engine, args.max_length,
                               d["article"].body, salience=sal)
                said = cut(trimmed(outline_summary(made, index.texts, index), args.max_length, engine).said(), args.words)
                s = scorer.score(d["article"].lead, said)
                row[name] = {"rouge1": round(s["rouge1"].fmeasure, 4), "rougeL": round(s["rougeL"].fmeasure, 4)}
            results.append(row)
            print(row, flush=True)
    mean = {m: {k: round(sum(r[m][k] for r in results) / len(results), 4) for k in ("rouge1", "rougeL")}
            for m in ("centrality", "learned")}
    wins = mean["learned"]["rougeL"] > mean["centrality"]["rougeL"] and mean["learned"]["rouge1"] > mean["centrality"]["rouge1"]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    payload = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "commit": commit,
               "cpu": cpu_model(), "command": " ".join(["python"] + sys.argv), "held_out_mean": mean,
               "learned_wins": wins, "shipped": False, "extra_training_articles": [a.title for a in extra],
               "rows": results}
    print(json.dumps(mean), "learned wins" if wins else "centrality wins: nothing shipped")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(payload, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
