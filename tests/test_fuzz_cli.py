"""Bad input everywhere: hypothesis drives every CLI subcommand and the public Python functions with
random and hostile input. Each run must end in a result, or in ONE `error:` line and a non-zero exit;
never a traceback, a hang (an alarm fires after `LIMIT_S`), or runaway memory (peak RSS is bounded).

The subcommands come from the click group itself, so commands added later are fuzzed too; their
options get hostile values by type (ints, floats, choices, paths, strings). Commands that take
`--model` always get a tiny saved backbone (or a hostile value), never the 135M default.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import resource
import signal
from pathlib import Path

import click
import huggingface_hub.constants
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memgpt import MemGPTError, MemGPTForCausalLM, MemoryState, memgpt_config
from memgpt.cli.main import cli, main
from server_process import tiny_tokenizer

COMMANDS = sorted(cli.commands)
SCALE = int(os.environ.get("MEMGPT_FUZZ_SCALE", "1"))  # e.g. 20 for a long campaign
TOTAL_EXAMPLES = 200 * SCALE  # shared by all subcommands, so the run time stays flat as commands are added
LIMIT_S = 30  # per example: no valid or invalid input may take longer on these tiny models
MAX_RSS_GROWTH = 2 << 30
TRIED: dict[str, int] = {}
KINDS: set[str] = set()
OUTCOMES = {"ok": 0, "error": 0}


class Hang(BaseException):
    """Raised by the alarm; a BaseException so that `main`'s error handling cannot swallow it."""


@contextlib.contextmanager
def time_limit(seconds: int):
    def on_alarm(signum, frame):
        raise Hang(f"no answer in {seconds}s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """Files every hostile input can point at: valid ones (tiny backbone, memory file, checkpoint)
    and bad ones (random bytes, a huge line, invalid UTF-8, control characters, a loop, ...)."""
    from memgpt.training import TrainArgs, Trainer

    root = tmp_path_factory.mktemp("fuzz")
    tokenizer = tiny_tokenizer()
    backbone = MemGPTForCausalLM(memgpt_config("tiny", "llama", len(tokenizer), num_mem_tokens=2, segment_size=64)).backbone
    backbone.config.eos_token_id = tokenizer.eos_token_id
    backbone.save_pretrained(root / "tiny-backbone")
    tokenizer.save_pretrained(root / "tiny-backbone")
    run = root / "run"
    Trainer(TrainArgs(task="copy", size="tiny", segment_size=6, num_mem_tokens=2, curriculum=[1], batch_size=4,
                      max_steps=2, eval_every=2, eval_size=4, progress=False, out_dir=str(run))).train()
    w = {"tiny": root / "tiny-backbone", "run": run, "checkpoint": run / "checkpoint-000002", "dir": root / "adir",
         "missing": root / "missing" / "nothing.txt", "loop": root / "loop", "text": root / "ok.txt",
         "empty": root / "empty.txt", "random": root / "random.bin", "huge_line": root / "huge-line.txt",
         "bad_utf8": root / "latin1.txt", "control": root / "control.txt", "nul": root / "nul.txt",
         "weird_name": root / "we ird\nname -x.txt", "mem": root / "doc.mem", "root": root}
    w["dir"].mkdir()
    w["loop"].symlink_to(w["loop"].name)
    w["text"].write_text("the quick brown fox jumps over the lazy dog. " * 20)
    w["empty"].write_bytes(b"")
    w["random"].write_bytes(os.urandom(4096))
    w["huge_line"].write_text("a" * ((1 << 20) + 100))  # one 1 MiB line, no whitespace at all
    w["bad_utf8"].write_bytes("café naïve ".encode("latin-1") * 50)
    w["control"].write_text("".join(chr(c) for c in range(1, 32)) + "\x1b[2J\x1b[31mred\x7f\u202e\ufeff" * 20)
    w["nul"].write_bytes(b"text\x00more")
    w["weird_name"].write_text("hello")
    from memgpt.apps import make_memory, write_memory_file
    from memgpt.model.engine import Engine

    model = MemGPTForCausalLM.from_backbone(str(w["tiny"]), num_mem_tokens=2, segment_size=64)
    engine = Engine(name="tiny", backbone=model.backbone, tokenizer=tokenizer, extras={"latent": model})
    write_memory_file(w["mem"], make_memory("latent", engine).new_state())
    return w


INTS = ["-1", "0", "1", "2", "3", str(2**31), str(2**63), str(-(2**63)), str(10**30), "1e3", "0x10", "", "nan", "٣", " 7 "]
FLOATS = ["nan", "inf", "-inf", "-1", "0", "1e308", "1e-320", "0.5", "1e309", "", "abc"]
STRINGS = ["", " ", "\x00", "\x1b[2J", "-", "--", "--help", "üñí©ødé", "a" * 100_000, "\ud800", "1,2,x", "-5", "nan",
           "org/name", "../../..", "\n\n", "\r\n", "%s%n{0}"]


def paths(w, writable: bool = False) -> list[str]:
    """Hostile and valid paths; writable targets stay inside the fuzz folder (we run as root)."""
    names = ["missing", "dir", "loop", "text", "empty", "random", "huge_line", "bad_utf8", "control", "nul",
             "weird_name", "mem", "checkpoint", "run", "tiny"]
    out = [str(w[n]) for n in names] + ["", "-", str(w["root"] / "new.mem"), str(w["text"]) + "/below", "n" * 5000]
    return out if writable else out + ["/dev/null", "/proc/self/mem", "/"]


def kind_of(value: str) -> str:
    """A coarse label of an input, to count the distinct kinds tried."""
    if value == "":
        return "empty"
    if len(value) > 1000:
        return "huge"
    if any(ord(c) < 32 or c in "\x7f\u202e\ufeff" for c in value):
        return "control characters"
    if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        return "invalid unicode"
    for key, label in (("missing", "missing path"), ("adir", "directory"), ("loop", "symlink loop"),
                       ("random.bin", "random bytes file"), ("huge-line", "huge line file"), ("latin1", "invalid UTF-8 file"),
                       ("control.txt", "control-character file"), ("nul.txt", "NUL-byte file"), ("/dev/", "device"),
                       ("/proc/", "proc file"), ("empty.txt", "empty file")):
        if key in value:
            return label
    try:
        number = float(value)
    except ValueError:
        return "text"
    if number != number or number in (float("inf"), float("-inf")):
        return "nan/inf"
    if number < 0:
        return "negative number"
    return "absurd number" if number > 1e6 else "small number"


def value_strategy(param: click.Parameter, w) -> st.SearchStrategy[str]:
    """Hostile values for one parameter, by its type (and name, for paths)."""
    t = param.type
    name = (param.name or "").lower()
    if name in WORK_PARAMS:  # how much work to do: a valid huge value is a long job, not a hang
        return st.sampled_from(["-1", "0", "1", "3", "x", "", "nan"])
    if isinstance(t, click.types.IntParamType):
        return st.sampled_from(INTS)
    if isinstance(t, click.types.FloatParamType):
        return st.sampled_from(FLOATS)
    if isinstance(t, click.Choice):
        return st.sampled_from([str(c) for c in t.choices] + STRINGS[:8])
    if isinstance(t, click.Path) or any(k in name for k in ("path", "dir", "file", "output", "memory", "checkpoint", "source", "model")):
        writable = any(k in name for k in ("out", "output", "dir"))
        return st.sampled_from(paths(w, writable))
    return st.one_of(st.sampled_from(STRINGS), st.text(max_size=40))


COUNTER = itertools.count()
WORK_PARAMS = {"steps", "vectors", "max_new_tokens", "max_steps", "max_length"}


def base_args(name: str, cmd: click.Command, w) -> dict[str, list[str]]:
    """Valid, cheap starting values (hostile ones replace some of them)."""
    options = {p.name: p for p in cmd.params if isinstance(p, click.Option)}
    base: dict[str, list[str]] = {}
    if "model_name" in options or "model" in options:
        key = "model_name" if "model_name" in options else "model"
        base[key] = [options[key].opts[0], str(w["tiny"])]
    cheap = {"port": "0", "segment_size": "64", "num_mem_tokens": "2", "max_new_tokens": "3", "eval_size": "8", "batch_size": "4",
             "max_steps": "2", "eval_every": "2", "curriculum": "1,2", "size": "tiny", "threads": "1", "device": "cpu", "steps": "5",
             "vectors": "1", "max_length": "8"}
    for key, value in cheap.items():
        if key in options and not options[key].is_flag:
            base[key] = [options[key].opts[0], value]
    if "progress" in options:
        base["progress"] = ["--no-progress"]
    if "data_dir" in options:
        base["data_dir"] = [options["data_dir"].opts[0], str(w["root"] / f"data-{next(COUNTER)}")]
    if "out_dir" in options:
        base["out_dir"] = [options["out_dir"].opts[0], str(w["root"] / f"out-{next(COUNTER)}")]
    if "output" in options:
        base["output"] = [options["output"].opts[0], str(w["root"] / f"out-{next(COUNTER)}.mem")]
    return base


@st.composite
def argv_for(draw, name: str, w) -> list[str]:
    """`[name, ...]`: a cheap valid call with 0-4 parameters replaced by hostile values."""
    cmd = cli.commands[name]
    options = base_args(name, cmd, w)
    params = [p for p in cmd.params if p.name != "help"]
    arguments: dict[str, list[str]] = {}
    for p in params:
        if isinstance(p, click.Argument):
            arguments[p.name] = [draw(value_strategy(p, w))] if p.required or draw(st.booleans()) else []
    for p in draw(st.lists(st.sampled_from(params), max_size=4, unique_by=lambda p: p.name)) if params else []:
        if isinstance(p, click.Argument):
            arguments[p.name] = draw(st.sampled_from([[], [draw(value_strategy(p, w))], ["a", "b"]]))
        elif p.is_flag:
            options[p.name] = [draw(st.sampled_from(p.opts + p.secondary_opts))]
        elif p.multiple:
            options[p.name] = [tok for v in draw(st.lists(value_strategy(p, w), max_size=3)) for tok in (p.opts[0], v)]
        else:
            options[p.name] = [p.opts[0], draw(value_strategy(p, w))]
    junk = draw(st.sampled_from([[], [], [], ["--bogus"], ["extra"], ["--"]]))
    return [name, *[tok for toks in options.values() for tok in toks], *junk,
            *[tok for toks in arguments.values() for tok in toks]]


def call_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), time_limit(LIMIT_S):
        code = main(argv)
    torch.set_num_threads(1)  # `--threads` changes it for the whole process
    return code, out.getvalue(), err.getvalue()


def assert_result_or_one_line_error(argv: list[str], code: int, err: str) -> None:
    assert "Traceback" not in err, (argv, err)
    # as a terminal shows it: a progress bar redraws its line after "\r", and clears it on close
    lines = [shown for line in err.split("\n") if (shown := line.rsplit("\r", 1)[-1]).strip()]
    errors = [line for line in lines if line.startswith("error:")]
    if code == 0:
        assert not errors, (argv, err)
    else:
        assert len(errors) == 1 and lines[-1] == errors[0], (argv, err)
        assert errors[0].isprintable(), (argv, err)  # no raw control characters or line breaks


@pytest.fixture(scope="module")
def sandbox(world):
    """Run from inside the fuzz folder (relative paths land there), offline, and watch memory."""
    old_cwd = os.getcwd()
    os.chdir(world["root"])
    offline = huggingface_hub.constants.HF_HUB_OFFLINE
    huggingface_hub.constants.HF_HUB_OFFLINE = True
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    import uvicorn

    serve_forever = uvicorn.Server.run
    uvicorn.Server.run = lambda self, sockets=None: None  # `serve` sets up (model, folder, port) and returns;
    yield world                                           # its HTTP side is fuzzed in test_fuzz_http.py
    uvicorn.Server.run = serve_forever
    growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0
    huggingface_hub.constants.HF_HUB_OFFLINE = offline
    os.chdir(old_cwd)
    assert growth < MAX_RSS_GROWTH, f"peak memory grew by {growth >> 20} MiB"


FUZZ = settings(deadline=None, database=None, derandomize=bool(os.environ.get("CI")),
                suppress_health_check=list(HealthCheck))


def fuzz(examples: int) -> settings:
    return settings(FUZZ, max_examples=examples)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_subcommand_survives_hostile_input(sandbox, name):
    @fuzz(max(8, TOTAL_EXAMPLES // len(COMMANDS)))
    @given(argv=argv_for(name, sandbox))
    def run(argv):
        code, _, err = call_cli(argv)
        assert_result_or_one_line_error(argv, code, err)
        TRIED[name] = TRIED.get(name, 0) + 1
        OUTCOMES["ok" if code == 0 else "error"] += 1
        KINDS.update(kind_of(a) for a in argv[1:] if not a.startswith("--") or a in ("--", "--help"))

    run()


def test_the_command_group_survives_hostile_input(sandbox):
    """Routing: unknown commands and options, help and version, junk; a subcommand only with help
    (with real arguments it would run at full size, e.g. `train` for 5000 steps; the test above
    covers subcommands with cheap arguments)."""
    junk = st.one_of(st.sampled_from(STRINGS + ["--help", "--version", "-h"]), st.text(max_size=20))
    help_of = st.tuples(st.sampled_from(COMMANDS), st.sampled_from(["--help", "-h"])).map(list)

    @fuzz(25 * SCALE)
    @given(argv=st.one_of(st.lists(junk, max_size=4).filter(lambda a: not a or a[0] not in COMMANDS), help_of))
    def run(argv):
        code, _, err = call_cli(argv)
        assert_result_or_one_line_error(argv, code, err)
        TRIED["(group)"] = TRIED.get("(group)", 0) + 1

    run()


# --- public Python functions ------------------------------------------------------------------------

def public_calls(w):
    """(name, strategy of a zero-argument call) for the public functions, with hostile arguments."""
    from memgpt.model.backbones import backbone_config
    from memgpt.eval.checkpoints import evaluate_checkpoint
    from memgpt.memories.files import read_state_file
    from memgpt.model.pretrained import load_backbone
    from memgpt.io.streaming import iter_text
    from memgpt.model.generation import generate_text
    from memgpt.training.tasks import get_task
    from memgpt.training import TrainArgs
    from memgpt.training.checkpoint import latest_checkpoint, load_model, load_training_state

    model = MemGPTForCausalLM.from_backbone(str(w["tiny"]), num_mem_tokens=2, segment_size=64)
    tokenizer = tiny_tokenizer()
    ints = st.sampled_from([-(2**63), -1, 0, 1, 2, 3, 2**31, 10**30])
    small = st.sampled_from([-1, 0, 1, 2, 3])
    floats = st.sampled_from([float("nan"), float("inf"), -1.0, 0.0, 0.5, 1e308])
    strings = st.one_of(st.sampled_from(STRINGS), st.text(max_size=30))
    ro_paths = st.sampled_from(paths(w))
    rw_paths = st.sampled_from(paths(w, writable=True))
    fields = {f: st.sampled_from([-1, 0, 2**31, 10**30]) for f in ("segment_size", "num_mem_tokens", "batch_size", "max_steps",
                                                                      "eval_size", "threads", "bptt_depth", "seed", "keep_checkpoints")}
    fields |= {f: floats for f in ("lr", "revisit", "grad_clip", "time_budget", "advance_at")}
    fields |= {"task": strings, "size": strings, "arch": strings, "out_dir": strings, "device": strings,
               "curriculum": st.lists(ints, max_size=3)}
    train_args = st.fixed_dictionaries({}, optional=fields).map(lambda kw: (lambda: TrainArgs(**kw).validate()))
    ids = st.tuples(st.sampled_from([0, 1, 2]), st.sampled_from([0, 1, 5, 70])).map(lambda s: torch.randint(0, 300, s))
    memories = st.sampled_from([None, MemoryState(torch.zeros(1, 2, 32)), MemoryState(torch.zeros(2, 3, 32)),
                                MemoryState(torch.zeros(1, 2, 7)), torch.zeros(1, 2, 32)])
    return {
        "TrainArgs.validate": train_args,
        "memgpt_config": st.builds(lambda s, a, v, m, n, d: lambda: memgpt_config(s, a, v, num_mem_tokens=m, segment_size=n, bptt_depth=d),
                                   strings, strings, ints, ints, ints, ints),
        "backbone_config": st.builds(lambda *a: lambda: backbone_config(*a), strings, strings, ints, ints),
        "get_task().batch": st.builds(lambda n, *a: lambda: get_task(n).batch(*a),
                                      st.sampled_from(["copy", "recall", "facts", "", "x"]), st.sampled_from([0, 1, 2]), small, small, ints),
        "read_state_file": st.builds(lambda p, k: lambda: read_state_file(p, k), ro_paths, st.sampled_from([None, "latent", ""])),
        "load_model": st.builds(lambda p: lambda: load_model(Path(p)), ro_paths),
        "latest_checkpoint": st.builds(lambda p: lambda: latest_checkpoint(Path(p)), ro_paths),
        "load_training_state": st.builds(lambda p: lambda: load_training_state(Path(p)), ro_paths),
        "evaluate_checkpoint": st.builds(lambda p, t, s, n: lambda: evaluate_checkpoint(Path(p), t, s, n), ro_paths,
                                         st.sampled_from([None, "copy", "", "nope"]), st.sampled_from([None, [1], [0], [-3], []]), small),
        "iter_text": st.builds(lambda p: lambda: sum(map(len, iter_text(p))), ro_paths.filter(lambda p: p != "-")),
        "load_backbone": st.builds(lambda n: lambda: load_backbone(n), st.one_of(strings, ro_paths).filter(lambda n: n not in ("default", "smollm2-135m-instruct"))),
        "generate_text": st.builds(lambda p, n, t, k, tp, rp, stop, seed: lambda: generate_text(model, tokenizer, p, None, n, t, k, tp, rp, stop, seed),
                                   strings, small, floats, small, floats, floats, st.lists(strings, max_size=2), ints),
        "model.forward": st.builds(lambda x, m: lambda: model(input_ids=x, memory_state=m), ids, memories),
        **app_calls(w, tokenizer, strings, ro_paths, rw_paths, small, floats),
    }


def app_calls(w, tokenizer, strings, ro_paths, rw_paths, small, floats) -> dict:
    """The applications (memgpt.apps) on a tiny random Llama with the fuzz tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from memgpt.apps import ask, generate, load_state, read, summarize, write_memory_file
    from memgpt.model.engine import Engine

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096)
    engine = Engine(name="tiny", backbone=LlamaForCausalLM(config).eval(), tokenizer=tokenizer, window=512)
    sources = st.one_of(strings, ro_paths.map(Path))
    kinds = st.sampled_from([None, "text", "retrieval", "latent", "window-first", "window-last", "none", "", "x"])
    lengths = st.sampled_from([-1, 0, 8, 50, 10**9, "50", None])
    return {
        "apps.summarize": st.builds(lambda s, n, k: lambda: summarize(s, n, memory=k, engine=engine, max_bytes=1 << 20),
                                    sources, lengths, kinds),
        "apps.ask": st.builds(lambda s, q, k, n: lambda: ask(s, q, memory=k, engine=engine, max_new_tokens=n, max_bytes=1 << 20),
                              sources, st.one_of(strings, st.lists(strings, max_size=3)), kinds, small),
        "apps.read": st.builds(lambda s, k: lambda: read(s, k, engine, max_bytes=1 << 20), sources, kinds),
        "apps.generate": st.builds(lambda p, n, k, t, tp: lambda: generate(p, n, memory=k, engine=engine, temperature=t, top_p=tp),
                                   strings, small, st.sampled_from(["text", "none", "latent", "x"]), floats, floats),
        "apps.load_state": st.builds(lambda p: lambda: load_state(p, engine), ro_paths),
        "apps.write_memory_file": st.builds(lambda p: lambda: write_memory_file(p, read("some text here", "none", engine)),
                                            rw_paths),
    }


def test_public_functions_survive_hostile_input(sandbox):
    calls = public_calls(sandbox)

    @fuzz(300 * SCALE)
    @given(data=st.data())
    def run(data):
        name = data.draw(st.sampled_from(sorted(calls)), label="function")
        call = data.draw(calls[name], label="call")
        out, err = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), time_limit(LIMIT_S):
                call()
        except MemGPTError:
            pass  # a clear refusal; any other exception fails the test
        TRIED[f"api:{name}"] = TRIED.get(f"api:{name}", 0) + 1

    run()


def test_report():
    """Print what was tried (run with -s to see it)."""
    total = sum(TRIED.values())
    print(f"\nhostile inputs tried: {total} runs; {len(KINDS)} kinds of CLI argument: {sorted(KINDS)}")
    print(f"CLI outcomes: {OUTCOMES}")
    print("per target: " + ", ".join(f"{k}={v}" for k, v in sorted(TRIED.items())))
