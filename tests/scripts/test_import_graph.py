"""scripts/import_graph.py: circles between modules (a package's __init__ counted as run by every
import through it) and imports that run up the layers, on small packages written for each case."""

from __future__ import annotations

import importlib.util
import itertools
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


graph_script = _script()


def _package(
    tmp_path: Path, name: str, files: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> grimp.ImportGraph:
    for rel, text in files.items():
        path = tmp_path / name / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    return grimp.build_graph(name, cache_dir=None)


def _circles(graph: grimp.ImportGraph) -> list[list[str]]:
    modules = set(graph.modules)
    return graph_script.strongly_connected(graph_script.runtime_edges(graph, modules))


def test_a_direct_circle_is_found_with_a_path_through_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    graph = _package(
        tmp_path,
        "pkg_direct",
        {
            "__init__.py": "",
            "a.py": "from pkg_direct import b\n",
            "b.py": "from pkg_direct import c\n",
            "c.py": "import pkg_direct.a\n",
            "d.py": "import pkg_direct.a\n",  # imports into the circle, not part of it
        },
        monkeypatch,
    )
    circles = _circles(graph)
    assert circles == [["pkg_direct.a", "pkg_direct.b", "pkg_direct.c"]]
    edges = graph_script.runtime_edges(graph, set(graph.modules))
    cycle = graph_script.one_cycle(edges, circles[0])
    assert cycle[0] == cycle[-1] and set(cycle) == set(circles[0])
    assert all(b in edges[a] for a, b in itertools.pairwise(cycle))


def test_a_package_init_re_exporting_its_own_modules_is_no_circle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    graph = _package(
        tmp_path,
        "pkg_reexport",
        {
            "__init__.py": "from pkg_reexport.store import Store\n",
            "store.py": "from pkg_reexport import records\nclass Store: ...\n",
            "records.py": "",
        },
        monkeypatch,
    )
    assert _circles(graph) == []


def test_an_init_importing_a_module_that_imports_the_package_back_is_a_circle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The feedback <-> web case: grimp sees no circle (web.routes imports feedback.store, not
    feedback), but importing feedback.store runs feedback/__init__.py, which imports web.routes."""
    graph = _package(
        tmp_path,
        "pkg_init",
        {
            "__init__.py": "",
            "feedback/__init__.py": "from pkg_init.feedback.store import Store\nfrom pkg_init.web.routes import routes\n",
            "feedback/store.py": "class Store: ...\n",
            "web/__init__.py": "",
            "web/routes.py": "from pkg_init.feedback.store import Store\nroutes = [Store]\n",
        },
        monkeypatch,
    )
    assert graph.find_shortest_chain(importer="pkg_init.web.routes", imported="pkg_init.feedback") is None
    assert _circles(graph) == [["pkg_init.feedback", "pkg_init.web.routes"]]


def test_uphill_imports_follow_the_layers_of_pyproject(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    graph = _package(
        tmp_path,
        "pkg_layers",
        {
            "__init__.py": "",
            "web/__init__.py": "",
            "web/app.py": "import pkg_layers.hooks.cards\n",  # down: fine
            "sandbox/__init__.py": "",
            "sandbox/run.py": "import pkg_layers.feedback.store\n",  # independent siblings
            "feedback/__init__.py": "",
            "feedback/store.py": "",
            "hooks/__init__.py": "",
            "hooks/cards.py": "\n\nimport pkg_layers.web.app\n",  # up, line 3
        },
        monkeypatch,
    )
    layers = [["pkg_layers.web"], ["pkg_layers.sandbox", "pkg_layers.feedback"], ["pkg_layers.hooks"]]
    monkeypatch.setattr(graph_script, "layers_from_pyproject", lambda: layers)
    found = graph_script.uphill_imports(graph, set(graph.modules))
    assert found == [
        ("pkg_layers.hooks.cards", "pkg_layers.web.app", 3),
        ("pkg_layers.sandbox.run", "pkg_layers.feedback.store", 1),
    ]


def test_the_layers_are_read_from_the_import_linter_contract() -> None:
    layers = graph_script.layers_from_pyproject()
    assert layers[0] == ["cds.__main__"]
    assert ["cds.sandbox", "cds.feedback", "cds.training"] in layers
    assert layers[-1] == ["cds.knowledge"]


def test_cds_has_no_circle_and_no_uphill_import() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "import_graph.py"), "--uphill"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 uphill imports" in out.stdout and "0 circles" in out.stdout
