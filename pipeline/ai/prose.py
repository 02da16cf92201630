"""The offline model's prose: sector research, company analyses, sub-sector theses and ranking
rationales, all about real sub-sectors and companies of the universe (`pipeline.ai.universe`).

Everything is a function of its inputs and the seeded `random.Random` it is given, so the same
call always reads the same. Which sub-sectors a sector's research recommends depends only on
the sector (and a sub-sector asked for by name), so the research text and the structured list
of sub-sectors drawn from it agree.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

import pipeline.ai.wordbank as wb
from pipeline.ai.universe import Listing, Match, Sector, SubSector, normalize, universe

__all__ = [
    "MIX_SECTORS",
    "ResearchPlan",
    "analysis_text",
    "company_sentence",
    "conclusion_of",
    "ranking_picks",
    "rationale",
    "research_plan",
    "research_query",
    "research_text",
    "sub_sector_idea",
]

MIX_SECTORS = 4  # sectors a cross-sector mix draws one sub-sector from
_MAX_QUERY = 80  # characters of a user's query quoted back in the text
_VERDICTS = ("Buy", "Buy", "Hold", "Sell")


def _cap(text: str) -> str:
    # str.capitalize() would lower-case the rest ("AI" -> "Ai")
    return text[:1].upper() + text[1:]


def _stable_rng(*parts: str) -> random.Random:
    # as `offline_rng` (which this module cannot import: `pipeline.ai.offline` imports it),
    # for choices that must not depend on a call's own seed (research and list must agree)
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _named(listing: Listing) -> str:
    return f"{listing.name} ({listing.ticker})"


def _quoted(query: str) -> str:
    text = " ".join(query.split())
    return f"'{text[:_MAX_QUERY]}'" if text else "The request"


@dataclass(frozen=True)
class ResearchPlan:
    """What a sector research covers.

    Attributes:
        query: The sector as asked for.
        match: How the universe read it (None: nothing matched, a cross-sector mix).
        sector: The sector covered, or None for a cross-sector mix.
        sub_sectors: The 3-6 sub-sectors the research recommends.
        note: A sentence saying how the query was read ("" when it named a sector exactly).
    """

    query: str
    match: Match | None
    sector: Sector | None
    sub_sectors: tuple[SubSector, ...]
    note: str


def _note(match: Match) -> str:
    q, sector, sub = _quoted(match.query), match.sector.name, match.sub_sector
    if match.how == "alias":
        return f"{q} is read as the {sector} sector."
    if match.how == "sub_sector" and sub is not None:
        said = sub.name if normalize(match.query) == normalize(sub.name) else f"{q} ({sub.name})"
        return (
            f"{said} is a sub-sector of {sector}, so this research covers {sector} and puts "
            f"{sub.name} first."
        )
    if match.how == "keyword":
        closest = f"{sub.name} ({sector})" if sub is not None else f"the {sector} sector"
        return (
            f"{q} is not one of the {len(universe().sectors)} GICS sectors; its closest match "
            "in the offline "
            f"universe is {closest}, so this research covers {sector}."
        )
    return ""


def research_plan(query: str) -> ResearchPlan:
    """Decide what the research on `query` covers.

    A sector (by name or alias) gets 3-6 of its sub-sectors; a sub-sector asked for by name
    comes first among its sector's; a query that matches nothing gets one sub-sector from
    each of `MIX_SECTORS` sectors, and the note says so.

    Args:
        query: The sector as asked for (free text).

    Returns:
        The plan; the same query always gives the same plan.
    """
    match = universe().resolve(query) if query.strip() else None
    if match is None:
        rng = _stable_rng("mix", normalize(query))
        sectors = rng.sample(universe().sectors, MIX_SECTORS)
        subs = tuple(rng.choice(s.sub_sectors) for s in sectors)
        note = (
            f"{_quoted(query)} is not one of the {len(universe().sectors)} GICS sectors the "
            "offline model covers, "
            "nor close to one of their sub-sectors, so this research covers a cross-sector "
            "mix instead."
        )
        return ResearchPlan(query, None, None, subs, note)
    sector, focus = match.sector, match.sub_sector
    rng = _stable_rng("plan", sector.name, focus.name if focus else "")
    count = rng.randint(3, min(6, len(sector.sub_sectors)))
    others = [s for s in sector.sub_sectors if s != focus]
    lead = [focus] if focus is not None else []
    chosen = (*lead, *rng.sample(others, count - len(lead)))
    return ResearchPlan(query, match, sector, chosen, _note(match))


def research_query(prompt: str, seed_key: str = "") -> str:
    """The sector a research-stage call is about.

    The stages seed research calls with the sector's name; a prompt says "the X sector" or
    "Sector: X". The first of these the universe can read wins; else the seed key or the
    prompt's words are returned as they are (research on them is a cross-sector mix); a prompt
    without them falls back on the sectors it names, then on its tickers' sectors.

    Args:
        prompt: The call's prompt.
        seed_key: The call's seed key.

    Returns:
        The query, possibly "".
    """
    # the nearest "the" before "sector": "the research below on the Crypto sector" -> "Crypto"
    found = re.search(r"\b[Tt]he ((?:(?!\b[Tt]he\b)[^.\n]){1,80}?) sector\b", prompt) or re.search(
        r"\bSector:\s*([^.\n]{1,80})", prompt
    )
    said = found.group(1).strip() if found else ""
    u = universe()
    seed = seed_key.strip()
    for candidate in (seed, said):
        if candidate and u.resolve(candidate) is not None:
            return candidate
    if said:
        return said
    named = [s.name for s in u.sectors_in(prompt)]
    named += [listing.sector.name for t in wb.tickers_in(prompt) if (listing := u.listing(t))]
    return named[0] if named else seed


def company_sentence(rng: random.Random, listing: Listing, kind: int | None = None) -> str:
    """One analyst sentence about a company, in its sub-sector's terms.

    Args:
        rng: The seeded random source.
        listing: The company.
        kind: Which of the four sentence shapes (0-3); a random one when None.

    Returns:
        The sentence, ending with a full stop.
    """
    sub, name = listing.sub_sector, listing.name
    kind = rng.randrange(4) if kind is None else kind % 4
    if kind == 0:
        return (
            f"{rng.choice(wb.OPENERS)} improving {rng.choice(sub.metrics)} at {name} "
            f"{rng.choice(wb.TAILS)}."
        )
    if kind == 1:
        return f"The main upside driver for {name} is {rng.choice(sub.drivers)}."
    if kind == 2:
        first, second = rng.sample(sub.risks, 2)
        return f"Key risks for {name} include {first} and {second}."
    return (
        f"{name} screens well on {rng.choice(sub.metrics)}, although {rng.choice(sub.risks)} "
        f"could weigh on returns {rng.choice(wb.TAILS)}."
    )


def sub_sector_idea(rng: random.Random, sub: SubSector, plan: ResearchPlan) -> dict[str, str]:
    """A recommended sub-sector as `SubSectorIdea` fields: its name, a thesis naming its
    leaders, and why now.

    Args:
        rng: The seeded random source.
        sub: The sub-sector.
        plan: The research it comes from (a cross-sector mix says so in the thesis).

    Returns:
        `{"name", "thesis", "why_now"}`.
    """
    u = universe()
    leaders = [_named(u.listings_of(sub)[i]) for i in range(min(3, len(sub.companies)))]
    first, second = rng.sample(sub.drivers, 2)
    thesis = (
        f"{sub.name} gives exposure to {first}, led by {_and(leaders)}. We favour names with "
        f"improving {rng.choice(sub.metrics)}."
    )
    if plan.sector is None:
        thesis += f" Part of a cross-sector mix from {u.sector_of(sub).name}: {plan.note}"
    elif plan.match is not None and plan.match.how == "keyword":
        thesis += f" {plan.note}"
    why_now = rng.choice(
        (
            f"The market underestimates {second}, while it already prices in "
            f"{rng.choice(sub.risks)}.",
            f"We expect {second} to lift {rng.choice(sub.metrics)} over the next 12-24 months; "
            f"the main debate is {rng.choice(sub.risks)}.",
        )
    )
    return {"name": sub.name, "thesis": thesis, "why_now": why_now}


def ranking_picks(
    rng: random.Random, prompt: str, seed_key: str
) -> tuple[list[Listing], SubSector | None, Sector | None]:
    """The ten companies a ranking of a sub-sector picks, best first.

    The sub-sector is the seed key read by the universe (the ranking stage seeds with the
    sub-sector's name; aliases and words count: "Chips" is Semiconductors), else the first
    sub-sector the prompt names, else the seed key's or the prompt's sector. Its own companies
    come first, then other companies of its sector while fewer than ten (larger names tend to
    rank higher); with neither, the largest company of ten sub-sectors across the universe.

    Args:
        rng: The seeded random source.
        prompt: The ranking prompt.
        seed_key: The call's seed key.

    Returns:
        (ten listings, the sub-sector or None, the sector or None).
    """
    u = universe()
    match = u.resolve(seed_key) if seed_key.strip() else None
    sub = match.sub_sector if match is not None else None
    sector = match.sector if match is not None else None
    if sub is None:
        named = u.sub_sectors_in(prompt)
        if named:
            sub = named[0]
            sector = u.sector_of(sub)
    if sector is None:
        sectors = u.sectors_in(prompt)
        sector = sectors[0] if sectors else None
    if sector is None:
        leaders = [u.listings_of(s)[0] for s in (x for t in u.sectors for x in t.sub_sectors)]
        return rng.sample(leaders, 10), None, None
    own = _shuffled(rng, [u.listings_of(sub)] if sub is not None else [])
    rest = _shuffled(rng, [u.listings_of(s) for s in sector.sub_sectors if s != sub])
    return (own + rest)[:10], sub, sector


def _shuffled(rng: random.Random, groups: list[tuple[Listing, ...]]) -> list[Listing]:
    # Seeded, but a sub-sector's larger names (listed first) tend to rank higher, as an
    # analyst's list would: each keeps its place in the data plus a random 0-4 places.
    keyed = [(i + rng.uniform(0, 4), x) for group in groups for i, x in enumerate(group)]
    return [x for _, x in sorted(keyed, key=lambda pair: pair[0])]


def rationale(rng: random.Random, listing: Listing, target: SubSector | None) -> str:
    """Why a company was ranked for `target` (a company of another sub-sector says so).

    Args:
        rng: The seeded random source.
        listing: The ranked company.
        target: The sub-sector being ranked; None for a sector-wide or cross-sector ranking.

    Returns:
        One or two sentences.
    """
    sub, name = listing.sub_sector, listing.name
    if target is not None and sub != target:
        return (
            f"{name} sits in {sub.name} rather than {target.name}, but gives related exposure "
            f"through {rng.choice(sub.drivers)}; the key risk is {rng.choice(sub.risks)}."
        )
    kind = rng.randrange(3)
    if kind == 0:
        return (
            f"{name} is a direct way to play {sub.name}: we expect {rng.choice(sub.drivers)} "
            f"to support {rng.choice(sub.metrics)}, although the key risk is "
            f"{rng.choice(sub.risks)}."
        )
    if kind == 1:
        return (
            f"{_named(listing)} stands out on {rng.choice(sub.metrics)} within {sub.name}, "
            f"helped by {rng.choice(sub.drivers)}."
        )
    return _two_sentences(rng, listing)


def _two_sentences(rng: random.Random, listing: Listing) -> str:
    first, second = rng.sample(range(4), 2)
    return f"{company_sentence(rng, listing, first)} {company_sentence(rng, listing, second)}"


def research_text(rng: random.Random, prompt: str, *, seed_key: str = "") -> str:
    """Multi-paragraph sector research naming the sector's sub-sectors and companies.

    Args:
        rng: The seeded random source.
        prompt: The request; the sector it names and any tickers it mentions steer the text.
        seed_key: The call's seed key (the stages pass the sector's name).

    Returns:
        Five or more paragraphs separated by blank lines.
    """
    u = universe()
    plan = research_plan(research_query(prompt, seed_key))
    subs = list(plan.sub_sectors)
    where = plan.sector.name if plan.sector is not None else "these sub-sectors"
    if plan.sector is not None:
        leaders = [_named(x) for t in plan.sector.bellwethers if (x := u.listing(t))]
        overview = (
            f"{plan.sector.name} overview. {plan.note} The sector spans "
            f"{len(plan.sector.sub_sectors)} sub-sectors in our coverage, from "
            f"{plan.sector.sub_sectors[0].name} to {plan.sector.sub_sectors[-1].name}, and its "
            f"bellwethers include {_and(leaders)}. Investors are focused on "
            f"{rng.choice(plan.sector.metrics)} and {rng.choice(subs[0].drivers)}."
        )
    else:
        spanned = _and([u.sector_of(s).name for s in subs])
        overview = f"Cross-sector overview. {plan.note} The mix spans {spanned}."
    paragraphs = [
        " ".join(overview.split()),
        "Key drivers. "
        + " ".join(f"In {s.name}, the main driver is {rng.choice(s.drivers)}." for s in subs[:3]),
        "Risks. "
        + " ".join(f"{s.name} faces {rng.choice(s.risks)}." for s in subs[:3])
        + f" Across {where}, the swing factor remains {rng.choice(wb.RISKS)}.",
        "Most attractive sub-sectors for a 12-24 month horizon. "
        + " ".join(
            f"{i}. {s.name}: {_cap(rng.choice(s.drivers))}, led by {_named(u.listings_of(s)[0])}."
            for i, s in enumerate(subs, start=1)
        ),
    ]
    mentioned = wb.tickers_in(prompt)
    for ticker in mentioned:
        known = u.listing(ticker)
        if known is not None:
            body = _two_sentences(rng, known)
            paragraphs.append(f"{_named(known)}. {body}")
        else:
            name = wb.company_for(ticker)[0]
            body = " ".join(wb.sentence(rng, name) for _ in range(2))
            paragraphs.append(f"{name} ({ticker}). {body}")
    for sub in subs[: rng.randint(1, 2)]:
        listing = u.listings_of(sub)[rng.randrange(min(3, len(sub.companies)))]
        if listing.ticker not in mentioned:
            paragraphs.append(f"{_named(listing)}. {_two_sentences(rng, listing)}")
    paragraphs.append(
        f"Outlook. We expect {rng.choice(subs[0].metrics)} to drive dispersion across {where} "
        f"{rng.choice(('over the next 12 months', 'through the next earnings season'))}; "
        f"names with {rng.choice(subs[-1].drivers)} look best placed."
    )
    return "\n\n".join(paragraphs)


def analysis_text(rng: random.Random, prompt: str, *, seed_key: str = "") -> str:
    """A deep analysis of one company: business, competitive position, financials,
    valuation, catalysts, risks and a conclusion that rates it Buy, Hold or Sell.

    The company is the prompt's first ticker (in parentheses first: "Apple Inc. (AAPL)"),
    else the seed key's ("AAPL:2"). A re-run's angle ("lead with the X view") opens it. An
    unknown ticker gets the same sections in generic words; no ticker at all gets research.

    Args:
        rng: The seeded random source.
        prompt: The analysis prompt.
        seed_key: The call's seed key (the stages pass "TICKER:attempt").

    Returns:
        Seven paragraphs separated by blank lines.
    """
    u = universe()
    tickers = wb.tickers_in(prompt)
    ticker = tickers[0] if tickers else seed_key.partition(":")[0].strip().upper()
    listing = u.listing(ticker) if ticker else None
    if listing is None and not re.fullmatch(r"[A-Z][A-Z0-9.\-]{0,9}", ticker):
        return research_text(rng, prompt, seed_key=seed_key)
    if listing is not None:
        sub = listing.sub_sector
        name, industry, sector = listing.name, sub.name, listing.sector.name
        metrics, drivers, risks = sub.metrics, sub.drivers, sub.risks
        valuation = listing.sector.valuation
        peers = [p.name for p in u.listings_of(sub) if p.ticker != ticker][:2]
    else:
        said = re.search(rf"analysis of (.{{1,200}}?) \({re.escape(ticker)}\)", prompt)
        name = said.group(1) if said else wb.company_for(ticker)[0]
        named = u.sub_sectors_in(prompt)
        industry = named[0].name if named else "its industry"
        sector = wb.company_for(ticker)[1]
        metrics, drivers, risks = wb.METRICS, wb.CATALYSTS, wb.RISKS
        valuation, peers = ("forward P/E", "EV/EBITDA"), []

    if listing is not None:
        position = _two_sentences(rng, listing)
    else:
        position = f"{wb.sentence(rng, name)} {wb.sentence(rng, name)}"

    angle = re.search(r"lead with the (.{1,100}?) view", prompt)
    opening = (
        f"This revision leads with the {angle.group(1)} view and answers the reviewer's points. "
        if angle
        else ""
    )
    alongside = f", alongside {_and(peers)}" if peers else ""
    first, second = rng.sample(list(metrics), 2) if len(metrics) > 1 else (metrics[0],) * 2
    upside, other = rng.sample(list(drivers), 2)
    risk, risk2 = rng.sample(list(risks), 2)
    verdict = rng.choice(_VERDICTS)
    why = {
        "Buy": f"the market is not yet pricing {upside}",
        "Hold": f"the upside from {upside} is balanced by {risk}",
        "Sell": f"the market underestimates {risk} at this valuation",
    }[verdict]
    premium = rng.choice(("a premium", "a discount", "a small premium"))
    return "\n\n".join(
        [
            f"Business. {opening}{name} ({ticker}) is one of the leading {industry} companies "
            f"in {sector}{alongside}. Its results turn on {first} and {second}.",
            f"Competitive position. {position}",
            f"Financials. {rng.choice(wb.OPENERS)} improving {first} at {name} "
            f"{rng.choice(wb.TAILS)}. {_cap(upside)} should support {second}.",
            f"Valuation. {name} trades at {premium} to {industry} peers on "
            f"{rng.choice(valuation)}, which "
            f"{rng.choice(('looks justified by', 'already prices in'))} {other}.",
            f"Catalysts. Over the next 12 months: {upside}; {other}.",
            f"Risks. {_cap(risk)} and {risk2} are the main risks, with "
            f"{rng.choice(wb.RISKS)} a further one.",
            f"Conclusion. We rate {name} ({ticker}) {verdict}: {why}.",
        ]
    )


def conclusion_of(text: str) -> str | None:
    """The rating an offline analysis concludes with.

    Args:
        text: An analysis written by `analysis_text` (or any text).

    Returns:
        "buy", "hold" or "sell", or None when the text has no such conclusion.
    """
    found = re.search(r"\bWe rate .{1,240}? \([A-Z][A-Z0-9.\-]{0,9}\) (Buy|Hold|Sell)\b", text)
    return found.group(1).lower() if found else None
