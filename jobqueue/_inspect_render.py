"""Rendering of `python -m jobqueue.inspect`: plain text always, rich tables when available."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

__all__ = [
    "LIMITER_COLUMNS",
    "QUEUE_COLUMNS",
    "format_failed",
    "format_job",
    "format_overview",
    "format_schedules",
    "limiter_rows",
    "queue_cells",
    "rich_overview",
    "worker_cells",
]

QUEUE_COLUMNS = (
    "QUEUE",
    "STATE",
    "WAITING",
    "ACTIVE",
    "DELAYED",
    "COMPLETED",
    "FAILED",
    "PAUSED",
    "WAITING-CHILDREN",
    "CONCURRENCY",
    "RATE LIMIT",
    "WORKERS",
)
LIMITER_COLUMNS = ("LIMITER", "QUEUES", "BUCKETS (tokens/capacity)", "HOLD", "BREAKER")
WORKER_COLUMNS = (
    "WORKER", "QUEUES", "PID", "RUNNING", "COMPLETED", "FAILED", "LAST BEAT", "STATE",
)  # fmt: skip


def _ago(iso: str | None) -> str:
    if not iso:
        return "-"
    seconds = time.time() - datetime.fromisoformat(iso).timestamp()
    return f"{max(0.0, seconds):.1f}s ago"


def _rate(rate: Mapping[str, Any] | None) -> str:
    if not rate:
        return "-"
    text = f"{rate['tokens']:.1f}/{rate['max']} per {rate['per']:g}s"
    if rate.get("limited_ms"):
        text += f" (held {rate['limited_ms'] / 1000:.1f}s)"
    return text


def queue_cells(q: Mapping[str, Any]) -> list[str]:
    """The cells of one queue's row (see `QUEUE_COLUMNS`)."""
    c = q["counts"]
    conc = q["concurrency"]
    cap = conc["cap"] if conc["cap"] is not None else "-"
    return [
        q["name"],
        "paused" if q["paused"] else "running",
        str(c["waiting"]),
        str(c["active"]),
        str(c["delayed"]),
        str(c["completed"]),
        str(c["failed"]),
        str(c["paused"]),
        str(c.get("waiting-children", 0)),
        f"{conc['active']}/{cap}",
        _rate(q["rate_limit"]),
        str(len(q["workers"])),
    ]


def _amount(value: float | None) -> str:
    if value is None:
        return "?"
    if abs(value) >= 10_000:
        return f"{value / 1000:.0f}k"
    return f"{value:.0f}" if float(value).is_integer() or abs(value) >= 10 else f"{value:.1f}"


def limiter_rows(queues: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """One row per shared limiter of the queues (see `LIMITER_COLUMNS`). A limiter is its name
    in its hash slot: the same name in two slots is two budgets, shown `name {slot}`."""
    by_name: dict[tuple[str, str], tuple[Mapping[str, Any], list[str]]] = {}
    for q in queues:
        lim = q.get("limiter")
        if lim:
            slot = q.get("slot") or lim["name"]
            by_name.setdefault((lim["name"], slot), (lim, []))[1].append(q["name"])
    rows = []
    for (lim_name, slot), (lim, names) in sorted(by_name.items()):
        name = lim_name if slot == lim_name else f"{lim_name} {{{slot}}}"
        buckets = ", ".join(
            f"{b['name']} {_amount(b['tokens'])}/{_amount(b['capacity'])}" for b in lim["buckets"]
        )
        hold = f"{lim['hold_ms'] / 1000:.1f}s" if lim["hold_ms"] else "-"
        brk = lim["breaker"]
        breaker = "-"
        if brk:
            breaker = brk["state"]
            if brk["until"]:
                breaker += f" until {brk['until'][11:19]}"
            breaker += f" ({brk['openings']} opening(s))"
        rows.append([name, ",".join(names), buckets or "-", hold, breaker])
    return rows


def worker_cells(w: Mapping[str, Any]) -> list[str]:
    """The cells of one worker's row."""
    return [
        w["name"],
        ",".join(w["queues"]),
        str(w["pid"]),
        f"{w['running']}/{w['concurrency']}",
        str(w["completed"]),
        str(w["failed"]),
        _ago(w["last_heartbeat"]),
        # a worker whose loops meet errors (Redis away, OOM, READONLY...) says so
        f"degraded since {_ago(w.get('degraded_since'))}: {w['degraded']}"
        if w.get("degraded")
        else "ok",
    ]


def _grid(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in [header, *rows]
    ]


def format_overview(overview: Mapping[str, Any]) -> str:
    """The overview as plain text: one table of queues, one of workers."""
    queues = overview["queues"]
    lines = [f"redis {overview['redis']}  prefix {overview['prefix']!r}"]
    if not queues:
        lines.append("no queues found")
        return "\n".join(lines)
    lines += _grid(QUEUE_COLUMNS, [queue_cells(q) for q in queues])
    limiters = limiter_rows(queues)
    if limiters:
        lines.append("")
        lines += _grid(LIMITER_COLUMNS, limiters)
    workers = [w for q in queues for w in q["workers"]]
    lines.append("")
    if workers:
        lines += _grid(WORKER_COLUMNS, [worker_cells(w) for w in workers])
    else:
        lines.append("no live workers")
    return "\n".join(lines)


def rich_overview(overview: Mapping[str, Any]) -> Any:
    """The overview as a rich renderable (rich must be importable)."""
    from rich.console import Group
    from rich.table import Table

    title = f"jobqueue  {overview['redis']}  prefix {overview['prefix']!r}"
    queues = Table(title=title, title_justify="left")
    for i, col in enumerate(QUEUE_COLUMNS):
        queues.add_column(col, justify="left" if i < 2 or i > 8 else "right")
    for q in overview["queues"]:
        cells = queue_cells(q)
        if q["paused"]:
            cells[1] = f"[yellow]{cells[1]}[/]"
        if q["counts"]["failed"]:
            cells[6] = f"[red]{cells[6]}[/]"
        if not q["workers"]:
            cells[10] = f"[red]{cells[10]}[/]"
        queues.add_row(*cells)
    parts: list[Any] = [queues]
    limiters = limiter_rows(overview["queues"])
    if limiters:
        table = Table(title="shared limiters", title_justify="left")
        for col in LIMITER_COLUMNS:
            table.add_column(col)
        for row in limiters:
            if row[4].startswith("open"):
                row[4] = f"[red]{row[4]}[/]"
            table.add_row(*row)
        parts.append(table)
    workers = Table(title="workers", title_justify="left")
    for col in WORKER_COLUMNS:
        workers.add_column(col)
    for q in overview["queues"]:
        for w in q["workers"]:
            workers.add_row(*worker_cells(w))
    return Group(*parts, workers)


def format_job(job: Mapping[str, Any]) -> str:
    """One job, as `key: value` lines followed by its log."""
    keys = (
        "queue",
        "id",
        "name",
        "state",
        "attempts",
        "progress",
        "priority",
        "error_type",
        "error_message",
        "result",
        "data",
        "parent",
        "children_pending",
        "created_at",
        "started_at",
        "finished_at",
    )
    lines = []
    for key in keys:
        value = job.get(key)
        if value is not None:
            lines.append(f"{key + ':':15} {value}")
    logs = job.get("log") or []
    lines.append(f"log ({len(logs)} line(s)):" if logs else "log: (empty)")
    lines += [f"  {line}" for line in logs]
    return "\n".join(lines)


def format_failed(jobs: Sequence[Mapping[str, Any]]) -> str:
    """Recent failures, newest first: one line each."""
    if not jobs:
        return "no failed jobs"
    rows = [
        [
            j["id"],
            j["name"],
            j["error_type"] or "-",
            str(j["attempts_made"]),
            j["finished_at"] or "-",
            (j["error_message"] or "").replace("\n", " ")[:120],
        ]
        for j in jobs
    ]
    return "\n".join(_grid(("ID", "NAME", "ERROR TYPE", "ATTEMPTS", "FAILED AT", "ERROR"), rows))


def format_schedules(schedules: Sequence[Mapping[str, Any]]) -> str:
    """Schedulers, one line each: queue, id, schedule, job name, next and last run (UTC)."""
    if not schedules:
        return "no schedules"

    def when(iso: str | None) -> str:
        return iso[:19].replace("T", " ") if iso else "-"

    rows = [
        [
            s["queue"],
            s["id"],
            f"every {s['every']:g}s" if s["every"] is not None else f"{s['cron']} ({s['tz']})",
            s["name"],
            when(s["next_run"]),
            when(s["last_run"]),
        ]
        for s in schedules
    ]
    header = ("QUEUE", "ID", "SCHEDULE", "JOB", "NEXT RUN (UTC)", "LAST RUN (UTC)")
    return "\n".join(_grid(header, rows))
