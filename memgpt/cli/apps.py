"""The application commands: `memgpt summarize | ask | read | generate | encode | decode` (`cli.py` adds
`commands` to the `memgpt` group)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from ..apps import KINDS as REGISTRY
from ..apps.longform import KINDS as GENERATE_KINDS
from ..io.corpora import SOTU_SCHEME, sotu_path
from ..errors import MemGPTError
from ..memories.base import SUMMARY_TOKENS

KINDS = list(REGISTRY)  # the registered memory kinds
commands = click.Group()  # collects the commands below


def _engine_options(func):
    func = click.option("--model", "model_name", default="default", show_default=True,
                        help="'default' (packaged SmolLM2-135M-Instruct), a local folder, or a hub id.")(func)
    func = click.option("--dtype", type=click.Choice(["auto", "bf16", "fp32"]), default="auto", show_default=True,
                        help="auto: bf16 where the hardware runs it natively (CUDA, AVX512-BF16, AMX), else fp32.")(func)
    func = click.option("--verbose", is_flag=True, help="Say on stderr which dtype and memory were used.")(func)
    func = click.option("--window", type=click.IntRange(256, 1 << 20), default=2048, show_default=True,
                        help="Most tokens the model sees at once (every memory kind works within it).")(func)
    return func


def _document_options(func):
    func = click.option("--text", "text", default=None, help="Use this string as the document instead of SOURCE.")(func)
    func = click.option("--max-input-mb", type=click.FloatRange(0.001, 1 << 20), default=64, show_default=True,
                        help="Refuse larger input (reading costs ~1 ms/token).")(func)
    func = click.option("--progress/--no-progress", default=True, show_default=True)(func)
    func = click.option("--json", "as_json", is_flag=True, help="Print JSON.")(func)
    return func


def _source(source: str | None, text: str | None) -> str | Path:
    """SOURCE is a file path or - (stdin); --text gives the document as a string instead."""
    if text is not None and source is not None:
        raise MemGPTError("give either SOURCE or --text, not both")
    if text is not None:
        return text
    if source is None:
        raise MemGPTError("no document: give SOURCE (a file, or - for stdin) or --text")
    if source.startswith(SOTU_SCHEME) and not Path(source).exists():
        return sotu_path(source)
    return Path(source)


def _engine(model_name: str, dtype: str, window: int, verbose: bool = False):
    from ..apps import get_engine
    from ..model.hardware import native_bf16

    engine = get_engine(model_name, dtype, window)
    if verbose:
        why = f"{dtype} asked" if dtype != "auto" else ("native bf16" if native_bf16() else "no native bf16 on this CPU")
        click.echo(f"model {model_name}, dtype {engine.dtype_name} ({why}), window {engine.window}", err=True)
    return engine


def _cited(spans) -> str:
    """Citations as indented lines under an answer or a summary sentence: [start-end] the sentence."""
    return "".join(f"\n    [{s.start}-{s.end}{'; ' + s.where() if s.where() else ''}] {' '.join(s.text.split())}"
                   for s in spans)


def _emit(as_json: bool, text: str, info: dict[str, Any]) -> None:
    click.echo(json.dumps(info, ensure_ascii=False) if as_json else text)


@commands.command()
@click.argument("source", required=False)
@click.option("--max-length", type=click.IntRange(*SUMMARY_TOKENS), default=None,
              help="Summary length in tokens (what it says: terms, headings, sentences; not offsets). Default: an "
                   "outline grows with the document (a part per ~2,000 tokens, 3 to 12); 200 for --extractive/--memory.")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "prose"]), default="text", show_default=True,
              help="text/markdown: the outline (About, then the parts); prose: its sentences as a paragraph.")
@click.option("--extractive", is_flag=True, help="The document's most central sentences as prose, instead of an outline.")
@click.option("--memory", type=click.Choice(KINDS), default=None,
              help="Summarize this memory kind's state as it is, unchecked (default: an outline quoting the document).")
@click.option("--cite", is_flag=True, help="Print the document sentences each line rests on, with offsets.")
@_document_options
@_engine_options
def summarize(source: str | None, max_length: int | None, fmt: str, extractive: bool, memory: str | None, cite: bool,
              text: str | None, max_input_mb: float, progress: bool, as_json: bool, model_name: str, dtype: str,
              window: int, verbose: bool) -> None:
    """Summarize SOURCE of any length: a file, - (stdin), a memory file, or sotu:NAME (a bundled
    State of the Union speech, e.g. sotu:1904-Roosevelt-1). The default is an outline: what the document
    is about (names and terms, counted, each cited), then its parts, each with a heading and its most
    representative sentence, quoted with its offsets; --json gives every span."""
    from ..apps.reading import open_document
    from ..apps.summarize import document_text, summarize_reading

    if extractive and memory is not None:
        raise MemGPTError("--extractive quotes the document's sentences; it takes no --memory")
    doc = _source(source, text)
    start = time.perf_counter()
    engine = _engine(model_name, dtype, window, verbose)
    reading = open_document(doc, "summarize", memory, engine, progress, int(max_input_mb * (1 << 20)))
    method = "extractive" if extractive else memory or "outline"
    summary = summarize_reading(reading, max_length, method, document_text(doc))
    if verbose:
        click.echo(f"read {reading.state.tokens_read} tokens ({reading.kind}); {summary.method} summary, "
                   f"{len(summary.parts)} part(s)", err=True)
    _emit(as_json, summary.render(fmt, cite), {**summary.to_dict(), "memory": reading.kind,
                                               "tokens_read": reading.state.tokens_read, "dtype": engine.dtype_name,
                                               "seconds": round(time.perf_counter() - start, 2)})


@commands.command()
@click.argument("source", required=False)
@click.argument("questions", nargs=-1)
@click.option("--memory", type=click.Choice(KINDS), default=None, help="Memory kind (default: measured best).")
@click.option("--max-new-tokens", type=click.IntRange(1, 512), default=32, show_default=True)
@click.option("--cite", is_flag=True, help="Print every sentence that bears on each answer, not only the one it rests on.")
@click.option("--quiet", is_flag=True, help="Print the answers alone, without the sentence each rests on.")
@click.option("--index/--no-index", "use_index", default=False, show_default=True,
              help="Let a memory that holds no document sentences (text, latent) search the document's sentence "
                   "index for its evidence; --json says where each answer's evidence came from.")
@_document_options
@_engine_options
def ask(source: str | None, questions: tuple[str, ...], memory: str | None, max_new_tokens: int, use_index: bool,
        text: str | None, max_input_mb: float, progress: bool, as_json: bool, cite: bool, quiet: bool, model_name: str,
        dtype: str, window: int, verbose: bool) -> None:
    """Answer QUESTIONS about SOURCE (a file, - for stdin, or a memory file), reading it once; with --text
    DOC, every argument is a question. Under each answer: the document sentence it rests on, as
    [start-end] text (character offsets), or "The document does not say." when it holds no answer."""
    from ..apps.ask import ask as ask_app

    if text is not None and source is not None:  # --text gives the document: SOURCE is the first question
        source, questions = None, (source, *questions)
    if not questions:
        raise MemGPTError("no question given")
    doc = _source(source, text)
    start = time.perf_counter()
    engine = _engine(model_name, dtype, window, verbose)
    answers = ask_app(doc, list(questions), memory=memory, engine=engine,
                      max_new_tokens=max_new_tokens, progress=progress, max_bytes=int(max_input_mb * (1 << 20)),
                      use_index=use_index)
    pairs = [{"question": q, **a.to_dict()} for q, a in zip(questions, answers)]
    _emit(as_json, "\n".join(_answer_lines(a, cite, quiet) for a in answers),
          {"answers": pairs, "seconds": round(time.perf_counter() - start, 2), "dtype": engine.dtype_name})


def _answer_lines(answer, cite: bool, quiet: bool) -> str:
    """An answer and under it the sentence it rests on (--cite: every sentence bearing on it; --quiet: none)."""
    if quiet:
        return answer.text
    return answer.text + _cited(answer.citations if cite else [answer.quote] if answer.quote else [])


@commands.command()
@click.argument("source", required=False)
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Memory file to write (.mem).")
@click.option("--memory", type=click.Choice(KINDS), default=None, help="Memory kind (default: ask's default).")
@click.option("--kv-storage", type=click.Choice(["bf16", "int8", "fp32"]), default=None,
              help="With --memory kv: how blocks are stored (default bf16; int8 halves the file).")
@_document_options
@_engine_options
def read(source: str | None, output: Path, memory: str | None, kv_storage: str | None, text: str | None,
         max_input_mb: float, progress: bool, as_json: bool, model_name: str, dtype: str, window: int,
         verbose: bool) -> None:
    """Read SOURCE once into a memory file, to ask or summarize later without re-reading."""
    from ..apps.reading import DEFAULT_KIND, read as read_app, write_memory_file

    kv = None
    if kv_storage:
        if memory != "kv":
            raise MemGPTError("--kv-storage goes with --memory kv")
        from ..memories.kv import KVSettings

        kv = KVSettings(storage=kv_storage)
    if output.suffix not in (".mem", ".safetensors"):
        raise MemGPTError(f"--output should end in .mem, got {output.name!r} (refusing to overwrite other files)")
    if output.is_dir():
        raise MemGPTError(f"--output {output} is a directory")
    doc = _source(source, text)
    kind = memory or DEFAULT_KIND["read"]
    state = read_app(doc, kind, _engine(model_name, dtype, window, verbose), progress, int(max_input_mb * (1 << 20)),
                     kv=kv)
    write_memory_file(output, state)
    info = {"memory_file": str(output), "memory": kind, "tokens_read": state.tokens_read, "segments": state.segments}
    _emit(as_json, json.dumps(info), info)


@commands.command()
@click.argument("prompt")
@click.option("--memory", type=click.Choice(GENERATE_KINDS), default="text", show_default=True)
@click.option("--max-new-tokens", type=click.IntRange(1, 1_000_000), default=200, show_default=True)
@click.option("--temperature", type=click.FloatRange(0.0, 100.0), default=0.8, show_default=True, help="0: greedy.")
@click.option("--top-k", type=click.IntRange(0, 1_000_000), default=0, show_default=True)
@click.option("--top-p", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.95, show_default=True)
@click.option("--repetition-penalty", type=click.FloatRange(0.0, 100.0, min_open=True), default=1.1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_engine_options
def generate(prompt: str, memory: str, max_new_tokens: int, temperature: float, top_k: int, top_p: float,
             repetition_penalty: float, seed: int, progress: bool, as_json: bool, model_name: str, dtype: str,
             window: int, verbose: bool) -> None:
    """Write long text (a story, poem, code) from PROMPT, past the window, with memory."""
    from ..apps.longform import generate as generate_app

    if not prompt.strip():
        raise MemGPTError("the prompt is empty")
    start = time.perf_counter()
    stream = None if as_json else (lambda chunk: (sys.stdout.write(chunk), sys.stdout.flush()))
    out = generate_app(prompt, max_new_tokens, memory=memory, engine=_engine(model_name, dtype, window, verbose),
                       temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty,
                       seed=seed, progress=progress, on_text=stream)
    if as_json:
        _emit(True, out, {"text": out, "memory": memory, "seconds": round(time.perf_counter() - start, 2)})
    else:
        click.echo()


@commands.command()
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
    from ..apps.compress import check_output, encode as encode_text, read_source, save_encoded
    from ..model.pretrained import load_backbone

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


@commands.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--model", "model_name", default="default", show_default=True, help="The backbone the file was made with.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON with the text and its sizes.")
def decode(file: Path, model_name: str, as_json: bool) -> None:
    """Print the text stored in a FILE made by `memgpt encode` (greedy decoding, exactly as written)."""
    from ..apps.compress import decode as decode_vectors, load_encoded, read_state_kind
    from ..model.pretrained import load_backbone

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
