"""A small bank of plausible finance words for the offline model's generated text.

Nothing here is real market data; it only has to read naturally in demos and tests.
"""

from __future__ import annotations

import random
import re

__all__ = [
    "CATALYSTS",
    "COMPANIES",
    "METRICS",
    "RISKS",
    "SECTORS",
    "company_for",
    "phrase",
    "sentence",
    "tickers_in",
]

SECTORS: tuple[str, ...] = (
    "Information Technology",
    "Health Care",
    "Financials",
    "Consumer Discretionary",
    "Communication Services",
    "Industrials",
    "Consumer Staples",
    "Energy",
    "Utilities",
    "Real Estate",
    "Materials",
)

# (ticker, company, sector)
COMPANIES: tuple[tuple[str, str, str], ...] = (
    ("NVDA", "NVIDIA Corporation", "Information Technology"),
    ("MSFT", "Microsoft Corporation", "Information Technology"),
    ("AAPL", "Apple Inc.", "Information Technology"),
    ("AVGO", "Broadcom Inc.", "Information Technology"),
    ("CRM", "Salesforce, Inc.", "Information Technology"),
    ("AMD", "Advanced Micro Devices, Inc.", "Information Technology"),
    ("LLY", "Eli Lilly and Company", "Health Care"),
    ("UNH", "UnitedHealth Group Incorporated", "Health Care"),
    ("JNJ", "Johnson & Johnson", "Health Care"),
    ("ISRG", "Intuitive Surgical, Inc.", "Health Care"),
    ("JPM", "JPMorgan Chase & Co.", "Financials"),
    ("V", "Visa Inc.", "Financials"),
    ("GS", "The Goldman Sachs Group, Inc.", "Financials"),
    ("SPGI", "S&P Global Inc.", "Financials"),
    ("AMZN", "Amazon.com, Inc.", "Consumer Discretionary"),
    ("TSLA", "Tesla, Inc.", "Consumer Discretionary"),
    ("HD", "The Home Depot, Inc.", "Consumer Discretionary"),
    ("BKNG", "Booking Holdings Inc.", "Consumer Discretionary"),
    ("GOOGL", "Alphabet Inc.", "Communication Services"),
    ("META", "Meta Platforms, Inc.", "Communication Services"),
    ("NFLX", "Netflix, Inc.", "Communication Services"),
    ("CAT", "Caterpillar Inc.", "Industrials"),
    ("GE", "GE Aerospace", "Industrials"),
    ("UNP", "Union Pacific Corporation", "Industrials"),
    ("PG", "The Procter & Gamble Company", "Consumer Staples"),
    ("COST", "Costco Wholesale Corporation", "Consumer Staples"),
    ("KO", "The Coca-Cola Company", "Consumer Staples"),
    ("XOM", "Exxon Mobil Corporation", "Energy"),
    ("CVX", "Chevron Corporation", "Energy"),
    ("SLB", "SLB N.V.", "Energy"),
    ("NEE", "NextEra Energy, Inc.", "Utilities"),
    ("DUK", "Duke Energy Corporation", "Utilities"),
    ("PLD", "Prologis, Inc.", "Real Estate"),
    ("EQIX", "Equinix, Inc.", "Real Estate"),
    ("LIN", "Linde plc", "Materials"),
    ("FCX", "Freeport-McMoRan Inc.", "Materials"),
)

METRICS: tuple[str, ...] = (
    "free cash flow",
    "gross margin",
    "operating leverage",
    "return on invested capital",
    "net revenue retention",
    "forward P/E",
    "EV/EBITDA",
    "earnings revisions",
    "backlog growth",
    "capex intensity",
    "same-store sales",
    "net interest margin",
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

_OPENERS: tuple[str, ...] = (
    "Management guided to",
    "The street underestimates",
    "Recent filings point to",
    "Channel checks suggest",
    "Consensus now expects",
    "The latest quarter showed",
)

_TAILS: tuple[str, ...] = (
    "over the next four quarters",
    "into fiscal year-end",
    "relative to the peer group",
    "despite a softer macro backdrop",
    "as the cycle matures",
    "on a trailing-twelve-month basis",
)

_STOP_TICKERS = frozenset(
    {"A", "I", "AI", "API", "CEO", "CFO", "EPS", "ETF", "GDP", "JSON", "USD", "US", "PE", "TTM"}
)


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
            f"{rng.choice(_OPENERS)} improving {rng.choice(METRICS)} at {who} {rng.choice(_TAILS)}."
        )
    if kind == 1:
        return f"The main upside driver for {who} is {rng.choice(CATALYSTS)}."
    if kind == 2:
        return f"Key risks for {who} include {rng.choice(RISKS)} and {rng.choice(RISKS)}."
    return (
        f"{who} screens well on {rng.choice(METRICS)}, "
        f"although {rng.choice(RISKS)} could weigh on returns {rng.choice(_TAILS)}."
    )


def company_for(ticker: str) -> tuple[str, str]:
    """Look up a ticker in the word bank.

    Args:
        ticker: A ticker such as "NVDA".

    Returns:
        (company name, sector); an unknown ticker gets a made-up, stable pair.
    """
    for symbol, name, sector in COMPANIES:
        if symbol == ticker:
            return name, sector
    rng = random.Random(ticker)
    return f"{ticker.title()} Holdings", rng.choice(SECTORS)


def tickers_in(text: str) -> list[str]:
    """Find the tickers a prompt mentions.

    Args:
        text: Any text.

    Returns:
        `ticker: XYZ` mentions and known tickers, deduplicated, in order of appearance.
    """
    known = {c[0] for c in COMPANIES}
    found: list[str] = []
    for match in re.finditer(r"\b(?i:ticker|symbol)s?\W{1,3}([A-Z][A-Z.]{0,5})\b", text):
        token = match.group(1).upper()
        if token not in _STOP_TICKERS and token not in found:
            found.append(token)
    for token in re.findall(r"\b[A-Z]{1,5}\b", text):
        if token in known and token not in _STOP_TICKERS and token not in found:
            found.append(token)
    return found
