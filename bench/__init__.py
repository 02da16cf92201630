"""Benchmark: jobqueue against arq, saq, rq, bullmq (Python) and BullMQ (node).

`python -m bench` starts a private redis-server, runs every scenario for every peer in its own
child processes, alternating the peers over rounds, and prints medians and jobqueue's ratio to
each peer (median of the per-round ratios). Results go to `bench/results/latest.json`.
See docs/performance.md.
"""
