"""The public API is exported deliberately: sorted `__all__`, every name importable, and the
engine never imports the application."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "module",
    [
        "jobqueue",
        "jobqueue.tasks",
        "jobqueue.metrics",
        "jobqueue.dashboard",
        "pipeline",
        "pipeline.ai",
        "pipeline.dashboard",
    ],
)
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
        "register_error_rule",
        "register_error_type",
        "ErrorVerdict",
        "retry_after_seconds",
        "redact",
        "Child",
        "ChildFailure",
        "CrossSlotFlowError",
        "OnFailure",
        "WaitForChildren",
        "ProcessIsolation",
        "HandlerCrashedError",
        "Dedup",
        "Schedule",
    ):
        assert name in jobqueue.__all__


def test_pipeline_status_api_names() -> None:
    import pipeline

    for name in (
        "enqueue",
        "start_sector_research",
        "approve_subsector",
        "cancel_run",
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


def test_jobqueue_holds_no_provider_knowledge() -> None:
    # The engine's classification is generic: an SDK's table lives in the application
    # (`pipeline/ai/errors.py`), registered with `register_error_rule(..., classify=...)`.
    needles = ("anthropic", "spend_limit", "spendlimit", "overloaded_error", "x-should-retry")
    for path in (ROOT / "jobqueue").rglob("*.py"):
        text = path.read_text().lower()
        for needle in (*needles, "judge_rejection"):
            assert needle not in text, (path, needle)


def test_every_engine_module_is_private_or_declares_its_names() -> None:
    # a module's public names are deliberate: `__all__` lists them (each defined), or the
    # module is private (`_name.py`)
    for path in sorted((ROOT / "jobqueue").rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = rel.parts
        if any(p.startswith("_") and p != "__init__" for p in parts) or parts[-1] == "__main__":
            continue
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mod = importlib.import_module(name)
        if parts[-1] == "__init__" and not hasattr(mod, "__all__"):
            continue  # a package that only groups modules
        assert hasattr(mod, "__all__"), f"{name} has no __all__"
        for exported in mod.__all__:
            assert hasattr(mod, exported), f"{name}.__all__ names missing {exported}"
