"""The deduplicating job id of every pipeline job, derived from what it works on, so that
enqueueing twice (a retried handler, a double click on "approve") enqueues once, and so that a
cancel finds a run's jobs from its domain rows (`pipeline.cancel.run_job_ids`)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import BaseModel

__all__ = ["default_job_id", "stock_job_id"]


def stock_job_id(job_type: str, stock_id: UUID | str, attempt: int = 1) -> str:
    """The id of a job of a stock's flow: `stock-analysis:<stock>:<attempt>`, and
    `judge-review:<stock>` / `format-insights:<stock>` (one judge and one formatter per stock:
    the judge's revise loop is steps of one job, each re-run analysis a child of it)."""
    if job_type == "stock-analysis":
        return f"stock-analysis:{stock_id}:{attempt}"
    return f"{job_type}:{stock_id}"


def default_job_id(job_type: str, payload: BaseModel) -> str:
    """The deduplicating job id of a (validated) payload."""
    p: dict[str, Any] = payload.model_dump()
    match job_type:
        case "sector-research":
            return f"sector-research:{p['sector_analysis_id']}"
        case "stock-ranking":
            return f"stock-ranking:{p['sub_sector_id']}"
        case _:
            return stock_job_id(job_type, p["stock_id"], p.get("attempt", 1))
