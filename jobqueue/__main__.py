"""`python -m jobqueue COMMAND`: the engine's commands.

    python -m jobqueue worker MODULE [--queues a,b] [--concurrency N]
                                     [--shutdown-grace SECONDS] [--log-level LEVEL]

`worker` runs the workers of a module's tasks (see `python -m jobqueue worker --help`).
`python -m jobqueue.inspect` looks at and acts on queues.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from . import _worker_cli

__all__ = ["main"]

COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {"worker": _worker_cli.main}

USAGE = """usage: python -m jobqueue COMMAND [ARGS]

commands:
  worker MODULE [--queues a,b] [--concurrency N]   run the workers of a module's tasks

(python -m jobqueue.inspect looks at and acts on queues)"""


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to a command; return the exit code (2 with the usage for an unknown one)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command = COMMANDS.get(args[0]) if args else None
    if command is None:
        print(USAGE, file=sys.stderr)
        if args:
            print(f"error: unknown command {args[0]!r}", file=sys.stderr)
        return 2
    return command(args[1:])


if __name__ == "__main__":
    sys.exit(main())
