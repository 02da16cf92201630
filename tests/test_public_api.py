"""The public API is exported deliberately: sorted `__all__`, every name importable, and the
engine never imports the application."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module", ["jobqueue", "jobqueue.tasks", "pipeline", "pipeline.ai"])
def test_all_is_sorted_and_importable(module: str) -> None:
    mod = importlib.import_module(module)
    names = list(mod.__all__)
    assert names == sorted(names, key=lambda n: (not n.isupper(), n)) or names == sorted(names)
    assert len(names) == len(set(names))
    for name in names:
        assert hasattr(mod, name), name


def test_engine_contract_names() -> None:
    import jobqueue

    for name in (
        "Queue",
        "QueueConfig",
        "RateLimit",
        "Worker",
        "Job",
        "ErrorType",
        "classify_error",
        "with_retry",
        "UnrecoverableError",
        "RetryAfter",
        "QueueEvents",
        "cleanup_old_jobs",
        "Task",
        "TaskRegistry",
    ):
        assert name in jobqueue.__all__


def test_pipeline_status_api_names() -> None:
    import pipeline

    for name in (
        "enqueue",
        "start_sector_research",
        "approve_subsector",
        "create_job_status",
        "get_job_status",
        "get_jobs_by_related_id",
        "update_job_status",
        "cleanup_old_jobs",
    ):
        assert name in pipeline.__all__


def test_jobqueue_never_imports_pipeline() -> None:
    for path in (ROOT / "jobqueue").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            else:
                continue
            assert not any(m == "pipeline" or m.startswith("pipeline.") for m in mods), path
