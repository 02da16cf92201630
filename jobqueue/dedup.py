"""Deduplication keys: `Queue.add(..., dedup=Dedup("report:42", ttl=60))`."""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass

from .core._inputs import shown
from .errors import InvalidJobError

__all__ = ["Dedup"]

_MAX_TTL = 10 * 365 * 86400.0  # seconds: a longer window is a mistake (ms given as seconds)


@dataclass(frozen=True, slots=True)
class Dedup:
    """A deduplication key for `Queue.add` (and `add_bulk` specs).

    A job added with a key that another job holds is a duplicate while that job is waiting or
    delayed (it has not started, or is due to run again after a failed attempt), or until `ttl`
    seconds after that job was added, whichever lasts longer. A duplicate is dropped: `add`
    returns the holder (`job.deduplicated == "dropped"`). With `replace=True` (debounce) a
    duplicate of a holder that has not started replaces it instead: same id, the new name,
    data, priority, group and delay, the delay and the window counted again from now
    (`job.deduplicated == "replaced"`); once the holder started, a duplicate within the window
    is dropped. Outside these, the new job is added and holds the key. The key is released
    when its holder is deleted (removed, cancelled, or trimmed after it ended), or when the
    window ends if that is later. All of it is decided atomically in the add script.

    Args:
        key: the deduplication key (1-200 printable characters), e.g. `"refresh:user-42"`.
        ttl: the window in seconds (None: only while the holder waits).
        replace: replace a waiting duplicate rather than drop the new one (debounce).
    """

    key: str
    _: KW_ONLY
    ttl: float | None = None
    replace: bool = False

    def __post_init__(self) -> None:
        key = self.key
        if not isinstance(key, str) or not 0 < len(key) <= 200 or not key.isprintable():
            raise InvalidJobError(f"dedup key {shown(key)} is invalid: 1-200 printable characters")
        ttl = self.ttl
        if ttl is not None and (
            isinstance(ttl, bool)
            or not isinstance(ttl, int | float)
            or not 0 < ttl <= _MAX_TTL  # first: a huge int does not fit a float (NaN fails)
        ):
            raise InvalidJobError(
                f"dedup ttl must be a finite number of seconds in (0, 10 years], got {shown(ttl)}"
            )
        if not isinstance(self.replace, bool):
            raise InvalidJobError(f"dedup replace must be a bool, got {shown(self.replace)}")

    def encode(self) -> str:
        """The add script's argument: `<ttl_ms>:<d|r>:<key>`."""
        ttl_ms = 0 if self.ttl is None else max(1, round(self.ttl * 1000))
        return f"{ttl_ms}:{'r' if self.replace else 'd'}:{self.key}"
