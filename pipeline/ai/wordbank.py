"""A small bank of plausible finance words for the offline model's generated text.

Sectors and companies come from the shipped universe (`pipeline.ai.universe`: real tickers and
names, no prices); the generic metrics, catalysts and risks here only have to read naturally.
"""

from __future__ import annotations

import random
import re

from pipeline.ai.universe import universe

__all__ = [
    "CATALYSTS",
    "COMPANIES",
    "METRICS",
    "OPENERS",
    "RISKS",
    "SECTORS",
    "TAILS",
    "company_for",
    "phrase",
    "sentence",
    "tickers_in",
]

SECTORS: tuple[str, ...] = tuple(s.name for s in universe().sectors)

# (ticker, company, sector) of every company of the universe
COMPANIES: tuple[tuple[str, str, str], ...] = tuple(
    (listing.ticker, listing.name, listing.sector.name) for listing in universe().listings
)

# generic: a sub-sector's own metrics (in the universe) are used where the company is known
METRICS: tuple[str, ...] = (
    "free cash flow",
    "gross margin",
    "operating leverage",
    "return on invested capital",
    "forward P/E",
    "EV/EBITDA",
    "earnings revisions",
    "capital intensity",
    "balance-sheet strength",
    "pricing power",
)

CATALYSTS: tuple[str, ...] = (
    "an upcoming product cycle",
    "margin expansion from pricing power",
    "accelerating data-center demand",
    "a share buyback programme",
    "easing input costs",
    "new regulatory approvals",
    "market-share gains from weaker rivals",
    "a recovery in order intake",
    "operating-expense discipline",
    "rising recurring revenue",
)

RISKS: tuple[str, ...] = (
    "customer concentration",
    "a stretched valuation",
    "regulatory scrutiny",
    "cyclical demand",
    "supply-chain disruption",
    "foreign-exchange headwinds",
    "rising competition",
    "execution risk on new launches",
    "higher-for-longer interest rates",
    "inventory normalisation",
)

OPENERS: tuple[str, ...] = (
    "Management guided to",
    "The street underestimates",
    "Recent filings point to",
    "Channel checks suggest",
    "Consensus now expects",
    "The latest quarter showed",
)

TAILS: tuple[str, ...] = (
    "over the next four quarters",
    "into fiscal year-end",
    "relative to the peer group",
    "despite a softer macro backdrop",
    "as the cycle matures",
    "on a trailing-twelve-month basis",
)

# Capitalised words of prompts and prose that are not tickers even where a ticker matches
_STOP_TICKERS = frozenset(
    {"A", "I", "AI", "API", "CEO", "CFO", "EPS", "ETF", "GDP", "JSON", "USD", "US", "PE", "TTM",
     "IPO", "FDA", "EV", "OK", "CMS"}
)  # fmt: skip


def phrase(rng: random.Random) -> str:
    """A short finance phrase such as "gross margin and a stretched valuation".

    Args:
        rng: The seeded random source.

    Returns:
        The phrase, lower case.
    """
    return f"{rng.choice(METRICS)} and {rng.choice(RISKS + CATALYSTS)}"


def sentence(rng: random.Random, subject: str | None = None) -> str:
    """One plausible analyst sentence.

    Args:
        rng: The seeded random source.
        subject: The company the sentence is about (a random one when None).

    Returns:
        The sentence, ending with a full stop.
    """
    who = subject or rng.choice(COMPANIES)[1]
    kind = rng.randrange(4)
    if kind == 0:
        return (
            f"{rng.choice(OPENERS)} improving {rng.choice(METRICS)} at {who} {rng.choice(TAILS)}."
        )
    if kind == 1:
        return f"The main upside driver for {who} is {rng.choice(CATALYSTS)}."
    if kind == 2:
        return f"Key risks for {who} include {rng.choice(RISKS)} and {rng.choice(RISKS)}."
    return (
        f"{who} screens well on {rng.choice(METRICS)}, "
        f"although {rng.choice(RISKS)} could weigh on returns {rng.choice(TAILS)}."
    )


def company_for(ticker: str) -> tuple[str, str]:
    """Look up a ticker in the universe.

    Args:
        ticker: A ticker such as "NVDA".

    Returns:
        (company name, sector); an unknown ticker gets a made-up, stable pair.
    """
    listing = universe().listing(ticker)
    if listing is not None:
        return listing.name, listing.sector.name
    rng = random.Random(ticker)
    return f"{ticker.title()} Holdings", rng.choice(SECTORS)


def tickers_in(text: str) -> list[str]:
    """Find the tickers a prompt mentions.

    Args:
        text: Any text.

    Returns:
        Known tickers in parentheses ("Apple Inc. (AAPL)") first, then `ticker: XYZ`
        mentions, then known tickers standing alone, deduplicated, each group in order of
        appearance. A capitalised word joined by "&" is not a ticker ("PG&E", "R&D", "S&P").
    """
    u = universe()
    found: list[str] = []
    for match in re.finditer(r"\(([A-Z][A-Z0-9.\-]{0,9})\)", text):
        token = match.group(1)
        if u.listing(token) is not None and token not in found:
            found.append(token)
    for match in re.finditer(r"\b(?i:ticker|symbol)s?\W{1,3}([A-Z][A-Z.]{0,5})\b", text):
        token = match.group(1).upper()
        if token not in _STOP_TICKERS and token not in found:
            found.append(token)
    for token in re.findall(r"(?<![&\w])[A-Z]{1,5}(?:\.[A-Z])?(?![&\w])", text):
        if u.listing(token) is not None and token not in _STOP_TICKERS and token not in found:
            found.append(token)
    return found
