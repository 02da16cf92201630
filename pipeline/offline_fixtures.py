"""Domain answers of the offline model: seeded, about the real sub-sectors and companies of the
shipped universe (`pipeline.ai.universe`), never real market data.

The stages seed their calls with what the answer is about, which the fixtures read first (the
prompt's wording may change): sub-sectors with the sector's name, a ranking with the
sub-sector's name, a verdict with "TICKER:attempt", insights with the ticker.
"""

from __future__ import annotations

import random
from typing import Any

from pipeline.ai import offline_rejections_enabled, offline_should_reject, register_fixture
from pipeline.ai.prose import (
    company_sentence,
    conclusion_of,
    ranking_picks,
    rationale,
    research_plan,
    research_query,
    sub_sector_idea,
)
from pipeline.ai.universe import Listing, universe
from pipeline.ai.wordbank import CATALYSTS, METRICS, RISKS, sentence
from pipeline.models import Insights, StockRanking, SubSectorList, Verdict

__all__ = ["register_offline_fixtures"]


def _sub_sectors(prompt: str, seed_key: str, rng: random.Random) -> dict[str, Any]:
    plan = research_plan(research_query(prompt, seed_key))
    return {"sub_sectors": [sub_sector_idea(rng, sub, plan) for sub in plan.sub_sectors]}


def _ranking(prompt: str, seed_key: str, rng: random.Random) -> dict[str, Any]:
    picks, sub, _ = ranking_picks(rng, prompt, seed_key)
    return {
        "stocks": [
            {
                "ticker": listing.ticker,
                "name": listing.name,
                "rank": rank,
                "rationale": rationale(rng, listing, sub),
            }
            for rank, listing in enumerate(picks, start=1)
        ]
    }


def _listing(seed_key: str) -> Listing | None:
    return universe().listing(seed_key.partition(":")[0]) if seed_key.strip() else None


def _verdict(prompt: str, seed_key: str, rng: random.Random) -> dict[str, Any]:
    ticker, _, attempt = seed_key.partition(":")
    rejected = offline_rejections_enabled() and offline_should_reject(ticker, int(attempt or 1))
    listing = _listing(seed_key)
    name = listing.name if listing is not None else ticker or "the company"
    metrics = listing.sub_sector.metrics if listing is not None else METRICS
    risks = listing.sub_sector.risks if listing is not None else RISKS
    if rejected:
        return {
            "approved": False,
            "score": rng.randint(3, 5),
            "reasons": [
                f"The valuation section on {name} does not support its conclusion on "
                f"{rng.choice(metrics)}.",
                f"Risks such as {rng.choice(risks)} are mentioned but not weighed.",
            ],
        }
    return {
        "approved": True,
        "score": rng.randint(7, 9),
        "reasons": [f"Clear, specific treatment of {rng.choice(metrics)} at {name} and its risks."],
    }


def _pick(rng: random.Random, own: tuple[str, ...], generic: tuple[str, ...], n: int) -> list[str]:
    # the sub-sector's own words first, topped up with generic ones
    chosen = rng.sample(own, min(n, len(own)))
    rest = [g for g in generic if g not in chosen]
    return chosen + rng.sample(rest, n - len(chosen))


def _insights(prompt: str, seed_key: str, rng: random.Random) -> dict[str, Any]:
    listing = _listing(seed_key)
    # the analysis being formatted ends with its rating: the insights keep it
    verdict = conclusion_of(prompt) or rng.choice(("buy", "buy", "hold", "sell"))
    if listing is None:
        return {
            "thesis": sentence(rng, seed_key or None),
            "catalysts": rng.sample(CATALYSTS, 3),
            "risks": rng.sample(RISKS, 3),
            "valuation": f"Trades at a premium on {rng.choice(METRICS)}, justified by growth.",
            "verdict": verdict,
            "confidence": round(rng.uniform(0.45, 0.9), 2),
        }
    sub = listing.sub_sector
    return {
        "thesis": f"{listing.name} ({listing.ticker}) offers exposure to {sub.name} through "
        f"{rng.choice(sub.drivers)}. {company_sentence(rng, listing)}",
        "catalysts": [c[:1].upper() + c[1:] for c in _pick(rng, sub.drivers, CATALYSTS, 3)],
        "risks": [r[:1].upper() + r[1:] for r in _pick(rng, sub.risks, RISKS, 3)],
        "valuation": f"Trades at {rng.choice(('a premium', 'a discount'))} to {sub.name} peers "
        f"on {rng.choice(listing.sector.valuation)}, explained by {rng.choice(sub.metrics)}.",
        "verdict": verdict,
        "confidence": round(rng.uniform(0.45, 0.9), 2),
    }


_registered = False


def register_offline_fixtures(*, force: bool = False) -> None:
    """Teach the offline model the pipeline's four answer schemas (once per process, so a
    test's own fixture stays in place until it registers these again with `force`)."""
    global _registered
    if _registered and not force:
        return
    _registered = True
    register_fixture(SubSectorList, _sub_sectors)
    register_fixture(StockRanking, _ranking)
    register_fixture(Verdict, _verdict)
    register_fixture(Insights, _insights)
