"""The package order: every module under src/stylemapgan imports only packages before its own, and no two
modules import each other, directly or round a circle.

Imports are read with `ast` from every import statement (module level, inside functions, under
TYPE_CHECKING), not by importing anything; modules named by a string (`importlib.import_module`, the data
package's lazy names, the CLI's command list) are not seen.
"""

from __future__ import annotations

import ast
from pathlib import Path

import stylemapgan

ROOT = Path(stylemapgan.__file__).parent

# Lowest first; each unit may import only the units before it (and itself). "stylemapgan" is the root package's
# __init__ (it re-exports config and networks and holds __version__), so it sits right after networks.
ORDER = [
    "assets",  # bundled files; no code
    "utils",  # images, atomic file writes, safetensors metadata, TF32: imports no other package
    "config",
    "ops",
    "networks",
    "losses",  # LPIPS; imports no other package, so both families' inversion can use it
    "semantic",  # the SemanticStyleGAN networks, built on the same ops and layers, and their inversion
    "stylemapgan",
    "checkpoint",
    "models",  # bundled-model names -> paths
    "data",
    "photos",  # real photos: face landmarks, FFHQ alignment, paste-back, landmark masks (below the editing engine)
    "training",
    "runtime",  # running models: eager, bf16, compiled, ONNX export and runtime
    "editing",
    "metrics",  # scores the editing tools (the Editor, projection, local edits)
    "release",  # training checkpoint -> shipped model + card (scores the sample faces with metrics)
    "serving",
    "perf",
    "cli",
    "__main__",
]

# Known imports against the order, (importer, imported module), each to be removed; a stale entry fails the test.
# (The last one, editing.editor -> perf.runtime, went when the runner moved to the runtime package.)
EXCEPTIONS: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The stylemapgan modules `name` imports; `from pkg import sub` counts as importing `pkg.sub` when that
    is a module, else `pkg`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                found.add(sub if sub in modules else source)
    return {m for m in found if m == "stylemapgan" or m.startswith("stylemapgan.")}


def unit_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "stylemapgan"


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def test_every_module_belongs_to_a_unit_of_the_order() -> None:
    units = {unit_of(m) for m in all_modules()}
    assert units - set(ORDER) == set(), "place the new package in ORDER (and in the README's layout section)"


def test_packages_import_only_packages_before_them() -> None:
    rank = {unit: i for i, unit in enumerate(ORDER)}
    wrong, used = [], set()
    for importer, imported in sorted(import_graph().items()):
        for target in sorted(imported):
            if rank.get(unit_of(target), len(ORDER)) <= rank.get(unit_of(importer), -1):
                continue
            if (importer, target) in EXCEPTIONS:
                used.add((importer, target))
                continue
            wrong.append(f"{importer} ({unit_of(importer)}) imports {target} ({unit_of(target)})")
    assert wrong == [], "imports that run back up:\n" + "\n".join(wrong)
    assert EXCEPTIONS - used == set(), f"stale EXCEPTIONS entries, delete them: {sorted(EXCEPTIONS - used)}"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_between_modules() -> None:
    assert cycles(import_graph()) == []


def test_the_checks_can_fail() -> None:
    """The cycle finder and the unit ranking see what they must (a test that cannot fail is a defect)."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}}) == [["a"]] and cycles({"a": {"b"}, "b": set()}) == []
    graph = import_graph()
    assert "stylemapgan.checkpoint.format" in graph["stylemapgan.checkpoint.io"]  # absolute from-import
    assert "stylemapgan.config" in graph["stylemapgan.networks"]
    assert unit_of("stylemapgan.release") == "release" and unit_of("stylemapgan") == "stylemapgan"
    rank = {unit: i for i, unit in enumerate(ORDER)}
    assert rank["utils"] < rank["checkpoint"] < rank["data"] < rank["training"] < rank["editing"] < rank["cli"]
