"""Run the test suite K times in a row while other processes keep every core busy.

    python tests/repeat_under_load.py [--runs 10] [--load 2] [-- PYTEST ARGS...]

The proof that the suite does not flake on a loaded machine: N busy processes (`while True`
loops, default one per core) run for the whole time, and the suite (`make test`'s command,
`python -m pytest -q`, with the environment CI uses: the machine's Redis and PostgreSQL when
they answer, see .ci/run) runs K times. It stops at the first failure (exit 1, the run's log
tail printed) or reports "K/K passed" with each run's duration (exit 0). The load is always
stopped: by this script on any exit, and by each busy process itself should this script die
(it watches its parent).

Each run's full output is kept in `--logs` (default `.test-repeat/`).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent

# A busy loop that ends on its own once its parent (this script) is gone.
BUSY = """
import os, sys
parent = int(sys.argv[1])
while os.getppid() == parent:
    for _ in range(2_000_000):
        pass
"""


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def ci_env() -> dict[str, str]:
    """The environment .ci/run gives `make test`: the machine's servers when they answer."""
    env = dict(os.environ)
    if not env.get("TEST_REDIS_URL") and answers("127.0.0.1", 6379):
        env["TEST_REDIS_URL"] = "redis://127.0.0.1:6379/0"
    if not env.get("TEST_DATABASE_URL") and answers("127.0.0.1", 5432):
        env["TEST_DATABASE_URL"] = "postgresql://postgres@127.0.0.1:5432/postgres"
    return env


def start_load(n: int) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(
            [sys.executable, "-c", BUSY, str(os.getpid())],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(n)
    ]


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            print(f"busy process {proc.pid} did not exit", file=sys.stderr)


def run_suite(python: str, args: list[str], env: dict[str, str], log: Path, limit: float) -> int:
    """One run of the suite, its output in `log`; the exit code (124 past `limit` s)."""
    with log.open("wb") as out:
        # a session of its own: a run that hangs is killed with everything it started
        proc = subprocess.Popen(
            [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            return proc.wait(limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            out.write(f"\n[repeat_under_load] killed after {limit:g} s\n".encode())
            return 124
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise


def last_line(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip("= ") if lines else "(no output)"


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=10, help="runs in a row (default 10)")
    p.add_argument("--load", type=int, default=2, help="busy processes (default 2)")
    p.add_argument(
        "--python", default=str(ROOT / ".venv" / "bin" / "python"), help="the venv's python"
    )
    p.add_argument("--logs", type=Path, default=ROOT / ".test-repeat", help="run logs")
    p.add_argument(
        "--run-timeout", type=float, default=3600.0, help="seconds before a run counts as hung"
    )
    p.add_argument("pytest_args", nargs="*", help="after --: paths and options for pytest")
    args = p.parse_args(argv)
    if args.runs < 1 or args.load < 0:
        p.error("--runs must be >= 1 and --load >= 0")
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    env = ci_env()
    args.logs.mkdir(parents=True, exist_ok=True)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)  # unwinds through `finally`: the load is stopped

    signal.signal(signal.SIGTERM, on_signal)
    what = " ".join(args.pytest_args) or "the whole suite"
    print(
        f"{args.runs} run(s) of {what} under {args.load} busy process(es) on "
        f"{os.cpu_count()} core(s); TEST_REDIS_URL={env.get('TEST_REDIS_URL', '<embedded>')} "
        f"TEST_DATABASE_URL={env.get('TEST_DATABASE_URL', '<embedded>')}",
        flush=True,
    )
    load = start_load(args.load)
    durations: list[float] = []
    try:
        for i in range(1, args.runs + 1):
            log = args.logs / f"run-{i:02d}.log"
            started = time.monotonic()
            code = run_suite(args.python, args.pytest_args, env, log, args.run_timeout)
            took = time.monotonic() - started
            durations.append(took)
            load1 = os.getloadavg()[0]
            status = "passed" if code == 0 else f"FAILED (exit {code})"
            print(
                f"run {i}/{args.runs}: {status} in {took:.1f} s "
                f"(load average {load1:.2f}): {last_line(log)}",
                flush=True,
            )
            if code != 0:
                tail = log.read_text(errors="replace").splitlines()[-80:]
                print("\n".join(tail))
                print(f"{i - 1}/{args.runs} passed before a failure; full log: {log}")
                return 1
    finally:
        stop(load)
    print(
        f"{args.runs}/{args.runs} passed; durations (s): "
        f"{', '.join(f'{d:.1f}' for d in durations)}; "
        f"min {min(durations):.1f}, median {statistics.median(durations):.1f}, "
        f"max {max(durations):.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
