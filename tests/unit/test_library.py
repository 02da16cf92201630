"""The function library built from the scripts (`jobqueue.core._library`): one function per
script, named after a digest of the source, flags from each shebang, each include once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from jobqueue.core import _library, _loader
from jobqueue.core._library import load_library
from jobqueue.core._loader import LUA_DIR, load_script, script_names


def test_one_function_per_script_named_by_the_digest() -> None:
    lib = load_library()
    assert lib.name.startswith("jobqueue_") and len(lib.name) == len("jobqueue_") + 16
    assert lib.source.startswith(f"#!lua name={lib.name}\n")
    assert set(lib.functions) == set(script_names())
    for name, function in lib.functions.items():
        assert function == f"{lib.name}_{name}"
        assert f"function_name = '{function}'" in lib.source
    assert lib.read_only == {
        n for n in script_names() if "no-writes" in load_script(n).source.partition("\n")[0]
    }
    assert "flags = {'allow-oom'}" in lib.source


def test_each_include_is_defined_once() -> None:
    source = load_library().source
    for helper in ("now_ms", "emit", "take", "flow_child_ended", "grp_left", "env_get"):
        assert source.count(f"local function {helper}(") <= 1, helper
        assert f"{helper}(" in source
    # the scripts' bodies set K, A (and argv_group) per call; the library declares them once
    assert source.count("local K, A, argv_group") == 1
    assert "\nlocal K = {" not in source


@pytest.fixture
def lua_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of `lua/` the loaders read instead (their caches emptied around the test)."""
    copy = tmp_path / "lua"
    shutil.copytree(LUA_DIR, copy)
    monkeypatch.setattr(_loader, "LUA_DIR", copy)
    monkeypatch.setattr(_library, "LUA_DIR", copy)
    load_library.cache_clear()
    yield copy
    load_library.cache_clear()


def test_a_name_two_includes_define_is_refused(lua_copy: Path) -> None:
    extra = lua_copy / "includes" / "jobs.lua"
    extra.write_text(extra.read_text() + "\nlocal function emit(a)\n  return a\nend\n")
    with pytest.raises(ValueError, match="emit"):
        load_library()


def test_the_digest_follows_the_source(lua_copy: Path) -> None:
    before = load_library()
    beat = lua_copy / "beat.lua"
    beat.write_text(beat.read_text() + "\n-- changed\n")
    load_library.cache_clear()
    after = load_library()
    assert after.name != before.name and after.functions["beat"] != before.functions["beat"]


def test_a_script_without_a_shebang_is_refused(lua_copy: Path) -> None:
    beat = lua_copy / "beat.lua"
    beat.write_text(beat.read_text().partition("\n")[2])
    with pytest.raises(ValueError, match="shebang"):
        load_library()
