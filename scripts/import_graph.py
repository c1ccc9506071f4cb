"""Print the import graph's uphill imports and circles; exit 1 if there is a circle.

import-linter's layers contract (pyproject `[tool.importlinter]`) rejects uphill imports, but it
has no contract for circles between single modules (`acyclic_siblings` compares sibling packages).
This script builds the same grimp graph (imports inside functions and under TYPE_CHECKING count)
and fails on every strongly connected component of more than one module, printing one cycle
through it. Importing `a.b.c` also runs `a/b/__init__.py`, so those package imports are edges too:
the circle a package `__init__` closes by re-exporting from a module above it is found (see
`runtime_edges`). `--uphill` also lists the direct imports that run up the layers (or between
independent siblings) declared in pyproject, for the before/after count:

    .venv/bin/python scripts/import_graph.py            # circles (the check)
    .venv/bin/python scripts/import_graph.py --uphill   # also list uphill imports
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent


def runtime_edges(graph: grimp.ImportGraph, modules: set[str]) -> dict[str, set[str]]:
    """What importing each module runs: its direct imports plus, for each, the packages above it.

    `from cds.web.app import x` first runs `cds/web/__init__.py`; that import is invisible to grimp
    but can close a circle (a package `__init__` re-exporting from a module that imports the
    package back). A module's own ancestors are left out: Python runs them before the module, and
    a package importing its own submodules is the usual re-export, not a circle.
    """
    edges: dict[str, set[str]] = {}
    for importer in modules:
        own = _ancestors(importer)
        targets = set()
        for imported in graph.find_modules_directly_imported_by(importer) & modules:
            targets.add(imported)
            targets.update(a for a in _ancestors(imported) if a not in own and a in modules)
        targets.discard(importer)
        edges[importer] = targets
    return edges


def _ancestors(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; components of size > 1, each sorted, largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work: list[tuple[str, list[str]]] = []
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        work.append((start, sorted(edges[start])))
        while work:
            node, pending = work[-1]
            if pending:
                nxt = pending.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(edges[nxt])))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found, key=lambda c: (-len(c), c))


def one_cycle(edges: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest cycle through the component's first module, staying inside the component."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(edges[node] & members):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if nxt not in previous:
                    previous[nxt] = node
                    following.append(nxt)
        frontier = following
    return component


def layer_of(module: str, layers: list[list[str]]) -> int | None:
    """Index of the layer holding the module (0 = top), or None if no layer names it."""
    for position, layer in enumerate(layers):
        for name in layer:
            if module == name or module.startswith(name + "."):
                return position
    return None


def layers_from_pyproject() -> list[list[str]]:
    """The layers of the first `layers` contract in pyproject, each a list of module names."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contract = next(c for c in config["contracts"] if c["type"] == "layers")
    containers = contract.get("containers", [])
    layers = []
    for line in contract["layers"]:
        names = [n.strip() for n in line.replace("|", ":").split(":") if n.strip()]
        if containers:
            names = [f"{containers[0]}.{n}" for n in names]
        layers.append(names)
    return layers


def uphill_imports(graph: grimp.ImportGraph, modules: set[str]) -> list[tuple[str, str, int]]:
    """Direct imports from a lower layer to a higher one, or between independent siblings."""
    layers = layers_from_pyproject()
    found = []
    for importer in sorted(modules):
        low = layer_of(importer, layers)
        if low is None:
            continue
        for imported in sorted(graph.find_modules_directly_imported_by(importer) & modules):
            high = layer_of(imported, layers)
            if high is None:
                continue
            sibling = high == low and _top(importer, layers[low]) != _top(imported, layers[low])
            if high < low or sibling:
                details = graph.get_import_details(importer=importer, imported=imported)
                found.append((importer, imported, details[0]["line_number"] if details else 0))
    return found


def _top(module: str, layer: list[str]) -> str:
    return next(name for name in layer if module == name or module.startswith(name + "."))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--package", default="cds")
    parser.add_argument("--uphill", action="store_true", help="also list imports that run up the layers")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    graph = grimp.build_graph(args.package, cache_dir=None)
    modules = set(graph.modules)

    if args.uphill:
        uphill = uphill_imports(graph, modules)
        for importer, imported, line in uphill:
            print(f"uphill: {importer}:{line} -> {imported}")
        print(f"{len(uphill)} uphill imports")

    edges = runtime_edges(graph, modules)
    components = strongly_connected(edges)
    for component in components:
        print(f"circle of {len(component)} modules: {', '.join(component)}")
        print("  e.g. " + " -> ".join(one_cycle(edges, component)))
    print(f"{len(components)} circles ({sum(len(c) for c in components)} modules)")
    return 1 if components else 0


if __name__ == "__main__":
    sys.exit(main())
