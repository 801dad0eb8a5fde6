"""The house's layers (README "Layout"): no import cycle in frkit/, and no import from a lower layer to a higher one.

Every ``import`` in every module counts, also those inside functions: an import moved into a function to dodge a
cycle is still a dependency. Layers, top down; a module may import its own layer (without a cycle) and any below.
"""

from __future__ import annotations

import ast
from pathlib import Path

import frkit

ROOT = Path(frkit.__file__).resolve().parent

LAYERS = [  # top down: (layer name, module prefixes)
    ("cli", ("frkit.cli", "frkit.__main__")),
    ("reports", ("frkit.reports",)),  # beside the stack: read records, never imported by the execution path
    (
        "entry",
        (
            "frkit.sweep",
            "frkit.recheck",
            "frkit.notebook",
            "frkit.pack",
            "frkit.reload",
            "frkit.export",
            "frkit.score",
            "frkit.tune",
        ),
    ),
    ("runner", ("frkit.runner", "frkit.config")),
    ("methods", ("frkit.methods",)),
    ("train", ("frkit.train",)),
    ("models / data", ("frkit.models", "frkit.data")),
    (
        "base",
        (
            "frkit.core",
            "frkit.metrics",
            "frkit.records",
            "frkit.distributed",
            "frkit.atomic",
            "frkit.paths",
            "frkit.errors",
            "frkit.precision",
            "frkit.tracking",
        ),
    ),
]


def module_name(path: Path) -> str:
    parts = ("frkit",) + path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in ROOT.rglob("*.py")}


def imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The frkit modules ``name`` imports (``from frkit import atomic`` counts as frkit.atomic)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [module] + [f"{module}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # frkit.records.folder.RunFolder -> frkit.records.folder
                target = target.rpartition(".")[0]
            if target and target != name and target != "frkit":
                out.add(target)
    return out


def layer_of(name: str) -> int:
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{name} belongs to no layer of tests/test_layers.py: add it where it lives")


def graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imported(name, path, modules) for name, path in modules.items() if name != "frkit"}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_every_module_has_a_layer():
    for name in graph():
        layer_of(name)


def test_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_import_from_a_lower_layer_up():
    upward = [
        f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
        for a, targets in sorted(graph().items())
        for b in sorted(targets)
        if layer_of(b) < layer_of(a)
    ]
    assert not upward, "imports that run up the layers:\n" + "\n".join(upward)


def test_the_check_finds_a_cycle_and_an_upward_import():
    """The checks above can fail: a made-up graph with a cycle and an upward import is caught."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert layer_of("frkit.train") > layer_of("frkit.methods.fr_lora")
