"""`python -m pipeline.overhead` on a real run: every hand-over of the pipeline's flows is
found in the event streams and measured (the numbers themselves are never asserted)."""

from __future__ import annotations

import pytest
from pipeline_helpers import HANG, fast_settings

from pipeline.overhead import main, measure

pytestmark = pytest.mark.integration


async def test_every_handover_of_a_run_is_measured(
    redis_url: str, database_url: str, prefix: str
) -> None:
    settings = fast_settings(redis_url, database_url, prefix)
    report = await measure(settings, runs=1, timeout=HANG)
    for name in ("fan-out", "analysis -> judge", "judge -> format", "fan-in"):
        values = report.handovers[name]
        assert values and min(values) >= 0, (name, values)
    assert len(report.handovers["fan-out"]) == settings.stocks_to_analyze
    assert len(report.runs) == 1 and report.runs[0] > 0
    table = report.lines()
    assert table[0].startswith("| hand-over |") and len(table) >= 6


def test_a_bad_run_count_is_refused() -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--runs", "0"])
    assert exit_.value.code == 2
