"""Modules import downwards only: no module of scripts/ imports, directly or through others, a module
that imports it back. Deferred imports (inside functions) count: they hide a circle, they do not
remove it."""

import ast
from pathlib import Path

from conftest import REPO

SCRIPTS = REPO / "scripts"
PACKAGE = "cifar_repro"


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(SCRIPTS).with_suffix("").parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The modules of `modules` that `path` imports anywhere in its body."""
    own = module_name(path)
    package = own.rsplit(".", 1)[0] if "." in own else ""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative to the package (this project has one level)
                base = f"{package}.{base}" if base else package
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # from . import x
    return (found & modules) - {own}


def import_graph() -> dict[str, set[str]]:
    paths = [path for path in SCRIPTS.rglob("*.py") if path.name != "__init__.py"]
    modules = {module_name(path) for path in paths}
    return {module_name(path): imported_modules(path, modules) for path in paths}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, each as the modules along it, from a depth-first search."""
    found, state = [], {}  # state: 1 while on the search path, 2 once done

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for imported in sorted(graph[module]):
            if state.get(imported) == 1:
                found.append([*trail[trail.index(imported) :], imported])
            elif imported not in state:
                visit(imported, [*trail, imported])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return found


def test_the_graph_sees_relative_absolute_and_deferred_imports():
    graph = import_graph()
    assert "cifar_repro.layout" in graph["cifar_repro.job"]  # from .layout import ... at the top
    assert "cifar_repro.training" in graph["cifar_repro.worker"]  # deferred, inside run_worker
    assert "cifar_repro.run" in graph["train"]  # a rule script's absolute import
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_module_imports_one_that_imports_it_back():
    assert circles(import_graph()) == []


def test_the_launcher_never_imports_the_training_loop():
    graph = import_graph()
    reachable, todo = set(), ["cifar_repro.launcher"]
    while todo:
        for imported in graph[todo.pop()] - reachable:
            reachable.add(imported)
            todo.append(imported)
    assert "cifar_repro.training" not in reachable


def test_the_readmes_module_list_names_every_module_below_those_it_imports():
    readme = (REPO / "README.md").read_text()
    listing = readme[readme.index("```\nerrors ") + 4 :]
    order = [line.split()[0] for line in listing[: listing.index("```")].strip().splitlines()]
    graph = import_graph()
    package = {name.removeprefix(f"{PACKAGE}.") for name in graph if name.startswith(f"{PACKAGE}.")}
    assert sorted(order) == sorted(package)
    position = {module: index for index, module in enumerate(order)}
    for module in order:
        for imported in graph[f"{PACKAGE}.{module}"]:
            assert position[imported.removeprefix(f"{PACKAGE}.")] < position[module], (module, imported)
