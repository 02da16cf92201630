"""`jobqueue.run` and `JOBQUEUE_LOOP`: the standard loop by default, uvloop when asked (or
`auto` and installed), a clear error for an unknown name, and `main` closed, never run, then."""

from __future__ import annotations

import asyncio

import pytest

import jobqueue
from jobqueue import ConfigError
from jobqueue.loop import LOOP_ENV, loop_factory


async def loop_module() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__


def test_the_standard_loop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LOOP_ENV, raising=False)
    assert loop_factory() is None
    assert jobqueue.run(loop_module()).startswith("asyncio")


@pytest.mark.parametrize("name", ["uvloop", "auto", " UVLOOP "])
def test_uvloop_when_asked(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    pytest.importorskip("uvloop")  # the `speed` extra (in `dev`)
    monkeypatch.setenv(LOOP_ENV, name)
    assert jobqueue.run(loop_module()) == "uvloop"
    monkeypatch.setenv(LOOP_ENV, "uvloop")
    assert jobqueue.run(loop_module(), loop="asyncio").startswith("asyncio")  # the argument wins


def test_an_unknown_loop_is_refused_and_main_never_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOOP_ENV, "tokio")
    main = loop_module()
    with pytest.raises(ConfigError, match="JOBQUEUE_LOOP must be one of asyncio, uvloop, auto"):
        jobqueue.run(main)
    assert main.cr_frame is None  # closed: no "never awaited" warning, nothing ran
