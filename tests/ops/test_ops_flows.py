"""`python -m jobqueue.inspect` on a flow: the waiting-children count and column, a parent's
pending children and a child's parent."""

from __future__ import annotations

import json

from ops_helpers import run_cli

from jobqueue import Child


async def test_inspect_shows_a_flow(make_queue, redis_url, prefix):
    queue = make_queue("flows")
    await queue.add_flow(
        "parent",
        job_id="p",
        children=[Child(queue=queue, name="child", job_id=f"c{i}") for i in (1, 2)],
    )
    base = ["--redis", redis_url, "--prefix", prefix]

    result = await run_cli(*base, "--json")
    assert result.code == 0, result.stderr
    (flows,) = json.loads(result.stdout)["queues"]
    assert flows["counts"]["waiting-children"] == 1 and flows["counts"]["waiting"] == 2

    result = await run_cli(*base)
    assert result.code == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if line.startswith("QUEUE"))
    row = next(line for line in result.stdout.splitlines() if line.startswith("flows")).split()
    assert row[header.split().index("WAITING-CHILDREN")] == "1"

    result = await run_cli(*base, "job", "flows", "p", "--json")
    assert result.code == 0, result.stderr
    parent = json.loads(result.stdout)
    assert parent["state"] == "waiting-children"
    assert parent["children_pending"] == ["flows:c1", "flows:c2"]

    result = await run_cli(*base, "job", "flows", "c1")
    assert result.code == 0, result.stderr
    assert "parent:" in result.stdout and "flows:p" in result.stdout
