"""The package's layering: every import points down, read from the modules' own import statements.

The layers are the ones ``engine.py``'s opening comment and the README's Layout
section document. A module may import modules of a lower layer, and modules of its
own layer (one package) without a cycle; never one above it. Imports inside
functions count too: a lazy import is for heavy optional libraries, never for
dodging a cycle between our own modules.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

import hypernodes

ROOT = Path(hypernodes.__file__).parent

LAYERS: tuple[tuple[str, ...], ...] = (
    ("hypernodes",),
    ("hypernodes.telemetry",),
    ("hypernodes.pipeline",),
    ("hypernodes.viz",),
    ("hypernodes.engines",),
    ("hypernodes.engine",),
    ("hypernodes._open",),
    ("hypernodes.callbacks", "hypernodes._observe"),
    ("hypernodes._run",),
    ("hypernodes.executors",),
    (
        "hypernodes._call",
        "hypernodes._nested",
        "hypernodes._resources",
        "hypernodes._validate",
        "hypernodes.cache",
        "hypernodes.cache.lookup",
    ),
    ("hypernodes.cache.storage",),
    ("hypernodes.cache._trust",),
    ("hypernodes.cache.hashing",),
    ("hypernodes.cache._code", "hypernodes.cache._arrays"),
    ("hypernodes.cache._where",),
    ("hypernodes.cache._values",),
    ("hypernodes._graph",),
    ("hypernodes._core",),
    ("hypernodes._sched", "hypernodes._sched_py"),
    (
        "hypernodes._events",
        "hypernodes.node",
        "hypernodes._policy",
        "hypernodes.failures",
        "hypernodes._columns",
        "hypernodes._frames",
        "hypernodes._typecheck",
        "hypernodes._viz_style",
        "hypernodes._item_maps",
        "hypernodes._errors",
        "hypernodes.errors",
    ),
)
"""Top to bottom. A package's name stands for all of its modules but those named on their own."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(ROOT.rglob("*")):
        if "__pycache__" in path.parts:
            continue
        if path.suffix in (".py", ".pyx"):
            found[_module_name(path)] = path
        elif any(path.name.endswith(s) for s in EXTENSION_SUFFIXES):  # an installed build: no .pyx beside it
            found.setdefault(
                ".".join([*_module_name(path.parent / "x.py").split(".")[:-1], path.name.split(".")[0]]), path
            )
    return found


def _layer(module: str) -> int:
    best: tuple[int, int] | None = None  # (length of the name that matched, its layer): the longest wins
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or (name != "hypernodes" and module.startswith(name + "."))) and (
                best is None or len(name) > best[0]
            ):
                best = (len(name), i)
    if best is None:
        raise AssertionError(f"module {module} is in no layer: add it to LAYERS (and to the README's Layout)")
    return best[1]


def _resolve(importer: str, is_package: bool, level: int, target: str | None) -> str:
    base = importer.split(".")
    if not is_package:
        base.pop()
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def _imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The hypernodes modules that ``module`` imports anywhere in its source."""
    if path.suffix not in (".py", ".pyx"):
        return set()  # a compiled module: its source (the .pyx) is checked where it is present
    text = path.read_text()
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def add(name: str, floor: str = "hypernodes") -> None:
        # `from .x import y` names module x.y or a member y of x: strip to the module that
        # exists, but never above x (`floor`): a module absent from this install (the
        # compiled core in a pure-Python wheel) is no import of its package.
        while name and name not in known and name != floor:
            name = name.rpartition(".")[0]
        if name in known and name != module:
            found.add(name)

    if path.suffix == ".pyx":  # Cython: read the Python-level imports by pattern
        for level, target, names in re.findall(r"^\s*from\s+(\.+)(\w*(?:\.\w+)*)\s+import\s+(.+)$", text, re.M):
            base = _resolve(module, is_package, len(level), target or None)
            for n in names.split(","):
                add(f"{base}.{n.strip()}", base)
        return found
    for stmt in ast.walk(ast.parse(text)):
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                if alias.name.startswith("hypernodes"):
                    add(alias.name)
        elif isinstance(stmt, ast.ImportFrom):
            if stmt.level:
                base = _resolve(module, is_package, stmt.level, stmt.module)
            elif stmt.module and stmt.module.startswith("hypernodes"):
                base = stmt.module
            else:
                continue
            for alias in stmt.names:
                add(f"{base}.{alias.name}", base)
    return found


GRAPH = {m: _imports(m, p, _modules()) for m, p in _modules().items()}


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_point_down(module: str) -> None:
    """No module imports one from a layer above its own."""
    up = sorted(t for t in GRAPH[module] if _layer(t) < _layer(module))
    assert not up, f"{module} (layer {_layer(module)}) imports {up} from above"


def test_no_import_cycle() -> None:
    """The import graph, within layers too, has no cycle."""
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(GRAPH.get(m, ())):
            if state.get(t) == 1:
                cycle = [*path[path.index(t) :], t] if t in path else [m, t]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if t not in state:
                visit(t, [*path, t])
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [m])


def test_the_layers_name_every_module() -> None:
    """Every module of the package sits in a documented layer, and the drivers never see the engine."""
    for module in GRAPH:
        _layer(module)
    drivers = [m for m in GRAPH if m.startswith("hypernodes._run")]
    assert drivers
    for m in drivers:
        assert not GRAPH[m] & {"hypernodes.engine", "hypernodes.pipeline"}, m


def test_import_hypernodes_stays_light() -> None:
    """`import hypernodes` loads no numpy, pandas, pyarrow, asyncio, cloudpickle, loky, graphviz, tqdm, dask
    or distributed: sequential runs need none, and neither does hashing a value for the cache (numpy is read
    from ``sys.modules`` only when the process already imported it)."""
    heavy = (
        "('numpy', 'pandas', 'pyarrow', 'asyncio', 'cloudpickle', 'loky', 'graphviz', 'tqdm', 'dask', 'distributed')"
    )
    code = (
        "import sys, dataclasses, hypernodes, hypernodes.engines\n"
        "from hypernodes.cache import hash_value\n"
        "P = dataclasses.make_dataclass('P', ['x'])\n"
        "p = hypernodes.Pipeline([hypernodes.node(lambda x: x + 1, output_name='y')], cache=hypernodes.MemoryCache())\n"
        "assert p.map(inputs={'x': [1, 2]}, map_over='x') == {'y': [2, 3]}\n"
        "hash_value([P(1), {'a': (1.5, b'x')}])\n"
        f"print(sorted(m for m in {heavy} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
