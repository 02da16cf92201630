"""The offline model's prompt cache: what the API would read from and write to its cache.

A request's prefix up to each cache breakpoint is keyed by `sha256` of the tier and the blocks
up to it. The first call with a prefix writes it (`cache_write_tokens`); a later call with the
same prefix reads the longest one already written (`cache_read_tokens`) and writes the rest up
to its last breakpoint, as the API does. TTLs do not expire here (the offline model is
deterministic: no clock), and prefixes are never shorter than a minimum, so even the short
system prompts of a demo count as cached.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence

from pipeline.ai.base import PromptBlock, Usage, check_prompt_blocks

__all__ = ["PrefixCache", "estimate_tokens"]


def estimate_tokens(text: str) -> int:
    """The offline model's token count: one per 4 characters, at least 1.

    Args:
        text: Any text.

    Returns:
        `ceil(len(text) / 4)`, at least 1.
    """
    return max(1, math.ceil(len(text) / 4))


class PrefixCache:
    """Cache prefixes seen by one offline model (thread-safe; bounded, oldest forgotten first).

    Args:
        max_entries: How many prefixes are remembered.
    """

    def __init__(self, *, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries!r}")
        self.max_entries = max_entries
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def usage(
        self, tier: str, system: str | PromptBlock, context: Sequence[PromptBlock], prompt: str
    ) -> Usage:
        """Count the prompt of one call as input, cache reads and cache writes, and remember
        its prefixes.

        Args:
            tier: The calling stage (a real cache is per model).
            system: The system prompt.
            context: The blocks before the per-call prompt.
            prompt: The per-call prompt.

        Returns:
            A `Usage` with `input_tokens`, `cache_read_tokens`, `cache_write_tokens` and
            `cache_write_1h_tokens` set (the caller adds output and searches).

        Raises:
            LLMError: VALIDATION_ERROR for breakpoints the API would refuse.
        """
        check_prompt_blocks(system, context)
        blocks = [system if isinstance(system, PromptBlock) else PromptBlock(system), *context]
        digest = hashlib.sha256(tier.encode("utf-8"))
        tokens = 0
        # (key, tokens up to and including the block, ttl) for each breakpoint, in order
        breakpoints: list[tuple[str, int, str]] = []
        for block in blocks:
            digest.update(b"\x00" + block.text.encode("utf-8"))
            tokens += estimate_tokens(block.text)
            if block.cache is not None:
                breakpoints.append((digest.copy().hexdigest(), tokens, block.cache))
        total = tokens + estimate_tokens(prompt)
        if not breakpoints:
            return Usage(input_tokens=total)
        with self._lock:  # no await inside: concurrent calls see one order, same totals
            seen = [i for i, (key, _, _) in enumerate(breakpoints) if key in self._seen]
            hit = seen[-1] if seen else -1
            for key, _, _ in breakpoints:
                self._seen[key] = None
                self._seen.move_to_end(key)
            while len(self._seen) > self.max_entries:
                self._seen.popitem(last=False)
        read = breakpoints[hit][1] if hit >= 0 else 0
        written = written_1h = 0
        previous = read
        for _, upto, ttl in breakpoints[hit + 1 :]:
            written += upto - previous
            if ttl == "1h":
                written_1h += upto - previous
            previous = upto
        return Usage(
            input_tokens=total - breakpoints[-1][1],
            cache_read_tokens=read,
            cache_write_tokens=written,
            cache_write_1h_tokens=written_1h,
        )
