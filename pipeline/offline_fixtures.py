"""Domain answers of the offline model: plausible, varied and seeded, never real data."""

from __future__ import annotations

import random
from typing import Any

from pipeline.ai import offline_rejections_enabled, offline_should_reject, register_fixture
from pipeline.ai.wordbank import CATALYSTS, COMPANIES, METRICS, RISKS, sentence
from pipeline.models import Insights, StockRanking, SubSectorList, Verdict

__all__ = ["register_offline_fixtures"]

_THEMES = (
    "Infrastructure",
    "Software Platforms",
    "Semiconductors",
    "Services",
    "Automation",
    "Security",
    "Data & Analytics",
    "Consumer Devices",
    "Payments",
    "Connectivity",
)


def _sub_sectors(prompt: str, seed_key: str, rng: random.Random) -> dict[str, Any]:
    sector = seed_key or "the sector"
    count = rng.randint(3, 6)
    themes = rng.sample(_THEMES, count)
    return {
        "sub_sectors": [
            {
                "name": f"{sector} {theme}",
                "thesis": sentence(rng, f"{sector} {theme.lower()}"),
                "why_now": f"{rng.choice(CATALYSTS).capitalize()} meets {rng.choice(METRICS)}.",
            }
            for theme in themes
        ]
    }


def _ranking(prompt: str, seed_key: str, rng: random.Random) -> dict[str, Any]:
    picks = rng.sample(COMPANIES, 10)
    return {
        "stocks": [
            {
                "ticker": ticker,
                "name": name,
                "rank": rank,
                "rationale": sentence(rng, name),
            }
            for rank, (ticker, name, _) in enumerate(picks, start=1)
        ]
    }


def _verdict(prompt: str, seed_key: str, rng: random.Random) -> dict[str, Any]:
    ticker, _, attempt = seed_key.partition(":")
    rejected = offline_rejections_enabled() and offline_should_reject(ticker, int(attempt or 1))
    if rejected:
        return {
            "approved": False,
            "score": rng.randint(3, 5),
            "reasons": [
                f"The valuation section does not support its conclusion on {rng.choice(METRICS)}.",
                f"Risks such as {rng.choice(RISKS)} are mentioned but not weighed.",
            ],
        }
    return {
        "approved": True,
        "score": rng.randint(7, 9),
        "reasons": [f"Clear, specific treatment of {rng.choice(METRICS)} and risks."],
    }


def _insights(prompt: str, seed_key: str, rng: random.Random) -> dict[str, Any]:
    return {
        "thesis": sentence(rng, seed_key or None),
        "catalysts": rng.sample(CATALYSTS, 3),
        "risks": rng.sample(RISKS, 3),
        "valuation": f"Trades at a premium on {rng.choice(METRICS)}, justified by growth.",
        "verdict": rng.choice(("buy", "buy", "hold", "sell")),
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
