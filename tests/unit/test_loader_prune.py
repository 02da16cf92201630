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


def test_a_name_in_a_comment_keeps_nothing_a_name_in_a_string_does() -> None:
    source = (
        "local function in_comment(x)\n  return x\nend\n"
        "local function in_string(x)\n  return x\nend\n"
        "local function in_block(x)\n  return x\nend\n"
        "--[[ in_block ]] local s = 'a -- in_string' -- in_comment\nreturn s"
    )
    out = _loader._prune(source)
    assert _DEF.findall(out) == ["in_string"]
    assert out.count("\n") == source.count("\n")


def test_comments_are_blanked_line_for_line() -> None:
    source = "a = 1 -- x\nb = \"c--d\" --[==[ e\nf ]] ]==] g = [[ h -- i ]]\nj = 'k\\'--l' -- m"
    out = _loader._without_comments(source)
    assert out.split("\n") == [
        "a = 1     ",
        'b = "c--d"' + " " * 9,
        " " * 10 + "g = [[ h -- i ]]",
        "j = 'k\\'--l'     ",
    ]


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
    # every use in code, by a rule of its own: a line's text before a `--` outside quotes
    code = "\n".join(_before_comment(line) for line in pruned.splitlines())
    assert not removed & set(_WORD.findall(code))


def _before_comment(line: str) -> str:
    if line.startswith("#!"):
        return ""
    for at in (m.start() for m in re.finditer("--", line)):
        before = line[:at].replace("\\\\", "").replace("\\'", "").replace('\\"', "")
        if before.count("'") % 2 == 0 and before.count('"') % 2 == 0:
            return line[:at]
    return line
