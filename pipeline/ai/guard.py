"""A seam around every model call: `GuardedLLM` runs guards before and after the call.

A guard (`Guard`) sees each call (`LLMCall`: tier, model, prompt texts, `max_tokens`, and the
run and job it belongs to) twice: `before(call)` returns a reservation, or raises to refuse the
call (nothing is sent); `after(call, reservation, outcome)` gets the `LLMResult`, or the
exception when the call failed or a later guard refused it. The cost budgets
(`pipeline.budget.BudgetGuard`) are one guard; shared token limits and limits learned from the
provider's headers plug in the same way.

The run and job come from `job_scope`, set once per job by the stage wrapper
(`pipeline.stages.base.make_handler`), so the call sites in the stages stay as they are.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar
from uuid import UUID

from pydantic import BaseModel

from pipeline.ai.base import DEFAULT_MODELS, LLM, Effort, LLMResult, PromptBlock, Tier
from pipeline.tracing import llm_span, record_llm_result

__all__ = [
    "Guard",
    "GuardedLLM",
    "JobScope",
    "LLMCall",
    "current_scope",
    "job_scope",
]

log = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)
R = TypeVar("R")


@dataclass
class JobScope:
    """The job whose handler is running, as model calls made inside it see it.

    Attributes:
        run_id: The run (`sector_analysis` id) the job works for, None when it has none.
        job_id: The job's id.
        attempt: The job's attempt number.
        stage: The job type.
        calls: Guarded calls started so far in this delivery (the next call's index).
    """

    run_id: UUID | None = None
    job_id: str | None = None
    attempt: int = 0
    stage: str | None = None
    calls: int = 0


_SCOPE: ContextVar[JobScope | None] = ContextVar("pipeline_llm_job_scope", default=None)


@contextlib.contextmanager
def job_scope(
    run_id: UUID | None,
    *,
    job_id: str | None = None,
    attempt: int = 0,
    stage: str | None = None,
    first_call: int = 0,
) -> Iterator[JobScope]:
    """Attribute the model calls made inside the block to a run and a job.

    Args:
        run_id: The run the calls are for (None: no run, only organisation-wide guards apply).
        job_id: The job making them.
        attempt: The job's attempt number.
        stage: The job type.
        first_call: The first call's index (a job that runs in several steps, e.g. a flow
            parent judging again, numbers each step's calls apart: their usage rows and budget
            reservations are keyed by job, attempt and call index).

    Yields:
        The scope, whose `calls` counts the guarded calls made so far.
    """
    scope = JobScope(run_id=run_id, job_id=job_id, attempt=attempt, stage=stage, calls=first_call)
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)


def current_scope() -> JobScope | None:
    """The innermost `job_scope` of the running task, or None outside any."""
    return _SCOPE.get()


@dataclass(frozen=True)
class LLMCall:
    """One model call as the guards see it, before it is made.

    Attributes:
        kind: `complete` (free text) or `structured`.
        tier: The calling stage's tier.
        model: The model the call is priced as: the tier's configured model (the offline model
            has no price, so its calls are priced as the configured model would be).
        system: The system prompt (a `PromptBlock` may be a cache breakpoint).
        prompt: The per-call part of the user message.
        context: The blocks of the user message before `prompt`.
        max_tokens: The output budget: the most output the call can be billed for.
        web_search: Whether the server-side web search tool is offered.
        run_id: The run the call is for, from the `job_scope` (None outside a job).
        job_id: The job making the call.
        attempt: The job's attempt number.
        call_index: The call's position among the guarded calls of this job delivery.
        stage: The job type.
    """

    kind: Literal["complete", "structured"]
    tier: Tier
    model: str
    system: str | PromptBlock
    prompt: str
    max_tokens: int
    context: tuple[PromptBlock, ...] = ()
    web_search: bool = False
    run_id: UUID | None = None
    job_id: str | None = None
    attempt: int = 0
    call_index: int = 0
    stage: str | None = None

    @property
    def blocks(self) -> tuple[PromptBlock, ...]:
        """The prompt before `prompt`, in the order it is sent: system, then context."""
        system = self.system if isinstance(self.system, PromptBlock) else PromptBlock(self.system)
        return (system, *self.context)

    @property
    def system_chars(self) -> int:
        """Length of the system prompt in characters."""
        return len(self.system.text if isinstance(self.system, PromptBlock) else self.system)

    @property
    def prompt_chars(self) -> int:
        """Length of the user message (context blocks and prompt) in characters."""
        return sum(len(b.text) for b in self.context) + len(self.prompt)


class Guard(Protocol[R]):
    """Something that may refuse a model call, and learns how it ended."""

    async def before(self, call: LLMCall) -> R:
        """Admit the call, returning what `after` needs to settle it.

        Args:
            call: The call about to be made.

        Returns:
            The reservation (any value; passed back to `after`).

        Raises:
            LLMError: The call is refused; nothing is sent to the model.
        """
        ...

    async def after(
        self, call: LLMCall, reservation: R, outcome: LLMResult | BaseException
    ) -> None:
        """Settle the call: its result, or the exception that ended it.

        Args:
            call: The call.
            reservation: What `before` returned.
            outcome: The call's result, or the exception it (or a later guard) raised.
        """
        ...


class GuardedLLM:
    """An `LLM` that runs guards around every call of the model it wraps.

    Guards' `before` run in order; when one refuses, the ones already passed are given the
    refusal in `after` (newest first) and nothing is sent. After the call every guard's `after`
    runs, newest first. An `after` that fails is logged and ignored: the call has happened and
    its result is kept (a guard bounds what it left behind itself, e.g. by expiry).

    Args:
        inner: The model to call.
        guards: The guards, outermost first.
        models: The model id per tier used to price calls when `inner` has no `model_for`
            (the offline model); missing tiers use `DEFAULT_MODELS`.
    """

    def __init__(
        self,
        inner: LLM,
        guards: Sequence[Guard[Any]] = (),
        *,
        models: Mapping[str, str] | None = None,
    ) -> None:
        self.inner = inner
        self.guards: tuple[Guard[Any], ...] = tuple(guards)
        self._models: dict[str, str] = {str(k): v for k, v in DEFAULT_MODELS.items()}
        self._models.update(models or {})

    def __repr__(self) -> str:
        return f"GuardedLLM({self.inner!r}, guards={[type(g).__name__ for g in self.guards]})"

    def model_for(self, tier: Tier) -> str:
        """The model a call of `tier` is priced as (the wrapped model's own when it says).

        Args:
            tier: A pipeline stage's tier.

        Returns:
            The model id.
        """
        own = getattr(self.inner, "model_for", None)
        if callable(own):
            return str(own(tier))
        return self._models.get(tier, DEFAULT_MODELS[tier])

    async def aclose(self) -> None:
        """Close the wrapped model, when it has something to close."""
        closer = getattr(self.inner, "aclose", None)
        if closer is not None:
            await closer()

    def _call(
        self,
        kind: Literal["complete", "structured"],
        tier: Tier,
        system: str | PromptBlock,
        context: Sequence[PromptBlock],
        prompt: str,
        max_tokens: int,
        web_search: bool,
    ) -> LLMCall:
        scope = current_scope()
        index = 0
        if scope is not None:
            index = scope.calls
            scope.calls += 1
        return LLMCall(
            kind=kind,
            tier=tier,
            model=self.model_for(tier),
            system=system,
            prompt=prompt,
            max_tokens=max_tokens,
            context=tuple(context),
            web_search=web_search,
            run_id=scope.run_id if scope else None,
            job_id=scope.job_id if scope else None,
            attempt=scope.attempt if scope else 0,
            call_index=index,
            stage=scope.stage if scope else None,
        )

    async def _guarded(
        self,
        call: LLMCall,
        invoke: Callable[[], Awaitable[Any]],
        result_of: Callable[[Any], LLMResult],
    ) -> Any:
        held: list[tuple[Guard[Any], Any]] = []
        try:
            for guard in self.guards:
                held.append((guard, await guard.before(call)))
        except BaseException as exc:
            await self._settle(call, held, exc)
            raise
        try:
            with llm_span(call) as span:  # a `chat <model>` span when tracing is on
                answer = await invoke()
                record_llm_result(span, result_of(answer))
        except BaseException as exc:
            await self._settle(call, held, exc)
            raise
        await self._settle(call, held, result_of(answer))
        return answer

    @staticmethod
    async def _settle(
        call: LLMCall, held: list[tuple[Guard[Any], Any]], outcome: LLMResult | BaseException
    ) -> None:
        for guard, reservation in reversed(held):
            try:
                await guard.after(call, reservation, outcome)
            except Exception as exc:  # a cancellation still propagates
                log.warning(
                    "guard %s could not settle a %s call of job %s: %s",
                    type(guard).__name__,
                    call.tier,
                    call.job_id,
                    type(exc).__name__,
                )

    async def complete(
        self,
        *,
        tier: Tier,
        system: str | PromptBlock,
        prompt: str,
        context: Sequence[PromptBlock] = (),
        max_tokens: int = 16000,
        effort: Effort | None = None,
        web_search: bool = False,
        seed_key: str = "",
    ) -> LLMResult:
        """`LLM.complete` of the wrapped model, between the guards."""
        call = self._call("complete", tier, system, context, prompt, max_tokens, web_search)
        result: LLMResult = await self._guarded(
            call,
            lambda: self.inner.complete(
                tier=tier,
                system=system,
                prompt=prompt,
                context=context,
                max_tokens=max_tokens,
                effort=effort,
                web_search=web_search,
                seed_key=seed_key,
            ),
            lambda r: r,
        )
        return result

    async def structured(
        self,
        *,
        tier: Tier,
        system: str | PromptBlock,
        prompt: str,
        schema: type[T],
        context: Sequence[PromptBlock] = (),
        max_tokens: int = 8000,
        effort: Effort | None = None,
        seed_key: str = "",
    ) -> tuple[T, LLMResult]:
        """`LLM.structured` of the wrapped model, between the guards."""
        call = self._call("structured", tier, system, context, prompt, max_tokens, False)
        answer: tuple[T, LLMResult] = await self._guarded(
            call,
            lambda: self.inner.structured(
                tier=tier,
                system=system,
                prompt=prompt,
                schema=schema,
                context=context,
                max_tokens=max_tokens,
                effort=effort,
                seed_key=seed_key,
            ),
            lambda pair: pair[1],
        )
        return answer
