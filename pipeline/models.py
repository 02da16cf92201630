"""Typed payloads of the five job types, and the structured answers asked of the model.

Payloads are validated at the edge (`enqueue()`) and again by each handler, so a bad payload
fails with a clear VALIDATION_ERROR and writes nothing.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "PAYLOAD_MODELS",
    "FormatInsightsPayload",
    "Insights",
    "JudgeReviewPayload",
    "RankedStock",
    "SectorResearchPayload",
    "StockAnalysisPayload",
    "StockRanking",
    "StockRankingPayload",
    "SubSectorIdea",
    "SubSectorList",
    "Variation",
    "Verdict",
]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SectorResearchPayload(_Payload):
    """`sector-research`: research a sector and propose sub-sectors."""

    sector_analysis_id: UUID
    user_id: str = Field(min_length=1, max_length=200)
    sector_name: str = Field(min_length=1, max_length=200)

    @field_validator("sector_name", "user_id")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.strip() or not value.isprintable():
            raise ValueError("must be printable text, not blank")
        return value.strip()


class StockRankingPayload(_Payload):
    """`stock-ranking`: rank ten stocks of an approved sub-sector."""

    sub_sector_id: UUID


class Variation(_Payload):
    """How a re-run analysis differs from the rejected one."""

    angle: str = Field(max_length=200)
    judge_reasons: list[str] = Field(default_factory=list, max_length=20)


class StockAnalysisPayload(_Payload):
    """`stock-analysis`: analyse one stock (attempt 1, or a re-run after a rejection)."""

    stock_id: UUID
    attempt: int = Field(default=1, ge=1, le=10)
    variation: Variation | None = None


class JudgeReviewPayload(_Payload):
    """`judge-review`: judge a stock's analysis, the flow parent of its analysis jobs (it reads
    the analysis from its child's result; a rejection adds the re-run as its next child)."""

    stock_id: UUID


class FormatInsightsPayload(_Payload):
    """`format-insights`: turn a stock's approved analysis into validated insights, the flow
    parent of the stock's judge review (it reads the approved analysis from its result)."""

    stock_id: UUID


PAYLOAD_MODELS: dict[str, type[_Payload]] = {
    "sector-research": SectorResearchPayload,
    "stock-ranking": StockRankingPayload,
    "stock-analysis": StockAnalysisPayload,
    "judge-review": JudgeReviewPayload,
    "format-insights": FormatInsightsPayload,
}


# -- structured answers ------------------------------------------------------------------


class SubSectorIdea(BaseModel):
    """One sub-sector proposed by the research."""

    name: str = Field(min_length=2, max_length=120)
    thesis: str = Field(min_length=10, max_length=2000)
    why_now: str = Field(min_length=10, max_length=2000)


class SubSectorList(BaseModel):
    """The research's sub-sectors, 3 to 8."""

    sub_sectors: list[SubSectorIdea] = Field(min_length=3, max_length=8)


class RankedStock(BaseModel):
    """One ranked stock."""

    ticker: str = Field(pattern=r"^[A-Z][A-Z0-9.\-]{0,9}$")
    name: str = Field(min_length=1, max_length=200)
    rank: int = Field(ge=1, le=10)
    rationale: str = Field(min_length=10, max_length=2000)


class StockRanking(BaseModel):
    """Ten stocks ranked 1..10."""

    stocks: list[RankedStock] = Field(min_length=10, max_length=10)

    @field_validator("stocks")
    @classmethod
    def _distinct(cls, stocks: list[RankedStock]) -> list[RankedStock]:
        if sorted(s.rank for s in stocks) != list(range(1, 11)):
            raise ValueError("ranks must be 1..10, each once")
        if len({s.ticker for s in stocks}) != len(stocks):
            raise ValueError("tickers must be distinct")
        return sorted(stocks, key=lambda s: s.rank)


class Verdict(BaseModel):
    """The judge's verdict on an analysis."""

    approved: bool
    score: int = Field(ge=1, le=10)
    reasons: list[str] = Field(min_length=1, max_length=10)


class Insights(BaseModel):
    """The final, validated insights stored on an approved analysis."""

    thesis: str = Field(min_length=10, max_length=2000)
    catalysts: list[str] = Field(min_length=1, max_length=10)
    risks: list[str] = Field(min_length=1, max_length=10)
    valuation: str = Field(min_length=5, max_length=2000)
    verdict: Literal["buy", "hold", "sell"]
    confidence: float = Field(ge=0.0, le=1.0)
