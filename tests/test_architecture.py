"""The package's shape, read from its source: no import cycles, registries are leaves, and the
torch-free rooms (configuration, registries) reach no module that imports torch, not even lazily."""
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


def test_no_import_cycles(graph):
    cycles = sorted(name for name in graph if name in _reach(graph, name))
    assert not cycles, f"modules on an import cycle: {cycles}"


def test_the_method_registry_is_a_leaf(graph):
    assert graph["lvmbench.methods.registry"] <= {"lvmbench.errors"}
    assert graph["lvmbench.methods.entries"] <= {"lvmbench.methods.registry"}
    assert graph["lvmbench.catalog"] <= {"lvmbench.errors", "lvmbench.methods", "lvmbench.methods.registry"}


@pytest.mark.parametrize("room", ["lvmbench.config", "lvmbench.catalog", "lvmbench.methods",
                                  "lvmbench.runs.rundir", "lvmbench.runs.plan"])
def test_torch_free_rooms_reach_no_torch_module(graph, room):
    def uses_torch(name: str) -> bool:
        path = PACKAGE.joinpath(*name.split(".")[1:])
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        return any(line.split()[:2] in (["import", "torch"], ["from", "torch"]) or
                   line.strip().startswith(("import torch", "from torch"))
                   for line in path.read_text().splitlines())

    assert not sorted(m for m in _reach(graph, room) | {room} if uses_torch(m))


def test_the_ui_reaches_the_library_through_one_facade():
    """Every import of lvmbench in the terminal UI (installed as ``lvmbench.tui``) is of ``lvmbench.api``
    (type hints aside)."""
    tui = PACKAGE.parent / "tui"
    found = set()
    for path in tui.rglob("*.py"):
        name = ["lvmbench", "tui", *path.relative_to(tui).with_suffix("").parts]
        here = name[:-1] if name[-1] != "__init__" else name[:-1]
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(block.test) for n in ast.walk(block)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and id(node) not in typing_only:
                base = here[:len(here) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                if module == "lvmbench":
                    module += "." + ",".join(a.name for a in node.names)
                if module.startswith("lvmbench") and not module.startswith("lvmbench.tui"):
                    found.add((path.relative_to(tui).as_posix(), module))
    assert {module for _, module in found} == {"lvmbench.api"}, sorted(found)
