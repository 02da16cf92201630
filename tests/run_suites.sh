#!/usr/bin/env bash
# `make test`: the whole suite and, beside it, the engine's tests once more on servers of their
# own: on an embedded Valkey (when the suite runs on a given Redis; without one the suite is
# on Valkey already), then on a local Redis Cluster (3 masters, 3 replicas) the tests start
# themselves. The suite spends most of its time waiting on servers and worker processes and
# leaves a core idle: the engine's runs use it (the three one after another took ~17 min on a
# slow day of a 2-vCPU VM, side by side ~13). Their output follows the suite's; the run fails
# when any of them fails.
#
# Usage: tests/run_suites.sh PYTHON [pytest arguments for the whole suite]
set -uo pipefail
python=$1
shift
logs=$(mktemp -d)
side=
cleanup() {
    [ -n "$side" ] && kill -- "-$side" 2>/dev/null
    rm -rf "$logs"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

engine_runs() {
    local rc=0
    if [ -n "${TEST_REDIS_URL:-}" ]; then
        echo "== tests/engine on an embedded Valkey (beside the suite)" >"$logs/valkey"
        TEST_REDIS_URL= "$python" -m pytest -q -p no:cacheprovider tests/engine \
            >>"$logs/valkey" 2>&1 || rc=1
    fi
    echo "== tests/engine on a local Redis Cluster (beside the suite)" >"$logs/cluster"
    JQ_TEST_CLUSTER=1 "$python" -m pytest -q -p no:cacheprovider tests/engine \
        >>"$logs/cluster" 2>&1 || rc=1
    return $rc
}

set -m  # the engine's runs in a process group of their own: stopped whole on an interrupt
engine_runs &
side=$!
set +m
"$python" -m pytest -q "$@"
main=$?
wait "$side"
engine=$?
side=
cat "$logs/valkey" "$logs/cluster" 2>/dev/null
if [ "$main" -ne 0 ] || [ "$engine" -ne 0 ]; then
    echo "make test: FAILED (whole suite: exit $main; engine runs: exit $engine)"
    exit 1
fi
