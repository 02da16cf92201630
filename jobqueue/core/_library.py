"""The scripts as one Redis Functions library (Redis 7: `FUNCTION LOAD`, then `FCALL`).

Redis runs an `EVALSHA` script's whole body at every call, so each helper function its includes
define is a closure made again per call: `finish` pulls in 68 of them, and building them is
about a third of what Redis spends on a `finish` call before it reads a key (measured with
callgrind: ~80k of ~250k instructions). A library's top level runs once, at `FUNCTION LOAD`:
here every include is defined once for all the scripts, and each script is a registered
function whose body is the script's own code, run with `K`, `A` and `argv_group` set from its
KEYS and ARGV as the `EVALSHA` prelude sets them (`jobqueue.core._loader`). The Lua is the same
file in both forms; `ScriptRunner` (`jobqueue.core._runner`) chooses per connection.

The library's name carries a digest of its source (`jobqueue_<digest>`), and so does each
function's (`jobqueue_<digest>_<script>`): workers of two versions on one server each call
their own. Nothing per call is kept between calls at the top level: `K`, `A` and `argv_group`
are set at the start of every call, and the includes hold no other state but the memos of
`common.lua`'s `count_text`/`count_number` (the text of a small number and back: the same
answer whatever call asks, kept for the library's life instead of one call's). Two includes
defining one name would silently shadow each other: that raises here.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from redis.exceptions import NoPermissionError, OutOfMemoryError, ResponseError

from ._loader import (
    _HEADER_RE,
    _INCLUDE_RE,
    LUA_DIR,
    _expand,
    _prelude,
    parse_header,
    script_names,
)
from .fastconn import FastConnection

__all__ = ["LuaLibrary", "ensure_library", "library_was_missing", "load_library"]

log = logging.getLogger(__name__)

_TOP_LOCAL_RE = re.compile(r"^local (?:function )?([A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE)
_FLAGS_RE = re.compile(r"^#!lua(?:\s+flags=(\S+))?\s*$")
_NAME = "jobqueue_{digest}"


@dataclass(frozen=True, slots=True)
class LuaLibrary:
    """Every script as one library.

    Attributes:
        name: the library's name (`jobqueue_<digest of its source>`).
        source: the library, as `FUNCTION LOAD` takes it.
        functions: the function name of each script.
        read_only: the scripts flagged `no-writes` (run with `FCALL_RO`).
    """

    name: str
    source: str
    functions: Mapping[str, str]
    read_only: frozenset[str]


def _flags(first_line: str, name: str) -> list[str]:
    match = _FLAGS_RE.match(first_line)
    if match is None:
        raise ValueError(f"lua/{name}.lua: its first line is not a '#!lua' shebang")
    return match.group(1).split(",") if match.group(1) else []


@cache
def load_library() -> LuaLibrary:
    """The library of every script under `lua/` (cached)."""
    seen: set[str] = set()
    helpers: list[str] = []
    bodies: list[tuple[str, list[str], str]] = []
    for name in script_names():
        raw = (LUA_DIR / f"{name}.lua").read_text()
        header = parse_header(name, raw)
        end = _HEADER_RE.search(raw)
        assert end is not None
        body = raw[end.end() :]
        for include in _INCLUDE_RE.findall(body):
            helpers.append(_expand(f"--@include {include}\n", seen))
        code = _prelude(header, assign=True) + _INCLUDE_RE.sub("", body)
        bodies.append((name, _flags(raw.partition("\n")[0], name), code))
    shared = "\n".join(helpers)
    names = _TOP_LOCAL_RE.findall(shared)
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"lua/includes: {twice} defined by two includes (one library)")
    registered: list[str] = []
    for name, flags, code in bodies:
        listed = ", ".join(f"'{f}'" for f in flags)
        registered.append(
            f"redis.register_function{{function_name = '{_NAME}_{name}', flags = {{{listed}}},\n"
            f"callback = function(KEYS, ARGV)\n{code}\nend}}\n"
        )
    text = "local K, A, argv_group\n" + shared + "\n" + "".join(registered)
    digest = hashlib.sha1(text.encode()).hexdigest()[:16]
    library = _NAME.format(digest=digest)
    return LuaLibrary(
        name=library,
        source=f"#!lua name={library}\n" + text.replace(_NAME, library),
        functions={name: f"{library}_{name}" for name, _, _ in bodies},
        read_only=frozenset(name for name, flags, _ in bodies if "no-writes" in flags),
    )


async def ensure_library(fast: FastConnection, library: LuaLibrary, where: str) -> bool:
    """Load `library` on `fast`'s server unless it is there: True when its functions can run,
    False when they cannot (a server without functions, a user without `FUNCTION`, a server
    out of memory that refuses the load): the caller keeps `EVALSHA` then, which needs no
    load that memory could refuse, until it asks again (`ScriptRunner.load_all`)."""
    try:
        if not await fast.execute("FUNCTION", "LIST", "LIBRARYNAME", library.name):
            try:
                await fast.execute("FUNCTION", "LOAD", library.source)
            except ResponseError:
                # another connection may have loaded it meanwhile
                if not await fast.execute("FUNCTION", "LIST", "LIBRARYNAME", library.name):
                    raise
        return True
    except ResponseError as exc:
        # a user without FUNCTION or a full server: said at info; anything else (an old
        # server, a library Redis refuses) is a warning
        quiet = isinstance(exc, NoPermissionError | OutOfMemoryError)
        level = logging.INFO if quiet else logging.WARNING
        log.log(
            level, "redis %s: the scripts' function library cannot be loaded (%s: %s); they "
            "run by EVALSHA", where, type(exc).__name__, exc,
        )  # fmt: skip
        return False


async def library_was_missing(fast: FastConnection, library: LuaLibrary) -> bool:
    """After an `FCALL` failed: load the library, True when it was missing (a restarted or
    flushed server: nothing of the call ran, it can be sent again). False when it was there
    (the call's own error stands) or cannot be loaded."""
    try:
        await fast.execute("FUNCTION", "LOAD", library.source)
    except ResponseError:
        return False
    return True
