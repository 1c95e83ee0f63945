"""Code keys follow the code that runs (bytecode, what it reaches, its state), never the source on disk."""

from __future__ import annotations

import functools
import importlib
import json
import os
import subprocess
import sys
import threading
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hypernodes import MemoryCache, Pipeline, node
from hypernodes.cache import CacheWarning, explain, hash_code
from hypernodes.errors import NodeDefinitionError

from .conftest import CORE_NAMES


class _Log(list):  # type: ignore[type-arg]
    def __cache_key__(self) -> str:  # its content is not part of a key (globals a node reads are)
        return "LOG"


LOG: list[Any] = _Log()


@pytest.fixture(autouse=True)
def _clear_log() -> None:
    LOG.clear()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[dict[str, str]], None]]:
    """Writes files under an importable folder; the modules imported from it are dropped afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # an edit within one second must not read a stale .pyc
    before = set(sys.modules)

    def write(files: dict[str, str]) -> None:
        for name, text in files.items():
            path = tmp_path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        importlib.invalidate_caches()

    yield write
    for name in set(sys.modules) - before:
        del sys.modules[name]


class _Scaler:
    def __init__(self, k: int) -> None:
        self.k = k

    def scale(self, x: int) -> int:
        LOG.append(self.k)
        return x * self.k


def test_a_bound_method_node_is_keyed_by_its_instance() -> None:
    """Two nodes made from the same method of two instances with different state never share a key."""
    cache = MemoryCache()
    assert Pipeline([node(_Scaler(2).scale, output_name="y")], cache=cache).run({"x": 5}) == {"y": 10}
    assert Pipeline([node(_Scaler(3).scale, output_name="y")], cache=cache).run({"x": 5}) == {"y": 15}
    assert Pipeline([node(_Scaler(3).scale, output_name="y")], cache=cache).run({"x": 5}) == {"y": 15}
    assert LOG == [2, 3]


class _Private:
    def __init__(self, k: int) -> None:
        self._k = k

    def __call__(self, x: int) -> int:
        return x + self._k


def test_a_callable_object_is_keyed_by_its_private_state() -> None:
    """A callable object's private attributes are state: another value is another key."""
    assert hash_code(_Private(1)) == hash_code(_Private(1))
    assert hash_code(_Private(1)) != hash_code(_Private(2))
    cache = MemoryCache()
    assert Pipeline([node(_Private(1), output_name="y")], cache=cache).run({"x": 1}) == {"y": 2}
    assert Pipeline([node(_Private(2), output_name="y")], cache=cache).run({"x": 1}) == {"y": 3}


def test_two_lambdas_on_one_line_have_their_own_keys() -> None:
    """Lambdas written on one source line are keyed by their code, not by the line they share."""
    a, b = node(lambda x: x + 1, output_name="a"), node(lambda x: x + 2, output_name="b")
    assert hash_code(a.func) != hash_code(b.func)
    cache = MemoryCache()
    assert Pipeline([a], cache=cache).run({"x": 1}) == {"a": 2}
    assert Pipeline([node(b.func, output_name="a")], cache=cache).run({"x": 1}) == {"a": 3}


def test_comments_docstrings_and_line_numbers_do_not_count() -> None:
    """The same body with another docstring, comments and blank lines, at another line, has the same key."""
    scope_a: dict[str, Any] = {}
    scope_b: dict[str, Any] = {}
    exec("def f(x):\n    '''One.'''\n    return x + 1\n", scope_a)
    exec("\n\n\ndef f(x):\n    '''Two, longer.'''\n\n    # a comment\n    return x + 1  # another\n", scope_b)
    assert hash_code(scope_a["f"]) == hash_code(scope_b["f"])
    exec("def f(x):\n    return x + 2\n", scope_b)
    assert hash_code(scope_a["f"]) != hash_code(scope_b["f"])


def _module(name: str, source: str) -> types.ModuleType:
    """A module of the user's project, made at run time (no file)."""
    mod = types.ModuleType(name)
    sys.modules[name] = mod
    exec(source, mod.__dict__)
    return mod


@pytest.fixture
def modules() -> Iterator[Callable[[str, str], types.ModuleType]]:
    made: list[str] = []

    def make(name: str, source: str) -> types.ModuleType:
        made.append(name)
        return _module(name, source)

    yield make
    for name in made:
        sys.modules.pop(name, None)


def test_what_the_code_reaches_is_keyed_at_call_time(modules: Callable[[str, str], types.ModuleType]) -> None:
    """A helper in another module (by name, as module.f()), a tuple or dict constant, a static or class
    method, and a mutable global's value all change the key when they change."""
    util = modules("hn_util", "def norm(x):\n    return x + 1\nWEIGHTS = (1, 2)\nTABLE = {'a': 1}\n")
    main = modules(
        "hn_main",
        "import hn_util\nfrom hn_util import norm, WEIGHTS\n"
        "class Helper:\n    @staticmethod\n    def f(x):\n        return x\n"
        "class Other:\n    @classmethod\n    def g(cls, x):\n        return x\n"
        "def by_name(x):\n    return norm(x)\n"
        "def by_module(x):\n    return hn_util.norm(x)\n"
        "def weights(x):\n    return x * WEIGHTS[0]\n"
        "def table(x):\n    return hn_util.TABLE['a']\n"
        "def static(x):\n    return Helper.f(x)\n"
        "def clsm(x):\n    return Other.g(x)\n",
    )
    names = ["by_name", "by_module", "weights", "table", "static", "clsm"]
    before = {n: hash_code(getattr(main, n)) for n in names}
    assert len(set(before.values())) == len(names)
    assert {n: hash_code(getattr(main, n)) for n in names} == before

    def changed() -> list[str]:
        return [n for n in names if hash_code(getattr(main, n)) != before[n]]

    exec("def norm(x):\n    return x + 2\n", util.__dict__)  # the module attribute: by_module
    assert changed() == ["by_module"]
    main.norm = util.norm  # the name imported into main: by_name too
    assert changed() == ["by_name", "by_module"]
    main.WEIGHTS = (3, 2)
    util.TABLE["a"] = 2  # mutated in place: keyed by value when the key is computed
    exec("def f(x):\n    return x + 1\n", scope := {})
    main.Helper.f = staticmethod(scope["f"])
    assert changed() == names[:5]
    main.Other.g = classmethod(scope["f"])
    assert changed() == names


def test_a_decorators_arguments_and_the_wrapped_function_both_count() -> None:
    """A wrapper's closure (the decorator's argument) and what it wraps (functools.wraps) are both keyed."""

    def times(n: int) -> Callable[[Callable[[int], int]], Callable[[int], int]]:
        def deco(f: Callable[[int], int]) -> Callable[[int], int]:
            @functools.wraps(f)
            def wrapper(x: int) -> int:
                return f(x) * n

            return wrapper

        return deco

    def plus_one(x: int) -> int:
        return x + 1

    def plus_two(x: int) -> int:
        return x + 2

    assert hash_code(times(3)(plus_one)) == hash_code(times(3)(plus_one))
    assert hash_code(times(3)(plus_one)) != hash_code(times(4)(plus_one))
    assert hash_code(times(3)(plus_one)) != hash_code(times(3)(plus_two))


def test_partials_and_defaults_are_keyed_by_value() -> None:
    """A partial's arguments and a function's (keyword-only) defaults are part of its key."""

    def f(x: int, k: int = 1, *, j: int = 2) -> int:
        return x * k + j

    assert hash_code(functools.partial(f, k=2)) != hash_code(functools.partial(f, k=3))
    g = types.FunctionType(f.__code__, f.__globals__, "f", (5,))
    g.__kwdefaults__ = {"j": 2}
    assert hash_code(g) != hash_code(f)
    g.__defaults__ = (1,)
    assert hash_code(g) == hash_code(f)
    g.__kwdefaults__ = {"j": 3}
    assert hash_code(g) != hash_code(f)


def _even(n: int) -> bool:
    return n == 0 or _odd(n - 1)


def _odd(n: int) -> bool:
    return n != 0 and _even(n - 1)


class _Tree:
    def __init__(self, children: list[_Tree]) -> None:
        self.children = children

    def size(self) -> int:
        return 1 + sum(c.size() for c in self.children)


REGISTRY: dict[str, Any] = {}


def _registered(x: int) -> int:
    return REGISTRY["f"](x) if x else 0


REGISTRY["f"] = _registered


def test_cycles_terminate() -> None:
    """Mutually recursive helpers, a class naming itself and a function held in a global it reads are keyed."""
    assert len(hash_code(_even)) == 32
    assert hash_code(_Tree([]).size) == hash_code(_Tree([]).size)
    assert len(hash_code(_registered)) == 32


LOCK = threading.Lock()


def _locked(x: int) -> int:
    with LOCK:
        return x + 1


def test_an_unhashable_global_leaves_the_node_uncached_with_one_warning_naming_it() -> None:
    """A global the code reads that cannot be keyed: the node runs uncached, warned once, naming the global."""
    pipeline = Pipeline([node(_locked, output_name="y")], cache=MemoryCache())
    with pytest.warns(CacheWarning, match=r"`_locked`.*global `LOCK`") as caught:
        assert pipeline.map({"x": [1, 2]}, map_over="x") == {"y": [2, 3]}
    assert len(caught) == 1
    with pytest.warns(CacheWarning):
        why = explain(pipeline, {"x": 1})
    assert why == {"_locked": "not cached: global `LOCK` (read by its code) is a _thread.lock, which cannot be hashed"}


def test_a_module_edited_after_import_is_keyed_by_the_code_that_runs(
    project: Callable[[dict[str, str]], None],
) -> None:
    """Editing a module's file without reloading it keeps the running code's key (a hit, and explain
    says the file differs); after a reload the new code gets its own key and runs."""
    project({"hn_edited.py": "def f(x):\n    return x + 1\n"})
    import hn_edited  # type: ignore[import-not-found]

    cache = MemoryCache()

    def pipeline() -> Pipeline:
        return Pipeline([node(hn_edited.f, output_name="y")], cache=cache)

    assert pipeline().run({"x": 1}) == {"y": 2}
    project({"hn_edited.py": "def f(x):\n    return x + 100\n"})
    assert explain(pipeline(), {"x": 1}) == {
        "f": "hit (the source on disk differs from the code that runs: `hn_edited.f`; key follows the running code)"
    }
    assert pipeline().run({"x": 1}) == {"y": 2}  # the old code still runs: its result, under its key
    importlib.reload(hn_edited)
    assert explain(pipeline(), {"x": 1})["f"].startswith("miss: changed since last stored: its code")
    assert pipeline().run({"x": 1}) == {"y": 101}


def test_version_forces_a_recompute() -> None:
    """@node(version=...) is part of the key: another version misses, the same one hits."""

    def f(x: int) -> int:
        LOG.append(x)
        return x

    cache = MemoryCache()
    for version in ("1", "1", "2", 2, None):
        Pipeline([node(f, output_name="y", version=version)], cache=cache).run({"x": 1})
    assert LOG == [1, 1, 1, 1]
    with pytest.raises(NodeDefinitionError, match=r"version.*str or int.*float"):
        node(f, output_name="y", version=1.5)  # type: ignore[arg-type]


# -- the code-edit suite: a real project edited between fresh processes --------------------------

_PROJECT = {
    "proj/__init__.py": "",
    "proj/log.py": (
        "import os\n\n\ndef mark(name):\n"
        "    with open(os.environ['RAN_LOG'], 'a') as f:\n        f.write(name + '\\n')\n"
    ),
    "proj/util.py": "def norm(x):\n    return x + 1\n\n\ndef scale(x):\n    return x * 2\n",
    "proj/other.py": "def shift(x):\n    return x - 1\n",
    "proj/consts.py": "WEIGHTS = (1, 2)\n",
    "proj/late.py": "def bump(x):\n    return x + 30\n",
    "proj/deco.py": (
        "import functools\n\n\ndef times(n):\n    def deco(f):\n        @functools.wraps(f)\n"
        "        def wrapper(x):\n            return f(x) * n\n        return wrapper\n    return deco\n"
    ),
    "proj/shapes.py": (
        "class Helper:\n    @staticmethod\n    def f(x):\n        return x + 10\n\n\n"
        "class Counter:\n    @classmethod\n    def g(cls, x):\n        return x + 20\n"
    ),
    "proj/main.py": """\
import proj.other
from hypernodes import node
from . import util
from .consts import WEIGHTS
from .deco import times
from .log import mark
from .shapes import Counter, Helper
from .util import norm

TABLE = {"a": 1}


@node(output_name="by_name")
def by_name(x):
    mark("by_name")
    return norm(x)


@node(output_name="by_module")
def by_module(x):
    mark("by_module")
    return util.scale(x)


@node(output_name="by_path")
def by_path(x):
    mark("by_path")
    return proj.other.shift(x)


@node(output_name="weights")
def weights(x):
    mark("weights")
    return x * WEIGHTS[0]


@node(output_name="table")
def table(x):
    mark("table")
    return x * TABLE["a"]


@node(output_name="decorated")
@times(3)
def decorated(x):
    mark("decorated")
    return x


@node(output_name="static")
def static(x):
    mark("static")
    return Helper.f(x)


@node(output_name="clsm")
def clsm(x):
    mark("clsm")
    return Counter.g(x)


@node(output_name="default")
def default(x, k=3):
    mark("default")
    return x * k


@node(output_name="commented")
def commented(x):
    mark("commented")
    # a comment
    return x + 5 if x not in {"a", "b", "c"} else 0  # a set constant: its order varies with the hash seed


@node(output_name="late")
def late(x):
    mark("late")
    from .late import bump  # imported only when the node runs

    return bump(x)


@node(output_name="documented")
def documented(x):
    \"\"\"Adds six.\"\"\"
    mark("documented")
    return x + 6


n = node
l1, l2 = n(lambda x: mark("l1") or x + 100, output_name="l1"), n(lambda x: mark("l2") or x + 200, output_name="l2")

NODES = [by_name, by_module, by_path, weights, table, decorated, static, clsm, default]
NODES += [commented, documented, late, l1, l2]
""",
}

_EDITS = {  # (file, old, new): each changes what one node runs, except the last three
    "by_name": ("proj/util.py", "return x + 1", "return x + 11"),
    "by_module": ("proj/util.py", "return x * 2", "return x * 12"),
    "by_path": ("proj/other.py", "return x - 1", "return x - 11"),
    "weights": ("proj/consts.py", "(1, 2)", "(4, 2)"),
    "table": ("proj/main.py", 'TABLE = {"a": 1}', 'TABLE = {"a": 7}'),
    "decorated": ("proj/main.py", "@times(3)", "@times(4)"),
    "static": ("proj/shapes.py", "return x + 10", "return x + 13"),
    "clsm": ("proj/shapes.py", "return x + 20", "return x + 23"),
    "default": ("proj/main.py", "k=3", "k=5"),
    "l2": ("proj/main.py", "x + 200", "x + 201"),
    "late": ("proj/late.py", "x + 30", "x + 33"),
    "commented": ("proj/main.py", "# a comment", "# another comment,\n\n    # longer"),
    "documented": ("proj/main.py", '"""Adds six."""', '"""Adds six to x, documented anew."""'),
    "blank lines": ("proj/main.py", "TABLE =", "\n\n# moved down\nTABLE ="),
}

_RUN = (
    "import json, sys\nfrom hypernodes import DiskCache, Pipeline\nimport proj.main as m\n"
    "print(json.dumps(Pipeline(m.NODES, cache=DiskCache(sys.argv[1])).run({'x': 1})))\n"
)


def _fresh_run(root: Path) -> tuple[dict[str, int], list[str]]:
    """Runs the project's pipeline in a fresh interpreter: its outputs, and the nodes that ran."""
    log = root / "ran.log"
    log.unlink(missing_ok=True)
    env = {**os.environ, "RAN_LOG": str(log), "PYTHONDONTWRITEBYTECODE": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", _RUN, str(root / "cache")], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), sorted(log.read_text().split()) if log.exists() else []


def test_edits_between_fresh_processes_rerun_exactly_the_nodes_whose_code_changed(
    tmp_path: Path, core: types.ModuleType
) -> None:
    """A project's files edited between fresh processes: each node whose running code changed (a helper
    in a sibling module imported by name, called as module.f() or through a package path, a tuple or
    dict constant, a decorator's argument, a static or class method, a default, one of two lambdas on
    a line, a module the node imports when it runs) reruns with the new result; comment, docstring and
    blank-line edits rerun nothing, whatever each process's hash seed."""
    if core.__name__.endswith("_py") and "cython" in CORE_NAMES:
        pytest.skip("the processes run the default core, and keys do not depend on the core")
    for name, text in _PROJECT.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    first, ran = _fresh_run(tmp_path)
    assert len(ran) == len(first) == 14
    assert _fresh_run(tmp_path) == (first, [])
    for file, old, new in _EDITS.values():
        path = tmp_path / file
        text = path.read_text()
        assert text.count(old) == 1, (file, old)
        path.write_text(text.replace(old, new))
    second, ran = _fresh_run(tmp_path)
    changed = sorted(k for k in _EDITS if k not in ("commented", "documented", "blank lines"))
    assert ran == changed
    expected = {**first, "by_name": 12, "by_module": 12, "by_path": -10, "weights": 4, "table": 7}
    expected.update(decorated=4, static=14, clsm=24, default=5, l2=202, late=34)
    assert second == expected
    assert _fresh_run(tmp_path) == (second, [])


THRESHOLD = 1


def _helper(x: int) -> int:
    return x + 1


def _helper_v2(x: int) -> int:
    return x + 2


def _score(x: int) -> int:
    return _helper(x) * THRESHOLD


def test_explain_names_the_global_helper_closure_or_version_that_changed() -> None:
    """explain() names each changed part of a code key once: a global, a helper, a closure value,
    the version; a node whose upstream node hits is not blamed on it."""
    global THRESHOLD, _helper
    cache = MemoryCache()

    def make(k: int, version: str) -> Pipeline:
        def add(score: int) -> int:
            return score + k

        return Pipeline([node(_score, output_name="score", version=version), node(add, output_name="y")], cache=cache)

    make(1, "1").run({"x": 1})
    assert explain(make(1, "1"), {"x": 1}) == {"_score": "hit", "add": "hit"}
    assert explain(make(2, "1"), {"x": 1}) == {
        "_score": "hit",
        "add": "miss: changed since last stored: closure value `k`",
    }
    assert explain(make(1, "2"), {"x": 1})["_score"] == "miss: changed since last stored: version"
    old_threshold, old_helper = THRESHOLD, _helper
    try:
        THRESHOLD = 2
        _helper = _helper_v2
        why = explain(make(1, "1"), {"x": 1})
        assert why["_score"] == (
            "miss: changed since last stored: helper `tests.test_cache_code._helper_v2`, "
            "global `THRESHOLD` (read by its code), helper `tests.test_cache_code._helper`"
        )
        assert why["add"] == "miss: changed since last stored: upstream node `_score`"
    finally:
        THRESHOLD, _helper = old_threshold, old_helper
    make(1, "1").run({"x": 5})  # the same upstream entry, and `add` stored for another `score`
    cache.clear()
    make(1, "1").run({"x": 1})
    make(1, "1").run({"x": 2})
    Pipeline([node(_score, output_name="score", version="1")], cache=cache).run({"x": 3})
    assert explain(make(1, "1"), {"x": 3}) == {"_score": "hit", "add": "miss: not stored for this `score`"}


def test_a_library_not_imported_yet_counts_as_a_library() -> None:
    """A library a node imports inside its body is keyed by name and version, not taken for the
    user's code (and walked) because it was not imported when a key was first computed."""
    from hypernodes.cache import _code, _where

    if "pip" in sys.modules:
        pytest.skip("pip is imported in this process")
    _where._LIBRARY.pop("pip", None)

    def uses_pip(x: int) -> int:
        import pip  # noqa: F401

        return x

    assert [label for label, _ in _code._walk(uses_pip).parts] == ["its code", "import `pip`"]
    assert "pip" not in sys.modules
    assert _where._is_library("pip._internal")


def test_a_library_decorator_keys_what_it_wraps_and_its_arguments() -> None:
    """A wrapper written in a library (with or without functools.wraps) is keyed by its library's
    version, and also by the user's function it wraps and the decorator's arguments."""
    lib: dict[str, Any] = {"__name__": "json.decorators", "functools": functools}
    exec(
        "def times(n):\n    def wrap(f):\n        def inner(x):\n            return f(x) * n\n        return inner\n"
        "    return wrap\n\n\ndef same(f):\n    @functools.wraps(f)\n    def inner(x):\n        return f(x)\n"
        "    return inner\n",
        lib,
    )

    def a(x: int) -> int:
        return x + 1

    def b(x: int) -> int:
        return x + 2

    times, same = lib["times"], lib["same"]
    assert hash_code(times(3)(a)) == hash_code(times(3)(a))
    assert hash_code(times(3)(a)) != hash_code(times(3)(b))
    assert hash_code(times(3)(a)) != hash_code(times(4)(a))
    assert hash_code(same(a)) != hash_code(same(b))


def test_a_submodule_imported_inside_the_function_is_keyed_before_it_runs(
    project: Callable[[dict[str, str]], None],
) -> None:
    """`from . import util` inside a node, before anything imported util: the key covers util's code."""
    project(
        {
            "hn_lazy/__init__.py": "",
            "hn_lazy/util.py": "def g(x):\n    return x + 1\n",
            "hn_lazy/main.py": "def f(x):\n    from . import util\n\n    return util.g(x)\n",
        }
    )
    from hn_lazy import main  # type: ignore[import-not-found]

    from hypernodes.cache import _code

    assert "hn_lazy.util" not in sys.modules
    labels = [label for label, _ in _code._walk(main.f).parts]
    assert labels == ["its code", "module `hn_lazy.util`", "helper `hn_lazy.util.g`"]
