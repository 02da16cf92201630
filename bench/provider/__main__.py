"""`python -m bench.provider`: run the provider simulator until SIGINT/SIGTERM.

The first line on stdout is the base URL; point a pipeline at it with
`ANTHROPIC_BASE_URL=<url> ANTHROPIC_API_KEY=sk-sim-anything PIPELINE_LLM_MODE=anthropic`.
`GET <url>/_sim/stats` returns the counters; `POST <url>/_sim/outage` with
`{"in": 5, "duration": 20}` starts an outage 5 s from now.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from jobqueue import ConfigError

from ._cli import config_from_args, parser
from ._config import ProviderConfig
from ._server import ProviderSimulator

__all__ = ["main"]


async def _serve(config: ProviderConfig, stats_json: Path | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with ProviderSimulator(config) as sim:
        print(sim.base_url, flush=True)
        lim = config.limits
        print(
            f"provider simulator on {sim.base_url}: a minute is {config.minute_seconds:g}s; "
            f"{lim.rpm} RPM, {lim.itpm} ITPM, {lim.otpm} OTPM per key and model"
            + "".join(f"; {m}: {v.rpm}/{v.itpm}/{v.otpm}" for m, v in config.model_limits.items()),
            file=sys.stderr,
            flush=True,
        )
        await stop.wait()
        stats = sim.stats()
    if stats_json is not None:
        stats_json.write_text(json.dumps(stats.to_dict(), indent=1))
    print(
        f"{stats.calls} calls, {stats.rate_limited} answered 429, {stats.overloaded} 529",
        file=sys.stderr,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m bench.provider`."""
    p = parser()
    p.add_argument("--stats-json", type=Path, default=None, help="write the counters on exit")
    args = p.parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        p.error(str(exc))
    return asyncio.run(_serve(config, args.stats_json))


if __name__ == "__main__":
    raise SystemExit(main())
