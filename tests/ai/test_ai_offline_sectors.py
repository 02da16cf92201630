"""The offline model answers about the sector asked for: its research, sub-sectors and rankings
name that sector's real sub-industries and companies, deterministically; an unknown sector still
gets a sensible answer that says what it is.

The calls carry the seed keys the stages give them (the sector's name for research, the
sub-sector's name for a ranking, "TICKER:attempt" for analyses and verdicts, the ticker for
insights); the prompts are shaped like the stages' but written here, so a change of wording in
`pipeline.prompts` does not change what these tests prove.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.ai import OfflineLLM, offline_should_reject
from pipeline.ai.universe import Sector, universe
from pipeline.models import Insights, StockRanking, SubSectorList, Verdict
from pipeline.offline_fixtures import register_offline_fixtures

ROOT = Path(__file__).resolve().parents[2]
# well-known companies of several sectors: a sector's answers name none of the others'
MARKERS = {
    "Information Technology": {"NVDA", "MSFT", "AAPL"},
    "Health Care": {"JNJ", "LLY", "UNH"},
    "Energy": {"CVX", "XOM", "COP"},
    "Consumer Staples": {"KO", "PG", "WMT"},
    "Financials": {"JPM", "V", "BRK.B"},
    "Utilities": {"NEE", "DUK", "SO"},
}


@pytest.fixture(autouse=True)
def pipeline_fixtures() -> None:
    # left registered afterwards, as a runtime would leave them
    register_offline_fixtures(force=True)


def _sector(name: str) -> Sector:
    found = universe().sector(name)
    assert found is not None
    return found


def _mentions(text: str, ticker: str) -> bool:
    return re.search(rf"(?<![\w.&]){re.escape(ticker)}(?![\w&])", text) is not None


async def research(llm: OfflineLLM, sector: str) -> tuple[str, SubSectorList]:
    prompt = f"Research the {sector} sector as of today. Identify the 3 to 8 best sub-sectors."
    text = (
        await llm.complete(
            tier="research", system="s", prompt=prompt, web_search=True, seed_key=sector
        )
    ).text
    subs, _ = await llm.structured(
        tier="research",
        system="s",
        prompt=f"From the research below on the {sector} sector, list the sub-sectors it "
        f"recommends.\n\n<research>\n{text}\n</research>",
        schema=SubSectorList,
        seed_key=sector,
    )
    return text, subs


async def rank(llm: OfflineLLM, sector: str, sub_sector: str, thesis: str = "") -> StockRanking:
    ranking, _ = await llm.structured(
        tier="ranking",
        system="s",
        prompt=f"Sector: {sector}. Approved sub-sector: {sub_sector}.\nThesis: {thesis}\n\n"
        "Rank the 10 most attractive listed stocks that give exposure to this sub-sector.",
        schema=StockRanking,
        seed_key=sub_sector,
    )
    return ranking


@pytest.mark.parametrize(
    ("asked", "sector"),
    [
        ("Technology", "Information Technology"),
        ("Health Care", "Health Care"),
        ("Energy", "Energy"),
        ("Banks", "Financials"),
    ],
)
async def test_research_sub_sectors_and_rankings_stay_in_the_sector(
    asked: str, sector: str
) -> None:
    llm = OfflineLLM()
    known = _sector(sector)
    own = {c.ticker for c in known.companies}
    others = set().union(*(m for s, m in MARKERS.items() if s != sector))
    text, subs = await research(llm, asked)

    assert sector in text.split("\n\n")[0]
    for ticker in known.bellwethers:  # e.g. NVDA, MSFT and AAPL for Technology
        assert _mentions(text, ticker), ticker
    for ticker in others:  # e.g. no JNJ, KO or CVX in Technology
        assert not _mentions(text, ticker), ticker
    names = [s.name for s in subs.sub_sectors]
    assert 3 <= len(names) <= 6 and len(set(names)) == len(names)
    # the sector's own sub-sectors, as named in the universe (not "Technology Data & Analytics")
    assert set(names) <= {s.name for s in known.sub_sectors}
    for name in names:  # the research recommends the sub-sectors the list then holds
        assert name in text

    for idea in subs.sub_sectors:
        ranking = await rank(llm, asked, idea.name, idea.thesis)
        tickers = [s.ticker for s in ranking.stocks]
        assert len(set(tickers)) == 10 and set(tickers) <= own, (idea.name, tickers)
        assert not set(tickers) & others
        sub = universe().sub_sector(idea.name)
        assert sub is not None
        in_sub = [c.ticker for c in sub.companies]
        # the approved sub-sector's companies first; its sector's others fill up to ten
        assert set(tickers[: min(10, len(in_sub))]) <= set(in_sub)
        for stock in ranking.stocks:
            listing = universe().listing(stock.ticker)
            assert listing is not None and stock.name == listing.name
            assert listing.name in stock.rationale or stock.ticker in stock.rationale


async def test_technology_names_semiconductors_once_and_ranks_chipmakers() -> None:
    llm = OfflineLLM()
    text, subs = await research(llm, "Semiconductors")
    names = [s.name for s in subs.sub_sectors]
    assert names[0] == "Semiconductors" and "Semiconductors Semiconductors" not in text
    assert "sub-sector of Information Technology" in text
    ranking = await rank(llm, "Semiconductors", "Semiconductors")
    semis = {c.ticker for c in universe().sub_sector("Semiconductors").companies}  # type: ignore[union-attr]
    assert {s.ticker for s in ranking.stocks} <= semis
    assert not {"NEE", "UNH", "CAT"} & {s.ticker for s in ranking.stocks}


async def test_a_small_sub_sector_is_topped_up_from_its_sector() -> None:
    cyber = universe().sub_sector("Cybersecurity")
    assert cyber is not None and len(cyber.companies) < 10
    ranking = await rank(OfflineLLM(), "Technology", "Cybersecurity")
    tickers = [s.ticker for s in ranking.stocks]
    n = len(cyber.companies)
    assert set(tickers[:n]) == {c.ticker for c in cyber.companies}
    it = {c.ticker for c in _sector("Information Technology").companies}
    assert set(tickers[n:]) <= it - set(tickers[:n])
    for stock in ranking.stocks[n:]:
        assert "rather than Cybersecurity" in stock.rationale


async def test_a_ranking_reads_an_alias_or_words_of_the_sub_sector() -> None:
    llm = OfflineLLM()
    semis = {c.ticker for c in universe().sub_sector("Semiconductors").companies}  # type: ignore[union-attr]
    chips = await rank(llm, "Tech", "Chips")  # as tests/pipeline name theirs
    assert {s.ticker for s in chips.stocks} <= semis
    # a name a real model could give: its words find the sub-sector
    cloud = await rank(llm, "Technology", "AI cloud infrastructure platforms")
    expected = {
        c.ticker for c in universe().sub_sector("Cloud & Infrastructure Software").companies
    }  # type: ignore[union-attr]
    assert {s.ticker for s in cloud.stocks[: len(expected)]} == expected


async def test_same_inputs_same_answers() -> None:
    first, second = OfflineLLM(), OfflineLLM()
    text_a, subs_a = await research(first, "Health Care")
    text_b, subs_b = await research(second, "Health Care")
    assert (text_a, subs_a) == (text_b, subs_b)
    idea = subs_a.sub_sectors[0]
    assert await rank(first, "Health Care", idea.name, idea.thesis) == await rank(
        second, "Health Care", idea.name, idea.thesis
    )
    # an alias reads as the sector: the same sub-sectors
    _, alias = await research(first, "healthcare")
    assert [s.name for s in alias.sub_sectors] == [s.name for s in subs_a.sub_sectors]
    # another sector differs
    _, energy = await research(first, "Energy")
    assert {s.name for s in energy.sub_sectors}.isdisjoint({s.name for s in subs_a.sub_sectors})


def test_answers_are_the_same_in_another_process() -> None:
    code = (
        "import asyncio, json, sys; sys.path.insert(0, 'tests/ai');"
        "from test_ai_offline_sectors import research, rank;"
        "from pipeline.ai import OfflineLLM;"
        "from pipeline.offline_fixtures import register_offline_fixtures;"
        "register_offline_fixtures();"
        "llm = OfflineLLM();"
        "text, subs = asyncio.run(research(llm, 'Technology'));"
        "r = asyncio.run(rank(llm, 'Technology', subs.sub_sectors[0].name));"
        "print(json.dumps([text, subs.model_dump(), r.model_dump()]))"
    )
    outputs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert run.returncode == 0, run.stderr
        outputs.add(run.stdout)
    assert len(outputs) == 1
    text, _, ranking = json.loads(outputs.pop())
    assert "Information Technology" in text and len(ranking["stocks"]) == 10


@pytest.mark.parametrize("asked", ["Crypto", "Space exploration", "!!"])
async def test_an_unknown_sector_gets_a_cross_sector_mix_that_says_so(asked: str) -> None:
    llm = OfflineLLM()
    text, subs = await research(llm, asked)
    assert "is not one of the 11 GICS sectors" in text and "cross-sector mix" in text
    u = universe()
    names = [s.name for s in subs.sub_sectors]
    found = [u.sub_sector(n) for n in names]
    assert all(found)
    assert len({u.sector_of(s).name for s in found if s}) == len(names) >= 3
    for idea in subs.sub_sectors:
        assert "cross-sector mix" in idea.thesis
        assert idea.name in text
    idea = subs.sub_sectors[0]
    ranking = await rank(llm, asked, idea.name, idea.thesis)
    sector = u.sector_of(found[0])  # type: ignore[arg-type]
    assert {s.ticker for s in ranking.stocks} <= {c.ticker for c in sector.companies}
    again = await research(OfflineLLM(), asked)
    assert again == (text, subs)


async def test_a_close_sector_name_says_what_it_was_read_as() -> None:
    text, subs = await research(OfflineLLM(), "Quantum computing")
    assert "closest match" in text and "Cloud & Infrastructure Software" in text
    assert {s.name for s in subs.sub_sectors} <= {
        s.name for s in _sector("Information Technology").sub_sectors
    }


async def test_a_ranking_with_no_sector_at_all_still_completes() -> None:
    ranking, _ = await OfflineLLM().structured(
        tier="ranking", system="s", prompt="Rank ten stocks.", schema=StockRanking
    )
    tickers = [s.ticker for s in ranking.stocks]
    assert len(set(tickers)) == 10 and all(universe().listing(t) for t in tickers)


async def test_analysis_verdict_and_insights_are_about_the_company() -> None:
    llm = OfflineLLM()
    prompt = (
        "Write a deep investment analysis of Johnson & Johnson (JNJ) as an exposure to "
        "Pharmaceuticals.\nSub-sector thesis: ...\nWhy it was ranked: ..."
    )
    analysis = await llm.complete(tier="analysis", system="s", prompt=prompt, seed_key="JNJ:1")
    text = analysis.text
    assert "Johnson & Johnson (JNJ)" in text and "Pharmaceuticals" in text
    sections = [p.split(".")[0] for p in text.split("\n\n")]
    assert sections == [
        "Business",
        "Competitive position",
        "Financials",
        "Valuation",
        "Catalysts",
        "Risks",
        "Conclusion",
    ]
    assert not any(_mentions(text, t) for t in ("NVDA", "KO", "CVX"))
    rerun = await llm.complete(
        tier="analysis",
        system="s",
        prompt=prompt + "\n\nThis is attempt 2. Take a different analytical angle this time: "
        "lead with the bear-case and risks view.",
        seed_key="JNJ:2",
    )
    assert rerun.text.startswith("Business. This revision leads with the bear-case and risks")

    verdict, _ = await llm.structured(
        tier="judge",
        system="s",
        prompt=f"Review this analysis of Johnson & Johnson (JNJ), attempt 1.\n\n{text}",
        schema=Verdict,
        seed_key="JNJ:1",
    )
    assert all("Johnson & Johnson" in r for r in verdict.reasons)
    assert verdict.approved is not offline_should_reject("JNJ", 1)

    insights, _ = await llm.structured(
        tier="format",
        system="s",
        prompt=f"Extract the investment insights from this approved analysis of Johnson & "
        f"Johnson (JNJ).\n\n<analysis>\n{text}\n</analysis>",
        schema=Insights,
        seed_key="JNJ",
    )
    assert "Johnson & Johnson (JNJ)" in insights.thesis
    rating = re.search(r"We rate Johnson & Johnson \(JNJ\) (Buy|Hold|Sell)", text)
    assert rating is not None and insights.verdict == rating.group(1).lower()


async def test_the_judge_still_rejects_a_third_of_first_analyses() -> None:
    llm = OfflineLLM()
    tickers = [listing.ticker for listing in universe().listings]
    verdicts = []
    for ticker in tickers:
        first, _ = await llm.structured(
            tier="judge", system="s", prompt="p", schema=Verdict, seed_key=f"{ticker}:1"
        )
        second, _ = await llm.structured(
            tier="judge", system="s", prompt="p", schema=Verdict, seed_key=f"{ticker}:2"
        )
        assert first.approved is not offline_should_reject(ticker, 1)
        assert second.approved
        verdicts.append(first.approved)
    assert 0.25 < verdicts.count(False) / len(verdicts) < 0.42
