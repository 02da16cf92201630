"""`python -m jobqueue.inspect`, run as a subprocess against real queues and workers."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

import pytest
from ops_helpers import ROOT, child_env, run_cli, state_is, workers_of
from servers import free_port

from jobqueue import Queue, RateLimit


@pytest.fixture
async def busy(make_queue, spawn_worker, redis_url, prefix):
    """Queue `served` (a live worker, limits, one completed and one failed job, 2 delayed)
    and queue `idle` (no worker, paused, 2 jobs held)."""
    served = make_queue("served", concurrency=5, rate_limit=RateLimit(max=50, per=1.0))
    idle = make_queue("idle")
    # beats every 30 s (its key lives 90 s): however slowly the machine runs, the worker stays
    # live for the whole test
    spawn_worker("served", concurrency=2, cap=5, rate="50/1", heartbeat=30.0)
    await workers_of(served)
    ok = await served.add("ok", {"result": 1, "log": ["first line", "second line"]})
    bad = await served.add("bad", {"fail": "broken input"})
    await state_is(served, ok.id, "completed")
    await state_is(served, bad.id, "failed")
    await served.add("later", delay=600)
    await served.add("later", delay=600)
    await idle.pause()
    await idle.add("held")
    await idle.add("held")
    base = ["--redis", redis_url, "--prefix", prefix]
    return {"served": served, "idle": idle, "ok": ok, "bad": bad, "base": base}


def assert_clean_error(result, code: int, *needles: str) -> None:
    assert result.code == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


async def test_table_shows_every_queue(busy):
    result = await run_cli(*busy["base"])
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("QUEUE"))
    for column in (
        "WAITING",
        "ACTIVE",
        "DELAYED",
        "COMPLETED",
        "FAILED",
        "PAUSED",
        "WAITING-CHILDREN",
        "WORKERS",
    ):
        assert column in header
    served = next(line for line in lines if line.startswith("served")).split()
    idle = next(line for line in lines if line.startswith("idle")).split()
    # QUEUE STATE WAITING ACTIVE DELAYED COMPLETED FAILED PAUSED WAITING-CHILDREN CONCURRENCY
    # RATE... WORKERS
    assert served[:10] == ["served", "running", "0", "0", "2", "1", "1", "0", "0", "0/5"]
    assert served[10].endswith("/50") and served[-1] == "1"
    assert idle[:10] == ["idle", "paused", "0", "0", "0", "0", "0", "2", "0", "0/-"]
    assert idle[-1] == "0"
    assert "WORKER" in result.stdout  # the workers table


async def test_json_output_is_only_json(busy):
    result = await run_cli(*busy["base"], "--json")
    assert result.code == 0, result.stderr
    data = json.loads(result.stdout)
    queues = {q["name"]: q for q in data["queues"]}
    assert set(queues) == {"served", "idle"}
    served, idle = queues["served"], queues["idle"]
    assert served["counts"] == await busy["served"].get_job_counts()
    assert served["concurrency"] == {"active": 0, "cap": 5}
    assert served["rate_limit"]["max"] == 50 and served["rate_limit"]["per"] == 1.0
    assert 0 <= served["rate_limit"]["tokens"] <= 50
    assert [w["queues"] for w in served["workers"]] == [["served"]]
    assert served["workers"][0]["concurrency"] == 2
    assert idle["paused"] is True and idle["counts"]["paused"] == 2 and idle["workers"] == []
    assert data["prefix"] == busy["base"][3]


async def test_check_exit_codes(busy, redis_url, prefix):
    result = await run_cli(*busy["base"], "--check")
    assert_clean_error(result, 1, "idle")
    result = await run_cli(*busy["base"], "--check", "--queue", "served")
    assert result.code == 0, result.stderr
    result = await run_cli("--redis", redis_url, "--prefix", prefix + "-none", "--check")
    assert_clean_error(result, 1, "no queues")
    result = await run_cli("--redis", f"redis://127.0.0.1:{free_port()}/0", "--check")
    assert_clean_error(result, 1, "cannot reach Redis")


async def test_watch_without_a_terminal_prints_plain_frames(busy):
    result = await run_cli(*busy["base"], "--watch", "--interval", "0.05", "--count", "3")
    assert result.code == 0, result.stderr
    assert result.stdout.count("QUEUE ") == 3
    result = await run_cli(*busy["base"], "--watch", "--json", "--interval", "0.05", "--count", "2")
    frames = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(frames) == 2 and all(len(f["queues"]) == 2 for f in frames)


async def test_job_and_failed_commands(busy):
    ok, bad = busy["ok"], busy["bad"]
    result = await run_cli(*busy["base"], "job", "served", ok.id)
    assert result.code == 0, result.stderr
    assert "state:          completed" in result.stdout
    assert "attempts:       1/" in result.stdout
    assert "first line" in result.stdout and "second line" in result.stdout

    result = await run_cli(*busy["base"], "job", "served", bad.id, "--json")
    data = json.loads(result.stdout)
    assert data["state"] == "failed" and data["error_type"] == "UNKNOWN"
    assert "broken input" in data["error_message"]

    result = await run_cli(*busy["base"], "failed", "served", "--limit", "5")
    assert result.code == 0, result.stderr
    assert "ERROR TYPE" in result.stdout
    row = next(line for line in result.stdout.splitlines() if line.startswith(bad.id))
    assert "UNKNOWN" in row and "broken input" in row

    result = await run_cli(*busy["base"], "job", "served", "no-such-id")
    assert_clean_error(result, 2, "not found")


async def test_retry_pause_resume_cancel_and_clean(busy):
    served, idle, bad = busy["served"], busy["idle"], busy["bad"]
    base = busy["base"]

    result = await run_cli(*base, "retry", "served", "--all")
    assert_clean_error(result, 2, "--yes")
    assert await served.get_job_state(bad.id) == "failed"
    result = await run_cli(*base, "retry", "served", bad.id)
    assert result.code == 0, result.stderr
    await state_is(served, bad.id, "failed")  # it fails again (same data)
    result = await run_cli(*base, "retry", "served", "--all", "--yes", "--json")
    assert json.loads(result.stdout) == {"retried": 1}

    assert (await run_cli(*base, "resume", "idle")).code == 0
    assert not await idle.is_paused()
    assert (await run_cli(*base, "pause", "idle")).code == 0
    assert await idle.is_paused()
    assert "already paused" in (await run_cli(*base, "pause", "idle")).stdout

    job = await idle.add("to-cancel")
    result = await run_cli(*base, "cancel", "idle", job.id)
    assert_clean_error(result, 2, "--yes")
    assert await idle.get_job(job.id) is not None
    result = await run_cli(*base, "cancel", "idle", job.id, "--reason", "nope", "--yes")
    assert result.code == 0 and "removed" in result.stdout
    assert await idle.get_job(job.id) is None

    result = await run_cli(*base, "clean", "idle", "--state", "waiting", "--older-than", "0")
    assert_clean_error(result, 2, "--yes")
    result = await run_cli(
        *base, "clean", "idle", "--state", "waiting", "--older-than", "0", "--yes", "--json"
    )
    assert len(json.loads(result.stdout)["removed"]) == 2
    assert (await idle.get_job_counts())["paused"] == 0


async def test_clear_errors(busy, redis_url, prefix):
    base = busy["base"]
    assert_clean_error(await run_cli(*base, "job", "nosuchqueue", "1"), 2, "unknown queue")
    assert_clean_error(await run_cli(*base, "pause", "nosuchqueue"), 2, "unknown queue")
    closed = f"redis://127.0.0.1:{free_port()}/0"
    assert_clean_error(await run_cli("--redis", closed), 2, "cannot reach Redis", "127.0.0.1")

    # a key of the queue's shape that someone else wrote, with another type
    stranger = Queue("stranger", redis=redis_url, prefix=prefix)
    try:
        await stranger.redis.set(stranger.keys.id_counter, "3")
        await stranger.redis.hset(stranger.keys.wait, "not", "a list")
        result = await run_cli(*base)
        assert_clean_error(result, 2, stranger.keys.wait, "hash", "list")
        args = ("clean", "stranger", "--state", "waiting", "--older-than", "0", "--yes")
        assert_clean_error(await run_cli(*base, *args), 2, stranger.keys.wait)
    finally:
        await stranger.close()


async def test_watch_on_a_terminal_uses_rich_live(busy):
    args = ["--watch", "--interval", "0.05", "--count", "2"]
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobqueue.inspect", *busy["base"], *args],
        stdin=follower,
        stdout=follower,
        stderr=subprocess.PIPE,
        env=child_env(COLUMNS="160", TERM="xterm"),
        cwd=ROOT,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else ""
    proc.stderr.close()
    screen = b"".join(chunks).decode(errors="replace")
    assert "served" in screen and "idle" in screen
    assert "\x1b[" in screen  # drawn by rich, in place


async def test_queue_filter_rejects_unknown_queues(busy):
    result = await run_cli(*busy["base"], "--queue", "served", "--queue", "ghost")
    assert_clean_error(result, 2, "unknown queue 'ghost'")
