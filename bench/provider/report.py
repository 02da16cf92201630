"""The table of the provider benchmark: what users pay for, for N configurations side by side.

Each configuration's run gives the simulator's `Stats` plus what the harness counted in
PostgreSQL (stocks failed, cost) and the wall time; `rows()` turns them into the table the
issue asks for, `render_markdown()` prints it.

Definitions:

- **tokens used per window / limit**: for each model and each *full* window after the first
  (window 0 starts with full buckets, so it can hold up to twice a minute's limit; a partial
  last window is left out), input tokens charged / ITPM and output tokens / OTPM; the cell is
  the mean over those windows. The headline takes, per model, the mean of each window's
  larger share (the binding bucket), and shows the busiest model: the one the run is bound by.
  Windows of an outage (any model answered 529 or dropped a connection in them) are left out
  too: the provider allowed nothing then, so no client could use its limits.
- **429s after the first window**: 429 answers in windows 1.. over every call to
  `POST /v1/messages` (a fast first window is expected from any client that starts cold).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ._stats import Stats, WindowStats

__all__ = ["GOALS", "Row", "RunResult", "model_shares", "render_markdown", "rows", "summary"]

GOALS = {
    "utilisation": 0.90,  # tokens used per window / limit, at least
    "late_429_share": 0.01,  # 429s after the first window / calls, below
    "stocks_failed": 0,  # at most
}
"""The issue's goals."""


@dataclass(frozen=True)
class RunResult:
    """One configuration's run.

    Attributes:
        name: The configuration's name (a column of the table).
        stats: The simulator's counters at the end of the run.
        stocks_failed: Analysed stocks that ended `failed` (None: not measured).
        stocks_total: Analysed stocks (the top N of every ranking).
        sectors_completed: Runs that ended `completed`.
        sectors_total: Runs started.
        wall_seconds: From the first run started to the last one finished.
        cost_usd: The sum of `llm_usage.cost_usd` (what the pipeline would have paid).
        extra: Anything else worth a row: label -> text.
    """

    name: str
    stats: Stats
    stocks_failed: int | None = None
    stocks_total: int | None = None
    sectors_completed: int | None = None
    sectors_total: int | None = None
    wall_seconds: float | None = None
    cost_usd: float | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Row:
    """One line of the table: a metric, its goal, one cell per configuration.

    Attributes:
        metric: What is measured.
        goal: The goal ("" when there is none).
        cells: One text per configuration, in order.
        met: Per configuration, whether the goal is met (None: no goal or not measured).
    """

    metric: str
    goal: str
    cells: list[str]
    met: list[bool | None]


def model_shares(stats: Stats) -> dict[str, dict[str, float | int]]:
    """Per model: mean share of each limit used per measured window.

    Args:
        stats: The simulator's counters.

    Returns:
        model -> {"input", "output", "requests", "binding": mean shares (0..), "windows": n};
        models with no measured window are left out.
    """
    out: dict[str, dict[str, float | int]] = {}
    outage = {
        w.index for m in stats.models.values() for w in m.windows if w.overloaded or w.dropped
    }
    for name, model in sorted(stats.models.items()):
        # full windows after the first, outside the outage; a window with no request counts
        # as unused
        measured = [i for i in range(1, stats.full_windows) if i not in outage]
        if not measured:
            continue
        lim = model.limits
        shares = []
        for i in measured:
            w = model.windows[i] if i < len(model.windows) else WindowStats(i)
            shares.append(
                (w.input_tokens / lim.itpm, w.output_tokens / lim.otpm, w.requests / lim.rpm)
            )
        out[name] = {
            "input": statistics.fmean(s[0] for s in shares),
            "output": statistics.fmean(s[1] for s in shares),
            "requests": statistics.fmean(s[2] for s in shares),
            "binding": statistics.fmean(max(s[0], s[1]) for s in shares),
            "windows": len(shares),
        }
    return out


def _late_429s(stats: Stats) -> int:
    return sum(w.rate_limited for m in stats.models.values() for w in m.windows if w.index >= 1)


def _pct(x: float) -> str:
    return f"{x * 100:.1f} %"


def summary(result: RunResult) -> dict[str, Any]:
    """The figures of one run as JSON-ready numbers (what the rows show).

    Args:
        result: One configuration's run.

    Returns:
        Name -> value.
    """
    stats = result.stats
    shares = model_shares(stats)
    late = _late_429s(stats)
    busiest = max(shares.items(), key=lambda kv: kv[1]["binding"], default=None)
    cached = sum(m.total("cache_read_tokens") for m in stats.models.values())
    charged = sum(m.total("input_tokens") for m in stats.models.values())
    return {
        "name": result.name,
        "utilisation": busiest[1]["binding"] if busiest else None,
        "utilisation_model": busiest[0] if busiest else None,
        "model_shares": shares,
        "calls": stats.calls,
        "late_429s": late,
        "late_429_share": late / stats.calls if stats.calls else None,
        "first_window_429s": stats.rate_limited - late,
        "overloaded": stats.overloaded,
        "dropped": stats.dropped,
        "never_fit": stats.never_fit,
        "cached_input_share": cached / (cached + charged) if cached + charged else None,
        "windows": stats.full_windows,
        "stocks_failed": result.stocks_failed,
        "stocks_total": result.stocks_total,
        "sectors_completed": result.sectors_completed,
        "sectors_total": result.sectors_total,
        "wall_seconds": result.wall_seconds,
        "cost_usd": result.cost_usd,
    }


def rows(results: Sequence[RunResult]) -> list[Row]:
    """The table's rows, one cell per configuration.

    Args:
        results: The runs, in the order of the columns.

    Returns:
        The rows: utilisation (busiest model, then every model), 429s after the first window,
        stocks failed, sectors completed, wall time, cost, and the other counts.
    """
    sums = [summary(r) for r in results]
    out: list[Row] = []

    def add(metric: str, goal: str, cells: list[str], met: list[bool | None] | None = None) -> None:
        out.append(Row(metric, goal, cells, met or [None] * len(cells)))

    add(
        "tokens used per window / limit (busiest model, binding bucket)",
        f">= {GOALS['utilisation'] * 100:.0f} %",
        [
            f"{_pct(s['utilisation'])} ({s['utilisation_model']})"
            if s["utilisation"] is not None
            else "-"
            for s in sums
        ],
        [
            s["utilisation"] >= GOALS["utilisation"] if s["utilisation"] is not None else None
            for s in sums
        ],
    )
    models = sorted({m for s in sums for m in s["model_shares"]})
    for model in models:
        cells = []
        for s in sums:
            sh = s["model_shares"].get(model)
            cells.append(
                f"in {_pct(sh['input'])}, out {_pct(sh['output'])}, req {_pct(sh['requests'])}"
                if sh
                else "-"
            )
        add(f"  {model}: used / ITPM, OTPM, RPM", "", cells)
    add(
        "429s after the first window / calls",
        f"< {GOALS['late_429_share'] * 100:.0f} %",
        [
            f"{s['late_429s']} of {s['calls']} ({_pct(s['late_429_share'])})"
            if s["late_429_share"] is not None
            else "-"
            for s in sums
        ],
        [
            s["late_429_share"] < GOALS["late_429_share"]
            if s["late_429_share"] is not None
            else None
            for s in sums
        ],
    )
    add("429s in the first window", "", [str(s["first_window_429s"]) for s in sums])
    add(
        "stocks failed",
        str(GOALS["stocks_failed"]),
        [
            f"{s['stocks_failed']} of {s['stocks_total']}"
            if s["stocks_failed"] is not None
            else "-"
            for s in sums
        ],
        [
            s["stocks_failed"] <= GOALS["stocks_failed"] if s["stocks_failed"] is not None else None
            for s in sums
        ],
    )
    add(
        "sectors completed",
        "",
        [
            f"{s['sectors_completed']} of {s['sectors_total']}"
            if s["sectors_completed"] is not None
            else "-"
            for s in sums
        ],
    )
    add(
        "wall time",
        "",
        [f"{s['wall_seconds']:.0f} s" if s["wall_seconds"] is not None else "-" for s in sums],
    )
    add("cost", "", [f"${s['cost_usd']:.2f}" if s["cost_usd"] is not None else "-" for s in sums])
    add(
        "529s / dropped connections (outage)",
        "",
        [f"{s['overloaded']} / {s['dropped']}" for s in sums],
    )
    add(
        "cached share of input tokens",
        "",
        [
            _pct(s["cached_input_share"]) if s["cached_input_share"] is not None else "-"
            for s in sums
        ],
    )
    add("scaled windows (full)", "", [str(s["windows"]) for s in sums])
    labels = sorted({k for r in results for k in r.extra})
    for label in labels:
        add(label, "", [r.extra.get(label, "-") for r in results])
    return out


def render_markdown(results: Sequence[RunResult]) -> str:
    """The table as Markdown: a metric column, a goal column, one column per configuration
    (a cell with a goal ends in "(met)" or "(MISSED)").

    Args:
        results: The runs, in the order of the columns.

    Returns:
        The table.
    """
    table = rows(results)
    header = ["metric", "goal", *(r.name for r in results)]
    body = []
    for row in table:
        cells = [
            c if ok is None else f"{c} ({'met' if ok else 'MISSED'})"
            for c, ok in zip(row.cells, row.met, strict=True)
        ]
        body.append([row.metric, row.goal, *cells])
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in body)])
