"""The layers of docs/architecture.md, enforced by reading the imports of every module.

A module may import its own layer and the layers below it, never one above; no two modules import each other
(directly or round a longer circle); an import inside a function says why on its line or the line above (it
keeps a slow library off the CLI's start path). pyproject.toml installs every package folder, as
``agentwatch.*`` only.
"""

from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lowest first. A module of layer N may import layers 0..N.
LAYERS = ("core", "schemas", "client", "store", "collector", "checks", "alerts", "app", "dashboards")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module (or package)
    file: str
    line: int
    in_function: bool
    explained: bool  # a comment on the import's line or the line above it
    type_only: bool  # under `if TYPE_CHECKING:`


def package_dirs() -> dict[str, Path]:
    """Import package -> its folder, as pyproject.toml maps them."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = {name: ROOT / folder for name, folder in setuptools["package-dir"].items()}
    folders = {}
    for package in setuptools["packages"]:
        parent = max((m for m in mapped if package == m or package.startswith(m + ".")), key=len)
        folders[package] = mapped[parent].joinpath(*package[len(parent):].split(".")[1:])
    return folders


def module_sources() -> dict[str, tuple[str, str]]:
    """Every installed module -> (its file relative to the repository, its text)."""
    sources = {}
    for package, folder in package_dirs().items():
        for path in sorted(folder.glob("*.py")):
            name = package if path.name == "__init__.py" else f"{package}.{path.stem}"
            sources[name] = (str(path.relative_to(ROOT)), path.read_text(encoding="utf-8"))
    return sources


def layer_of(module: str) -> int:
    """The layer of an ``agentwatch.<layer>...`` module; the bare ``agentwatch`` package is the ground."""
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 else 0


def imports_of(module: str, file: str, text: str) -> list[Import]:
    """The agentwatch imports of one module's source."""
    tree = ast.parse(text, file)
    lines = text.splitlines()
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool, type_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                # `from agentwatch.x import y` may import the module agentwatch.x.y: keep the longer name
                targets = ([f"{child.module}.{a.name}" for a in child.names] if isinstance(child, ast.ImportFrom)
                           else [a.name for a in child.names])
                if isinstance(child, ast.ImportFrom) and child.level:
                    raise AssertionError(f"{file}:{child.lineno}: relative import; write agentwatch.* in full")
                explained = "#" in lines[child.lineno - 1] or _comment_above(lines, child.lineno)
                for target in targets:
                    if target == "agentwatch" or target.startswith("agentwatch."):
                        found.append(Import(module, target, file, child.lineno, in_function, explained, type_only))
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                visit(child, True, type_only)
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                visit(child, in_function, True)
            else:
                visit(child, in_function, type_only)

    visit(tree, False, False)
    return found


def _comment_above(lines: list[str], line: int) -> bool:
    """A comment line directly above the import, or above the imports it stands in a block with."""
    above = line - 2
    while above >= 0 and lines[above].strip().startswith(("from ", "import ")):
        above -= 1
    return above >= 0 and lines[above].strip().startswith("#")


def all_imports(sources: dict[str, tuple[str, str]]) -> list[Import]:
    return [imp for name, (file, text) in sources.items() for imp in imports_of(name, file, text)]


def wrong_way(imports: list[Import]) -> list[str]:
    """Each import from a lower layer into a higher one, as ``file:line: ...``."""
    return [f"{i.file}:{i.line}: {i.source} ({LAYERS[layer_of(i.source)]}) imports {i.target} "
            f"({LAYERS[layer_of(i.target)]}), a higher layer"
            for i in imports if layer_of(i.target) > layer_of(i.source)]


def circles(imports: list[Import], modules: set[str]) -> list[list[str]]:
    """Circles of modules importing each other (module level and type-only imports both count)."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for i in imports:
        target = _module_named(i.target, modules)
        if target and target != i.source and not i.in_function:
            graph[i.source].add(target)
    found, state, stack = [], dict.fromkeys(modules, 0), []

    def walk(node: str) -> None:
        state[node], stack[len(stack):] = 1, [node]
        for nxt in sorted(graph[node]):
            if state[nxt] == 1:
                found.append([*stack[stack.index(nxt):], nxt])
            elif state[nxt] == 0:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(modules):
        if state[module] == 0:
            walk(module)
    return found


def _module_named(target: str, modules: set[str]) -> str | None:
    """The module an import loads: ``agentwatch.x.y`` when that is a module, else ``agentwatch.x``."""
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target or None


def unexplained_lazy_imports(imports: list[Import]) -> list[str]:
    return [f"{i.file}:{i.line}: {i.source} imports {i.target} inside a function without a comment saying why"
            for i in imports if i.in_function and not i.explained]


@pytest.fixture(scope="module")
def sources() -> dict[str, tuple[str, str]]:
    return module_sources()


def test_no_module_imports_a_higher_layer(sources: dict[str, tuple[str, str]]) -> None:
    assert wrong_way(all_imports(sources)) == []


def test_no_two_modules_import_each_other(sources: dict[str, tuple[str, str]]) -> None:
    assert circles(all_imports(sources), set(sources)) == []


def test_imports_inside_functions_say_why(sources: dict[str, tuple[str, str]]) -> None:
    assert unexplained_lazy_imports(all_imports(sources)) == []


def test_every_module_is_in_a_known_layer(sources: dict[str, tuple[str, str]]) -> None:
    unknown = [name for name in sources if "." in name and name.split(".")[1] not in LAYERS]
    assert unknown == []


def test_a_planted_wrong_way_import_fails_with_its_file_and_line(sources: dict[str, tuple[str, str]]) -> None:
    file, text = sources["agentwatch.core.errors"]
    planted = {**sources, "agentwatch.core.errors": (file, text + "\n\nfrom agentwatch.app.cli import main\n")}
    line = len((text + "\n\nfrom agentwatch.app.cli import main\n").splitlines())
    assert wrong_way(all_imports(planted)) == [
        f"agentwatch/core/errors.py:{line}: agentwatch.core.errors (core) imports agentwatch.app.cli.main (app), "
        "a higher layer"]


def test_a_planted_circle_and_an_unexplained_lazy_import_fail(sources: dict[str, tuple[str, str]]) -> None:
    file, text = sources["agentwatch.core.home"]
    planted = {**sources, "agentwatch.core.home": (
        file, text + "\n\ndef f() -> None:\n    from agentwatch.core.durations import parse_duration_text\n"),
        "agentwatch.core.durations": (sources["agentwatch.core.durations"][0],
                                      "from agentwatch.core.errors import ConfigError\n")}
    planted["agentwatch.core.errors"] = (sources["agentwatch.core.errors"][0],
                                         "from agentwatch.core.durations import parse_duration_text\n")
    assert [set(c) for c in circles(all_imports(planted), set(planted))] == [
        {"agentwatch.core.durations", "agentwatch.core.errors"}]
    assert [p.split(": ")[0] for p in unexplained_lazy_imports(all_imports(planted))] == [
        f"agentwatch/core/home.py:{len(text.splitlines()) + 4}"]


def test_pyproject_installs_every_package_folder_inside_the_namespace() -> None:
    folders = package_dirs()
    assert all(name == "agentwatch" or name.startswith("agentwatch.") for name in folders)
    listed = set(folders.values())
    mapped = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values()
    on_disk = {init.parent for folder in mapped for init in (ROOT / folder).rglob("__init__.py")}
    assert on_disk - listed == set(), "package folders pyproject.toml does not install"
    for folder in ("collector", "checks", "alerts", "dashboards", "schemas", "tests"):
        assert (ROOT / folder).is_dir(), f"the design card's {folder}/ is at the top of the repository"


def test_architecture_md_draws_the_layers_this_test_enforces() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    table = text[text.index("## Layers"):].split("```")[1]
    drawn = [line.split()[0] for line in table.splitlines() if line.startswith(" agentwatch.")]
    assert drawn == [f"agentwatch.{layer}" for layer in reversed(LAYERS)]
