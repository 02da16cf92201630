"""The runner: a private Redis, then every scenario for every peer, alternating over rounds."""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from . import peer_node
from .procs import VARIANTS
from .report import LABELS, render, summarize
from .scenarios import SCENARIOS, run_scenario
from .server import PrivateRedis

__all__ = ["FULL_SIZES", "QUICK_SIZES", "main", "parse_args"]

PEERS = ("jobqueue", "node", "arq", "saq", "bullmq", "rq")
# opt-in with --only: jobqueue with EVALSHA through redis-py (JOBQUEUE_FASTCONN=0), and
# jobqueue with no event stream (events_maxlen=0)
OPTIONAL = ("jqredispy", "jqnoevents")
MODULES = {
    "jobqueue": "jobqueue",
    "jqredispy": "jobqueue",
    "jqnoevents": "jobqueue",
    "arq": "arq",
    "saq": "saq",
    "bullmq": "bullmq",
    "rq": "rq",
}
# the Python peers drain at a few thousand jobs/s: their drains use `drain_py` jobs
FAST = {"jobqueue", "jqredispy", "jqnoevents", "node"}
FULL_SIZES = {
    "drain": 100_000,
    "drain_py": 10_000,
    "enqueue": 20_000,
    "bulk": 50_000,
    "latency": 1_000,
    "memory": 30_000,
}
QUICK_SIZES = {
    "drain": 20_000,
    "drain_py": 2_000,
    "enqueue": 2_000,
    "bulk": 5_000,
    "latency": 200,
    "memory": 5_000,
}
# slower peers get fewer jobs where they would take long (rates do not depend on N)
SCALE = {
    "bullmq": {"enqueue": 0.25, "bulk": 0.1, "drain_py": 0.5},
    "rq": {"drain_py": 0.3, "bulk": 0.4},
}
# scenarios a peer cannot run: no bulk API, or no concurrency inside one process
SKIP = {
    "arq": {"bulk": "no bulk API"},
    "saq": {"bulk": "no bulk API"},
    "rq": {"drain_c50": "SimpleWorker runs one job at a time (c50 = c10)"},
}
RESULTS = Path(__file__).parent / "results" / "latest.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="jobqueue against arq, saq, rq, bullmq (Python) and BullMQ (node), "
        "alternating over rounds against one private redis-server.",
    )
    p.add_argument("--rounds", type=int, default=None, help="rounds (default 3; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="small sizes, one round (smoke run)")
    p.add_argument(
        "--only",
        default="",
        help="comma list of peers and/or scenarios, e.g. 'node,drain_c50,enqueue' "
        f"(peers: {', '.join(PEERS + OPTIONAL)}; scenarios: {', '.join(SCENARIOS)}); "
        "jobqueue always runs; opt-in: jqredispy is jobqueue with JOBQUEUE_FASTCONN=0, "
        "jqnoevents jobqueue with QueueConfig(events_maxlen=0)",
    )
    p.add_argument(
        "-n",
        action="append",
        default=[],
        metavar="N|KEY=N",
        help="sizes: a number sets the fast peers' drain size; KEY=N sets one of "
        f"{', '.join(FULL_SIZES)}",
    )
    p.add_argument("--json", type=Path, default=RESULTS, help=f"results file (default {RESULTS})")
    return p.parse_args(argv)


def _sizes(args: argparse.Namespace) -> dict[str, int]:
    sizes = dict(QUICK_SIZES if args.quick else FULL_SIZES)
    for item in args.n:
        key, _, value = item.rpartition("=")
        key = key or "drain"
        if key not in sizes:
            raise SystemExit(f"-n: unknown size {key!r} (one of {', '.join(sizes)})")
        sizes[key] = int(value.replace("_", ""))
    return sizes


def _select(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    tokens = [t.strip() for t in args.only.split(",") if t.strip()]
    known = PEERS + OPTIONAL
    peers = [t for t in tokens if t in known]
    scenarios = [t for t in tokens if t in SCENARIOS]
    unknown = [t for t in tokens if t not in known and t not in SCENARIOS]
    if unknown:
        raise SystemExit(f"--only: unknown {unknown}; peers {known}, scenarios {list(SCENARIOS)}")
    chosen = list(PEERS) if not peers else ["jobqueue", *[p for p in peers if p != "jobqueue"]]
    return chosen, scenarios or list(SCENARIOS)


def _available(peers: list[str], notes: dict[str, str]) -> list[str]:
    out = []
    for peer in peers:
        if peer == "node":
            why = peer_node.ensure_installed()
            if why:
                notes[peer] = f"skipped: {why}"
                continue
        elif importlib.util.find_spec(MODULES[peer]) is None:
            notes[peer] = "skipped: not installed (pip install -e '.[bench]')"
            continue
        out.append(peer)
    return out


def _versions(peers: list[str]) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("redis", "hiredis", *[MODULES[p] for p in peers if p in MODULES]):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    if "node" in peers:
        out["node"] = peer_node.version()
    return out


def _size_for(peer: str, scenario: str, sizes: dict[str, int]) -> int:
    key = SCENARIOS[scenario].size
    if key == "drain" and peer not in FAST:
        key = "drain_py"
    return max(1, int(sizes[key] * SCALE.get(peer, {}).get(key, 1.0)))


def _config(peer: str) -> str:
    if peer == "node":
        return peer_node.CONFIG
    module, env = VARIANTS.get(peer, (peer, {}))
    mod = importlib.import_module(f"bench.peer_{module}")
    extra = "".join(f"; {k}={v}" for k, v in env.items())
    return str(mod.CONFIG) + extra


async def _run(args: argparse.Namespace) -> int:
    rounds = args.rounds or (1 if args.quick else 3)
    sizes = _sizes(args)
    notes: dict[str, str] = {}
    peers, scenarios = _select(args)
    peers = _available(peers, notes)
    server = PrivateRedis().start()
    started = time.time()
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {s: {} for s in scenarios}
    try:
        print(
            f"private redis-server {server.version()} on :{server.port}; rounds {rounds}; "
            f"peers {', '.join(peers)}",
            flush=True,
        )
        for peer, note in notes.items():
            print(f"  {peer}: {note}", flush=True)
        for r in range(rounds):
            order = peers[r % len(peers) :] + peers[: r % len(peers)]
            for name in scenarios:
                if name == "memory" and r > 0:
                    continue  # deterministic: once is enough
                for peer in order:
                    if name in SKIP.get(peer, {}):
                        continue
                    n = _size_for(peer, name, sizes)
                    t = time.perf_counter()
                    res = await run_scenario(server, peer, SCENARIOS[name], n)
                    runs[name].setdefault(peer, []).append(res)
                    shown = res.get("error") or ", ".join(
                        f"{k}={res[k]:,.2f}" for k in ("rate", "p50", "p99", "bytes") if k in res
                    )
                    if "note" in res:
                        shown += f" [{res['note']}]"
                    print(
                        f"round {r + 1}/{rounds} {name:<10} {peer:<8} n={n:<7} {shown} "
                        f"({time.perf_counter() - t:.1f}s)",
                        flush=True,
                    )
    finally:
        server.close()
    summary = summarize(runs)
    shown_peers = [p for p in peers if any(p in runs[s] for s in runs)]
    print()
    print(render(summary, shown_peers))
    print()
    print("Configuration (defaults unless marked CHANGED):")
    for peer in shown_peers:
        print(f"  {LABELS.get(peer, peer)}: {_config(peer)}")
    for peer, skipped in SKIP.items():
        for name, why in skipped.items():
            if peer in shown_peers and name in scenarios:
                print(f"  {LABELS.get(peer, peer)} {name}: not run ({why})")
    elapsed = time.time() - started
    print(f"\n{rounds} round(s) in {elapsed:.0f}s; results in {args.json}")
    doc = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": "python -m bench " + " ".join(sys.argv[1:]),
        "elapsed_s": elapsed,
        "rounds": rounds,
        "sizes": sizes,
        "machine": {"cpus": _cpus(), "platform": platform.platform()},
        "versions": _versions(shown_peers),
        "configs": {p: _config(p) for p in shown_peers},
        "notes": notes,
        "runs": runs,
        **summary,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1, default=str))
    return 0


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


def main(argv: list[str] | None = None) -> None:
    """`python -m bench`."""
    args = parse_args(argv)
    sys.exit(asyncio.run(_run(args)))
