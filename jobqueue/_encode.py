"""The checks and the encoding of a new job, before anything is written (`Queue.add`)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from .config import MAX_PRIORITY, MAX_SECONDS, QueueConfig
from .core._inputs import shown
from .core.codec import dumps
from .core.replies import NewJob
from .dedup import Dedup
from .errors import ConfigError, InvalidJobError

__all__ = ["MAX_DELAY", "encode_job", "name_json"]

_JOB_ID_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,200}$")
_GROUP_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,100}$")

MAX_DELAY = MAX_SECONDS
"""Longest delay `Queue.add` accepts, in seconds (ten years): a longer one is a mistake (a
timestamp given as a delay, ms given as seconds), refused before it reaches a score."""


def _validate_job_id(job_id: str) -> str:
    if not isinstance(job_id, str) or not _JOB_ID_RE.match(job_id) or job_id.isdigit():
        raise InvalidJobError(
            f"job_id {shown(job_id)} is invalid: use 1-200 letters, digits, '_', '.', ':', '-', "
            "not only digits (those are the queue's own ids)"
        )
    return job_id


def _validate_group(group: str) -> str:
    if not isinstance(group, str) or not _GROUP_RE.match(group):
        raise InvalidJobError(
            f"group {shown(group)} is invalid: use 1-100 letters, digits, '_', '.', ':', '-'"
        )
    return group


_NAMES: dict[str, str] = {}  # a job name's JSON, by name (a queue has a few names)


def name_json(name: str) -> str:
    """The JSON of a valid job name (the valid names met are cached), else InvalidJobError."""
    encoded = _NAMES.get(name) if type(name) is str else None
    if encoded is None:
        if not isinstance(name, str) or not 0 < len(name) <= 200 or not name.isprintable():
            raise InvalidJobError(f"job name {shown(name)} is invalid: 1-200 printable characters")
        encoded = dumps(name, limit=1000, what="job name")
        if len(_NAMES) < 1024:
            _NAMES[name] = encoded
    return encoded


def encode_job(
    config: QueueConfig,
    name: str,
    data: Any,
    job_id: str | None,
    delay: float,
    priority: int,
    attempts: int | None,
    cost: Mapping[str, float] | None = None,
    group: str | None = None,
    group_concurrency: int | None = None,
    dedup: Dedup | None = None,
) -> NewJob:
    """One job for `add.lua` (its ARGV group), every option checked, or InvalidJobError
    naming the bad value."""
    encoded_name = name_json(name)
    if job_id is not None:
        _validate_job_id(job_id)
    if (
        isinstance(delay, bool)
        or not isinstance(delay, int | float)
        or not 0 <= delay <= MAX_DELAY  # before isfinite: a huge int does not fit a float
        or not math.isfinite(delay)
    ):
        raise InvalidJobError(
            f"delay must be a finite number of seconds within [0, {MAX_DELAY:g}], "
            f"got {shown(delay)}"
        )
    if (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not (-MAX_PRIORITY <= priority <= MAX_PRIORITY)
    ):
        raise InvalidJobError(
            f"priority must be an int within +-{MAX_PRIORITY}, got {shown(priority)}"
        )
    env = '{"n":' + encoded_name + ',"d":'
    env += dumps(data, limit=config.max_payload, what="job data")
    if attempts is not None:
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise InvalidJobError(f"attempts must be an int >= 1, got {shown(attempts)}")
        env += f',"at":{attempts}'
    if priority:
        env += f',"p":{priority}'
    encoded_group = ""
    if group is not None:
        env += f',"g":"{_validate_group(group)}"'
        cap = config.group_concurrency if group_concurrency is None else group_concurrency
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise InvalidJobError(f"group_concurrency must be an int >= 1, got {shown(cap)}")
        encoded_group = f"{cap or 0}:{group}"
    elif group_concurrency is not None:
        raise InvalidJobError(f"group_concurrency {shown(group_concurrency)} needs a group")
    if dedup is not None and not isinstance(dedup, Dedup):
        raise InvalidJobError(f"dedup must be a Dedup, got {shown(dedup)}")
    env += "}"
    encoded_cost = ""
    if cost is not None:
        try:
            encoded_cost = config.check_cost(cost, what="job cost")
        except ConfigError as exc:
            raise InvalidJobError(str(exc)) from None
    return NewJob(
        job_id or "", name, env, int(delay * 1000), priority, encoded_cost, encoded_group,
        dedup.encode() if dedup else "",
    )  # fmt: skip
