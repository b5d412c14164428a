"""The layers, read from every import in the code (those inside functions too): core/ under app/ and
training/, no import cycle, training/ never importing app/, core/ free of torch and the web stack, and
decoder heads known by one class each instead of names compared across the house (docs/architecture.md)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "app", "training")
HEAVY = {"torch", "fastapi", "starlette", "uvicorn"}
HEAD_NAMES = {"bernoulli", "gaussian", "quantile"}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path) -> set[str]:
    """Every module a file imports, anywhere in its code, by full name (and each imported name as a possible module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path}:{node.lineno}: a relative import; the project imports by full name"
            found.add(node.module or "")
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(the project's own modules each module imports, top-level names of everything else it imports)."""
    known = modules()
    internal: dict[str, set[str]] = defaultdict(set)
    external: dict[str, set[str]] = defaultdict(set)
    for name, path in known.items():
        for target in imports(path):
            hit = next((t for t in (target, target.rpartition(".")[0]) if t in known), None)
            if hit is None:
                external[name].add(target.split(".")[0])
            elif hit != name:
                internal[name].add(hit)
    return internal, external


def test_no_import_cycle() -> None:
    internal, _ = graph()
    state: dict[str, int] = {}  # 1: on the path being walked, 2: done
    cycles = []

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(internal[node]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                walk(target, [*path, target])
        state[node] = 2

    for name in sorted(modules()):
        if name not in state:
            walk(name, [name])
    assert not cycles, f"import cycles: {cycles}"


def test_training_never_imports_the_service_and_core_imports_neither() -> None:
    internal, _ = graph()
    crossing = sorted(
        (source, target)
        for source, targets in internal.items()
        for target in targets
        if (source.startswith("training") and target.startswith("app"))
        or (source.startswith("core") and not target.startswith("core"))
    )
    assert not crossing, f"imports across the layers: {crossing}"


def test_the_shared_core_imports_no_torch_and_no_web_stack() -> None:
    _, external = graph()
    heavy = {name: sorted(external[name] & HEAVY) for name in modules() if name.startswith("core")}
    assert not {k: v for k, v in heavy.items() if v}, heavy


def test_head_names_are_compared_in_no_file() -> None:
    """A head's facts live in its class (core/heads.py, training/model.py's mirror): code asks HEADS[name]."""
    comparing = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
                items = [e for o in operands if isinstance(o, ast.Tuple | ast.List | ast.Set) for e in o.elts]
                if any(isinstance(c, ast.Constant) and c.value in HEAD_NAMES for c in operands + items):
                    comparing.append(f"{name}:{node.lineno}")
    allowed = {"core.codecs", "core.table"}  # the numeric *encoding* named "quantile", not a head
    assert {c.split(":")[0] for c in comparing} <= allowed, comparing
