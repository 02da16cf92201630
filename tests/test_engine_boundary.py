"""The application and the examples use only the engine's public API: `from jobqueue import X`
with X in `jobqueue.__all__` (or `jobqueue.X` after `import jobqueue`), plus the public
`jobqueue.testing`, `jobqueue.metrics` and `jobqueue.dashboard` modules. Engine internals can
then move without breaking them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import jobqueue

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_MODULES = frozenset(
    {"jobqueue", "jobqueue.testing", "jobqueue.metrics", "jobqueue.dashboard"}
)


def private_uses(source: str) -> set[str]:
    """Every use of the engine in `source` that is not its public API, as dotted names."""
    public = set(jobqueue.__all__)
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "jobqueue" and alias.name not in PUBLIC_MODULES:
                    found.add(alias.name)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            module = node.module or ""
            if module == "jobqueue":
                for alias in node.names:
                    if alias.name not in public and f"jobqueue.{alias.name}" not in PUBLIC_MODULES:
                        found.add(f"jobqueue.{alias.name}")
            elif module.split(".")[0] == "jobqueue" and module not in PUBLIC_MODULES:
                found.update(f"{module}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "jobqueue"
            and node.attr not in public
            and f"jobqueue.{node.attr}" not in PUBLIC_MODULES
        ):
            found.add(f"jobqueue.{node.attr}")
    return found


def sources() -> list[str]:
    files = [*(ROOT / "pipeline").rglob("*.py"), *(ROOT / "examples").glob("*.py")]
    return sorted(str(p.relative_to(ROOT)) for p in files)


@pytest.mark.parametrize("path", sources())
def test_only_the_public_engine_api_is_used(path: str) -> None:
    used = private_uses((ROOT / path).read_text())
    assert not used, f"{path} uses engine internals: {sorted(used)}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from jobqueue import Queue, Worker", set()),
        ("import jobqueue\njobqueue.cleanup_old_jobs", set()),
        ("from jobqueue.testing import embedded_redis", set()),
        ("from jobqueue import testing", set()),
        ("from jobqueue.core.connection import connect", {"jobqueue.core.connection.connect"}),
        ("import jobqueue.core.keys", {"jobqueue.core.keys"}),
        ("from jobqueue import _private", {"jobqueue._private"}),
        ("import jobqueue\njobqueue.events.last_event_id", {"jobqueue.events"}),
        ("def f():\n    from jobqueue.retry import redact", {"jobqueue.retry.redact"}),
        ("from .jobqueue import x", set()),  # a relative import is the application's own
    ],
)
def test_private_uses_detects_internals(source: str, expected: set[str]) -> None:
    assert private_uses(source) == expected
