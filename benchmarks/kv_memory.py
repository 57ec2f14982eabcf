"""kv memory on the default backbone (fp32, CPU): accuracy, ingest cost, and asking from a memory file.

    python benchmarks/kv_memory.py accuracy --tasks passkey --lengths 4k,16k --samples 3
    python benchmarks/kv_memory.py ingest --lengths 1k,4k,16k --full-max 8k
    python benchmarks/kv_memory.py ask --length 16k
    python benchmarks/kv_memory.py scale --length 1024k --index 1
    python benchmarks/kv_memory.py storage --length 8k
    python benchmarks/kv_memory.py plot      # benchmarks/results/kv_memory.png from the JSONs above

Each part prints a table and saves benchmarks/results/kv_memory_<part>.json. `accuracy` runs kv beside
window-last and none on the same samples, and for passkey records which layers retrieved the needle's
block when the question was read. `ingest` measures each (kind, length) in a fresh process (peak RSS).
`scale` reads one passkey sample of up to 1M tokens the way `read` does, recording time (wall and CPU)
and RSS every stretch against a 4k reading in the same process, then asks for the key.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

HERE = Path(__file__).parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def save(part: str, data: dict) -> Path:
    from memgpt.io.atomic import write_text_atomic

    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"kv_memory_{part}.json"
    write_text_atomic(path, json.dumps(data, indent=2))
    return path


def engine():
    from memgpt.apps import get_engine

    return get_engine(dtype="fp32")


def needle_token(eng, context: str, marker: str, last: bool = False) -> int | None:
    """Token index (in the kv memory, after the chat head) where `marker` (its `last` occurrence) starts."""
    from memgpt.memories.kv.memory import chat_frame

    at = context.rfind(marker) if last else context.find(marker)
    if at < 0:
        return None
    head = eng.tokenizer(chat_frame(eng)[0], add_special_tokens=False)["input_ids"]
    return len(head) + eng.count_tokens(context[:at])


def needle_layers(store, needle: int) -> list[int]:
    """Per layer, 1 when the question's first chunk saw the needle's token (retrieved block, sinks or window)."""
    B = store.settings.block_tokens
    layers = []
    for li, layer in enumerate(store.layers):
        first = store.retrieved.get(li, [[]])[0]  # the question's chunk
        pos = layer.block_pos.tolist()
        in_local = needle >= layer.local_start or needle < layer.sink_k.shape[1]
        layers.append(int(in_local or any(pos[b] <= needle < pos[b] + B for b in first)))
    return layers


def accuracy(args) -> None:
    from memgpt.apps import ask, make_memory, read
    from memgpt.eval.metrics import score
    from memgpt.eval.longcontext import length_label, make_sample, parse_length

    eng = engine()
    kinds = args.kinds.split(",")
    rows, records = [], []
    for task in args.tasks.split(","):
        for length in [parse_length(x) for x in args.lengths.split(",")]:
            correct = {k: 0 for k in kinds}
            hits = []
            for i in range(args.first, args.first + args.samples):
                s = make_sample(task, length, i)
                for kind in kinds:
                    t0 = time.perf_counter()
                    if kind == "kv":
                        state = read(s.context, "kv", eng)
                        store = state.work["store"]
                        store.track = True
                        pred = make_memory("kv", eng).answer(state, [s.prompt], 16)[0].text
                        needle = needle_token(eng, s.context, "The pass key is") if task.startswith("passkey") else None
                        layers = needle_layers(store, needle) if needle is not None else None
                        if layers is not None:
                            hits.append(sum(layers) / len(layers))
                        elif s.facts:  # bAbI: the last fact naming the question's subject holds the answer
                            name = next((w.strip("?") for w in s.question.split() if w[:1].isupper() and w != "Where"), "")
                            fact = next((f for f in reversed(s.facts) if name and name in f), s.facts[-1])
                            at = needle_token(eng, s.context, fact, last=True)
                            layers = needle_layers(store, at) if at is not None else None
                    else:
                        pred = ask(s.context, [s.prompt], memory=kind, engine=eng, max_new_tokens=16)[0].text
                        layers = None
                    ok = bool(score(task, pred, s.answer, s.labels, s.question))
                    correct[kind] += ok
                    records.append({"task": task, "length": length, "index": i, "kind": kind, "answer": s.answer,
                                    "prediction": pred, "correct": ok, "seconds": round(time.perf_counter() - t0, 1),
                                    "needle_layers": layers})
                    print(f"{task} {length_label(length)} #{i} {kind:<12} {ok!s:<5} {pred[:40]!r} "
                          f"({time.perf_counter() - t0:.0f}s)", flush=True)
                    save(f"accuracy{args.tag}", {"records": records, "rows": rows, "settings": settings_info()})
            row = {"task": task, "length": length_label(length), "samples": args.samples,
                   **{k: correct[k] / args.samples for k in kinds}}
            if hits:
                row["needle_block_retrieved_layers"] = round(sum(hits) / len(hits), 3)
            rows.append(row)
            save(f"accuracy{args.tag}", {"records": records, "rows": rows, "settings": settings_info()})
    print(f"\n{'task':<14} {'length':>6} " + " ".join(f"{k:>12}" for k in kinds) + "  needle-layers")
    for r in rows:
        print(f"{r['task']:<14} {r['length']:>6} " + " ".join(f"{r[k]:>12.2f}" for k in kinds)
              + f"  {r.get('needle_block_retrieved_layers', '-')}")


def positions(args) -> None:
    """A passkey beyond a small local window, read with each position scheme: the answer, and in how
    many layers the question's queries retrieved the needle's block."""
    from memgpt.apps import make_memory, read
    from memgpt.memories.kv import KVSettings

    eng = engine()
    filler = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
    doc = filler * 10 + "The pass key is 68231. Remember it. 68231 is the pass key. " + filler * 60
    needle = needle_token(eng, doc, "The pass key is")
    rows = []
    for scheme in args.schemes.split(","):
        kv = KVSettings(sink_tokens=16, local_tokens=256, block_tokens=64, top_blocks=4, chunk_tokens=256,
                        positions=scheme)
        state = read(doc, "kv", eng, kv=kv)
        store = state.work["store"]
        store.track = True
        answer = make_memory("kv", eng, kv=kv).answer(state, ["What is the pass key?"], 12)[0].text
        pos = store.layers[0].block_pos.tolist()
        block = next(i for i, p in enumerate(pos) if p <= needle < p + 64)
        layers = [int(block in store.retrieved[li][0]) for li in range(len(store.layers))]
        rows.append({"positions": scheme, "answer": answer, "correct": "68231" in answer, "tokens": store.tokens,
                     "blocks": len(pos), "needle_block": block, "layers_retrieving_needle": sum(layers),
                     "per_layer": layers, "settings": asdict(kv)})
        print(f"{scheme:<11} {answer!r:<40} needle block retrieved in {sum(layers)}/{len(layers)} layers", flush=True)
        save("positions", {"rows": rows})


def settings_info() -> dict:
    from memgpt.memories.kv import KVSettings

    return {"kv": asdict(KVSettings()), "dtype": "fp32", "threads": torch.get_num_threads(),
            "model": "SmolLM2-135M-Instruct"}


def ingest_one(kind: str, length: int) -> dict:
    """Read `length` tokens with `kind` in this process: ms/token and peak RSS."""
    from rss import peak_rss_kb, reset_peak_rss
    from transformers import DynamicCache

    from memgpt.memories.kv import KVSettings, KVStore, prefill
    from memgpt.eval.longcontext import make_sample

    eng = engine()
    ids = eng.tokenizer(make_sample("passkey", length, 0).context, add_special_tokens=False)["input_ids"][:length]
    model = eng.backbone
    base_kb = peak_rss_kb()
    reset_peak_rss()
    t0 = time.perf_counter()
    with torch.inference_mode():
        if kind == "kv":
            prefill(model, KVStore.for_model(model, KVSettings()), ids)
        else:  # full attention: the same chunks, every past key and value kept (DynamicCache)
            cache = DynamicCache(config=model.config)
            step = KVSettings().chunk_tokens
            for start in range(0, len(ids), step):
                model.get_decoder()(input_ids=torch.tensor([ids[start : start + step]]), past_key_values=cache, use_cache=True)
    seconds = time.perf_counter() - t0
    return {"kind": kind, "tokens": len(ids), "seconds": round(seconds, 2), "ms_per_token": round(1000 * seconds / len(ids), 3),
            "peak_rss_mb": round(peak_rss_kb() / 1024, 1), "rss_before_mb": round(base_kb / 1024, 1)}


def ingest(args) -> None:
    from memgpt.eval.longcontext import parse_length

    rows = []
    full_max = parse_length(args.full_max)
    for length in [parse_length(x) for x in args.lengths.split(",")]:
        for kind in ("full", "kv"):
            if kind == "full" and length > full_max:
                continue
            out = subprocess.run([sys.executable, __file__, "ingest-one", kind, str(length)], capture_output=True, text=True)
            if out.returncode != 0:
                print(out.stderr[-2000:], file=sys.stderr)
                continue
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"{kind:<5} {row['tokens']:>8} tokens  {row['ms_per_token']:>8.2f} ms/token  peak RSS {row['peak_rss_mb']:>7.0f} MB",
                  flush=True)
            save("ingest", {"rows": rows, "settings": settings_info()})


def ask_latency(args) -> None:
    from memgpt.apps import load_state, make_memory, read, write_memory_file
    from memgpt.eval.longcontext import make_sample, parse_length

    eng = engine()
    s = make_sample("passkey", parse_length(args.length), 1)
    memory = make_memory("kv", eng)
    t0 = time.perf_counter()
    state = read(s.context, "kv", eng)
    reread_answer = memory.answer(state, [s.prompt], 16)[0].text
    reread = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        path = write_memory_file(Path(tmp) / "doc.mem", state)
        size = os.path.getsize(path)
        os.sync()
        t0 = time.perf_counter()
        loaded = load_state(path, eng)
        file_answer = memory.answer(loaded, [s.prompt], 16)[0].text
        from_file = time.perf_counter() - t0
    row = {"tokens": state.tokens_read, "reread_seconds": round(reread, 2), "from_file_seconds": round(from_file, 2),
           "speedup": round(reread / from_file, 1), "file_mb": round(size / 2**20, 1),
           "same_answer": reread_answer == file_answer, "answer": file_answer, "expected": s.answer}
    print(json.dumps(row, indent=2))
    save("ask", {"row": row, "settings": settings_info()})


def proc_status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def scale(args) -> None:
    """One passkey sample read segment by segment like `read`: ms/token (wall, CPU) and RSS per stretch."""
    from memgpt.apps import make_memory
    from memgpt.apps.documents import token_segments
    from memgpt.eval.metrics import score
    from memgpt.eval.longcontext import length_label, make_sample, parse_length

    eng = engine()
    memory = make_memory("kv", eng)
    seg = memory.segment_tokens

    def read_segments(segments, every: int, on_stretch=None):
        state = memory.new_state()
        t0, c0, last, done = time.perf_counter(), time.process_time(), 0, 0
        for segment in segments:
            memory.update(state, segment)
            done += len(segment)
            if on_stretch and done - last >= every:
                t1, c1 = time.perf_counter(), time.process_time()
                on_stretch(done, done - last, t1 - t0, c1 - c0, state)
                t0, c0, last = t1, c1, done
        if on_stretch and done > last:
            on_stretch(done, done - last, time.perf_counter() - t0, time.process_time() - c0, state)
        return state

    base = eng.tokenizer(make_sample("passkey", 4096, 0).context, add_special_tokens=False)["input_ids"][:4096]
    t0, c0 = time.perf_counter(), time.process_time()
    read_segments([base[i : i + seg] for i in range(0, len(base), seg)], len(base))
    base_row = {"tokens": len(base), "ms_per_token": round(1000 * (time.perf_counter() - t0) / len(base), 3),
                "cpu_ms_per_token": round(1000 * (time.process_time() - c0) / len(base), 3)}
    print(f"4k reference: {base_row}", flush=True)

    s = make_sample("passkey", parse_length(args.length), args.index, measure=False)
    needle = needle_token(eng, s.context, "The pass key is")
    rows: list[dict] = []
    result = {"length": length_label(parse_length(args.length)), "needle_token": needle,
              "position": s.extra["position"], "reference_4k": base_row, "stretches": rows, "settings": settings_info()}

    def on_stretch(done, n, wall, cpu, state):
        layer = state.work["store"].layers[0]
        rows.append({"tokens_read": done, "ms_per_token": round(1000 * wall / n, 3),
                     "cpu_ms_per_token": round(1000 * cpu / n, 3), "rss_mb": round(proc_status_kb("VmRSS") / 1024, 1),
                     "peak_rss_mb": round(proc_status_kb("VmHWM") / 1024, 1), "blocks": layer.num_blocks,
                     "blocks_on_disk": layer.blocks.disk_count})
        print(json.dumps(rows[-1]), flush=True)
        save(f"scale{args.tag}", result)

    # streamed like `read`: the text in chunks, tokenized piece by piece
    segments = token_segments(eng.tokenizer, s.context, seg, max_bytes=4 * len(s.context) + 1)
    state = read_segments(segments, args.every, on_stretch)
    result["tokens"] = state.tokens_read
    store = state.work["store"]
    store.track = True
    t0 = time.perf_counter()
    pred = memory.answer(state, [s.prompt], 16)[0].text
    layers = needle_layers(store, needle)
    steady = rows[-1]
    result.update({"answer": s.answer, "prediction": pred, "correct": bool(score("passkey", pred, s.answer, [], s.question)),
                   "ask_seconds": round(time.perf_counter() - t0, 1), "needle_layers": layers,
                   "last_stretch_vs_4k": round(steady["ms_per_token"] / base_row["ms_per_token"], 3),
                   "last_stretch_vs_4k_cpu": round(steady["cpu_ms_per_token"] / base_row["cpu_ms_per_token"], 3),
                   "peak_rss_mb": max(r["peak_rss_mb"] for r in rows)})
    save(f"scale{args.tag}", result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("stretches", "settings")}, indent=2))


def storage(args) -> None:
    """One passkey document read with each block storage: memory file size, and the answer from the file."""
    from memgpt.apps import load_state, make_memory, read, write_memory_file
    from memgpt.memories.kv import KVSettings
    from memgpt.eval.metrics import score
    from memgpt.eval.longcontext import make_sample, parse_length

    eng = engine()
    s = make_sample("passkey", parse_length(args.length), args.index)
    rows = []
    for kind in args.storages.split(","):
        state = read(s.context, "kv", eng, kv=KVSettings(storage=kind))
        with tempfile.TemporaryDirectory() as tmp:
            path = write_memory_file(Path(tmp) / "doc.mem", state)
            size = os.path.getsize(path)
            blocks = state.work["store"].layers[0].num_blocks
            t0 = time.perf_counter()
            pred = make_memory("kv", eng).answer(load_state(path, eng), [s.prompt], 16)[0].text
        rows.append({"storage": kind, "tokens": state.tokens_read, "file_mb": round(size / 2**20, 1),
                     "kb_per_token": round(size / 1024 / state.tokens_read, 2), "blocks_per_layer": blocks,
                     "answer": s.answer, "prediction": pred, "correct": bool(score("passkey", pred, s.answer, [], s.question)),
                     "ask_from_file_seconds": round(time.perf_counter() - t0, 2)})
        print(json.dumps(rows[-1]), flush=True)
        save("storage", {"rows": rows, "settings": settings_info()})


def plot(args) -> None:
    """Cost per token and peak RSS against tokens read (`scale*` results), accuracy by kind (`accuracy*`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from memgpt.eval.longcontext import length_label

    fig, (cost, rss, acc) = plt.subplots(1, 3, figsize=(15, 4))
    for path in sorted(RESULTS.glob("kv_memory_scale*.json")):
        d = json.loads(path.read_text())
        x = [r["tokens_read"] / 1024 for r in d["stretches"]]
        label = f"kv, {d['length']} document" + (" (stopped)" if "stopped" in d else "")
        line, = cost.plot(x, [r["cpu_ms_per_token"] for r in d["stretches"]], marker="o", label=label)
        cost.axhline(d["reference_4k"]["cpu_ms_per_token"], ls="--", color=line.get_color(), label="its 4k reading")
        rss.plot(x, [r["peak_rss_mb"] for r in d["stretches"]], marker="o", label=label)
    rss.axhline(2048, ls=":", color="red", label="2 GB")
    cost.set(xlabel="tokens read (k)", ylabel="CPU ms per token (2 threads)", title="reading cost per token")
    rss.set(xlabel="tokens read (k)", ylabel="peak RSS (MB, model included)", title="memory")
    cost.legend(fontsize=7)
    rss.legend(fontsize=7)
    cells: dict[tuple[str, str], dict[str, list[int]]] = {}
    for path in sorted(RESULTS.glob("kv_memory_accuracy*.json")):
        if path.stem.endswith("_facts"):  # a re-run of samples counted already (to locate the facts)
            continue
        for r in json.loads(path.read_text())["records"]:
            cell = cells.setdefault((r["task"], length_label(r["length"])), {})
            cell.setdefault(r["kind"], []).append(int(r["correct"]))
    kinds = ["kv", "retrieval", "window-last", "none"]
    names = [f"{t} {n}" for t, n in cells]
    for j, kind in enumerate(kinds):
        vals = [sum(c.get(kind, [])) / len(c[kind]) if c.get(kind) else float("nan") for c in cells.values()]
        acc.bar([i + 0.2 * j for i in range(len(cells))], vals, width=0.2, label=kind)
    acc.set_xticks([i + 0.3 for i in range(len(cells))], [f"{n}\n(n={len(c.get('kv', []))})" for n, c in zip(names, cells.values())],
                   fontsize=7)
    acc.set(ylabel="accuracy", title="answers (n = kv samples)", ylim=(0, 1.05))
    acc.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "kv_memory.png", dpi=110)
    print(f"wrote {RESULTS / 'kv_memory.png'}")


def main() -> None:
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="part", required=True)
    a = sub.add_parser("accuracy")
    a.add_argument("--tasks", default="passkey")
    a.add_argument("--lengths", default="4k,16k")
    a.add_argument("--samples", type=int, default=3)
    a.add_argument("--kinds", default="kv,window-last,none")
    a.add_argument("--first", type=int, default=0, help="first sample index (index % 3: needle at start/middle/end)")
    a.add_argument("--tag", default="", help="suffix of the results file name")
    i = sub.add_parser("ingest")
    i.add_argument("--lengths", default="1k,4k,16k")
    i.add_argument("--full-max", default="8k")
    o = sub.add_parser("ingest-one")
    o.add_argument("kind")
    o.add_argument("length", type=int)
    d = sub.add_parser("positions")
    d.add_argument("--schemes", default="contiguous,fixed")
    k = sub.add_parser("ask")
    k.add_argument("--length", default="16k")
    c = sub.add_parser("scale")
    c.add_argument("--length", default="1024k")
    c.add_argument("--index", type=int, default=1, help="index % 3: needle at start/middle/end")
    c.add_argument("--every", type=int, default=32768, help="tokens per recorded stretch")
    c.add_argument("--tag", default="", help="suffix of the results file name")
    g = sub.add_parser("storage")
    g.add_argument("--length", default="8k")
    g.add_argument("--index", type=int, default=1)
    g.add_argument("--storages", default="fp32,bf16,int8")
    sub.add_parser("plot")
    args = p.parse_args()
    if args.part == "ingest-one":
        print(json.dumps(ingest_one(args.kind, args.length)))
        return
    parts = {"accuracy": accuracy, "ingest": ingest, "positions": positions, "plot": plot, "storage": storage,
             "scale": scale, "ask": ask_latency}
    parts[args.part](args)

if __name__ == "__main__":
    main()
