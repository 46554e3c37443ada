"""The rules the house keeps, checked on the source: import floors, pure kernels, one JIT
configuration, one place that reads the environment, and the size of a module.

Each rule reads ``pyforge/`` (and the pycaffe facade, ``caffe/``) with ``ast`` (nothing is
imported), so a violation names the file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pyforge"
#: pycaffe's API, above the whole of pyforge: nothing in pyforge imports it but the alias.
FACADE = PACKAGE.parent / "caffe"
FACADE_IMPORTERS = {"__init__"}  # ``import pyforge as caffe`` forwards to it, lazily
GENERATED = {"proto/caffe_pb2.py"}

#: Floors of the engine, bottom to top: a module may import only from its own floor or below.
#: Keys are module paths relative to pyforge/ (a folder covers its modules); the most specific
#: key wins. Insight, tools and the CLI sit above the engine (floor 9); the pycaffe facade,
#: the ``caffe`` package, sits above all of pyforge (see FACADE).
FLOORS = {
    "errors": 0, "registry": 0, "config": 0, "log": 0, "rng": 0, "signals": 0, "atomic_write": 0,
    "proto": 1,
    "blob": 2, "kernels": 2,
    "fillers": 3, "io": 3,
    "layers": 4,
    "net": 5,
    "io/snapshot": 6, "solvers": 6, "parallel": 6,
    "api": 9, "tools": 9, "insight": 9, "commands": 9, "cli": 9, "export": 9,
    "__init__": 9, "__main__": 9,
}
ENGINE_TOP = 6
#: What kernels may import besides their own package: they are pure functions over arrays.
KERNEL_IMPORTS = {"__future__", "numpy", "numba", "functools", "math"}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py")
                  if p.relative_to(PACKAGE).as_posix() not in GENERATED)


def _key(path: Path) -> str:
    return path.relative_to(PACKAGE).with_suffix("").as_posix()


def _floor(module_key: str) -> int:
    parts = module_key.split("/")
    for n in range(len(parts), 0, -1):
        key = "/".join(parts[:n])
        if key in FLOORS:
            return FLOORS[key]
    raise KeyError(f"pyforge/{module_key}.py has no floor in FLOORS; add it")


def _runtime_nodes(tree: ast.Module):
    """Every node except those under ``if TYPE_CHECKING:`` (imports for annotations only)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return [n for n in ast.walk(tree) if id(n) not in skip]


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute dotted module) of every runtime import in ``path``."""
    package = ["pyforge", *path.relative_to(PACKAGE).parent.parts]
    found = []
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                if node.module:
                    found.append((node.lineno, ".".join([*base, node.module])))
                else:  # from . import x: x is a submodule
                    found.extend((node.lineno, ".".join([*base, alias.name]))
                                 for alias in node.names)
            else:
                found.append((node.lineno, node.module or ""))
    return found


def _pyforge_target(dotted: str) -> str | None:
    """The module key (as in FLOORS) an import of ``dotted`` reaches, or None if external."""
    parts = dotted.split(".")
    if parts[0] != "pyforge" or len(parts) == 1:
        return None if parts[0] != "pyforge" else "__init__"
    candidate = PACKAGE.joinpath(*parts[1:])
    while not (candidate.with_suffix(".py").exists() or candidate.is_dir()):
        candidate = candidate.parent  # "from ..proto import caffe_pb2": a name, not a module
    if candidate == PACKAGE:
        return "__init__"  # a name defined in pyforge/__init__.py
    return candidate.relative_to(PACKAGE).as_posix()


def test_every_module_has_a_floor():
    for path in _modules():
        _floor(_key(path))


def test_no_module_imports_from_a_higher_floor():
    problems = []
    for path in _modules():
        key = _key(path)
        mine = _floor(key)
        for line, dotted in _imports(path):
            target = _pyforge_target(dotted)
            if target is None:
                continue
            theirs = _floor(target)
            if theirs > mine:
                problems.append(f"pyforge/{key}.py:{line}: floor {mine} imports {dotted} "
                                f"(floor {theirs})")
    assert not problems, "\n".join(problems)


def test_the_engine_imports_neither_the_facade_nor_insight_nor_the_cli():
    problems = []
    for path in _modules():
        key = _key(path)
        if _floor(key) > ENGINE_TOP:
            continue
        for line, dotted in _imports(path):
            target = _pyforge_target(dotted)
            if target is not None and _floor(target) > ENGINE_TOP:
                problems.append(f"pyforge/{key}.py:{line}: the engine imports {dotted}")
    assert not problems, "\n".join(problems)


def test_pyforge_imports_the_facade_only_in_the_alias():
    """The engine, insight, tools and the CLI never import the ``caffe`` package; only the
    package root does, lazily, for ``import pyforge as caffe``."""
    problems = []
    for path in _modules():
        key = _key(path)
        for line, dotted in _imports(path):
            if dotted.split(".")[0] == "caffe" and key not in FACADE_IMPORTERS:
                problems.append(f"pyforge/{key}.py:{line}: imports {dotted}")
    assert not problems, "\n".join(problems)


def test_the_facade_builds_on_pyforges_public_modules():
    """caffe/ imports pyforge by absolute names (it is a separate package) and never the
    command line."""
    problems = []
    for path in sorted(FACADE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in _runtime_nodes(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                dotted = node.module
            elif isinstance(node, ast.Import):
                dotted = node.names[0].name
            else:
                continue
            if dotted.startswith(("pyforge.cli", "pyforge.commands")):
                problems.append(f"{path.relative_to(FACADE.parent)}:{node.lineno}: {dotted}")
    assert not problems, "\n".join(problems)


def test_kernels_import_only_numpy_numba_and_their_own_package():
    problems = []
    for path in sorted((PACKAGE / "kernels").glob("*.py")):
        for line, dotted in _imports(path):
            if dotted.startswith("pyforge.kernels"):
                continue
            if dotted.split(".")[0] not in KERNEL_IMPORTS:
                problems.append(f"pyforge/{_key(path)}.py:{line}: a kernel imports {dotted}")
    assert not problems, "\n".join(problems)


def test_kernels_are_functions_compiled_by_the_one_configuration():
    """Kernel modules hold functions only (no classes, no module state but constants), and
    every function is compiled with ``jit``/``pjit`` from ``kernels/_jit.py``."""
    problems = []
    for path in sorted((PACKAGE / "kernels").glob("*.py")):
        if path.name in ("__init__.py", "_jit.py"):
            continue
        for node in ast.parse(path.read_text()).body:
            where = f"pyforge/{_key(path)}.py:{node.lineno}"
            if isinstance(node, ast.ClassDef):
                problems.append(f"{where}: class {node.name} in a kernel module")
            elif isinstance(node, ast.FunctionDef):
                names = {ast.unparse(d).split("(")[0] for d in node.decorator_list}
                if not names & {"jit", "pjit"}:
                    problems.append(f"{where}: {node.name} is not compiled with jit/pjit")
    assert not problems, "\n".join(problems)


def test_numba_is_configured_in_one_place():
    """No ``numba.njit``/``numba.jit`` and no ``fastmath`` outside ``kernels/_jit.py`` (fastmath
    would change how NaN and infinity propagate, and Caffe's numbers with them)."""
    problems = []
    for path in _modules():
        if _key(path) == "kernels/_jit":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            text = None
            if isinstance(node, ast.Attribute) and node.attr in ("njit", "jit", "vectorize",
                                                                 "guvectorize"):
                text = ast.unparse(node)
                if not text.startswith("numba."):
                    continue
            elif isinstance(node, ast.ImportFrom) and node.module == "numba":
                bad = {a.name for a in node.names} & {"njit", "jit", "vectorize", "guvectorize"}
                text = f"from numba import {', '.join(sorted(bad))}" if bad else None
            elif isinstance(node, ast.keyword) and node.arg == "fastmath":
                text = "fastmath="
            if text:
                problems.append(f"pyforge/{_key(path)}.py:{node.lineno}: {text}")
    assert not problems, "\n".join(problems)


def test_the_environment_is_read_in_one_place():
    problems = []
    for path in _modules():
        if _key(path) == "config":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "putenv"):
                problems.append(f"pyforge/{_key(path)}.py:{node.lineno}: {ast.unparse(node)}")
            elif isinstance(node, ast.ImportFrom) and node.module == "os" and any(
                    a.name in ("environ", "getenv") for a in node.names):
                problems.append(f"pyforge/{_key(path)}.py:{node.lineno}: from os import ...")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", _modules() + sorted(FACADE.rglob("*.py")),
                         ids=lambda p: p.relative_to(PACKAGE.parent).as_posix())
def test_no_module_is_over_600_lines(path):
    lines = len(path.read_text().splitlines())
    name = path.relative_to(PACKAGE.parent).as_posix()
    assert lines <= 600, f"{name} has {lines} lines; split it along a seam"


def test_the_rules_catch_what_they_are_for(tmp_path):
    """The checks above, run on a snippet that breaks each rule, find it."""
    bad = ast.parse("import os\nos.environ['X'] = '1'\nimport numba\nf = numba.njit(fastmath=1)")
    found = [ast.unparse(n) for n in ast.walk(bad)
             if (isinstance(n, ast.Attribute) and n.attr in ("environ", "njit"))
             or (isinstance(n, ast.keyword) and n.arg == "fastmath")]
    assert found == ["os.environ", "numba.njit", "fastmath=1"]
    assert _floor("layers/conv") == 4 and _floor("io/snapshot") == 6 and _floor("io/db") == 3
    assert _pyforge_target("pyforge.proto.caffe_pb2") == "proto/caffe_pb2"
    assert _pyforge_target("pyforge.proto") == "proto"
    assert _pyforge_target("numpy") is None
