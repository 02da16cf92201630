"""Each Lua script's header against the `Scripts` method that calls it, and the Lua side of
the key names against `QueueKeys`: no Redis needed (the Lua runs in lupa)."""

from __future__ import annotations

import re

import pytest

from jobqueue.core._loader import LUA_DIR, load_script, parse_header, script_names
from jobqueue.core.keys import QueueKeys
from jobqueue.core.scripts import SPECS, Scripts, ScriptSpec

# Redis runs Lua 5.1 (and fakeredis loads lupa's 5.1 too: one Lua version per process)
lupa = pytest.importorskip("lupa.lua51")

_EMIT = re.compile(r"emit\([\w.]+, A\.maxlen, 'ev', '([\w-]+)'")


def test_every_script_has_one_method_and_every_method_a_script() -> None:
    assert sorted(SPECS) == list(script_names())
    # one spec per script, each declared on Scripts (or its operations part) beside the
    # method that runs it, and each spec once
    declared = [
        v for klass in Scripts.__mro__ for v in vars(klass).values() if isinstance(v, ScriptSpec)
    ]
    assert sorted(s.name for s in declared) == sorted(SPECS)


@pytest.mark.parametrize("name", script_names())
def test_header_and_method_declare_the_same_contract(name: str) -> None:
    header = load_script(name).header
    spec = SPECS[name]
    assert header.keys == spec.keys
    assert header.argv == spec.argv
    assert header.group == spec.group
    assert header.events == spec.events


@pytest.mark.parametrize("name", script_names())
def test_header_lists_the_events_the_script_emits(name: str) -> None:
    script = load_script(name)
    assert set(_EMIT.findall(script.source)) == set(script.header.events)
    # every event goes through emit() (capped), none by a bare XADD
    assert script.source.count("'XADD'") == 1 if "emit(" in script.source else True


def _hash_tag(key: str) -> str:
    """The part of a key Redis Cluster hashes: between the first `{` and the next `}`."""
    start = key.index("{")
    return key[start + 1 : key.index("}", start + 1)]


@pytest.mark.parametrize("name", script_names())
@pytest.mark.parametrize("slot", [None, "anthropic.opus"])
def test_every_key_of_a_call_is_in_one_cluster_slot(name: str, slot: str | None) -> None:
    # a queue alone, and a queue on a shared limiter (its keys in the limiter's slot)
    spec = SPECS[name]
    assert spec.keys, "a script without KEYS cannot be routed on Redis Cluster"
    keys = QueueKeys("jq", "q", slot=slot)
    tags = set()
    for key in spec.keys:
        value = getattr(keys, key.removesuffix("(id)"))
        built = value("7") if key.endswith("(id)") else value
        assert isinstance(built, str), key
        tags.add(_hash_tag(built))
    # and the job keys a script builds from A.base
    tags |= {_hash_tag(keys.jobs), _hash_tag(keys.legacy_job("7"))}
    tags |= {_hash_tag(keys.wake("host:1:ab"))}  # blocked on with the marker, take behind
    tags |= {_hash_tag(keys.state("7")), _hash_tag(keys.logs("7"))}
    # and the keys of a group and of a dedup key (includes/groups.lua, dedup.lua)
    tags |= {_hash_tag(keys.group_wait("user:42")), _hash_tag(keys.dedup("a{b}:c"))}
    assert tags == {slot or "q"}


def test_queues_on_one_limiter_share_its_slot_and_nothing_else() -> None:
    a, b = QueueKeys("jq", "a", slot="lim"), QueueKeys("jq", "b", slot="lim")
    assert a.shared_limiter == b.shared_limiter and a.breaker == b.breaker
    assert a.base != b.base and not b.base.startswith(a.base)
    assert {a.meta, a.shared_limiter}.isdisjoint({b.meta, QueueKeys("jq", "lim").meta})


@pytest.mark.parametrize("name", script_names())
def test_scripts_never_index_keys_or_argv_themselves(name: str) -> None:
    raw = (LUA_DIR / f"{name}.lua").read_text()
    assert not re.search(r"\b(KEYS|ARGV)\[", raw), "use K.<key> / A.<arg> / argv_group(i)"
    for include in (LUA_DIR / "includes").glob("*.lua"):
        assert not re.search(r"\b(KEYS|ARGV)\[", include.read_text()), include.name
    # job keys come from the keys.lua helpers only
    assert not re.search(r"\.\. '[jsl]:'", raw)


@pytest.mark.parametrize("name", script_names())
def test_every_script_compiles(name: str) -> None:
    source = load_script(name).source
    if source.startswith("#!"):
        source = source.split("\n", 1)[1]  # Redis reads the shebang; plain Lua does not
    runtime = lupa.LuaRuntime()
    check = runtime.eval("function(s) local f, err = loadstring(s) return err or 'ok' end")
    assert check(source) == "ok"


def test_lua_key_names_match_queue_keys() -> None:
    runtime = lupa.LuaRuntime()
    include = (LUA_DIR / "includes" / "keys.lua").read_text()
    names = runtime.execute(
        include + "\nreturn {legacy_job = legacy_job_key, state = state_key, logs = log_key, "
        "group_wait = group_key, dedup = dedup_key, jobs = jobs_key}"
    )
    for prefix, queue, job_id in (
        ("jq", "emails", "42"),
        ("a.b", "q-1", "order:7"),
        ("x", "y", "z"),
    ):
        keys = QueueKeys(prefix, queue)
        for what in ("legacy_job", "state", "logs", "group_wait", "dedup"):
            assert names[what](keys.base, job_id) == getattr(keys, what)(job_id)
        assert names["jobs"](keys.base) == keys.jobs


def test_prelude_names_keys_and_arguments() -> None:
    source = load_script("finish").source
    assert "local K = {wait = KEYS[1], prio = KEYS[2]" in source
    assert "local A = {base = ARGV[1], maxlen = ARGV[2], take = ARGV[3]" in source
    fixed = len(SPECS["finish"].argv)
    assert f"local o = {fixed} + i * 7" in source


def test_spec_packs_arguments_by_name() -> None:
    spec = SPECS["pause"]
    assert spec.pack({"pause": "1", "maxlen": 10}) == [10, "1"]
    with pytest.raises(TypeError, match=r"pause\.lua takes ARGV"):
        spec.pack({"maxlen": 10})
    with pytest.raises(TypeError):
        spec.pack({"maxlen": 10, "pause": "1", "extra": 1})


@pytest.mark.parametrize(
    "text",
    [
        "--[[ x: no sections\n]]\n",
        "--[[ x: bad\nKEYS: Wait\nARGV:\nEVENTS: none\nReturns: 1\n]]\n",
        "--[[ x: twice\nKEYS: wait wait\nARGV:\nEVENTS: none\nReturns: 1\n]]\n",
        "--[[ other: wrong name\nKEYS: wait\nARGV:\nEVENTS: none\nReturns: 1\n]]\n",
    ],
)
def test_malformed_headers_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_header("x", text)


def test_lua_flow_key_names_match_queue_keys() -> None:
    # a flow's scripts build other queues' keys from their base (same slot): as QueueKeys does
    from jobqueue.core.keys import queue_of_base

    runtime = lupa.LuaRuntime()
    include = (LUA_DIR / "includes" / "keys.lua").read_text()
    lua = runtime.execute(
        include + "\nreturn {deps = deps_key, results = results_key, failures = failures_key,"
        " queue = queue_keys}"
    )
    for keys in (QueueKeys("jq", "emails"), QueueKeys("a.b", "q-1", slot="llm.opus")):
        assert lua["deps"](keys.base, "7") == keys.dependencies("7")
        assert lua["results"](keys.base, "7") == keys.children_results("7")
        assert lua["failures"](keys.base, "7") == keys.children_failures("7")
        table = dict(lua["queue"](keys.base).items())
        assert len(table) == 17  # with `base`, `groups` and `jobs`
        for name, key in table.items():
            assert key == getattr(keys, name), name
        assert queue_of_base(keys.base) == keys.queue


def _reached(source: str) -> set[str]:
    """The `local function`s a script's code reaches (comments left out, unlike the loader's
    pruning, which keeps a function a comment names)."""
    lines = [re.sub(r"--.*$", "", line) for line in source.split("\n")]
    blocks: dict[str, str] = {}
    inside: set[int] = set()
    for i, line in enumerate(lines):
        match = re.match(r"^local function (\w+)\(", line)
        if match:
            end = lines.index("end", i)
            blocks[match.group(1)] = "\n".join(lines[i + 1 : end + 1])
            inside.update(range(i, end + 1))
    body = "\n".join(line for i, line in enumerate(lines) if i not in inside)
    todo, seen = set(re.findall(r"\w+", body)) & set(blocks), set()
    while todo:
        name = todo.pop()
        seen.add(name)
        todo |= (set(re.findall(r"\w+", blocks[name])) & set(blocks)) - seen
    return seen


@pytest.mark.parametrize("name", script_names())
def test_a_script_that_touches_envelopes_declares_the_jobs_hash(name: str) -> None:
    # the envelopes hash is built from A.base by the keys.lua helpers: a script that reaches
    # one of them touches its own queue's hash, so names it in its KEYS (log.lua uses K.jobs)
    script = load_script(name)
    reached = _reached(script.source) & {"jobs_key", "legacy_job_key"}
    touches = bool(reached) or "K.jobs" in script.source
    assert touches == ("jobs" in script.header.keys)
    assert "jobs_key" in _reached(load_script("take").source)
