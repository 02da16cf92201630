"""What the small measuring commands of `bench/` share: their argument parser."""

from __future__ import annotations

import argparse
import os

__all__ = ["parser"]


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
