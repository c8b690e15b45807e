"""The package's shape, read from its source (ARCHITECTURE.md): few top-level modules, no import cycles, no
upward imports between layers, registries are leaves, the torch-free rooms (configuration, registries, run
records) reach no module that imports torch, not even lazily, and the UI reaches the library through one
façade."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lvmbench"


def _module_name(path: Path) -> str:
    parts = ["lvmbench", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The lvmbench modules ``path`` imports anywhere (lazy imports too, ``TYPE_CHECKING`` blocks not)."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(block.test) for n in ast.walk(block)}
    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = here[:len(here) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found |= {module, *(f"{module}.{a.name}" for a in node.names)}
    return {m for m in found & known if m != name and not name.startswith(m + ".")}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _imports(path, name, set(files)) for name, path in files.items()}


def _reach(graph, start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in graph[todo.pop()] - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


# The layers, lowest first (ARCHITECTURE.md): a module imports modules of its own layer or of a lower one.
# A module's layer is that of the longest name below that is it or a package holding it; ``pkg.__init__``
# names a package's own module apart from the modules it holds.
LAYERS = {
    "base": ["lvmbench.errors", "lvmbench.paths", "lvmbench.weights"],
    "facts": ["lvmbench.catalog", "lvmbench.config", "lvmbench.published", "lvmbench.methods.__init__", "lvmbench.methods.registry",
              "lvmbench.methods.entries", "lvmbench.methods.hparams", "lvmbench.methods.loss_params"],
    "records": ["lvmbench.config.runspec", "lvmbench.runs", "lvmbench.store", "lvmbench.evaluate", "lvmbench.render"],
    "engine": ["lvmbench.data", "lvmbench.models", "lvmbench.methods", "lvmbench.train"],
    "drivers": ["lvmbench.exec", "lvmbench.bench", "lvmbench.api"],
    "front": ["lvmbench.cli", "lvmbench.__main__", "lvmbench.tui"],
}
RANK = {prefix: rank for rank, prefixes in enumerate(LAYERS.values()) for prefix in prefixes}
MAX_TOP_LEVEL_MODULES = 10


def layer(module: str) -> int | None:
    if PACKAGE.joinpath(*module.split(".")[1:], "__init__.py").exists() and module + ".__init__" in RANK:
        return RANK[module + ".__init__"]
    holders = [p for p in RANK if module == p or module.startswith(p + ".")]
    return RANK[max(holders, key=len)] if holders else None


def test_the_package_top_has_at_most_ten_modules():
    top = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_every_module_has_a_layer(graph):
    assert not sorted(m for m in graph if m != "lvmbench" and layer(m) is None)


def test_no_upward_imports(graph):
    upward = sorted((m, d) for m, deps in graph.items() if layer(m) is not None
                    for d in deps if layer(d) is not None and layer(d) > layer(m))
    assert not upward, upward


def test_no_import_cycles(graph):
    cycles = sorted(name for name in graph if name in _reach(graph, name))
    assert not cycles, f"modules on an import cycle: {cycles}"


def test_the_method_registry_is_a_leaf(graph):
    assert graph["lvmbench.methods.registry"] <= {"lvmbench.errors"}
    assert graph["lvmbench.methods.entries"] <= {"lvmbench.methods.registry"}
    assert graph["lvmbench.catalog"] <= {"lvmbench.errors", "lvmbench.methods", "lvmbench.methods.registry"}


@pytest.mark.parametrize("room", ["lvmbench.config", "lvmbench.config.runspec", "lvmbench.catalog", "lvmbench.methods",
                                  "lvmbench.runs.rundir", "lvmbench.runs.plan", "lvmbench.runs.scheduler"])
def test_torch_free_rooms_reach_no_torch_module(graph, room):
    def uses_torch(name: str) -> bool:
        path = PACKAGE.joinpath(*name.split(".")[1:])
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        return any(line.split()[:2] in (["import", "torch"], ["from", "torch"]) or
                   line.strip().startswith(("import torch", "from torch"))
                   for line in path.read_text().splitlines())

    assert not sorted(m for m in _reach(graph, room) | {room} if uses_torch(m))


def test_the_ui_reaches_the_library_through_one_facade():
    """Every import of lvmbench in the terminal UI (``lvmbench.tui``) is of ``lvmbench.api`` (type hints aside)."""
    tui = PACKAGE / "tui"
    found = set()
    for path in tui.rglob("*.py"):
        name = ["lvmbench", "tui", *path.relative_to(tui).with_suffix("").parts]
        here = name[:-1] if name[-1] != "__init__" else name[:-1]
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(block.test) for n in ast.walk(block)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and id(node) not in typing_only:
                found |= {(path.relative_to(tui).as_posix(), a.name) for a in node.names
                          if a.name.startswith("lvmbench") and not a.name.startswith("lvmbench.tui")}
            if isinstance(node, ast.ImportFrom) and id(node) not in typing_only:
                base = here[:len(here) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                if module == "lvmbench":
                    module += "." + ",".join(a.name for a in node.names)
                if module.startswith("lvmbench") and not module.startswith("lvmbench.tui"):
                    found.add((path.relative_to(tui).as_posix(), module))
    assert {module for _, module in found} == {"lvmbench.api"}, sorted(found)
