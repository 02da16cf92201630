"""The provider benchmark: sector runs of the real pipeline, through the real SDK, against the
provider simulator, once per configuration, in one invocation; then the table of what users
pay for (`bench.provider.report`).

    python -m bench.provider_run --sectors 10 --workers 2 --configs per-queue,shared \\
        --minute-seconds 10 --outage 40,20

For each configuration, from scratch: a private redis-server (`bench.server.PrivateRedis`), a
PostgreSQL database of its own (created on the server of `TEST_DATABASE_URL` or
`DATABASE_URL`, dropped at the end), the simulator (in this process), N
`python -m pipeline.workers` processes, then the sector runs; when they have all ended, the
stocks failed and the cost are read from PostgreSQL and the simulator's counters are taken.

`--launch per-sector` (the default) starts one `python -m pipeline run SECTOR --auto-approve`
per sector, and each of those runs its own workers too (that is what `run` does).
`--launch multi` starts one `python -m pipeline run S1 S2 ... --auto-approve` instead: every
sector concurrently in one process.

The benchmark never imports the pipeline: it runs it as processes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobqueue import ConfigError

from .provider import ProviderSimulator, cli_parser, config_from_args
from .provider.report import RunResult, render_markdown, summary
from .provider_procs import ROOT, PipelineProcess, read_outcome, temporary_database
from .server import PrivateRedis

__all__ = ["CONFIGURATIONS", "SECTORS", "Configuration", "main", "pipeline_env"]

RESULTS = ROOT / "bench" / "results" / "provider-latest.json"
API_KEY = "sk-sim-provider-bench"  # the simulator accepts any key; this one is not a secret

SECTORS = (
    "Energy",
    "Materials",
    "Industrials",
    "Consumer Discretionary",
    "Consumer Staples",
    "Health Care",
    "Financials",
    "Information Technology",
    "Communication Services",
    "Utilities",
    "Real Estate",
)
"""The GICS sectors; `--sectors N` takes the first N."""

STAGE_KEYS = (
    "SECTOR_RESEARCH",
    "STOCK_RANKING",
    "STOCK_ANALYSIS",
    "JUDGE_REVIEW",
    "FORMAT_INSIGHTS",
)


@dataclass(frozen=True)
class Configuration:
    """One column of the table: the environment that switches the pipeline's behaviour.

    Attributes:
        name: The column's name (`--configs`).
        description: What it is, printed with the table.
        env: Extra environment of every pipeline process (over `pipeline_env`).
        ready: False while the pipeline cannot run it yet (the run refuses it, naming why).
    """

    name: str
    description: str
    env: dict[str, str] = field(default_factory=dict)
    ready: bool = True


CONFIGURATIONS: dict[str, Configuration] = {
    "per-queue": Configuration(
        "per-queue",
        "today: each stage queue has its own job-start bucket (the seed's 5-20 per minute, "
        "per simulated minute); no shared limiter, no breaker",
        env={"PIPELINE_LIMITS": "per-queue"},
    ),
    "shared": Configuration(
        "shared",
        "one limiter per API key and model shared by every queue (RPM/ITPM/OTPM, learned from "
        "the ratelimit headers, settled with usage), and the breaker",
        env={"PIPELINE_LIMITS": "shared"},
    ),
}
"""The configurations the benchmark knows."""


def pipeline_env(
    *, minute_seconds: float, redis_url: str, database_url: str, base_url: str
) -> dict[str, str]:
    """The environment every pipeline process gets, whatever the configuration.

    The pipeline's own clocks follow the simulated minute: every queue's job-start bucket is
    per `minute_seconds` (not per 60 s), and retry and re-run delays are scaled by
    `minute_seconds / 60` (`PIPELINE_RETRY_SCALE`, `PIPELINE_REJECTION_DELAY`).

    Args:
        minute_seconds: Seconds of a simulated minute.
        redis_url: The private Redis.
        database_url: The benchmark's own database.
        base_url: The simulator.

    Returns:
        Variable -> value.
    """
    scale = minute_seconds / 60.0
    env = {
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": API_KEY,
        "PIPELINE_LLM_MODE": "anthropic",
        "PIPELINE_LOG_FORMAT": "json",
        "PIPELINE_LOG_LEVEL": "WARNING",
        "PIPELINE_RETRY_SCALE": f"{scale:g}",
        "PIPELINE_REJECTION_DELAY": f"{5.0 * scale:g}",
    }
    for stage in STAGE_KEYS:
        env[f"PIPELINE_QUEUES__{stage}__RATE_PER"] = f"{minute_seconds:g}"
    # the shared limiter's buckets refill over the simulated minute; the breaker's window and
    # cool-down shrink with it (its max wait stays: no job should fail on an outage)
    env["PIPELINE_LIMIT_WINDOW"] = f"{minute_seconds:g}"
    env["PIPELINE_BREAKER_WINDOW"] = f"{30.0 * scale:g}"
    env["PIPELINE_BREAKER_COOLDOWN"] = f"{30.0 * scale:g}"
    return env


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    # nothing of the caller's own pipeline, Redis, database or API key leaks into the runs
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIPELINE_", "ANTHROPIC_")) and k not in ("REDIS_URL", "DATABASE_URL")
    }
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


async def _run_configuration(
    conf: Configuration, args: argparse.Namespace, sectors: list[str], admin_url: str
) -> tuple[RunResult, dict[str, Any]]:
    provider = config_from_args(args)
    logs = Path(tempfile.mkdtemp(prefix=f"provbench-{conf.name}-"))
    workers: list[PipelineProcess] = []
    runs: list[PipelineProcess] = []
    redis = PrivateRedis().start()
    try:
        async with (
            temporary_database(
                admin_url, f"provbench_{os.getpid()}_{conf.name.replace('-', '_')}"
            ) as db_url,
            ProviderSimulator(provider) as sim,
        ):
            env = _child_env(
                {
                    **pipeline_env(
                        minute_seconds=provider.minute_seconds,
                        redis_url=redis.url,
                        database_url=db_url,
                        base_url=sim.base_url,
                    ),
                    **conf.env,
                    **args.env,
                    **args.set.get(conf.name, {}),
                }
            )
            migrate = await PipelineProcess.start(
                "migrate", ["-m", "pipeline", "migrate"], env, logs
            )
            if await migrate.proc.wait() != 0:
                raise RuntimeError(f"migrate failed: {migrate.tail()}")
            for i in range(args.workers):
                workers.append(
                    await PipelineProcess.start(
                        f"workers-{i + 1}", ["-m", "pipeline.workers"], env, logs
                    )
                )
            # the timed part: windows, buckets and counters start with the first call (so
            # the processes' start-up leaves no idle windows); the wall time with the launch
            sim.reset(at_first_request=True)
            t0 = time.monotonic()
            run_args = ["--auto-approve", "--timeout", str(args.timeout)]
            if args.launch == "multi":
                runs.append(
                    await PipelineProcess.start(
                        "run-all", ["-m", "pipeline", "run", *sectors, *run_args], env, logs
                    )
                )
            else:
                for sector in sectors:
                    runs.append(
                        await PipelineProcess.start(
                            f"run-{sector}", ["-m", "pipeline", "run", sector, *run_args], env, logs
                        )
                    )
            await _follow(conf.name, sim, runs, t0, args.timeout)
            wall = time.monotonic() - t0
            stats = sim.stats()
            first_call = wall - stats.elapsed if stats.calls else None
            for w in workers:
                if w.proc.returncode is not None:
                    print(f"  {w.label} ended early ({w.proc.returncode}): {w.tail()}", flush=True)
            await asyncio.gather(*(w.stop(args.grace) for w in workers))
            outcome = await read_outcome(db_url)
    finally:
        await asyncio.gather(*(p.stop(2.0) for p in [*runs, *workers]), return_exceptions=True)
        redis.close()
    codes = {r.label: r.proc.returncode for r in runs}
    outcome.update(
        {
            "run_exit_codes": codes,
            "logs": str(logs),
            "wall_seconds": wall,
            "first_call_seconds": first_call,
        }
    )
    result = RunResult(
        name=conf.name,
        stats=stats,
        stocks_failed=outcome["stocks_failed"],
        stocks_total=outcome["stocks_total"],
        sectors_completed=outcome["sectors"].get("completed", 0),
        sectors_total=len(sectors),
        wall_seconds=wall,
        cost_usd=outcome["cost_usd"],
        extra={
            "first call after (process start-up)": "-"
            if first_call is None
            else f"{first_call:.0f} s",
            "run statuses": ", ".join(f"{k} {v}" for k, v in sorted(outcome["sectors"].items())),
            "stocks failed by judge rejections": str(outcome["stocks_rejected_by_judge"]),
            "run processes exited non-zero": str(sum(1 for c in codes.values() if c != 0)),
        },
    )
    return result, outcome


async def _follow(
    name: str, sim: ProviderSimulator, runs: list[PipelineProcess], t0: float, timeout: float
) -> None:
    """Wait for every run process; print a line per simulated minute."""
    deadline = t0 + timeout * 4  # `run --timeout` bounds each phase; this bounds a hang
    next_line = t0
    while any(r.proc.returncode is None for r in runs):
        now = time.monotonic()
        if now > deadline:
            raise TimeoutError(f"{name}: runs still going after {now - t0:.0f}s")
        if now >= next_line:
            s = sim.stats()
            done = sum(1 for r in runs if r.proc.returncode is not None)
            print(
                f"  [{name} {now - t0:6.1f}s] runs done {done}/{len(runs)}; calls {s.calls}, "
                f"429 {s.rate_limited}, 529 {s.overloaded}, dropped {s.dropped}, "
                f"in flight {s.in_flight}",
                flush=True,
            )
            next_line = now + sim.config.minute_seconds
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(r.proc.wait() for r in runs)), 0.5)
    for r in runs:
        if r.proc.returncode != 0:
            print(f"  {r.label} exited {r.proc.returncode}: {r.tail(400)}", flush=True)


def _set(text: str) -> tuple[str, str, str]:
    conf, sep, assignment = text.partition(":")
    key, eq, value = assignment.partition("=")
    if not sep or not eq or not key:
        raise argparse.ArgumentTypeError(f"expected CONFIG:KEY=VALUE, got {text!r}")
    return conf, key, value


def _env(text: str) -> tuple[str, str]:
    key, eq, value = text.partition("=")
    if not eq or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: the simulator's options plus the benchmark's."""
    p = cli_parser()
    p.prog = "python -m bench.provider_run"
    p.description = __doc__.split("\n\n")[0] if __doc__ else None
    p.set_defaults(minute_seconds=10.0, rpm=30, itpm=2_500, otpm=40_000)
    p.add_argument("--sectors", type=int, default=10, help=f"first N of {len(SECTORS)} sectors")
    p.add_argument("--workers", type=int, default=2, help="python -m pipeline.workers processes")
    p.add_argument(
        "--configs",
        default="per-queue",
        help=f"comma list of configurations, side by side (known: {', '.join(CONFIGURATIONS)})",
    )
    p.add_argument("--launch", choices=("per-sector", "multi"), default="per-sector")
    p.add_argument("--timeout", type=float, default=600.0, help="`pipeline run --timeout`")
    p.add_argument("--grace", type=float, default=10.0, help="seconds workers get to stop")
    p.add_argument(
        "--env",
        type=_env,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment of every pipeline process (repeatable)",
    )
    p.add_argument(
        "--set",
        type=_set,
        action="append",
        default=[],
        metavar="CONFIG:KEY=VALUE",
        help="extra environment of one configuration's processes (repeatable)",
    )
    p.add_argument("--json", type=Path, default=RESULTS, help=f"results file (default {RESULTS})")
    args = p.parse_args(argv)
    args.env = dict(args.env)
    per_config: dict[str, dict[str, str]] = {}
    for conf, key, value in args.set:
        per_config.setdefault(conf, {})[key] = value
    args.set = per_config
    if not 1 <= args.sectors <= len(SECTORS):
        p.error(f"--sectors must be 1..{len(SECTORS)}, got {args.sectors}")
    if args.workers < 0:
        p.error(f"--workers must be >= 0, got {args.workers}")
    try:
        config_from_args(args)
    except ConfigError as exc:
        p.error(str(exc))
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [n for n in names if n not in CONFIGURATIONS]
    if unknown or not names:
        p.error(f"--configs: unknown {unknown}; known {list(CONFIGURATIONS)}")
    for n in names:
        if not CONFIGURATIONS[n].ready and n not in args.set:
            p.error(
                f"--configs {n}: the pipeline cannot run it yet; give its settings with "
                f"--set {n}:KEY=VALUE (or fill CONFIGURATIONS[{n!r}] in bench/provider_run.py)"
            )
    args.configs = names
    return args


async def _amain(args: argparse.Namespace) -> int:
    admin_url = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if not admin_url:
        print(
            "set TEST_DATABASE_URL or DATABASE_URL (a server where a database can be made)",
            file=sys.stderr,
        )
        return 2
    sectors = list(SECTORS[: args.sectors])
    provider = config_from_args(args)
    print(
        f"{len(sectors)} sectors, {args.workers} worker processes, launch {args.launch}; a minute "
        f"is {provider.minute_seconds:g}s; limits per model {provider.limits.as_dict()}"
        + (f"; outage {provider.outage}" if provider.outage else ""),
        flush=True,
    )
    results: list[RunResult] = []
    details: dict[str, Any] = {}
    for name in args.configs:
        conf = CONFIGURATIONS[name]
        print(f"{name}: {conf.description}", flush=True)
        result, outcome = await _run_configuration(conf, args, sectors, admin_url)
        results.append(result)
        details[name] = {
            "outcome": outcome,
            "stats": result.stats.to_dict(),
            "summary": summary(result),
        }
        print(f"  {name}: {result.wall_seconds:.0f}s; logs in {outcome['logs']}", flush=True)
    print()
    print(render_markdown(results))
    doc = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": "python -m bench.provider_run " + " ".join(sys.argv[1:]),
        "sectors": sectors,
        "workers": args.workers,
        "launch": args.launch,
        "provider": dataclasses.asdict(provider),
        "configurations": {
            n: {
                "description": CONFIGURATIONS[n].description,
                "env": {**CONFIGURATIONS[n].env, **args.env, **args.set.get(n, {})},
            }
            for n in args.configs
        },
        "results": details,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1, default=str))
    print(f"\nresults in {args.json}")
    failed_runs = sum(
        1 for d in details.values() for c in d["outcome"]["run_exit_codes"].values() if c != 0
    )
    return 1 if failed_runs else 0


def main(argv: list[str] | None = None) -> None:
    """`python -m bench.provider_run`."""
    sys.exit(asyncio.run(_amain(parse_args(argv))))


if __name__ == "__main__":
    main()
