"""The universe shipped with the package: it loads, it is well-formed, names resolve."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from pipeline.ai.universe import (
    Universe,
    UniverseError,
    load_universe,
    normalize,
    universe,
)
from pipeline.ai.wordbank import COMPANIES, SECTORS, company_for, tickers_in
from pipeline.models import RankedStock

ROOT = Path(__file__).resolve().parents[2]
GICS_SECTORS = [
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
]


def test_the_shipped_file_loads_through_importlib_resources() -> None:
    text = resources.files("pipeline").joinpath("data/universe.json").read_text("utf-8")
    data = json.loads(text)
    assert [s["name"] for s in data["sectors"]] == GICS_SECTORS
    u = universe()
    assert isinstance(u, Universe) and universe() is u  # loaded once per process
    assert [s.name for s in u.sectors] == GICS_SECTORS
    assert list(SECTORS) == GICS_SECTORS


def test_every_sector_has_sub_sectors_with_real_companies() -> None:
    u = universe()
    all_tickers: list[str] = []
    for sector in u.sectors:
        assert len(sector.sub_sectors) >= 3, sector.name
        tickers = [c.ticker for c in sector.companies]
        assert len(set(tickers)) >= 10, sector.name
        assert set(sector.bellwethers) <= set(tickers)
        for sub in sector.sub_sectors:
            names = [c.ticker for c in sub.companies]
            assert len(names) >= 3, sub.name
            assert len(set(names)) == len(names), f"duplicate ticker in {sub.name}"
            for company in sub.companies:
                assert company.name.strip() and company.ticker.strip()
                # a ranking of the offline model must validate with these tickers
                RankedStock(ticker=company.ticker, name=company.name, rank=1, rationale="x" * 10)
            assert sub.name.strip() and sub.metrics and len(sub.drivers) >= 2
            assert len(sub.risks) >= 2
        all_tickers += tickers
    assert len(all_tickers) == len(set(all_tickers)) == len(u.listings) >= 300
    assert {c[0] for c in COMPANIES} == set(all_tickers)


def test_sub_sector_names_read_like_an_analyst_wrote_them() -> None:
    names = [s.name for sector in universe().sectors for s in sector.sub_sectors]
    assert len(names) == len(set(names))
    for name in names:
        words = name.split()
        # "Semiconductors Semiconductors", "Technology Data & Analytics" and the like
        assert len(words) == len(set(words)), name
        assert name not in GICS_SECTORS
    assert {"Semiconductors", "Application Software", "Payments", "Managed Care"} <= set(names)


def test_well_known_companies_are_where_analysts_file_them() -> None:
    u = universe()
    expected = {
        "NVDA": ("Information Technology", "Semiconductors"),
        "MSFT": ("Information Technology", "Cloud & Infrastructure Software"),
        "AAPL": ("Information Technology", "Technology Hardware & Storage"),
        "JNJ": ("Health Care", "Pharmaceuticals"),
        "UNH": ("Health Care", "Managed Care"),
        "JPM": ("Financials", "Diversified Banks"),
        "V": ("Financials", "Payments"),
        "KO": ("Consumer Staples", "Non-Alcoholic Beverages"),
        "CVX": ("Energy", "Integrated & Large-Cap Oil"),
        "NEE": ("Utilities", "Power Producers & Renewables"),
        "CAT": ("Industrials", "Machinery"),
        "PLD": ("Real Estate", "Industrial & Self-Storage REITs"),
        "LIN": ("Materials", "Industrial Gases & Specialty Chemicals"),
        "GOOGL": ("Communication Services", "Internet Platforms & Advertising"),
        "AMZN": ("Consumer Discretionary", "E-Commerce & Online Travel"),
    }
    for ticker, (sector, sub) in expected.items():
        listing = u.listing(ticker)
        assert listing is not None, ticker
        assert (listing.sector.name, listing.sub_sector.name) == (sector, sub)
    assert u.listing("nvda") is not None and u.listing("ZZZZ") is None
    assert company_for("JNJ") == ("Johnson & Johnson", "Health Care")


@pytest.mark.parametrize(
    ("query", "sector", "how"),
    [
        ("Information Technology", "Information Technology", "sector"),
        ("information technology", "Information Technology", "sector"),
        ("Technology", "Information Technology", "alias"),
        ("TECH", "Information Technology", "alias"),
        ("the Technology sector", "Information Technology", "alias"),
        ("tech stocks", "Information Technology", "alias"),
        ("Healthcare", "Health Care", "alias"),
        ("  health   care ", "Health Care", "sector"),
        ("Banks", "Financials", "alias"),
        ("Finance", "Financials", "alias"),
        ("Financial Services", "Financials", "alias"),
        ("Oil and Gas", "Energy", "alias"),
        ("oil & gas", "Energy", "alias"),
        ("Energy", "Energy", "sector"),
        ("Telecom", "Communication Services", "alias"),
        ("Staples", "Consumer Staples", "alias"),
        ("Consumer Cyclical", "Consumer Discretionary", "alias"),
        ("REITs", "Real Estate", "alias"),
        ("Basic Materials", "Materials", "alias"),
        ("Utility", "Utilities", "alias"),
        ("Industrial", "Industrials", "alias"),
    ],
)
def test_sector_names_and_aliases_resolve(query: str, sector: str, how: str) -> None:
    match = universe().resolve(query)
    assert match is not None
    assert (match.sector.name, match.sub_sector, match.how) == (sector, None, how)
    assert universe().sector(
        query.replace("the ", "").replace(" sector", "").replace(" stocks", "")
    )


@pytest.mark.parametrize(
    ("query", "sector", "sub_sector", "how"),
    [
        ("Semiconductors", "Information Technology", "Semiconductors", "sub_sector"),
        ("chips", "Information Technology", "Semiconductors", "sub_sector"),
        ("Biotech", "Health Care", "Biotechnology", "sub_sector"),
        ("Renewable Energy", "Utilities", "Power Producers & Renewables", "sub_sector"),
        (
            "Cloud computing",
            "Information Technology",
            "Cloud & Infrastructure Software",
            "sub_sector",
        ),
        ("Regional bank stocks", "Financials", "Regional Banks", "keyword"),
        ("Cybersecurity software", "Information Technology", "Cybersecurity", "keyword"),
        ("Big pharma companies", "Health Care", "Pharmaceuticals", "sub_sector"),
    ],
)
def test_sub_sectors_and_close_words_resolve(
    query: str, sector: str, sub_sector: str, how: str
) -> None:
    match = universe().resolve(query)
    assert match is not None
    assert match.sub_sector is not None
    assert (match.sector.name, match.sub_sector.name, match.how) == (sector, sub_sector, how)
    assert universe().sector_of(match.sub_sector).name == sector


@pytest.mark.parametrize("query", ["Crypto", "Space exploration", "", "   ", "2", "???"])
def test_unknown_sectors_resolve_to_nothing(query: str) -> None:
    assert universe().resolve(query) is None
    assert universe().sector(query) is None


def test_normalize_folds_spelling() -> None:
    assert normalize("Oil & Gas") == normalize("oil and gas") == "oil and gas"
    assert normalize("  E-Commerce ") == "e commerce"


def test_sectors_and_sub_sectors_named_in_a_text() -> None:
    u = universe()
    text = "Sector: Tech. Approved sub-sector: Semiconductor Equipment. Pricing power matters."
    assert [s.name for s in u.sectors_in(text)] == ["Information Technology"]
    # an alias alone is too common a word to count ("power" is no Utilities sector)
    assert u.sectors_in("pricing power in the energy transition") == [
        s for s in u.sectors if s.name == "Energy"
    ]
    assert [s.name for s in u.sub_sectors_in(text)] == ["Semiconductor Equipment"]


def test_tickers_in_prefers_the_company_in_parentheses() -> None:
    prompt = "Write a deep investment analysis of PG&E Corporation (PCG) as an exposure to ..."
    assert tickers_in(prompt) == ["PCG"]  # not PG (Procter & Gamble) from "PG&E"
    assert tickers_in("R&D at S&P Global and AT&T") == []
    assert tickers_in("ticker: BRK.B and NVDA") == ["BRK.B", "NVDA"]
    assert tickers_in("AI and the US economy") == []


def _write(tmp_path: Path, mutate: Any) -> Path:
    data = json.loads(resources.files("pipeline").joinpath("data/universe.json").read_text())
    mutate(data)
    path = tmp_path / "universe.json"
    path.write_text(json.dumps(data))
    return path


def _first_sub(data: dict[str, Any]) -> dict[str, Any]:
    sub: dict[str, Any] = data["sectors"][0]["sub_sectors"][0]
    return sub


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: _first_sub(d)["companies"].append(dict(_first_sub(d)["companies"][0])),
            "lists a ticker twice",
        ),
        (
            lambda d: d["sectors"][1]["sub_sectors"][0]["companies"].append(
                {"ticker": "NVDA", "name": "NVIDIA again"}
            ),
            "'NVDA' is listed twice",
        ),
        (
            lambda d: _first_sub(d)["companies"].__setitem__(0, {"ticker": "nvda", "name": "x"}),
            "ticker",
        ),
        (
            lambda d: _first_sub(d)["companies"].__setitem__(0, {"ticker": "NVDA", "name": ""}),
            "name",
        ),
        (lambda d: _first_sub(d).__setitem__("name", "  "), "blank"),
        (lambda d: _first_sub(d)["aliases"].append("Tech"), "'Tech' is blank or used twice"),
        (
            lambda d: _first_sub(d).__setitem__("companies", _first_sub(d)["companies"][:2]),
            "companies",
        ),
        (
            lambda d: d["sectors"][0].__setitem__(
                "sub_sectors", d["sectors"][0]["sub_sectors"][:2]
            ),
            "sub_sectors",
        ),
        (lambda d: d["sectors"][0].__setitem__("bellwethers", ["JNJ"]), "bellwethers"),
    ],
)
def test_a_malformed_universe_is_refused_naming_the_problem(
    tmp_path: Path, mutate: Any, message: str
) -> None:
    path = _write(tmp_path, mutate)
    with pytest.raises(UniverseError, match=re.escape(str(path))) as info:
        load_universe(path)
    assert message in str(info.value)


def test_a_sector_with_too_few_companies_is_refused(tmp_path: Path) -> None:
    def shrink(data: dict[str, Any]) -> None:
        sector = data["sectors"][8]  # Utilities
        assert sector["name"] == "Utilities"
        for sub in sector["sub_sectors"]:
            sub["companies"] = sub["companies"][:3]
        sector["bellwethers"] = [sector["sub_sectors"][0]["companies"][0]["ticker"]]

    with pytest.raises(UniverseError, match="'Utilities' has 9 companies; at least 10"):
        load_universe(_write(tmp_path, shrink))


def test_not_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "universe.json"
    path.write_text("{nope")
    with pytest.raises(UniverseError, match=r"universe\.json"):
        load_universe(path)


def test_the_wheel_ships_the_universe(tmp_path: Path) -> None:
    """The build backend (hatchling, from the package index as for any install) puts the data
    file in the wheel, where `importlib.resources` finds it once installed."""
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    [wheel] = tmp_path.glob("jobqueue-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        shipped = json.loads(zf.read("pipeline/data/universe.json"))
    assert [s["name"] for s in shipped["sectors"]] == GICS_SECTORS
