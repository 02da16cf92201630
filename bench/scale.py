"""Scale-out: drain throughput with 1, 2 and 4 worker processes, on a local Redis Cluster
(3 masters with a replica each) and on one Redis node, and the cost of durable mode.

    python -m bench.scale                   # 1/2/4 processes, cluster and one node, 3 rounds
    python -m bench.scale --quick           # small sizes, one round
    python -m bench.scale --durable         # adds durable_replicas=1 runs (WAIT after changes)

The jobs are spread over `--queues` queues (a queue lives in one hash slot, so on one master:
spreading over the masters needs several queues); every worker process runs one `Worker` per
queue (`--concurrency` each) with a no-op handler. The queues are filled while paused, the
workers started and ready, then all queues resumed at once: the clock runs from the resume
until every job is completed (`counts()` of every queue, read every 20 ms by the runner).
Both targets run the machine's `redis-server` without persistence, on loopback, on the same
cores as the workers (a 2-core machine: 4 processes share 2 cores with the servers).

Runs with the project's own environment (`.venv`), not the peers' `.venv-bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["main"]


def _queues(n: int) -> list[str]:
    return [f"s{i}" for i in range(n)]


async def _child(url: str, prefix: str, names: list[str], concurrency: int, durable: int) -> None:
    import logging

    from jobqueue import Job, Queue, QueueConfig, Worker

    logging.basicConfig(level=logging.ERROR)

    queues = [
        Queue(
            QueueConfig(n, keep_completed=(None, None), durable_replicas=durable, drain_delay=0.2),
            redis=url,
            prefix=prefix,
        )
        for n in names
    ]

    async def handler(job: Job) -> None:
        return None

    workers = [Worker(q, handler, concurrency=concurrency, handle_signals=False) for q in queues]
    tasks = [asyncio.ensure_future(w.run()) for w in workers]
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.read)  # until the runner closes our stdin
    for t in tasks:
        t.cancel()
    os._exit(0)


async def _run_once(
    url: str, procs: int, n: int, queues: int, concurrency: int, durable: int
) -> dict[str, Any]:
    from jobqueue import Queue, QueueConfig
    from jobqueue.core.connection import connect

    prefix = f"sc{time.time_ns() % 10**9}"
    names = _queues(queues)
    redis = connect(url)
    qs = [
        Queue(QueueConfig(name, keep_completed=(None, None)), redis=redis, prefix=prefix)
        for name in names
    ]
    for q in qs:
        await q.pause()
    per = n // queues
    for q in qs:
        for i in range(0, per, 1000):
            await q.add_bulk([("noop", None) for _ in range(min(1000, per - i))])
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.scale",
                "--child",
                url,
                prefix,
                ",".join(names),
                str(concurrency),
                str(durable),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=str(ROOT),
        )
        for _ in range(procs)
    ]
    try:
        for c in children:
            assert c.stdout is not None
            if b"ready" not in c.stdout.readline():
                raise RuntimeError("a worker process did not start")
        cpu0 = os.times()
        t0 = time.perf_counter()
        for q in qs:
            await q.resume()
        total = per * queues
        deadline = t0 + max(120.0, total / 200)
        while True:
            done = 0
            for q in qs:
                done += (await q.get_job_counts())["completed"]
            if done >= total:
                break
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{done}/{total} jobs drained")
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - t0
        del cpu0
    finally:
        for c in children:
            if c.stdin is not None:
                c.stdin.close()
            try:
                c.wait(10)
            except subprocess.TimeoutExpired:
                c.kill()
                c.wait(10)
        for q in qs:
            await q.obliterate(force=True)
            await q.close()
        await redis.aclose()
    return {"jobs": total, "elapsed": elapsed, "rate": total / elapsed}


async def _adds(url: str, n: int, durable: int) -> dict[str, float]:
    """`n` adds one by one, each awaited: the latency durable mode adds to a producer."""
    from jobqueue import Queue, QueueConfig

    prefix = f"sa{time.time_ns() % 10**9}"
    q = Queue(QueueConfig("adds", durable_replicas=durable), redis=url, prefix=prefix)
    try:
        for _ in range(50):  # warm-up: scripts loaded, connections open
            await q.add("noop", None)
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            await q.add("noop", None)
            times.append(time.perf_counter() - t0)
    finally:
        await q.obliterate(force=True)
        await q.close()
    times.sort()
    return {"p50_us": times[n // 2] * 1e6, "p99_us": times[int(n * 0.99)] * 1e6}


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from jobqueue.testing import ClusterServers, RedisServer, server_binary

    results: dict[str, Any] = {}
    binary = server_binary()
    cluster = ClusterServers(binary).start()
    single = RedisServer(binary).start()
    targets = {"cluster": cluster.url, "one node": single.url}
    modes = [0, 1] if args.durable else [0]
    try:
        for rnd in range(args.rounds):
            for durable in modes:
                for target, url in targets.items():
                    if durable and target == "one node":
                        continue  # the single node has no replica to wait for
                    for procs in args.procs:
                        r = asyncio.run(
                            _run_once(url, procs, args.n, args.queues, args.concurrency, durable)
                        )
                        key = f"{target}{' durable' if durable else ''}|{procs}"
                        results.setdefault(key, []).append(r["rate"])
                        print(
                            f"round {rnd + 1}: {key:<22} {r['rate']:>9,.0f} jobs/s "
                            f"({r['jobs']} in {r['elapsed']:.2f} s)",
                            flush=True,
                        )
                if durable or args.durable:
                    a = asyncio.run(_adds(cluster.url, args.adds, durable))
                    name = f"add latency{' durable' if durable else ''}"
                    results.setdefault(name, []).append(a)
                    print(
                        f"round {rnd + 1}: {name:<22} p50 {a['p50_us']:,.0f} us, "
                        f"p99 {a['p99_us']:,.0f} us",
                        flush=True,
                    )
    finally:
        cluster.close()
        single.close()
    return results


def _table(results: dict[str, list[float]], procs: list[int]) -> str:
    """Median jobs/s per target and process count, its ratio to 1 process, and the range of
    the rounds (a shared machine is noisy: the range says how much)."""
    adds = {k: v for k, v in results.items() if k.startswith("add latency")}
    results = {k: v for k, v in results.items() if k not in adds}
    rows = sorted({k.split("|")[0] for k in results}, key=lambda t: (t != "cluster", t))
    head = "| target | " + " | ".join(f"{p} process{'es' if p > 1 else ''}" for p in procs) + " |"
    lines = [head, "|---" * (len(procs) + 1) + "|"]
    for target in rows:
        cells = []
        base = None
        for p in procs:
            rates = results.get(f"{target}|{p}")
            if not rates:
                cells.append("-")
                continue
            med = statistics.median(rates)
            base = base or med
            cells.append(f"{med:,.0f} ({med / base:.2f}x; {min(rates):,.0f}-{max(rates):,.0f})")
        lines.append(f"| {target} | " + " | ".join(cells) + " |")
    for name, runs in sorted(adds.items()):
        p50 = statistics.median(r["p50_us"] for r in runs)
        p99 = statistics.median(r["p99_us"] for r in runs)
        lines.append(
            f"\n{name} on the cluster (one add awaited at a time): p50 {p50:,.0f} us, "
            f"p99 {p99:,.0f} us (medians of {len(runs)} rounds)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the scale-out benchmark (or, with `--child`, one worker process of it)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        url, prefix, names, conc, durable = argv[1:6]
        asyncio.run(_child(url, prefix, names.split(","), int(conc), int(durable)))
        return
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n")[0])
    p.add_argument("-n", type=int, default=60_000, help="jobs per run (default 60,000)")
    p.add_argument("--procs", default="1,2,4", help="worker process counts (default 1,2,4)")
    p.add_argument("--queues", type=int, default=6, help="queues the jobs are spread over")
    p.add_argument("--concurrency", type=int, default=20, help="per Worker (one per queue)")
    p.add_argument("--rounds", type=int, default=3, help="rounds; the median is reported")
    p.add_argument("--adds", type=int, default=3000, help="adds one by one (with --durable)")
    p.add_argument("--quick", action="store_true", help="6,000 jobs, one round")
    p.add_argument("--durable", action="store_true", help="also run durable_replicas=1")
    p.add_argument("--json", default=str(ROOT / "bench" / "results" / "scale.json"))
    p.add_argument("--report", metavar="JSON", help="print the table of a saved run and exit")
    args = p.parse_args(argv)
    args.procs = [int(x) for x in args.procs.split(",")]
    if args.report:
        saved = json.loads(Path(args.report).read_text())
        print(_table(saved["rates"], saved["args"]["procs"]))
        return
    if args.quick:
        args.n, args.rounds = 6_000, 1
    import logging

    # the servers run without persistence on purpose: their warnings are not results
    logging.basicConfig(level=logging.ERROR)
    started = time.time()
    results = _run(args)
    print()
    print(_table(results, args.procs))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "args": {k: v for k, v in vars(args).items() if k != "json"},
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                "seconds": time.time() - started,
                "rates": results,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
