"""What the simulator counted: per scaled window and model, and in total. JSON both ways, so
the report reads the same thing in process (`ProviderSimulator.stats()`) and over HTTP
(`GET /_sim/stats`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ._config import Limits

__all__ = ["ModelStats", "Stats", "WindowStats"]


@dataclass
class WindowStats:
    """One scaled minute of one model (all API keys together).

    Attributes:
        index: Window number: 0 is the first `minute_seconds` after `start()`.
        requests: Requests admitted (they count against the RPM).
        input_tokens: Input tokens charged to the ITPM (fresh input plus cache writes).
        cache_read_tokens: Input tokens read from the prompt cache (not charged).
        output_tokens: Output tokens produced (settled at the end of each request), counted in
            the window where the request was admitted.
        rate_limited: Requests answered 429.
        overloaded: Requests answered 529 (outage).
        dropped: Requests whose connection was dropped (outage).
    """

    index: int
    requests: int = 0
    input_tokens: int = 0
    cache_read_tokens: int = 0
    output_tokens: int = 0
    rate_limited: int = 0
    overloaded: int = 0
    dropped: int = 0


@dataclass
class ModelStats:
    """The windows of one model.

    Attributes:
        limits: The model's per-minute limits (per API key).
        windows: Every window from 0 to the last one that saw a request, in order.
    """

    limits: Limits
    windows: list[WindowStats] = field(default_factory=list)

    def window(self, index: int) -> WindowStats:
        """Window `index`, created (with any missing before it) when new."""
        while len(self.windows) <= index:
            self.windows.append(WindowStats(len(self.windows)))
        return self.windows[index]

    def total(self, name: str) -> int:
        """The sum of one counter over every window."""
        return sum(int(getattr(w, name)) for w in self.windows)


@dataclass
class Stats:
    """A snapshot of everything the simulator counted.

    Attributes:
        minute_seconds: Seconds of a scaled minute (a window).
        elapsed: Seconds of simulator time since `start()` when the snapshot was taken.
        calls: Every `POST /v1/messages` received (admitted, 429, 529, dropped, invalid).
        admitted: Requests that fit the limits and were answered.
        rate_limited: 429 answers.
        overloaded: 529 answers.
        dropped: Connections dropped (outage).
        invalid: 400/401 answers.
        never_fit: 429s of requests larger than a whole minute's limit (they can never fit).
        count_tokens_calls: `POST /v1/messages/count_tokens` received (not rate limited).
        in_flight: Requests admitted whose reply has not ended yet.
        models: Per model id.
    """

    minute_seconds: float
    elapsed: float
    calls: int = 0
    admitted: int = 0
    rate_limited: int = 0
    overloaded: int = 0
    dropped: int = 0
    invalid: int = 0
    never_fit: int = 0
    count_tokens_calls: int = 0
    in_flight: int = 0
    models: dict[str, ModelStats] = field(default_factory=dict)

    @property
    def full_windows(self) -> int:
        """Windows that had ended when the snapshot was taken."""
        return int(self.elapsed // self.minute_seconds)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "models"}
        out["models"] = {
            name: {"limits": m.limits.as_dict(), "windows": [asdict(w) for w in m.windows]}
            for name, m in self.models.items()
        }
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stats:
        """The inverse of `to_dict`.

        Args:
            data: What `to_dict` (or `GET /_sim/stats`) gave.

        Returns:
            The snapshot.
        """
        names = {f.name for f in fields(cls)} - {"models"}
        scalars = {name: data[name] for name in names if name in data}
        models = {
            name: ModelStats(
                Limits(**m["limits"]), [WindowStats(**w) for w in m.get("windows", [])]
            )
            for name, m in (data.get("models") or {}).items()
        }
        return cls(**scalars, models=models)
