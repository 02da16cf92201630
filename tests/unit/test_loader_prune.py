"""The loader blanks the include functions a script never reaches (`_loader._prune`)."""

from __future__ import annotations

import re

import pytest

from jobqueue.core import _loader
from jobqueue.core._loader import LUA_DIR, load_script, script_names

_DEF = re.compile(r"^local function (\w+)\(", re.MULTILINE)
_WORD = re.compile(r"[A-Za-z_]\w*")

SOURCE = """local function used_twice(x)
  return x
end
local function helper(x)
  return used_twice(x)
end
local function unused(x)
  return helper(x)
end
local function self_only(x)
  if x then return self_only(nil) end
end
return helper(1)"""


def test_unreached_functions_are_blanked_and_lines_kept() -> None:
    out = _loader._prune(SOURCE)
    assert out.count("\n") == SOURCE.count("\n")
    assert _DEF.findall(out) == ["used_twice", "helper"]
    assert out.splitlines()[-1] == "return helper(1)"
    # a function that names itself only is still unreached
    assert "self_only" not in out


def test_a_block_the_rule_cannot_delimit_is_kept() -> None:
    source = "local function odd(x)\nx = 1\nend\nreturn 1"
    assert _loader._prune(source) == source


def _unpruned(name: str) -> str:
    raw = (LUA_DIR / f"{name}.lua").read_text()
    end = _loader._HEADER_RE.search(raw)
    assert end is not None
    header = _loader.parse_header(name, raw)
    return raw[: end.end()] + _loader._prelude(header) + _loader._expand(raw[end.end() :], set())


@pytest.mark.parametrize("name", script_names())
def test_no_function_a_script_names_is_blanked(name: str) -> None:
    full = _unpruned(name)
    pruned = load_script(name).source
    # line for line the same, a blanked line empty: Lua's error messages keep their lines
    pairs = list(zip(full.split("\n"), pruned.split("\n"), strict=True))
    assert all(new in (old, "") for old, new in pairs)
    removed = set(_DEF.findall(full)) - set(_DEF.findall(pruned))
    code = "\n".join(line for line in pruned.splitlines() if not line.lstrip().startswith("--"))
    assert not removed & set(_WORD.findall(code))
