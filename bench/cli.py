"""What the small measuring commands of `bench/` share: their argument parser."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Awaitable, Callable

__all__ = ["main", "parser"]


def parser(
    prog: str, doc: str | None, *, redis: bool = True, **numbers: float
) -> argparse.ArgumentParser:
    """`--redis URL` (default `REDIS_URL`, else the local Redis; not with `redis=False`, for a
    command that starts its own server) and one `--<name>` option per keyword, typed and
    defaulted by its value (`requests=21` gives `--requests`, an int)."""
    p = argparse.ArgumentParser(prog=prog, description=doc)
    if redis:
        p.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    for name, default in numbers.items():
        p.add_argument(f"--{name}", type=type(default), default=default)
    return p


def main(
    prog: str, doc: str | None, measure: Callable[..., Awaitable[str]], **numbers: float
) -> None:
    """Parse `--redis` and the `numbers` options (see `parser`), run `measure(redis, *numbers)`
    with them in that order, and print the table it returns."""
    args = parser(prog, doc, **numbers).parse_args()
    print(asyncio.run(measure(args.redis, *(getattr(args, name) for name in numbers))))
