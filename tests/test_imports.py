"""The import graph of `lightning_nas`: no cycle between modules, and no package imports a higher one.

Every `import` counts, at module level and inside functions (a lazy import is still a dependency).
The layers are those of ROUND.md / DESIGN.md, lowest first."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lightning_nas"

#: lowest first; a module may import its own layer and the layers below it. The unit of a module is
#: its first name below `lightning_nas` (`lightning_nas.search.loop` -> `search`).
LAYERS: list[set[str]] = [
    {"errors", "io", "training"},  # leaf helpers
    {"spaces"},
    {"nn", "encodings", "clustering"},  # clustering: K-medoids on encodings, for data.pool and DCL-ENAS
    {"benchmarks"},
    {"data"},
    {"proxies"},
    {"predictors", "callbacks"},  # callbacks: used by the fit configs only
    {"search"},
    {"lightning_cli"},  # the LightningCLI of fit / search
    {"bench", "report", "executors"},  # commands over many runs (executors: where they run); report:
    # finds the harness (benchmarks/report/)
    {"cli", "__main__"},  # the entry point
]

#: imports that break the rules today and are fixed on other branches of this round; the lead
#: deletes each entry when its branch is merged. (importer, imported)
KNOWN_VIOLATIONS: set[tuple[str, str]] = set()
#: private names (`_x`) one module uses of another: (user, module, name)
KNOWN_PRIVATE_USES: set[tuple[str, str, str]] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The `lightning_nas` modules `path` imports anywhere in its code (a `from package import
    submodule` counts as the submodule; a name of a module counts as that module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(_without_type_checking(ast.parse(path.read_text()))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        out |= {t for t in targets if t in known and t != name}
    return out


def _without_type_checking(tree: ast.Module) -> ast.Module:
    """`tree` without the bodies of `if TYPE_CHECKING:` blocks: imports for annotations only are
    not dependencies at run time."""
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = [ast.Pass()]
    return tree


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def layer(name: str) -> int:
    unit = name.split(".")[1] if "." in name else name
    for i, units in enumerate(LAYERS):
        if unit in units:
            return i
    raise AssertionError(f"{name} is in no layer of LAYERS: add it where it belongs")


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def allowed(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    return {a: {b for b in targets if (a, b) not in KNOWN_VIOLATIONS} for a, targets in edges.items()}


def test_every_module_is_in_a_layer():
    for name in modules():
        if name != "lightning_nas":
            layer(name)


def test_no_import_cycle():
    assert cycles(allowed(graph())) == []


def test_no_module_imports_a_higher_layer():
    upward = sorted((a, b) for a, targets in allowed(graph()).items() for b in targets
                    if a != "lightning_nas" and layer(b) > layer(a))
    assert upward == []


def test_known_violations_are_still_there():
    """An entry that no longer occurs was fixed: delete it, so that it cannot come back unnoticed."""
    edges = graph()
    assert sorted(pair for pair in KNOWN_VIOLATIONS if pair[1] not in edges.get(pair[0], set())) == []


def private_uses(name: str, path: Path, known: set[str]) -> set[tuple[str, str, str]]:
    """`from lightning_nas.x import _y` and `x._y` for an imported module `x`."""
    tree = ast.parse(path.read_text())
    aliases, out = {}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lightning_nas"):
            for alias in node.names:
                if f"{node.module}.{alias.name}" in known:
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                elif alias.name.startswith("_") and not alias.name.startswith("__"):
                    out.add((name, node.module, alias.name))
        elif isinstance(node, ast.Import):
            aliases |= {alias.asname or alias.name: alias.name for alias in node.names if alias.name in known}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            out.add((name, aliases[node.value.id], node.attr))
    return {use for use in out if use[1] != name}


def test_no_module_uses_private_names_of_another():
    found = modules()
    uses = set().union(*(private_uses(name, path, set(found)) for name, path in found.items()))
    assert sorted(uses - KNOWN_PRIVATE_USES) == []
    assert sorted(KNOWN_PRIVATE_USES - uses) == []  # fixed: delete the entry


@pytest.mark.parametrize("source, expected", [
    ("import lightning_nas.io\n", {"lightning_nas.io"}),
    ("def f():\n    from lightning_nas.search import loop\n", {"lightning_nas.search.loop"}),
    ("from lightning_nas.errors import UserError\n", {"lightning_nas.errors"}),
    ("from . import archive\n", {"lightning_nas.benchmarks.archive"}),
])
def test_the_graph_sees_every_kind_of_import(tmp_path, source, expected):
    path = tmp_path / "probe.py"
    path.write_text(source)
    known = set(modules())
    assert imports_of("lightning_nas.benchmarks.probe", path, known) == expected


def test_cycles_are_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
