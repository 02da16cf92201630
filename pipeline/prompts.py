"""Every prompt of the pipeline, one section per stage, with the inputs that stage has."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ANGLES",
    "analysis_prompt",
    "format_prompt",
    "judge_prompt",
    "ranking_prompt",
    "research_prompt",
    "subsector_prompt",
]

ANALYST = (
    "You are a senior equity research analyst. Be specific, quantitative where you can, and "
    "honest about uncertainty. Never invent precise figures you cannot support."
)

# -- 1. sector research ------------------------------------------------------------------


def research_prompt(sector: str) -> tuple[str, str]:
    """Long-form research of a sector (free text, web search allowed)."""
    return ANALYST, (
        f"Research the {sector} sector as of today. Cover its structure, growth drivers, "
        "margins, regulation and the main debates among investors. Then identify the 3 to 8 "
        "most attractive sub-sectors for a 12-24 month horizon, with for each a one-paragraph "
        "investment thesis and why the timing is right now."
    )


def subsector_prompt(sector: str, research: str) -> tuple[str, str]:
    """Turn the research into 3-8 structured sub-sectors."""
    return ANALYST, (
        f"From the research below on the {sector} sector, list the 3 to 8 sub-sectors it "
        "recommends, each with a name, a thesis and why now.\n\n<research>\n"
        f"{research[:20000]}\n</research>"
    )


# -- 3. stock ranking --------------------------------------------------------------------


def ranking_prompt(sector: str, sub_sector: str, thesis: str) -> tuple[str, str]:
    """Rank ten listed stocks of an approved sub-sector."""
    return ANALYST, (
        f"Sector: {sector}. Approved sub-sector: {sub_sector}.\nThesis: {thesis}\n\n"
        "Rank the 10 most attractive listed stocks that give exposure to this sub-sector, "
        "rank 1 being the best, each with its ticker, company name and a short rationale."
    )


# -- 4. stock analysis -------------------------------------------------------------------

ANGLES: tuple[str, ...] = ("valuation-first", "bear-case and risks", "competitive moat")


def analysis_prompt(
    *,
    ticker: str,
    name: str,
    sub_sector: str,
    thesis: str,
    rationale: str,
    attempt: int,
    angle: str | None = None,
    judge_reasons: Sequence[str] = (),
) -> tuple[str, str]:
    """Deep analysis of one stock; a re-run carries the judge's reasons and a new angle."""
    prompt = (
        f"Write a deep investment analysis of {name} ({ticker}) as an exposure to "
        f"{sub_sector}.\nSub-sector thesis: {thesis}\nWhy it was ranked: {rationale}\n\n"
        "Cover the business, competitive position, financials, valuation, catalysts, risks "
        "and a clear conclusion."
    )
    if attempt > 1:
        reasons = "\n".join(f"- {r}" for r in judge_reasons) or "- (no reasons given)"
        prompt += (
            f"\n\nThis is attempt {attempt}. A reviewer rejected the previous analysis "
            f"because:\n{reasons}\nAddress each point. Take a different analytical angle "
            f"this time: lead with the {angle or ANGLES[(attempt - 2) % len(ANGLES)]} view."
        )
    return ANALYST, prompt


# -- 5. judge review ---------------------------------------------------------------------

JUDGE = (
    "You are the head of research reviewing an analyst's stock analysis before it reaches "
    "clients. Approve it only if it is specific, internally consistent, covers valuation and "
    "risks, and reaches a justified conclusion. Score it 1-10 and give concrete reasons."
)


def judge_prompt(ticker: str, name: str, analysis: str, attempt: int) -> tuple[str, str]:
    """Judge one analysis attempt."""
    return JUDGE, (
        f"Review this analysis of {name} ({ticker}), attempt {attempt}.\n\n"
        f"<analysis>\n{analysis[:30000]}\n</analysis>"
    )


# -- 6. format insights ------------------------------------------------------------------


def format_prompt(ticker: str, name: str, analysis: str) -> tuple[str, str]:
    """Extract the structured insights of an approved analysis."""
    return ANALYST, (
        f"Extract the investment insights from this approved analysis of {name} ({ticker}): "
        "thesis, catalysts, risks, valuation, a verdict (buy, hold or sell) and your "
        f"confidence from 0 to 1.\n\n<analysis>\n{analysis[:30000]}\n</analysis>"
    )
