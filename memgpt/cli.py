"""The `memgpt` command. Every user error ends in one line on stderr and a non-zero exit."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from .errors import MemGPTError

EXIT_USER_ERROR = 2


def _int_list(value: Any) -> list[int]:
    if isinstance(value, list):
        return value
    try:
        out = [int(v) for v in str(value).split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not out:
        raise click.BadParameter("expected at least one integer")
    return out


def _train_options(func):
    """Add one `--option` per `TrainArgs` field, so the CLI and the Python API cannot drift apart."""
    from .training import TrainArgs

    for f in reversed(dataclasses.fields(TrainArgs)):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            option = click.option(f"{flag}/--no-{flag[2:]}", default=default, show_default=True)
        elif isinstance(default, list):
            option = click.option(flag, default=",".join(map(str, default)), show_default=True, callback=lambda c, p, v: _int_list(v))
        else:
            option = click.option(flag, type=type(default), default=default, show_default=True)
        func = option(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="memgpt-lm", prog_name="memgpt")
def cli() -> None:
    """memgpt: a memory-augmented GPT for text far longer than its context window."""


@cli.command()
@_train_options
@click.option("--resume", is_flag=True, help="Continue from the latest checkpoint in --out-dir.")
def train(resume: bool, **options: Any) -> None:
    """Train a memory model from scratch on a synthetic task (BPTT + curriculum)."""
    from .training import TrainArgs, Trainer

    summary = Trainer(TrainArgs(**options), resume=resume).train()
    click.echo(json.dumps({k: v for k, v in summary.items() if k != "evals"} | {"last_eval": summary["evals"][-1:]}))


@cli.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--task", default=None, help="Task to score (default: the one the checkpoint trained on).")
@click.option("--segments", default="", help="Comma-separated segment counts (default: the last curriculum stage).")
@click.option("--eval-size", type=click.IntRange(1, 100_000), default=256, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def evaluate(checkpoint: Path, task: str | None, segments: str, eval_size: int, as_json: bool) -> None:
    """Exact-match accuracy of a trained CHECKPOINT (a checkpoint or save_pretrained folder)."""
    from .evaluation import evaluate_checkpoint

    results = evaluate_checkpoint(checkpoint, task, _int_list(segments) if segments else None, eval_size)
    if as_json:
        click.echo(json.dumps(results))
        return
    click.echo(f"{'task':<8} {'segments':>8} {'tokens':>7} {'accuracy':>8}")
    for r in results:
        click.echo(f"{r['task']:<8} {r['segments']:>8} {r['tokens']:>7} {r['accuracy']:>8.3f}")


def _model_options(func):
    func = click.option("--model", "model_name", default="default", show_default=True,
                        help="'default' (packaged SmolLM2-135M-Instruct), a local folder, or a hub id.")(func)
    func = click.option("--num-mem-tokens", type=click.IntRange(0, 4096), default=16, show_default=True)(func)
    func = click.option("--segment-size", type=click.IntRange(1, 1 << 20), default=512, show_default=True)(func)
    func = click.option("--bf16", is_flag=True, help="Run in bfloat16 (faster on recent CPUs).")(func)
    return func


def _load(model_name: str, num_mem_tokens: int, segment_size: int, bf16: bool):
    import torch

    from .modeling_memgpt import MemGPTForCausalLM
    from .pretrained import load_backbone

    dtype = torch.bfloat16 if bf16 else torch.float32
    backbone, tokenizer = load_backbone(model_name, dtype=dtype)
    return MemGPTForCausalLM.from_backbone(backbone, num_mem_tokens, segment_size, dtype=dtype), tokenizer


@cli.command()
@click.argument("source")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Memory file to write.")
@_model_options
@click.option("--progress/--no-progress", default=True, show_default=True)
def read(source: str, output: Path, model_name: str, num_mem_tokens: int, segment_size: int, bf16: bool,
         progress: bool) -> None:
    """Read SOURCE (a file or - for stdin) once into a memory file."""
    from .memory_file import save_memory
    from .streaming import read_text

    if output.suffix != ".mem":
        raise MemGPTError(f"--output should end in .mem, got {output.name!r} (refusing to overwrite other files)")
    model, tokenizer = _load(model_name, num_mem_tokens, segment_size, bf16)
    result = read_text(model, tokenizer, source, progress=progress)
    save_memory(output, model, result.memory_state, result.tokens_read)
    click.echo(json.dumps({"memory_file": str(output), "tokens_read": result.tokens_read, "segments": result.segments}))


@cli.command()
@click.argument("prompt")
@click.option("--memory", "memory_file", type=click.Path(path_type=Path), default=None, help="A memory file to read from.")
@_model_options
@click.option("--max-new-tokens", type=click.IntRange(1, 1_000_000), default=100, show_default=True)
@click.option("--temperature", type=click.FloatRange(0.0, 100.0), default=0.0, show_default=True, help="0: greedy.")
@click.option("--top-k", type=click.IntRange(0, 1_000_000), default=0, show_default=True)
@click.option("--top-p", type=click.FloatRange(0.0, 1.0, min_open=True), default=1.0, show_default=True)
@click.option("--repetition-penalty", type=click.FloatRange(0.0, 100.0, min_open=True), default=1.0, show_default=True)
@click.option("--stop", multiple=True, help="Stop when this string is generated (repeatable).")
@click.option("--seed", type=int, default=0, show_default=True)
def generate(prompt: str, memory_file: Path | None, model_name: str, num_mem_tokens: int, segment_size: int,
             bf16: bool, max_new_tokens: int, temperature: float, top_k: int, top_p: float,
             repetition_penalty: float, stop: tuple[str, ...], seed: int) -> None:
    """Continue PROMPT with memory (prompt segments fold into memory; decoding goes on past the window)."""
    from .generation import generate_text

    if not prompt.strip():
        raise MemGPTError("the prompt is empty")
    model, tokenizer = _load(model_name, num_mem_tokens, segment_size, bf16)
    memory = None
    if memory_file is not None:
        from .memory_file import load_memory

        memory = load_memory(memory_file, model)[0]
    click.echo(generate_text(model, tokenizer, prompt, memory_state=memory, max_new_tokens=max_new_tokens,
                             temperature=temperature, top_k=top_k, top_p=top_p,
                             repetition_penalty=repetition_penalty, stop=list(stop), seed=seed))


@cli.command()
@click.argument("source", required=False)
@click.option("--text", default=None, help="Encode this string instead of SOURCE.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Memory file to write (.mem).")
@click.option("--vectors", type=click.IntRange(1, 4096), default=None, help="Vector count (default: the fewest of 1,2,4,... that decode exactly within --steps each; "
                   "SmolLM2-135M on a CPU takes ~0.3-1 s a step and ~16 tokens a vector).")
@click.option("--steps", type=click.IntRange(0, 1_000_000), default=1000, show_default=True, help="Optimiser steps per vector count.")
@click.option("--lr", type=click.FloatRange(0.0, 10.0, min_open=True), default=0.01, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--model", "model_name", default="default", show_default=True, help="'default', a local folder, or a hub id.")
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def encode(source: str | None, text: str | None, output: Path, vectors: int | None, steps: int, lr: float, seed: int,
           model_name: str, progress: bool, as_json: bool) -> None:
    """Turn SOURCE (a file, - for stdin) or --text into memory vectors the backbone decodes back exactly."""
    from .apps.compress import check_output, encode as encode_text, read_source, save_encoded
    from .pretrained import load_backbone

    content = read_source(source, text)
    check_output(output)
    model, tokenizer = load_backbone(model_name)
    result = encode_text(content, num_vectors=vectors, model=model, tokenizer=tokenizer, steps=steps, lr=lr,
                         seed=seed, progress=progress)
    save_encoded(output, result, model)
    info = {"memory_file": str(output), **result.summary()}
    if not result.exact:
        click.echo(f"warning: greedy decoding is not exact after {result.steps} steps; try more --steps or --vectors", err=True)
    if as_json:
        click.echo(json.dumps(info))
    else:
        click.echo(f"{output}: {result.num_tokens} tokens in {result.num_vectors} vector{'s' if result.num_vectors > 1 else ''} ({result.ratio:.1f} tokens/vector), "
                   f"greedy decoding {'exact' if result.exact else 'NOT exact'} after {result.steps} steps, {result.seconds:.1f} s")


@cli.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--model", "model_name", default="default", show_default=True, help="The backbone the file was made with.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON with the text and its sizes.")
def decode(file: Path, model_name: str, as_json: bool) -> None:
    """Print the text stored in a FILE made by `memgpt encode` (greedy decoding, exactly as written)."""
    from .apps.compress import decode as decode_vectors, load_encoded, read_state_kind
    from .pretrained import load_backbone

    read_state_kind(file)  # refuse a missing, foreign or other-kind file before loading a model
    model, tokenizer = load_backbone(model_name)
    encoded = load_encoded(file, model)
    out = decode_vectors(encoded, model=model, tokenizer=tokenizer)
    if not encoded.exact:
        click.echo("warning: this file did not decode exactly when it was encoded; the text may differ", err=True)
    if as_json:
        click.echo(json.dumps({"text": out, "num_tokens": encoded.num_tokens, "num_vectors": encoded.num_vectors,
                               "tokens_per_vector": round(encoded.ratio, 3), "exact_when_encoded": encoded.exact}))
    else:
        click.echo(out, nl=False)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning every failure into one line and an exit code."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        cli.main(args=argv, prog_name="memgpt", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        click.echo(f"error: {e.format_message()}", err=True)
        return EXIT_USER_ERROR
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        return 130
    except MemGPTError as e:
        click.echo(f"error: {e}", err=True)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        return 130
    except Exception as e:  # noqa: BLE001 - last line of defence: one line, not a traceback
        if os.environ.get("MEMGPT_DEBUG"):
            raise
        first = str(e).splitlines()[0] if str(e) else ""
        click.echo(f"error: {type(e).__name__}: {first} (set MEMGPT_DEBUG=1 for a traceback)", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
