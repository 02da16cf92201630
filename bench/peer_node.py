"""BullMQ (node): joins the benchmark when `node` and `npm` are present.

`bench/node/package.json` pins bullmq and ioredis; the runner installs them into
`bench/node/node_modules` (gitignored) with `npm install` when missing. Any failure there skips
the peer with a note; it is never required.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

__all__ = ["CONFIG", "HAS_BULK", "LABEL", "command", "ensure_installed", "version"]

LABEL = "bullmq-node"
HAS_BULK = True
CONFIG = "new Worker(name, fn, {concurrency: C}), defaults (completed jobs kept); bulk = addBulk"
NODE_DIR = Path(__file__).parent / "node"


def ensure_installed() -> str | None:
    """Install the node packages when missing; None when ready, else why the peer is skipped."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return "node or npm not found"
    if (NODE_DIR / "node_modules" / "bullmq" / "package.json").exists():
        return None
    try:
        proc = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=300,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"npm install failed: {exc}"
    if proc.returncode != 0:
        return f"npm install failed: {proc.stderr.strip()[-300:]}"
    return None


def version() -> str:
    """Installed bullmq and ioredis versions (for the report)."""
    import json

    out = []
    for pkg in ("bullmq", "ioredis"):
        try:
            meta = json.loads((NODE_DIR / "node_modules" / pkg / "package.json").read_text())
            out.append(f"{pkg} {meta['version']}")
        except (OSError, ValueError, KeyError):
            pass
    return ", ".join(out)


def command(role: str, params_json: str) -> list[str]:
    """argv of one node child."""
    node = shutil.which("node") or "node"
    return [node, str(NODE_DIR / "bullmq_bench.mjs"), role, params_json]
