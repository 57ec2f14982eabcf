"""The package's import graph (read with `ast`, imports inside functions included): no circle between
modules, product code never imports evaluation, training or the CLI, and a small package root."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "memgpt"
PRODUCT = ("memgpt.model", "memgpt.memories", "memgpt.apps", "memgpt.io", "memgpt.server")
FORBIDDEN = ("memgpt.eval", "memgpt.training", "memgpt.cli")
MAX_ROOT_MODULES = 6


def module_names(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package: dotted name -> file (a package is its `__init__.py`)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that module `name` imports anywhere in its code (relative ones resolved;
    `from x import y` counts as importing module `x.y` when that is a module, else `x`)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import a.b.c` of a name inside a module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_walker_sees_relative_and_in_function_imports(tmp_path):
    pkg = tmp_path / "memgpt"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("from .x import f\n")
    (pkg / "a" / "x.py").write_text("def f():\n    from ..b import g\n    return g\n")
    (pkg / "b.py").write_text("import memgpt.a.x\n\ndef g():\n    from . import a\n")
    modules = module_names(pkg)
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    assert graph == {"memgpt": set(), "memgpt.a": {"memgpt.a.x"}, "memgpt.a.x": {"memgpt.b"},
                     "memgpt.b": {"memgpt.a.x", "memgpt.a"}}
    assert find_cycle(graph) == ["memgpt.a", "memgpt.a.x", "memgpt.b", "memgpt.a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("product", PRODUCT)
def test_product_code_never_imports_eval_training_or_cli(product):
    bad = sorted(f"{name} imports {target}" for name, targets in import_graph().items() if under(name, (product,))
                 for target in targets if under(target, FORBIDDEN))
    assert not bad, "; ".join(bad)


def test_a_small_package_root():
    root = sorted(p.name for p in ROOT.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert len(root) <= MAX_ROOT_MODULES, f"{len(root)} modules at the package root: {', '.join(root)}"
