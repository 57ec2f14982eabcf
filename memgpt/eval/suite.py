"""The long-context suite: run systems on tasks × lengths, save every prediction, table and heatmap.

A *system* is any `Callable[[str, list[str]], list[str]]`: a document and questions in, one answer
per question out (`memgpt.apps.ask` with a memory kind is one). Layout of `out_dir` (BABILong style):

    <kind>/<task>_<length>.jsonl   one record per sample: question, answer, prediction, correct, and for
                                   `Answer`s the citations (start, end, text) and whether it abstained
    <kind>/<task>_<length>.json    every setting of that run and its accuracy, beside the predictions
    results.json                   all accuracies (kind -> task -> length) and the settings
    heatmap.png                    tasks × lengths, one panel per kind, colour = accuracy

Samples depend only on (task, length, seed, index) and greedy systems are deterministic, so the same
seed gives the same samples and the same scores.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..io.atomic import temp_beside, write_text_atomic
from ..errors import MemGPTError
from .metrics import score
from .longcontext import LONG_TASKS, Sample, check_task, length_label, make_sample, parse_length

System = Callable[[str, list[str]], list[Any]]  # answers: str, or `memgpt.apps.Answer` (text + citations)
FORMAT = 1


@dataclass
class SuiteConfig:
    """What a suite run depends on (saved beside every prediction file)."""

    tasks: list[str]
    lengths: list[int]
    samples: int
    kinds: list[str]
    seed: int = 0
    split: str = "test"
    max_new_tokens: int = 16
    model: str = "default"
    limits: dict[str, int] = field(default_factory=dict)  # kind -> longest length it runs (cheap kinds go on)

    def validate(self) -> None:
        for t in self.tasks:
            check_task(t)
        if not self.tasks or not self.lengths or not self.kinds:
            raise MemGPTError("need at least one task, one length and one memory kind")
        if self.samples < 1:
            raise MemGPTError(f"--samples must be >= 1, got {self.samples}")
        if any(n < 0 for n in self.lengths):
            raise MemGPTError("lengths must be >= 0")
        if len(set(self.tasks)) != len(self.tasks) or len(set(self.lengths)) != len(self.lengths):
            raise MemGPTError("tasks and lengths must not repeat")
        if len(set(self.kinds)) != len(self.kinds):
            raise MemGPTError("memory kinds must not repeat")
        stray = [k for k in self.limits if k not in self.kinds]
        if stray:
            raise MemGPTError(f"--limit names kind(s) not in --memory: {', '.join(stray)}")

    def runs(self, kind: str, length: int) -> bool:
        return length <= self.limits.get(kind, length)


def parse_list(value: str, what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise MemGPTError(f"{what}: expected a comma-separated list, got {value!r}")
    return items


def parse_lengths(value: str) -> list[int]:
    return [parse_length(v) for v in parse_list(value, "--lengths")]


def write_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)


def run_cell(system: System, task: str, length: int, config: SuiteConfig) -> tuple[list[dict[str, Any]], float]:
    """Predictions of `system` on the samples of one (task, length); returns (records, accuracy)."""
    records = []
    for i in range(config.samples):
        sample: Sample = make_sample(task, length, i, config.seed, config.split)
        t0 = time.perf_counter()
        answers = system(sample.context, [sample.prompt])
        if len(answers) != 1:
            raise MemGPTError(f"the system returned {len(answers)} answers for 1 question")
        prediction, cited = answer_parts(answers[0])
        record = sample.to_dict() | cited | {
            "prediction": prediction,
            "correct": score(task, prediction, sample.answer, sample.labels, sample.question),
            "seconds": round(time.perf_counter() - t0, 3),
        }
        records.append(record)
    return records, sum(r["correct"] for r in records) / len(records)


def answer_parts(answer: Any) -> tuple[str, dict[str, Any]]:
    """A system's answer as (text, extra record fields): a plain string, or an `Answer` whose citations
    (sentences with character offsets into the document) and abstention are recorded."""
    if isinstance(answer, str):
        return answer, {}
    return answer.text, {"abstained": answer.abstained, "citations": [c.to_dict() for c in answer.citations]}


def save_cell(out_dir: Path, kind: str, task: str, length: int, records: list[dict[str, Any]], acc: float,
              config: SuiteConfig, extra: dict[str, Any]) -> None:
    stem = out_dir / kind / f"{task}_{length_label(length)}"
    write_text(stem.with_suffix(".jsonl"), "".join(json.dumps(r) + "\n" for r in records))
    settings = {
        "format": FORMAT, "task": task, "length": length, "length_label": length_label(length), "kind": kind,
        "samples": config.samples, "seed": config.seed, "split": config.split, "model": config.model,
        "max_new_tokens": config.max_new_tokens, "accuracy": acc,
        "seconds": round(sum(r["seconds"] for r in records), 3), "predictions": stem.with_suffix(".jsonl").name,
    } | extra
    write_text(stem.with_suffix(".json"), json.dumps(settings, indent=2))


def run_suite(
    systems: dict[str, System], config: SuiteConfig, out_dir: Path | None = None,
    extra: dict[str, Any] | None = None, log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every kind × task × length (within `config.limits`); saved into `out_dir` as each cell ends."""
    config.validate()
    missing = [k for k in config.kinds if k not in systems]
    if missing:
        raise MemGPTError(f"no system for memory kind(s) {', '.join(missing)}")
    extra = dict(extra or {})
    accuracy: dict[str, dict[str, dict[str, float | None]]] = {}
    seconds: dict[str, float] = {}
    for kind in config.kinds:
        accuracy[kind] = {t: {} for t in config.tasks}
        t_kind = time.perf_counter()
        for task in config.tasks:
            for length in config.lengths:
                if not config.runs(kind, length):
                    accuracy[kind][task][length_label(length)] = None
                    continue
                records, acc = run_cell(systems[kind], task, length, config)
                accuracy[kind][task][length_label(length)] = acc
                if out_dir is not None:
                    save_cell(out_dir, kind, task, length, records, acc, config, extra)
                if log:
                    log(f"{kind:<12} {task:<14} {length_label(length):>5}  {acc:.3f}")
        seconds[kind] = round(time.perf_counter() - t_kind, 1)
    results = {
        "format": FORMAT, "config": config.__dict__ | {"lengths": [length_label(n) for n in config.lengths]},
        "accuracy": accuracy, "seconds": seconds, "platform": platform.platform(), **extra,
    }
    if out_dir is not None:
        write_text(out_dir / "results.json", json.dumps(results, indent=2))
        heatmap(results, out_dir / "heatmap.png")
    return results


def table(results: dict[str, Any]) -> str:
    """Accuracy table: one row per (kind, task), one column per length; '-' where not run."""
    lengths = results["config"]["lengths"]
    lines = [f"{'memory':<12} {'task':<14} " + " ".join(f"{n:>6}" for n in lengths)]
    for kind, by_task in results["accuracy"].items():
        for task, by_len in by_task.items():
            cells = [f"{by_len[n]:>6.2f}" if by_len.get(n) is not None else f"{'-':>6}" for n in lengths]
            lines.append(f"{kind:<12} {task:<14} " + " ".join(cells))
    return "\n".join(lines)


def heatmap(results: dict[str, Any], path: Path) -> None:
    """BABILong-style heatmap (tasks × lengths, accuracy colour), one panel per memory kind; atomic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    lengths = results["config"]["lengths"]
    kinds = list(results["accuracy"])
    tasks = list(next(iter(results["accuracy"].values())))
    cols = min(3, len(kinds))
    rows = -(-len(kinds) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * (1.4 + 0.6 * len(lengths)), rows * (0.9 + 0.38 * len(tasks)) + 0.4),
                             squeeze=False)
    for ax in axes.flat[len(kinds):]:
        ax.axis("off")
    cmap = matplotlib.colormaps["RdYlGn"].with_extremes(bad="#dddddd")
    for i, (ax, kind) in enumerate(zip(axes.flat, kinds)):
        grid = np.array([[np.nan if results["accuracy"][kind][t].get(n) is None else results["accuracy"][kind][t][n]
                          for n in lengths] for t in tasks], dtype=float)
        ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
        for (r, c), v in np.ndenumerate(grid):
            ax.text(c, r, "-" if np.isnan(v) else f"{100 * v:.0f}", ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(lengths)), lengths, fontsize=8)
        ax.set_yticks(range(len(tasks)), tasks if i % cols == 0 else [], fontsize=8)
        ax.set_title(kind, fontsize=9)
    fig.suptitle(f"accuracy (%), {results['config']['samples']} samples per cell, seed {results['config']['seed']}",
                 fontsize=9)
    fig.tight_layout()
    fd, tmp = temp_beside(path, suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)


def iter_tasks(value: str) -> Iterable[str]:
    return [check_task(t) for t in parse_list(value, "TASK")]


__all__ = ["LONG_TASKS", "SuiteConfig", "System", "heatmap", "parse_lengths", "run_suite", "table"]


def app_systems(kinds: list[str], model: str = "default", max_new_tokens: int = 16) -> dict[str, System]:
    """A system per memory kind: `memgpt.apps.ask(document, questions, memory=kind)` on one shared engine."""
    try:
        from ..apps import KINDS, ask, get_engine
    except ImportError as e:
        raise MemGPTError(f"memory kinds need memgpt.apps, which cannot be imported here ({e})") from None
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise MemGPTError(f"unknown memory kind(s) {', '.join(unknown)}; choose from {', '.join(KINDS)}")
    engine = get_engine(model)

    def system_for(kind: str) -> System:
        def answer(document: str, questions: list[str]) -> list[Any]:
            return list(ask(document, list(questions), memory=kind, engine=engine, max_new_tokens=max_new_tokens))

        return answer

    return {k: system_for(k) for k in kinds}
