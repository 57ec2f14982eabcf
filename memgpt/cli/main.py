"""The `memgpt` command. Every user error ends in one line on stderr and a non-zero exit."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import click

from .apps import commands as app_commands
from ..server.command import serve
from ..errors import MemGPTError

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
    from ..training import TrainArgs

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
@click.option("--auto-resume", is_flag=True,
              help="Continue if --out-dir holds a checkpoint, else start fresh (one command for every restart).")
def train(resume: bool, auto_resume: bool, **options: Any) -> None:
    """Train a memory model from scratch on a synthetic task (BPTT + curriculum).

    Runs unchanged under `torchrun` or `accelerate launch` (data parallel; --fsdp shards the model)."""
    from ..training import TrainArgs, Trainer
    from ..training.checkpoint import latest_checkpoint

    args = TrainArgs(**options)
    if auto_resume and not resume:
        resume = bool(args.out_dir.strip()) and latest_checkpoint(Path(args.out_dir)) is not None
    trainer = Trainer(args, resume=resume)  # under torchrun: one process of a DDP/FSDP job
    summary = trainer.run()
    if trainer.dist.is_main:
        click.echo(json.dumps({k: v for k, v in summary.items() if k != "evals"} | {"last_eval": summary["evals"][-1:]}))


@cli.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--task", default=None, help="Task to score (default: the one the checkpoint trained on).")
@click.option("--segments", default="", help="Comma-separated segment counts (default: the last curriculum stage).")
@click.option("--eval-size", type=click.IntRange(1, 100_000), default=256, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def evaluate(checkpoint: Path, task: str | None, segments: str, eval_size: int, as_json: bool) -> None:
    """Exact-match accuracy of a trained CHECKPOINT (a checkpoint or save_pretrained folder)."""
    from ..eval.checkpoints import evaluate_checkpoint

    results = evaluate_checkpoint(checkpoint, task, _int_list(segments) if segments else None, eval_size)
    if as_json:
        click.echo(json.dumps(results))
        return
    click.echo(f"{'task':<8} {'segments':>8} {'tokens':>7} {'accuracy':>8}")
    for r in results:
        click.echo(f"{r['task']:<8} {r['segments']:>8} {r['tokens']:>7} {r['accuracy']:>8.3f}")


for _command in app_commands.commands.values():  # summarize, ask, read, generate, encode, decode
    cli.add_command(_command)
cli.add_command(serve)


def _one_line(text: str) -> str:
    """An error message on one line, whatever the input it quotes contains: line breaks, terminal
    escapes and other unprintable characters are shown escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text.strip())


@cli.command("eval")
@click.argument("tasks")
@click.option("--lengths", default="0k,4k,16k", show_default=True, help="Context lengths in tokens (4k = 4096).")
@click.option("--samples", type=click.IntRange(1, 100_000), default=20, show_default=True, help="Samples per task and length.")
@click.option("--memory", "kinds", default="retrieval", show_default=True, help="Memory kinds, comma-separated.")
@click.option("--out-dir", type=click.Path(path_type=Path), required=True, help="Predictions, results.json, heatmap.png.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--max-new-tokens", type=click.IntRange(1, 512), default=16, show_default=True)
@click.option("--limit", "limits", multiple=True, help="KIND=LENGTH: run KIND only up to LENGTH (repeatable).")
@click.option("--model", "model_name", default="default", show_default=True)
def eval_command(tasks: str, lengths: str, samples: int, kinds: str, out_dir: Path, seed: int, max_new_tokens: int,
                 limits: tuple[str, ...], model_name: str) -> None:
    """Long-context suite: TASKS (passkey, passkey-prose, qa1..qa5) × lengths × memory kinds."""
    from ..eval.suite import SuiteConfig, app_systems, iter_tasks, parse_length, parse_lengths, parse_list, run_suite, table

    if out_dir.exists() and not out_dir.is_dir():
        raise MemGPTError(f"--out-dir {out_dir} exists and is not a directory")
    caps = {}
    for item in limits:
        kind, _, length = item.partition("=")
        if not kind or not length:
            raise MemGPTError(f"--limit expects KIND=LENGTH, got {item!r}")
        caps[kind.strip()] = parse_length(length)
    config = SuiteConfig(list(iter_tasks(tasks)), parse_lengths(lengths), samples, parse_list(kinds, "--memory"), seed,
                         max_new_tokens=max_new_tokens, model=model_name, limits=caps)
    config.validate()
    results = run_suite(app_systems(config.kinds, model_name, max_new_tokens), config, out_dir,
                        log=lambda line: click.echo(line, err=True))
    click.echo(table(results))
    click.echo(f"predictions, results.json and heatmap.png in {out_dir}")


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
        if type(e).__name__ == "NoArgsIsHelpError":  # `memgpt` alone: show the help
            click.echo(e.ctx.get_help() if getattr(e, "ctx", None) else "see memgpt --help")
            return 0
        click.echo(f"error: {_one_line(e.format_message())}", err=True)
        return EXIT_USER_ERROR
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        return 130
    except MemGPTError as e:
        click.echo(f"error: {_one_line(str(e))}", err=True)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        return 130
    except Exception as e:  # noqa: BLE001 - last line of defence: one line, not a traceback
        if os.environ.get("MEMGPT_DEBUG"):
            raise
        first = str(e).splitlines()[0] if str(e).strip() else ""
        click.echo(f"error: {type(e).__name__}: {_one_line(first)} (set MEMGPT_DEBUG=1 for a traceback)", err=True)
        return 1
    return 0
