"""`make chaos`: every scenario of the long chaos suite, then the table of docs/reliability.md.

    python tests/chaos/run_chaos.py [--short] [--only NAME ...] [--markdown FILE]

Exit code 1 when a scenario lost a job, ran one twice without a recorded lease loss, or left a
status row wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from faults import plans, status_mirror
from harness import Plan, Result, run_plan

HEADER = (
    "| scenario | jobs added | completed | failed | lost | run twice (after a recorded lease "
    "loss) | run twice without one | status rows wrong | faults | add calls refused (full) | "
    "seconds | "
    "notes |"
)


def row(r: Result) -> str:
    if r.skipped:
        return f"| {r.name} | - | - | - | - | - | - | - | - | - | - | skipped: {r.skipped} |"
    notes = "; ".join(r.notes)
    return (
        f"| {r.name} | {r.added} | {r.completed} | {r.failed} | {r.lost} | {r.run_twice} | "
        f"{r.unexplained_twice} | {r.status_wrong} | {r.faults} | {r.refused} | "
        f"{r.seconds:.1f} | {notes} |"
    )


def table(results: list[Result]) -> str:
    sep = "|" + "---|" * HEADER.count(" | ") + "---|"
    return "\n".join([HEADER, sep, *(row(r) for r in results)])


async def run_all(selected: list[Plan]) -> list[Result]:
    results = []
    for plan in selected:
        result = await run_plan(plan, mirror=status_mirror if plan.postgres else None)
        print(row(result), flush=True)
        results.append(result)
    return results


def failed(r: Result) -> bool:
    return bool(r.lost or r.unexplained_twice or r.status_wrong)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="the short suite of make test")
    parser.add_argument("--only", nargs="*", default=None, help="scenario names")
    parser.add_argument("--markdown", help="write the table to this file too")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    selected = [p for p in plans(long=not args.short) if not args.only or p.name in args.only]
    print(HEADER, flush=True)
    results = asyncio.run(run_all(selected))
    text = table(results)
    print("\n" + text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    return 1 if any(failed(r) for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
