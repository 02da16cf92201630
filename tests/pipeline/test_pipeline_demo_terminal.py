"""The demo as a person sees it in a terminal: human log lines (never JSON) and an embedded Valkey
run as we recommend running Redis (an append-only file), so the engine has nothing to warn about.

The log format is tested as a unit on a real pseudo-terminal and a pipe; the embedded server by
asking it (`CONFIG GET`); and the whole `python -m pipeline run` once in a pseudo-terminal.
"""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import re
import select
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest
import redis
import structlog
from pipeline_helpers import HANG

from jobqueue import Queue
from jobqueue.testing import RedisServer
from pipeline.ai.universe import universe
from pipeline.embedded import REDIS_ARGS, embedded_redis
from pipeline.logs import configure_logging, log_format
from pipeline.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][A-Z0-9]|\x1b[=>]")


@pytest.fixture
def tty() -> Iterator[tuple[int, TextIO]]:
    """A real pseudo-terminal: (the master side to read, a text stream on the terminal side)."""
    master, slave = os.openpty()
    stream = open(slave, "w", buffering=1)  # noqa: SIM115 - closed below
    try:
        yield master, stream
    finally:
        stream.close()
        os.close(master)


def read_line(master: int) -> str:
    """The next complete line the terminal shows (a deadline bounds a hang only)."""
    data = b""
    deadline = time.monotonic() + HANG
    while b"\n" not in data:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            data += os.read(master, 65536)
        assert time.monotonic() < deadline, f"no line on the terminal: {data!r}"
    return ANSI.sub("", data.decode()).replace("\r", "")


def _is_json(line: str) -> bool:
    text = line.strip()
    if not text.startswith("{"):
        return False
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)


def test_log_format_is_console_on_a_terminal_and_json_elsewhere(
    tty: tuple[int, TextIO], tmp_path: Path
) -> None:
    _, terminal = tty
    assert log_format("auto", terminal) == "console"
    assert log_format("auto", io.StringIO()) == "json"
    with open(tmp_path / "log", "w") as file:
        assert log_format("auto", file) == "json"
    read_end, write_end = os.pipe()
    with open(write_end, "w") as pipe:
        assert log_format("auto", pipe) == "json"
    os.close(read_end)
    assert log_format("json", terminal) == "json"
    assert log_format("console", io.StringIO()) == "console"
    with pytest.raises(ValueError, match="'xml'"):
        log_format("xml", terminal)


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_writes_human_lines_to_a_terminal_and_json_to_a_pipe(
    tty: tuple[int, TextIO],
) -> None:
    master, terminal = tty
    configure_logging(stream=terminal, level="INFO")
    logging.getLogger("demo.test").warning("hello %s", "there")
    line = read_line(master)
    assert "hello there" in line and "warning" in line and not _is_json(line)

    pipe = io.StringIO()
    configure_logging(stream=pipe, level="INFO")
    logging.getLogger("demo.test").warning("hello %s", "json")
    record = json.loads(pipe.getvalue())
    assert (record["event"], record["level"]) == ("hello json", "warning")


@pytest.mark.usefixtures("restore_logging")
def test_the_run_logs_human_lines_on_a_terminal(
    tty: tuple[int, TextIO], monkeypatch: pytest.MonkeyPatch
) -> None:
    master, terminal = tty
    monkeypatch.setattr(sys, "stderr", terminal)
    # what `python -m pipeline run` configures when PIPELINE_LOG_FORMAT is not set
    configure_logging(fmt=Settings(log_format="auto").log_format, level="WARNING")
    assert logging.getLogger().level == logging.WARNING
    logging.getLogger("jobqueue.core.connection").warning("redis %s is odd", "here")
    line = read_line(master)
    assert "redis here is odd" in line and not _is_json(line)
    logging.getLogger("demo.test").info("not shown at WARNING")

    # a live progress view swaps sys.stderr for a proxy: the lines follow it
    proxy = io.StringIO()
    monkeypatch.setattr(sys, "stderr", proxy)
    logging.getLogger("demo.test").warning("above the live view")
    assert "above the live view" in proxy.getvalue() and "not shown" not in proxy.getvalue()


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("case", ["asked for json", "stderr is a pipe"])
def test_the_run_keeps_json_when_asked_or_not_on_a_terminal(
    case: str, tty: tuple[int, TextIO], monkeypatch: pytest.MonkeyPatch
) -> None:
    master, terminal = tty
    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", terminal if case == "asked for json" else pipe)
    fmt = Settings(log_format="json" if case == "asked for json" else "auto").log_format
    configure_logging(fmt=fmt, level="WARNING")
    logging.getLogger("demo.test").warning("machine-read")
    line = read_line(master) if case == "asked for json" else pipe.getvalue()
    assert json.loads(line)["event"] == "machine-read"


@pytest.mark.integration
async def test_the_embedded_valkey_has_an_append_only_file(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert REDIS_ARGS == ("--appendonly", "yes", "--appendfsync", "everysec")
    caplog.set_level(logging.WARNING, logger="jobqueue")
    with embedded_redis() as url:
        client = redis.Redis.from_url(url, decode_responses=True)
        try:
            assert client.config_get("appendonly") == {"appendonly": "yes"}
            assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
            where = client.config_get("dir")["dir"]
            assert where.startswith(os.path.realpath(tempfile.gettempdir()))
            assert client.info("persistence")["aof_enabled"] == 1
            client.set("k", "v")
        finally:
            client.close()
        queue = Queue("aof-check", redis=url)
        await queue.connect()
        await queue.close()
    assert not [r for r in caplog.records if "append-only" in r.getMessage()]
    assert not os.path.exists(where)  # removed with the server, its file with it

    # the check that stayed silent above does speak about a server without one
    with RedisServer() as bare:
        queue = Queue("aof-check", redis=bare.url)
        await queue.connect()
        await queue.close()
    assert [r for r in caplog.records if "no append-only file" in r.getMessage()]


@pytest.mark.integration
@pytest.mark.e2e
def test_the_demo_in_a_terminal(database_url: str) -> None:
    """`python -m pipeline run "Health Care" --auto-approve` in a pseudo-terminal, on its own
    embedded Valkey (REDIS_URL unset) and the test PostgreSQL: what a person sees."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIPELINE_", "ANTHROPIC_")) and k not in ("REDIS_URL", "DATABASE_URL")
    }
    env.update(
        {
            "DATABASE_URL": database_url,
            "PIPELINE_LLM_MODE": "offline",
            "PIPELINE_REJECTION_DELAY": "0.05",
            "PIPELINE_RETRY_SCALE": "0.01",
            "PIPELINE_DRAIN_DELAY": "0.3",
            "PIPELINE_STALL_INTERVAL": "0.2",
            "PIPELINE_SHUTDOWN_GRACE": "1",
            "PIPELINE_STOCKS_TO_ANALYZE": "2",
            "PYTHONPATH": str(ROOT),
            "TERM": "xterm-256color",
        }
    )
    env.pop("NO_COLOR", None)
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 200, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", "Health Care", "--auto-approve",
         "--timeout", str(HANG)],
        cwd=ROOT, env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 2 * HANG
    try:
        while True:  # until the terminal closes (the process and its children are gone)
            assert time.monotonic() < deadline, b"".join(chunks)[-3000:]
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer closed its side
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=HANG)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    out = ANSI.sub("", b"".join(chunks).decode(errors="replace")).replace("\r", "")
    assert code == 0, out[-3000:]
    assert "REDIS_URL unset: started an embedded Valkey" in out
    assert re.search(r"Health Care: run \S+ is completed", out), out[-3000:]
    assert "append-only" not in out
    assert not [line for line in out.splitlines() if _is_json(line)]
    ranked = re.findall(r"│\s*(?:10|[1-9])\s*│\s*([A-Z][A-Z0-9.\-]*)\s*│", out)
    health = universe().sector("Health Care")
    assert health is not None
    assert len(set(ranked)) == 10 and set(ranked) <= {c.ticker for c in health.companies}
    for ticker in ("NVDA", "MSFT", "AAPL", "KO", "CVX", "NEE", "CAT"):
        assert not re.search(rf"\b{ticker}\b", out), ticker
