"""Medians, per-round ratios, the printed tables and the targets."""

from __future__ import annotations

import statistics
from typing import Any

from .scenarios import SCENARIOS

__all__ = ["LABELS", "TARGETS", "render", "summarize"]

LABELS = {
    "jobqueue": "jobqueue",
    "jqredispy": "jobqueue via redis-py",
    "jqnoevents": "jobqueue, no events",
    "node": "BullMQ node",
    "arq": "arq (poll 10ms)",
    "saq": "saq",
    "bullmq": "bullmq-py",
    "rq": "rq (Simple)",
}
PY_PEERS = ("arq", "saq", "bullmq", "rq")

# (label, scenario, metric, peer or "best-py" or None for an absolute bound, op, bound): the
# second round's targets (issue 21), ratios to node BullMQ in the same run
TARGETS: list[tuple[str, str, str, str | None, str, float]] = [
    ("drain c50 >= 1.5x BullMQ node", "drain_c50", "rate", "node", ">=", 1.5),
    ("drain c10 >= 1.2x BullMQ node", "drain_c10", "rate", "node", ">=", 1.2),
    ("drain c50 >= 5x best Python peer", "drain_c50", "rate", "best-py", ">=", 5.0),
    ("enqueue one by one >= 1.2x BullMQ node", "enqueue", "rate", "node", ">=", 1.2),
    ("bulk enqueue >= 2x BullMQ node", "bulk", "rate", "node", ">=", 2.0),
    ("latency p50 <= 0.6x BullMQ node", "latency", "p50", "node", "<=", 0.6),
    ("latency p99 <= 0.5x BullMQ node", "latency", "p99", "node", "<=", 0.5),
    ("memory per waiting job <= 400 B", "memory", "bytes", None, "<=", 400.0),
    ("2 processes / 1 process >= 1.8", "scaling", "ratio", None, ">=", 1.8),
]


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Medians per scenario/peer/metric, and medians of per-round ratios jobqueue / peer."""
    medians: dict[str, dict[str, dict[str, float]]] = {}
    ratios: dict[str, dict[str, dict[str, float]]] = {}
    for name, by_peer in runs.items():
        medians[name] = {}
        for peer, rounds in by_peer.items():
            ok = [r for r in rounds if r and "error" not in r]
            keys = {k for r in ok for k, v in r.items() if isinstance(v, int | float)}
            medians[name][peer] = {
                k: m
                for k in sorted(keys)
                if (m := _median([r[k] for r in ok if k in r])) is not None
            }
        ours = by_peer.get("jobqueue", [])
        ratios[name] = {}
        for peer, rounds in by_peer.items():
            if peer == "jobqueue":
                continue
            per_metric: dict[str, float] = {}
            for metric in ("rate", "p50", "p99", "bytes"):
                vals = [
                    a[metric] / b[metric]
                    for a, b in zip(ours, rounds, strict=False)
                    if a and b and metric in a and metric in b and b[metric]
                ]
                if vals:
                    per_metric[metric] = statistics.median(vals)
            ratios[name][peer] = per_metric
    # a second process: per-round drain_2x10 / drain_c10 of the same peer
    scaling: dict[str, float] = {}
    one, two = runs.get("drain_c10", {}), runs.get("drain_2x10", {})
    for peer in one:
        vals = [
            b["rate"] / a["rate"]
            for a, b in zip(one[peer], two.get(peer, []), strict=False)
            if a and b and "rate" in a and "rate" in b
        ]
        if vals:
            scaling[peer] = statistics.median(vals)
    return {"medians": medians, "ratios": ratios, "scaling": scaling}


def _fmt(value: float | None, metric: str) -> str:
    if value is None:
        return "-"
    if metric in ("rate", "bytes"):
        return f"{value:,.0f}"
    if metric in ("p50", "p95", "p99"):
        return f"{value:.2f}"
    return f"{value:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    return "\n".join([line, sep, *body])


def check_targets(summary: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """Each target with the measured value (as text) and whether it is met."""
    out: list[tuple[str, str, bool | None]] = []
    med, rat = summary["medians"], summary["ratios"]
    for label, name, metric, peer, op, bound in TARGETS:
        value: float | None = None
        if name == "scaling":
            value = summary["scaling"].get("jobqueue")
        elif peer is None:
            value = med.get(name, {}).get("jobqueue", {}).get(metric)
        elif peer == "best-py":
            cands = [rat.get(name, {}).get(p, {}).get(metric) for p in PY_PEERS]
            vals = [v for v in cands if v is not None]
            value = min(vals) if vals else None
        else:
            value = rat.get(name, {}).get(peer, {}).get(metric)
        if value is None:
            out.append((label, "not measured", None))
            continue
        ok = value >= bound if op == ">=" else value <= bound if op == "<=" else value > bound
        shown = f"{value:.2f}x" if peer or name == "scaling" else f"{value:.2f}"
        out.append((label, shown, ok))
    return out


def render(summary: dict[str, Any], peers: list[str]) -> str:
    """The printed report: medians, ratios, Redis cost per job, targets."""
    med, rat = summary["medians"], summary["ratios"]
    parts: list[str] = []
    header = ["scenario", *(LABELS.get(p, p) for p in peers)]
    rows = []
    for name, sc in SCENARIOS.items():
        if name not in med:
            continue
        cells = [_fmt(med[name].get(p, {}).get(sc.metric), sc.metric) for p in peers]
        rows.append([sc.title, *cells])
        if name == "latency":
            for q in ("p95", "p99"):
                title = f"latency at 200 jobs/s, {q} (ms)"
                rows.append([title, *(_fmt(med[name].get(p, {}).get(q), q) for p in peers)])
        if name.startswith("drain") or name in ("enqueue", "bulk", "memory"):
            sizes = [med[name].get(p, {}).get("n") for p in peers]
            rows.append(["  N", *(f"{s:,.0f}" if s else "-" for s in sizes)])
    if summary["scaling"]:
        rows.append(
            [
                "2 processes / 1 process (x)",
                *(_fmt(summary["scaling"].get(p), "x") for p in peers),
            ]
        )
    parts.append("Medians over rounds\n\n" + _table(header, rows))

    others = [p for p in peers if p != "jobqueue"]
    if others:
        rows = []
        for name, sc in SCENARIOS.items():
            if name not in rat:
                continue
            metrics = ["p50", "p99"] if name == "latency" else [sc.metric]
            for metric in metrics:
                title = sc.title if metric == sc.metric else sc.title.replace("p50", metric)
                cells = [rat[name].get(p, {}).get(metric) for p in others]
                rows.append([title, *(f"{v:.2f}x" if v is not None else "-" for v in cells)])
        parts.append(
            "jobqueue / peer, median of per-round ratios (throughput: higher is better; "
            "latency and memory: lower is better)\n\n"
            + _table(["scenario", *(LABELS.get(p, p) for p in others)], rows)
        )

    rows = []
    for name in ("drain_c10", "drain_c50", "enqueue", "bulk"):
        if name not in med:
            continue
        for key, title in (
            ("commands_per_job", "Redis commands"),
            ("reads_per_job", "Redis read events (~round trips)"),
            ("redis_cpu_us_per_job", "Redis CPU us"),
            ("worker_cpu_us_per_job", "worker CPU us"),
            ("client_cpu_us_per_job", "client CPU us"),
        ):
            cells = [med[name].get(p, {}).get(key) for p in peers]
            if any(c is not None for c in cells):
                rows.append(
                    [f"{name}: {title}", *(f"{c:.2f}" if c is not None else "-" for c in cells)]
                )
    if rows:
        parts.append("Cost per job (medians)\n\n" + _table(header, rows))

    rows = [
        [label, shown, {True: "yes", False: "NO", None: "-"}[ok]]
        for label, shown, ok in check_targets(summary)
    ]
    parts.append("Targets\n\n" + _table(["target", "measured", "met"], rows))
    return "\n\n".join(parts)
