"""Reading the Lua scripts: headers, includes and the prelude made from each header.

Every script under `lua/` opens with a header that is its contract:

    #!lua
    --[[ finish: what it does...
    KEYS: wait prio priorities ...          the queue keys it touches, by QueueKeys name
    ARGV:
      base      what it is                  one fixed argument per line (2 spaces in;
                                            deeper lines continue the one above)
      take      ...
      per outcome:                          then a group repeated per item (optional)
      id        ...
    EVENTS: completed failed ...            the events it appends to the stream (or none)
    Returns: ...
    ]]

The header is read here and turned into a prelude placed after it: `K` (keys by name),
`A` (fixed arguments by name) and `argv_group(i)` (the values of the i-th repeated group, from
0, in header order). So a script never indexes KEYS or ARGV itself, and its header cannot
drift from what it reads; `jobqueue.core.scripts` declares the same names for each call and a
test keeps both in step. `--@include name.lua` lines pull shared code from `lua/includes/`
(each file once per script). A `local function` of an include that the script never reaches is
blanked out (its lines kept empty, so error messages keep their line numbers): Redis runs a
script's whole body on every call, and each function defined is a closure made per call
(~0.07 us each; the add script pulled in 43 of them, about 3 us of its ~10 us). Where Redis
runs functions, `jobqueue.core._library` makes one library of the same files instead, whose
helpers are made once.

The first line of each script is a `#!lua` shebang (with `flags=no-writes` for read-only
scripts): Redis 7 reads script flags from it, and a script with one is refused before any
write when the server is out of memory. fakeredis's Lua does not parse it, so
`load_script(name, shebang=False)` gives a variant whose first line is a comment instead
(same line numbers, its own SHA1); `jobqueue.core.scripts.Scripts` picks it for fakeredis
clients.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

__all__ = ["LUA_DIR", "Header", "LuaScript", "load_script", "script_names"]

LUA_DIR = Path(__file__).parent / "lua"
_INCLUDE_RE = re.compile(r"^--@include\s+(\S+)\s*$", re.MULTILINE)
_HEADER_RE = re.compile(r"^--\[\[ (\w+): (.*?)^\]\]\n", re.MULTILINE | re.DOTALL)
_LABEL_RE = re.compile(r"^(KEYS|ARGV|EVENTS|Returns):(.*)$")
_GROUP_RE = re.compile(r"^\s+per (\w+):\s*$")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_KEY_RE = re.compile(r"^([a-z][a-z0-9_]*)(\(id\))?$")
_FUNCTION_RE = re.compile(r"^local function ([A-Za-z_][A-Za-z0-9_]*)\(")
_WORD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LONG_BRACKET_RE = re.compile(r"\[(=*)\[")


@dataclass(frozen=True, slots=True)
class Header:
    """The contract a script's header states.

    Attributes:
        keys: the KEYS, in order: QueueKeys names, `name(id)` for a key of one job.
        argv: the fixed ARGV names, in order.
        group: the names of the repeated ARGV group, in order (empty when none).
        group_of: what the group is per (`job`, `outcome`...), "" when none.
        events: the events the script may append to the stream.
    """

    keys: tuple[str, ...]
    argv: tuple[str, ...]
    group: tuple[str, ...]
    group_of: str
    events: frozenset[str]


@dataclass(frozen=True, slots=True)
class LuaScript:
    """One script: its header, its full source (prelude and includes in) and its SHA1."""

    name: str
    header: Header
    source: str
    sha: str


def parse_header(name: str, text: str) -> Header:
    """Read the header of script `name` (its file's text); ValueError when it is malformed."""
    match = _HEADER_RE.search(text)
    if match is None or match.group(1) != name:
        raise ValueError(f"lua/{name}.lua: no '--[[ {name}: ...' header")
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in match.group(2).splitlines():
        label = _LABEL_RE.match(line)
        if label:
            current = sections.setdefault(label.group(1), [])
            if label.group(2).strip():
                current.append(" " + label.group(2).strip())
        elif current is not None:
            current.append(line)
    missing = {"KEYS", "ARGV", "EVENTS", "Returns"} - set(sections)
    if missing:
        raise ValueError(f"lua/{name}.lua: header lacks {sorted(missing)}")
    keys = tuple(" ".join(sections["KEYS"]).split())
    for key in keys:
        if not _KEY_RE.match(key):
            raise ValueError(f"lua/{name}.lua: bad key name {key!r}")
    argv: list[str] = []
    group: list[str] = []
    group_of = ""
    for line in sections["ARGV"]:
        if not line.strip() or line.startswith("   "):
            continue  # a blank line, or the continuation of the line above (indented deeper)
        per = _GROUP_RE.match(line)
        if per:
            group_of = per.group(1)
            continue
        arg = line.split()[0]
        if not _NAME_RE.match(arg):
            raise ValueError(f"lua/{name}.lua: bad ARGV name {arg!r}")
        (group if group_of else argv).append(arg)
    words = " ".join(sections["EVENTS"]).split()
    events = frozenset() if words == ["none"] else frozenset(words)
    names = [k.split("(")[0] for k in keys]
    if len(set(names)) != len(names) or len(set(argv + group)) != len(argv) + len(group):
        raise ValueError(f"lua/{name}.lua: a KEYS or ARGV name appears twice")
    return Header(keys, tuple(argv), tuple(group), group_of, events)


def _prelude(header: Header, *, assign: bool = False) -> str:
    """`K`, `A` and `argv_group` from the header; `assign`: set the ones a Functions library
    declares once (`jobqueue.core._library`) instead of declaring them."""
    local = "" if assign else "local "
    lines = ["-- made from the header by jobqueue.core._loader"]
    keys = ", ".join(f"{k.split('(')[0]} = KEYS[{i}]" for i, k in enumerate(header.keys, 1))
    lines.append(f"{local}K = {{{keys}}}")
    args = ", ".join(f"{a} = ARGV[{i}]" for i, a in enumerate(header.argv, 1))
    lines.append(f"{local}A = {{{args}}}")
    if header.group:
        fixed, size = len(header.argv), len(header.group)
        values = ", ".join(f"ARGV[o + {i}]" for i in range(1, size + 1))
        lines += [
            "argv_group = function(i)" if assign else "local function argv_group(i)",
            f"  local o = {fixed} + i * {size}",
            f"  return {values}",
            "end",
        ]
    return "\n".join(lines) + "\n"


def _expand(source: str, seen: set[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        include = match.group(1)
        if include in seen:
            return ""  # already in this script
        seen.add(include)
        return _expand((LUA_DIR / "includes" / include).read_text(), seen)

    return _INCLUDE_RE.sub(replace, source)


@cache
def load_script(name: str, *, shebang: bool = True) -> LuaScript:
    """Read `lua/<name>.lua`: parse its header, add the prelude, expand its includes (cached).

    Args:
        name: the script's name.
        shebang: False turns the `#!lua` first line into a Lua comment, for servers whose Lua
            rejects it (fakeredis); flags it carried are then not applied.
    """
    if not shebang:
        script = load_script(name)
        source = _comment_out_shebang(script.source)
        return LuaScript(name, script.header, source, hashlib.sha1(source.encode()).hexdigest())
    raw = (LUA_DIR / f"{name}.lua").read_text()
    header = parse_header(name, raw)
    end = _HEADER_RE.search(raw)
    assert end is not None
    # the shebang stays on the first line, the header after it, then the prelude
    body = _prune(_expand(raw[end.end() :], set()))
    source = raw[: end.end()] + _prelude(header) + body
    return LuaScript(name, header, source, hashlib.sha1(source.encode()).hexdigest())


def _functions(lines: list[str]) -> dict[str, tuple[int, int]]:
    """The top-level `local function` blocks: name -> (first line, last line), a block ending
    at the first `end` in column 0. A block with another line in column 0 (not a comment) is
    left out: the rule does not know where it ends, so it is never pruned."""
    blocks: dict[str, tuple[int, int]] = {}
    i = 0
    while i < len(lines):
        match = _FUNCTION_RE.match(lines[i])
        if match is None:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and lines[j] != "end":
            j += 1
        inner = lines[i + 1 : j]
        if j < len(lines) and all(not s or s[0] in " \t" or s.startswith("--") for s in inner):
            if match.group(1) not in blocks:  # a second definition: keep both (never pruned)
                blocks[match.group(1)] = (i, j)
            else:
                blocks[match.group(1)] = (-1, -1)
        i = j + 1
    return {name: span for name, span in blocks.items() if span[0] >= 0}


def _prune(body: str) -> str:
    """`body` with the lines of each `local function` that nothing reachable names made
    empty. Reachable: every line outside those functions, then the functions those lines
    name, and so on. A name in a comment is no use (comments name helpers to explain them; each
    closure kept is made again on every call); a name in a string counts (it only keeps more)."""
    lines = body.split("\n")
    code = _without_comments(body).split("\n")  # line for line the same as `lines`
    blocks = _functions(lines)
    inside = {k for first, last in blocks.values() for k in range(first, last + 1)}
    outside = (line for k, line in enumerate(code) if k not in inside)
    words = set(_WORD_RE.findall("\n".join(outside)))
    kept: set[str] = set()
    todo = [name for name in blocks if name in words]
    while todo:
        name = todo.pop()
        if name in kept:
            continue
        kept.add(name)
        first, last = blocks[name]
        # the function's own name on its first line is not a use of it
        text = "\n".join(code[first + 1 : last + 1]) + _FUNCTION_RE.sub("", code[first])
        todo += [w for w in set(_WORD_RE.findall(text)) if w in blocks and w not in kept]
    for name, (first, last) in blocks.items():
        if name not in kept:
            lines[first : last + 1] = [""] * (last - first + 1)
    return "\n".join(lines)


def _without_comments(source: str) -> str:
    """`source` with its Lua comments (`-- ...` and `--[[ ... ]]`, `--[==[ ... ]==]`) blanked
    and its newlines kept, so that its lines match the original's; strings are kept as they
    are (a `--` inside one is not a comment)."""
    out: list[str] = []
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if c in "'\"":  # a short string, up to its unescaped closing quote or the line's end
            j = i + 1
            while j < n and source[j] != c and source[j] != "\n":
                j += 2 if source[j] == "\\" else 1
            out.append(source[i : j + 1])
            i = j + 1
        elif source.startswith("--", i):
            long = _LONG_BRACKET_RE.match(source, i + 2)
            if long:  # a block comment: to its closing bracket of the same level
                close = source.find("]" + long.group(1) + "]", long.end())
                end = n if close < 0 else close + len(long.group(0))
            else:
                end = source.find("\n", i)
                end = n if end < 0 else end
            out.append(re.sub(r"[^\n]", " ", source[i:end]))
            i = end
        else:
            long = _LONG_BRACKET_RE.match(source, i)
            if long:  # a long string: kept whole
                close = source.find("]" + long.group(1) + "]", long.end())
                end = n if close < 0 else close + len(long.group(0))
                out.append(source[i:end])
                i = end
            else:
                out.append(c)
                i += 1
    return "".join(out)


def _comment_out_shebang(source: str) -> str:
    first, newline, rest = source.partition("\n")
    if not first.startswith("#!"):
        return source
    # a comment on the same line: Lua's error messages keep the line numbers of the original
    return f"-- {first} (off: this server's Lua rejects a shebang){newline}{rest}"


def script_names() -> tuple[str, ...]:
    """The names of every script under `lua/`, sorted."""
    return tuple(sorted(p.stem for p in LUA_DIR.glob("*.lua")))
