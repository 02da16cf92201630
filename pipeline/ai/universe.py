"""The offline model's universe: sectors -> sub-sectors -> real companies.

The data ships with the package as `pipeline/data/universe.json`: the 11 GICS sectors, each
split into sub-sectors named as analysts name them (with the words analysts use for them:
metrics, drivers, risks), each holding real large US-listed companies (ticker and name) from
the S&P 500. It holds no prices and is not investment data: it lets the offline model pick
companies of the sector asked for.

    u = universe()
    match = u.resolve("Tech")            # Match(sector=Information Technology, how="alias")
    u.listing("NVDA").sub_sector.name    # "Semiconductors"

A sector name is resolved case-insensitively, through its aliases ("Technology", "Banks",
"Healthcare", ...), through a sub-sector's name or aliases ("Chips" -> Semiconductors), and
last through the words of the query ("Cloud computing" -> Cloud & Infrastructure Software).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "Company",
    "Listing",
    "Match",
    "Sector",
    "SubSector",
    "Universe",
    "UniverseError",
    "load_universe",
    "normalize",
    "universe",
]

MIN_SECTOR_COMPANIES = 10
MIN_SUB_SECTOR_COMPANIES = 3
MIN_SUB_SECTORS = 3

# Words that say nothing about which sector is meant ("the Technology sector", "energy stocks").
_FILLER = frozenset(
    {"the", "sector", "sectors", "stock", "stocks", "industry", "industries", "company",
     "companies", "space", "names", "equities", "theme", "themes"}
)  # fmt: skip
# ... and words too generic to tell one sub-sector from another ("Space exploration" is not E&P)
_STOP = _FILLER | {
    "and", "of", "for", "in", "on", "an", "us", "global", "with", "to", "new", "other", "general",
    "group", "market", "markets", "service", "services", "equipment", "product", "products",
    "production", "exploration", "management",
}  # fmt: skip


def normalize(text: str) -> str:
    """Fold a name for matching: lower case, `&` as "and", punctuation as spaces.

    Args:
        text: A sector, sub-sector or alias name as a user or the data spells it.

    Returns:
        The folded form, e.g. "Oil & Gas" and "oil and gas" both give "oil and gas".
    """
    folded = re.sub(r"[^a-z0-9]+", " ", text.lower().replace("&", " and "))
    return " ".join(folded.split())


def _words(text: str) -> set[str]:
    # a light singular form, so "Bank" finds "Banks" and "Renewable" finds "Renewables"
    return {
        w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w
        for w in normalize(text).split()
        if w not in _STOP and len(w) > 1
    }


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _texts(values: tuple[str, ...]) -> tuple[str, ...]:
    if any(not value.strip() for value in values):
        raise ValueError("names and phrases must not be blank")
    return values


class Company(_Frozen):
    """A listed company: its ticker (as `RankedStock` accepts it) and its name."""

    ticker: str = Field(pattern=r"^[A-Z][A-Z0-9.\-]{0,9}$")
    name: str = Field(min_length=1, max_length=200)


class SubSector(_Frozen):
    """A sub-sector, with the words analysts use about it and its companies, largest first."""

    name: str = Field(min_length=2, max_length=120)
    aliases: tuple[str, ...] = ()
    metrics: tuple[str, ...] = Field(min_length=1)
    drivers: tuple[str, ...] = Field(min_length=2)
    risks: tuple[str, ...] = Field(min_length=2)
    companies: tuple[Company, ...] = Field(min_length=MIN_SUB_SECTOR_COMPANIES)

    @field_validator("name", "aliases", "metrics", "drivers", "risks")
    @classmethod
    def _not_blank(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        _texts((value,) if isinstance(value, str) else value)
        return value

    @model_validator(mode="after")
    def _distinct_tickers(self) -> SubSector:
        tickers = [c.ticker for c in self.companies]
        if len(set(tickers)) != len(tickers):
            raise ValueError(f"sub-sector {self.name!r} lists a ticker twice")
        return self


class Sector(_Frozen):
    """A GICS sector, the tickers of its bellwethers and its sub-sectors."""

    name: str = Field(min_length=2, max_length=120)
    aliases: tuple[str, ...] = ()
    metrics: tuple[str, ...] = Field(min_length=1)
    valuation: tuple[str, ...] = Field(min_length=1)
    bellwethers: tuple[str, ...] = Field(min_length=1)
    sub_sectors: tuple[SubSector, ...] = Field(min_length=MIN_SUB_SECTORS)

    @field_validator("name", "aliases", "metrics", "valuation")
    @classmethod
    def _not_blank(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        _texts((value,) if isinstance(value, str) else value)
        return value

    @property
    def companies(self) -> tuple[Company, ...]:
        """Every company of the sector, sub-sector by sub-sector."""
        return tuple(c for s in self.sub_sectors for c in s.companies)

    @model_validator(mode="after")
    def _enough_companies(self) -> Sector:
        tickers = {c.ticker for c in self.companies}
        if len(tickers) < MIN_SECTOR_COMPANIES:
            raise ValueError(
                f"sector {self.name!r} has {len(tickers)} companies; "
                f"at least {MIN_SECTOR_COMPANIES}"
            )
        strangers = [t for t in self.bellwethers if t not in tickers]
        if strangers:
            raise ValueError(f"sector {self.name!r} bellwethers {strangers} are not its companies")
        return self


class _File(_Frozen):
    about: str
    as_of: str
    sectors: tuple[Sector, ...] = Field(min_length=1)


@dataclass(frozen=True)
class Listing:
    """A company where the universe files it."""

    company: Company
    sub_sector: SubSector
    sector: Sector

    @property
    def ticker(self) -> str:
        """The company's ticker."""
        return self.company.ticker

    @property
    def name(self) -> str:
        """The company's name."""
        return self.company.name


@dataclass(frozen=True)
class Match:
    """How a query was read.

    Attributes:
        query: The text asked for.
        sector: The sector it resolved to.
        sub_sector: The sub-sector it named, if it named one (its aliases and words count).
        how: "sector" (the sector's name), "alias" (one of the sector's aliases),
            "sub_sector" (a sub-sector's name or alias) or "keyword" (words in common).
    """

    query: str
    sector: Sector
    sub_sector: SubSector | None
    how: Literal["sector", "alias", "sub_sector", "keyword"]


class UniverseError(ValueError):
    """The universe data is malformed (the message names the file and the bad entry)."""


class Universe:
    """Sectors, sub-sectors and companies, indexed by name, alias and ticker.

    Args:
        sectors: The sectors, in the data's order.

    Raises:
        UniverseError: A ticker is listed twice, or two names/aliases fold to the same key.
    """

    def __init__(self, sectors: tuple[Sector, ...]) -> None:
        self.sectors = sectors
        self._names: dict[str, tuple[Sector, SubSector | None, bool]] = {}
        self._listings: dict[str, Listing] = {}
        self._by_sub: dict[str, tuple[Listing, ...]] = {}
        for sector in sectors:
            self._index(sector.name, sector, None, False)
            for alias in sector.aliases:
                self._index(alias, sector, None, True)
            for sub in sector.sub_sectors:
                self._index(sub.name, sector, sub, False)
                for alias in sub.aliases:
                    self._index(alias, sector, sub, True)
                for company in sub.companies:
                    if company.ticker in self._listings:
                        raise UniverseError(f"ticker {company.ticker!r} is listed twice")
                    self._listings[company.ticker] = Listing(company, sub, sector)
                self._by_sub[sub.name] = tuple(self._listings[c.ticker] for c in sub.companies)
        self._keywords = [
            (sector, sub, _words(" ".join((sub.name, *sub.aliases))))
            for sector in sectors
            for sub in sector.sub_sectors
        ] + [(sector, None, _words(" ".join((sector.name, *sector.aliases)))) for sector in sectors]

    def _index(self, name: str, sector: Sector, sub: SubSector | None, alias: bool) -> None:
        key = normalize(name)
        if not key or key in self._names:
            raise UniverseError(f"name or alias {name!r} is blank or used twice")
        self._names[key] = (sector, sub, alias)

    def __repr__(self) -> str:
        return f"<Universe {len(self.sectors)} sectors, {len(self._listings)} companies>"

    @property
    def listings(self) -> tuple[Listing, ...]:
        """Every company with its sub-sector and sector, in the data's order."""
        return tuple(self._listings.values())

    def listing(self, ticker: str) -> Listing | None:
        """Find a company by ticker.

        Args:
            ticker: A ticker such as "NVDA" (case-insensitive).

        Returns:
            The listing, or None when the universe does not hold it.
        """
        return self._listings.get(ticker.strip().upper())

    def listings_of(self, sub: SubSector) -> tuple[Listing, ...]:
        """The companies of a sub-sector, largest first, with where they are filed.

        Args:
            sub: A sub-sector of this universe.

        Returns:
            Its listings.

        Raises:
            KeyError: The sub-sector is not part of this universe.
        """
        return self._by_sub[sub.name]

    def sector(self, name: str) -> Sector | None:
        """Find a sector by name or alias (case-insensitive), e.g. "Tech".

        Args:
            name: The sector's name or one of its aliases.

        Returns:
            The sector, or None.
        """
        found = self._names.get(normalize(name))
        return found[0] if found is not None and found[1] is None else None

    def sub_sector(self, name: str) -> SubSector | None:
        """Find a sub-sector by name or alias (case-insensitive), e.g. "Chips".

        Args:
            name: The sub-sector's name or one of its aliases.

        Returns:
            The sub-sector, or None.
        """
        found = self._names.get(normalize(name))
        return found[1] if found is not None else None

    def sector_of(self, sub: SubSector) -> Sector:
        """The sector a sub-sector belongs to.

        Args:
            sub: A sub-sector of this universe.

        Returns:
            Its sector.

        Raises:
            KeyError: The sub-sector is not part of this universe.
        """
        for sector in self.sectors:
            if sub in sector.sub_sectors:
                return sector
        raise KeyError(sub.name)

    def resolve(self, query: str) -> Match | None:
        """Read what a user asked for as a sector, a sub-sector or their closest match.

        "the Technology sector", "tech stocks" and "TECH" all resolve to Information Technology.

        Args:
            query: Free text, usually a sector name.

        Returns:
            The match, or None when no name, alias or word matches.
        """
        words = normalize(query).split()
        while len(words) > 1 and words[-1] in _FILLER:
            words.pop()
        while len(words) > 1 and words[0] in _FILLER:
            words.pop(0)
        found = self._names.get(" ".join(words))
        if found is not None:
            sector, sub, alias = found
            how: Literal["sector", "alias", "sub_sector"] = (
                "sub_sector" if sub is not None else "alias" if alias else "sector"
            )
            return Match(query, sector, sub, how)
        wanted = _words(query)
        best: tuple[int, Sector, SubSector | None] | None = None
        for sector, sub, known in self._keywords:
            score = len(wanted & known)
            if score and (best is None or score > best[0]):
                best = (score, sector, sub)
        if best is None:
            return None
        return Match(query, best[1], best[2], "keyword")

    def sectors_in(self, text: str) -> list[Sector]:
        """The sectors a text names: a sector's name anywhere, or an alias said to be a sector
        ("the Technology sector", "Sector: Tech"); aliases alone are too common words.

        Args:
            text: Any text, e.g. a prompt.

        Returns:
            The sectors, in the universe's order.
        """
        found: list[Sector] = []
        for sector in self.sectors:
            names = "|".join(re.escape(n) for n in (sector.name, *sector.aliases))
            if re.search(rf"\b{re.escape(sector.name)}\b", text, re.I) or re.search(
                rf"\b(?:{names})\s+sectors?\b|\bsector:\s*(?:{names})\b", text, re.I
            ):
                found.append(sector)
        return found

    def sub_sectors_in(self, text: str) -> list[SubSector]:
        """The sub-sectors a text names by their exact names (case-insensitive).

        Args:
            text: Any text, e.g. a prompt.

        Returns:
            The sub-sectors, longest name first (so a longer name wins over one it contains).
        """
        subs = sorted(
            (s for sector in self.sectors for s in sector.sub_sectors),
            key=lambda s: -len(s.name),
        )
        return [s for s in subs if re.search(rf"(?<!\w){re.escape(s.name)}(?!\w)", text, re.I)]


def load_universe(path: str | Path | None = None) -> Universe:
    """Load and check a universe file.

    Args:
        path: A JSON file of the shipped file's shape; default the one shipped with the
            package (`pipeline/data/universe.json`, read with `importlib.resources`).

    Returns:
        The universe.

    Raises:
        UniverseError: The file is not JSON, or breaks a rule (each sector has at least 3
            sub-sectors and 10 companies, each sub-sector at least 3 companies and no ticker
            twice, tickers unique across the universe, names and aliases unique).
    """
    where = str(path) if path is not None else "pipeline/data/universe.json"
    if path is None:
        text = resources.files("pipeline").joinpath("data/universe.json").read_text("utf-8")
    else:
        text = Path(path).read_text("utf-8")
    try:
        data = _File.model_validate(json.loads(text))
        return Universe(data.sectors)
    except (ValueError, ValidationError) as exc:
        raise UniverseError(f"{where}: {exc}") from None


@cache
def universe() -> Universe:
    """The universe shipped with the package, loaded once per process.

    Returns:
        The shared `Universe`.
    """
    return load_universe()
