"""The short chaos suite (the long one: `make chaos`): several worker processes under load
while a fault strikes again and again; no job may be lost, none may run twice without a
recorded lease loss, and no status may be wrong (docs/reliability.md has the long figures).
"""

from __future__ import annotations

import pytest
from faults import plans, status_mirror
from harness import Plan, run_plan

PLANS = {p.name: p for p in plans(long=False)}


@pytest.mark.parametrize("name", list(PLANS))
async def test_chaos_scenario(name: str) -> None:
    plan: Plan = PLANS[name]
    if plan.skip:
        pytest.skip(plan.skip)
    result = await run_plan(plan, mirror=status_mirror if plan.postgres else None)
    summary = f"{result}"
    assert result.added == plan.jobs, summary
    assert result.lost == 0, summary
    assert result.unexplained_twice == 0, summary
    assert result.status_wrong == 0, summary
    assert result.completed == plan.jobs, summary  # none fails: handlers never raise
    assert result.faults == plan.faults, summary
    if plan.delayed_share:
        assert "early starts 0" in result.notes, summary
    if plan.rate:
        note = next(n for n in result.notes if n.startswith("max starts in 1 s"))
        starts = int(note.split()[5])
        # a full token bucket lets one burst (its capacity) through on top of the rate; the
        # ledger's times are the handlers' starts, a few ms after the takes: some slack
        assert starts <= 2.1 * plan.rate, summary
    if plan.add_rate:
        assert result.refused > 0, summary  # the adds met the out-of-memory spells
        full = next(n for n in result.notes if n.startswith("completed while Redis was full"))
        assert int(full.split()[-1]) > 0, summary  # and finishing went on meanwhile
