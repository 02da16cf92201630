"""Every prompt of the pipeline, one section per stage, with the inputs that stage has.

Each builder returns a `StagePrompt`: stable blocks first, the per-call text last, so calls
that share a beginning read it from the prompt cache instead of paying for it again:

| stage | system (breakpoint) | shared context (breakpoints) | per call |
|---|---|---|---|
| sector research | analyst + brief (5m) | - | the sector |
| sub-sectors | analyst + brief (5m) | - | the sector, its research |
| stock ranking | analyst + brief (1h) | the research (1h) | sub-sector, thesis |
| stock analysis | analyst + brief (1h) | research (1h), thesis (1h) | stock, re-run |
| judge review | the judge's rubric (1h) | - | the analysis |
| format insights | analyst + brief (1h) | - | the analysis |

Why these TTLs: the research, the thesis and the rubrics are reused by jobs of one run over
more than five minutes (an analysis takes minutes, a re-run waits for its judge, sub-sectors
are approved by people), so they are written for an hour; the research stage's own prompts
serve runs started together (several sectors at once), so five minutes. A one-hour block must
come before a five-minute one, and a request has at most four breakpoints (three here).
A breakpoint is only worth it for a block byte-identical across calls: the builders keep the
shared blocks free of anything per call (ticker, attempt, judge's reasons).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.ai.base import CacheTTL, PromptBlock

__all__ = [
    "ANGLES",
    "RESEARCH_CHARS",
    "StagePrompt",
    "analysis_prompt",
    "format_prompt",
    "judge_prompt",
    "ranking_prompt",
    "research_block",
    "research_prompt",
    "subsector_prompt",
]

# A prefix reused by jobs of one run over more than the default five minutes.
RUN_TTL: CacheTTL = "1h"
# A prefix reused by calls that come together (the research stage of runs started at once).
BURST_TTL: CacheTTL = "5m"

RESEARCH_CHARS = 20000
"""How much of the sector research a prompt carries (the same cut everywhere, so the block
is identical in every call of a run)."""

ANALYST = (
    "You are a senior equity research analyst. Be specific, quantitative where you can, and "
    "honest about uncertainty. Never invent precise figures you cannot support."
)


@dataclass(frozen=True)
class StagePrompt:
    """One model request of a stage, stable blocks first.

    Attributes:
        system: The system prompt (the analyst and the stage's brief), a cache breakpoint.
        context: Blocks shared by many calls of a run, each a cache breakpoint.
        prompt: The per-call part, sent last and never cached.
    """

    system: PromptBlock
    context: tuple[PromptBlock, ...]
    prompt: str


def _system(brief: str, ttl: CacheTTL) -> PromptBlock:
    return PromptBlock(f"{ANALYST}\n\n{brief}", cache=ttl)


def research_block(sector: str, research: str | None) -> PromptBlock | None:
    """The sector research as a shared, cached block (None when there is no research).

    Args:
        sector: The sector's name.
        research: The research text of the run.

    Returns:
        The block every ranking and analysis call of the run starts its message with.
    """
    text = (research or "").strip()[:RESEARCH_CHARS]
    if not text:
        return None
    title = f"Research on the {sector} sector" if sector else "Sector research"
    return PromptBlock(f"{title}:\n<research>\n{text}\n</research>", cache=RUN_TTL)


# -- 1. sector research ------------------------------------------------------------------

RESEARCH_BRIEF = (
    "Research the sector the user names, as of today. Cover its structure, growth drivers, "
    "margins, regulation and the main debates among investors. Then identify the 3 to 8 most "
    "attractive sub-sectors for a 12-24 month horizon, with for each a one-paragraph "
    "investment thesis and why the timing is right now."
)


def research_prompt(sector: str) -> StagePrompt:
    """Long-form research of a sector (free text, web search allowed)."""
    return StagePrompt(_system(RESEARCH_BRIEF, BURST_TTL), (), f"Research the {sector} sector.")


SUBSECTOR_BRIEF = (
    "From the research the user gives on a sector, list the 3 to 8 sub-sectors it "
    "recommends, each with a name, a thesis and why now."
)


def subsector_prompt(sector: str, research: str) -> StagePrompt:
    """Turn the research into 3-8 structured sub-sectors (the research is read once here:
    not worth a cache write)."""
    return StagePrompt(
        _system(SUBSECTOR_BRIEF, BURST_TTL),
        (),
        f"Sector: {sector}.\n\n<research>\n{research[:RESEARCH_CHARS]}\n</research>",
    )


# -- 3. stock ranking --------------------------------------------------------------------

RANKING_BRIEF = (
    "The user gives an approved sub-sector of a sector and its thesis. Rank the 10 most "
    "attractive listed stocks that give exposure to this sub-sector, rank 1 being the best, "
    "each with its ticker, company name and a short rationale."
)


def ranking_prompt(
    sector: str, sub_sector: str, thesis: str, research: str | None = None
) -> StagePrompt:
    """Rank ten listed stocks of an approved sub-sector (the run's research shared)."""
    shared = research_block(sector, research)
    return StagePrompt(
        _system(RANKING_BRIEF, RUN_TTL),
        (shared,) if shared else (),
        f"Sector: {sector}. Approved sub-sector: {sub_sector}.\nThesis: {thesis}",
    )


# -- 4. stock analysis -------------------------------------------------------------------

ANGLES: tuple[str, ...] = ("valuation-first", "bear-case and risks", "competitive moat")

ANALYSIS_BRIEF = (
    "Write a deep investment analysis of the stock the user names, as an exposure to the "
    "sub-sector given. Cover the business, competitive position, financials, valuation, "
    "catalysts, risks and a clear conclusion."
)


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
    sector: str = "",
    research: str | None = None,
) -> StagePrompt:
    """Deep analysis of one stock; a re-run carries the judge's reasons and a new angle.

    The research and the sub-sector's thesis are shared by every analysis of the sub-sector
    (its stocks and their re-runs); the stock and the re-run's variation come last.
    """
    shared = research_block(sector, research)
    thesis_block = PromptBlock(f"Sub-sector: {sub_sector}\nSub-sector thesis: {thesis}", RUN_TTL)
    prompt = (
        f"Write a deep investment analysis of {name} ({ticker}) as an exposure to "
        f"{sub_sector}.\nWhy it was ranked: {rationale}"
    )
    if attempt > 1:
        reasons = "\n".join(f"- {r}" for r in judge_reasons) or "- (no reasons given)"
        prompt += (
            f"\n\nThis is attempt {attempt}. A reviewer rejected the previous analysis "
            f"because:\n{reasons}\nAddress each point. Take a different analytical angle "
            f"this time: lead with the {angle or ANGLES[(attempt - 2) % len(ANGLES)]} view."
        )
    context = (shared, thesis_block) if shared else (thesis_block,)
    return StagePrompt(_system(ANALYSIS_BRIEF, RUN_TTL), context, prompt)


# -- 5. judge review ---------------------------------------------------------------------

JUDGE = (
    "You are the head of research reviewing an analyst's stock analysis before it reaches "
    "clients. Approve it only if it is specific, internally consistent, covers valuation and "
    "risks, and reaches a justified conclusion. Score it 1-10 and give concrete reasons."
)


def judge_prompt(ticker: str, name: str, analysis: str, attempt: int) -> StagePrompt:
    """Judge one analysis attempt (the rubric is the cached system prompt of every review)."""
    return StagePrompt(
        PromptBlock(JUDGE, cache=RUN_TTL),
        (),
        f"Review this analysis of {name} ({ticker}), attempt {attempt}.\n\n"
        f"<analysis>\n{analysis[:30000]}\n</analysis>",
    )


# -- 6. format insights ------------------------------------------------------------------

FORMAT_BRIEF = (
    "Extract the investment insights from the approved analysis the user gives: thesis, "
    "catalysts, risks, valuation, a verdict (buy, hold or sell) and your confidence from 0 "
    "to 1."
)


def format_prompt(ticker: str, name: str, analysis: str) -> StagePrompt:
    """Extract the structured insights of an approved analysis."""
    return StagePrompt(
        _system(FORMAT_BRIEF, RUN_TTL),
        (),
        f"Approved analysis of {name} ({ticker}):\n\n<analysis>\n{analysis[:30000]}\n</analysis>",
    )
