"""The pipeline's table of SDK failures (`pipeline.ai.errors`): `classify_sdk_error` on hand-built
SDK exceptions, and the engine's `classify_error` on the same raw exceptions once `pipeline.ai`
has registered the table with it."""

from __future__ import annotations

import pickle
from collections.abc import Awaitable, Callable
from typing import Any

import anthropic
import httpx2
import pydantic
import pytest
from fake_anthropic import API_KEY, FakeAnthropic

from jobqueue import ErrorType, classify_error, error_type_info
from jobqueue.retry import rules as retry_rules
from pipeline.ai import JUDGE_REJECTION, LLMError, classify_sdk_error
from pipeline.models import StockAnalysisPayload
from pipeline.settings import Settings

E = ErrorType
REQUEST = httpx2.Request("POST", "https://api.anthropic.com/v1/messages")


def status_error(
    cls: type[anthropic.APIStatusError],
    status: int,
    err_type: str,
    *,
    headers: dict[str, str] | None = None,
    error_code: str | None = None,
    message: str = "boom",
) -> anthropic.APIStatusError:
    error: dict[str, Any] = {"type": err_type, "message": message}
    if error_code:
        error["details"] = {"error_code": error_code}
    body = {"type": "error", "error": error}
    response = httpx2.Response(
        status, headers={"request-id": "req_1", **(headers or {})}, json=body, request=REQUEST
    )
    return cls(f"Error code: {status} - {body}", response=response, body=body)


def test_rate_limit_keeps_retry_after() -> None:
    err = classify_sdk_error(
        status_error(
            anthropic.RateLimitError, 429, "rate_limit_error", headers={"retry-after": "30"}
        )
    )
    assert (err.error_type, err.retry_after, err.retryable) == (E.RATE_LIMIT, 30.0, True)
    assert err.request_id == "req_1"


@pytest.mark.parametrize("code", ["enforced_spend_limit_reached", "contract_spend_limit_reached"])
def test_spend_limit_by_error_code_on_plain_rate_limit_error(code: str) -> None:
    err = classify_sdk_error(
        status_error(
            anthropic.RateLimitError,
            429,
            "rate_limit_error",
            error_code=code,
            headers={"retry-after": "60"},
        )
    )
    assert (err.error_type, err.retry_after, err.retryable) == (E.API_ERROR, None, False)
    assert code in str(err)


def test_linked_organization_spend_limit_402() -> None:
    err = classify_sdk_error(
        status_error(
            anthropic.PaymentRequiredError,
            402,
            "billing_error",
            error_code="linked_organization_spend_limit_reached",
        )
    )
    assert (err.error_type, err.retryable) == (E.API_ERROR, False)


@pytest.mark.parametrize(
    ("status", "header", "expected_type", "retryable"),
    [
        (500, "false", E.API_ERROR, False),
        (429, "false", E.API_ERROR, False),
        (500, "true", E.NETWORK_ERROR, True),
        (400, "true", E.VALIDATION_ERROR, False),
    ],
)
def test_x_should_retry(
    status: int, header: str, expected_type: ErrorType, retryable: bool
) -> None:
    err = classify_sdk_error(
        status_error(
            anthropic.APIStatusError,
            status,
            "api_error",
            headers={"x-should-retry": header, "retry-after": "4"},
        )
    )
    assert (err.error_type, err.retryable) == (expected_type, retryable)
    if not retryable:
        assert err.retry_after is None


@pytest.mark.parametrize(
    ("err_type", "expected"),
    [
        ("overloaded_error", E.NETWORK_ERROR),
        ("api_error", E.NETWORK_ERROR),
        ("rate_limit_error", E.RATE_LIMIT),
        ("invalid_request_error", E.VALIDATION_ERROR),
        ("something_new", E.UNKNOWN),
    ],
)
def test_stream_error_after_200_uses_body_type(err_type: str, expected: ErrorType) -> None:
    err = classify_sdk_error(status_error(anthropic.APIStatusError, 200, err_type))
    assert err.error_type is expected
    assert err.status_code == 200


def test_unusual_statuses() -> None:
    assert classify_sdk_error(status_error(anthropic.APIStatusError, 504, "x")).error_type is (
        E.NETWORK_ERROR
    )
    err = classify_sdk_error(status_error(anthropic.APIStatusError, 431, "invalid_request_error"))
    assert (err.error_type, err.retryable) == (E.VALIDATION_ERROR, False)


def test_connection_and_timeout_errors() -> None:
    timeout = classify_sdk_error(anthropic.APITimeoutError(request=REQUEST))
    assert (timeout.error_type, timeout.retryable, timeout.retry_after) == (
        E.NETWORK_ERROR,
        True,
        None,
    )
    try:
        raise anthropic.APIConnectionError(request=REQUEST) from ConnectionResetError("reset")
    except anthropic.APIConnectionError as exc:
        conn = classify_sdk_error(exc)
    assert conn.error_type is E.NETWORK_ERROR
    assert "ConnectionResetError" in str(conn)


def test_pydantic_validation_error_is_retryable_unknown() -> None:
    class M(pydantic.BaseModel):
        a: int

    with pytest.raises(pydantic.ValidationError) as info:
        M.model_validate_json('{"a": "x"}')
    err = classify_sdk_error(info.value)
    assert (err.error_type, err.retryable) == (E.UNKNOWN, True)


def test_other_exceptions() -> None:
    missing_key = classify_sdk_error(
        TypeError('"Could not resolve authentication method. Expected api_key to be set"')
    )
    assert (missing_key.error_type, missing_key.retryable) == (E.API_ERROR, False)
    creds = classify_sdk_error(anthropic.CredentialsError("no profile"))
    assert creds.error_type is E.API_ERROR
    assert classify_sdk_error(TimeoutError()).error_type is E.NETWORK_ERROR
    streaming = classify_sdk_error(ValueError("Streaming is required for operations that ..."))
    assert (streaming.error_type, streaming.retryable) == (E.VALIDATION_ERROR, False)
    other = classify_sdk_error(RuntimeError("weird"))
    assert (other.error_type, other.retryable) == (E.UNKNOWN, True)
    same = LLMError("x", error_type=E.RATE_LIMIT)
    assert classify_sdk_error(same) is same


def test_messages_never_carry_keys() -> None:
    err = classify_sdk_error(
        status_error(
            anthropic.AuthenticationError,
            401,
            "authentication_error",
            message="bad key sk-ant-api03-AbCdEf_123-xyz",
        )
    )
    assert "AbCdEf" not in str(err) and "sk-***" in str(err)
    assert "AbCdEf" not in str(classify_sdk_error(RuntimeError("sk-ant-api03-AbCdEf_123")))


def test_llm_error_attributes_and_pickling() -> None:
    err = LLMError(
        "rate limited sk-secret-key-123",
        error_type=E.RATE_LIMIT,
        retry_after=-3,
        status_code=429,
        request_id="req_9",
    )
    assert err.retry_after == 0.0
    assert err.retryable is True
    assert "secret" not in str(err)
    copy = pickle.loads(pickle.dumps(err))
    assert isinstance(copy, LLMError)
    assert (copy.error_type, copy.retry_after, copy.retryable, copy.status_code) == (
        E.RATE_LIMIT,
        0.0,
        True,
        429,
    )
    assert str(copy) == str(err)
    assert LLMError("x", error_type=E.API_ERROR).retryable is False
    assert LLMError("x", error_type=E.VALIDATION_ERROR).retryable is False
    assert LLMError("x", error_type=E.NETWORK_ERROR).retryable is True
    assert LLMError("x", error_type=E.NETWORK_ERROR, retryable=False).retryable is False


def test_llm_error_takes_registered_types_and_refuses_unknown_ones() -> None:
    err = LLMError("no", error_type=JUDGE_REJECTION)
    assert (err.error_type, err.retryable) == ("JUDGE_REJECTION", True)
    assert LLMError("x", error_type="network_error").error_type is E.NETWORK_ERROR
    with pytest.raises(ValueError, match="NO_SUCH_TYPE"):
        LLMError("x", error_type="NO_SUCH_TYPE")


# --- the engine, taught the table by `import pipeline.ai` --------------------------------------


class Answer(pydantic.BaseModel):
    a: int


async def via_sdk(base_url: str, call: str) -> BaseException:
    """What the SDK itself raises for `call`, before or after its one request to the fake."""
    client = anthropic.AsyncAnthropic(
        api_key=None if call == "no-credentials" else API_KEY, base_url=base_url, max_retries=0
    )
    messages: Any = [{"role": "user", "content": "x"}]
    try:
        if call == "parse":
            await client.messages.parse(
                model="m",
                max_tokens=10,
                messages=messages,
                output_format=Answer,
                extra_headers={"x-fake-scenario": "bad-json"},
            )
        elif call == "too-long":  # refused by the SDK before sending
            await client.messages.create(model="m", max_tokens=1_000_000, messages=messages)
        else:  # no key: refused by the SDK before sending
            await client.messages.create(model="m", max_tokens=10, messages=messages)
    except Exception as exc:
        return exc
    finally:
        await client.close()
    raise AssertionError(f"the SDK raised nothing for {call}")


def raw(make: Callable[[], BaseException]) -> Callable[[str], Awaitable[BaseException]]:
    async def build(base_url: str) -> BaseException:
        return make()

    return build


def sdk(call: str) -> Callable[[str], Awaitable[BaseException]]:
    async def build(base_url: str) -> BaseException:
        return await via_sdk(base_url, call)

    return build


def connection_error() -> BaseException:
    try:
        raise anthropic.APIConnectionError(request=REQUEST) from ConnectionResetError("reset")
    except anthropic.APIConnectionError as exc:
        return exc


def response_shape_error() -> BaseException:
    return anthropic.APIResponseValidationError(httpx2.Response(200, request=REQUEST), None)


S = status_error
RATE = (anthropic.RateLimitError, 429, "rate_limit_error")
NO_RETRY = {"x-should-retry": "false", "retry-after": "4"}

# Every row of the table in `pipeline/ai/errors.py`: (raw exception, type, retryable, retry_after).
# The engine alone disagrees on the rows marked *: spend limits, 499, SSE errors after a 200,
# `x-should-retry`, a ValidationError from `messages.parse()`, credentials, streaming.
TABLE: dict[str, tuple[Callable[[str], Awaitable[BaseException]], str, bool, float | None]] = {
    "429 retry-after": (
        raw(lambda: S(*RATE, headers={"retry-after": "30"})),
        E.RATE_LIMIT,
        True,
        30,
    ),
    "429 retry-after-ms": (
        raw(lambda: S(*RATE, headers={"retry-after-ms": "1500"})),
        E.RATE_LIMIT,
        True,
        1.5,
    ),
    "429 bare": (raw(lambda: S(*RATE)), E.RATE_LIMIT, True, None),
    "429 ramp limit": (
        raw(lambda: S(*RATE, error_code="ramp_limit_exceeded", headers={"retry-after": "2"})),
        E.RATE_LIMIT,
        True,
        2,
    ),
    **{
        f"* spend limit {code}": (
            raw(lambda code=code: S(*RATE, error_code=code, headers={"retry-after": "60"})),
            E.API_ERROR,
            False,
            None,
        )
        for code in ("enforced_spend_limit_reached", "contract_spend_limit_reached")
    },
    "spend limit linked organization 402": (
        raw(
            lambda: S(
                anthropic.PaymentRequiredError,
                402,
                "billing_error",
                error_code="linked_organization_spend_limit_reached",
            )
        ),
        E.API_ERROR,
        False,
        None,
    ),
    "* spend limit SDK class": (
        raw(lambda: S(anthropic.EnforcedSpendLimitReachedError, 429, "rate_limit_error")),
        E.API_ERROR,
        False,
        None,
    ),
    **{
        f"{status}": (raw(lambda s=status, c=cls, t=t: S(c, s, t)), kind, False, None)
        for status, cls, t, kind in (
            (401, anthropic.AuthenticationError, "authentication_error", E.API_ERROR),
            (402, anthropic.PaymentRequiredError, "billing_error", E.API_ERROR),
            (403, anthropic.PermissionDeniedError, "permission_error", E.API_ERROR),
            (400, anthropic.BadRequestError, "invalid_request_error", E.VALIDATION_ERROR),
            (404, anthropic.NotFoundError, "not_found_error", E.VALIDATION_ERROR),
            (413, anthropic.ContentTooLargeError, "invalid_request_error", E.VALIDATION_ERROR),
            (422, anthropic.UnprocessableEntityError, "invalid_request_error", E.VALIDATION_ERROR),
            (431, anthropic.APIStatusError, "invalid_request_error", E.VALIDATION_ERROR),
        )
    },
    **{
        f"{'* ' if status == 499 else ''}{status}": (
            raw(lambda s=status, c=cls: S(c, s, "api_error")),
            E.NETWORK_ERROR,
            True,
            None,
        )
        for status, cls in (
            (408, anthropic.RequestTimeoutError),
            (409, anthropic.ConflictError),
            (499, anthropic.APIStatusError),
            (500, anthropic.InternalServerError),
            (503, anthropic.ServiceUnavailableError),
            (504, anthropic.GatewayTimeoutError),
            (529, anthropic.OverloadedError),
        )
    },
    "529 retry-after": (
        raw(
            lambda: S(
                anthropic.OverloadedError, 529, "overloaded_error", headers={"retry-after": "3"}
            )
        ),
        E.NETWORK_ERROR,
        True,
        3,
    ),
    **{
        f"{star}SSE error after 200: {t}": (
            raw(lambda t=t: S(anthropic.APIStatusError, 200, t)),
            k,
            r,
            None,
        )
        for star, t, k, r in (
            ("* ", "overloaded_error", E.NETWORK_ERROR, True),
            ("* ", "rate_limit_error", E.RATE_LIMIT, True),
            ("* ", "invalid_request_error", E.VALIDATION_ERROR, False),
            ("", "something_new", E.UNKNOWN, True),
        )
    },
    "412 by body type": (
        raw(lambda: S(anthropic.APIStatusError, 412, "invalid_request_error")),
        E.VALIDATION_ERROR,
        False,
        None,
    ),
    "* x-should-retry false on 529": (
        raw(lambda: S(anthropic.OverloadedError, 529, "overloaded_error", headers=NO_RETRY)),
        E.API_ERROR,
        False,
        None,
    ),
    "* x-should-retry false on 429": (
        raw(lambda: S(*RATE, headers=NO_RETRY)),
        E.API_ERROR,
        False,
        None,
    ),
    "x-should-retry true on 400": (
        raw(
            lambda: S(
                anthropic.BadRequestError,
                400,
                "invalid_request_error",
                headers={"x-should-retry": "true"},
            )
        ),
        E.VALIDATION_ERROR,
        False,
        None,
    ),
    "connection error": (raw(connection_error), E.NETWORK_ERROR, True, None),
    "read timeout": (
        raw(lambda: anthropic.APITimeoutError(request=REQUEST)),
        E.NETWORK_ERROR,
        True,
        None,
    ),
    "response shape": (raw(response_shape_error), E.UNKNOWN, True, None),
    "* ValidationError from messages.parse()": (sdk("parse"), E.UNKNOWN, True, None),
    "* credentials": (
        raw(lambda: anthropic.CredentialsError("no profile")),
        E.API_ERROR,
        False,
        None,
    ),
    "* missing credentials": (sdk("no-credentials"), E.API_ERROR, False, None),
    "* streaming is required": (sdk("too-long"), E.VALIDATION_ERROR, False, None),
    "timeout": (raw(lambda: TimeoutError("timed out")), E.NETWORK_ERROR, True, None),
    "anything else": (raw(lambda: RuntimeError("weird")), E.UNKNOWN, True, None),
}


@pytest.mark.parametrize(
    ("row", "make", "error_type", "retryable", "retry_after"),
    [(row, *values) for row, values in TABLE.items()],
    ids=TABLE.keys(),
)
async def test_the_engine_classifies_raw_sdk_errors_by_the_pipelines_table(
    row: str,
    make: Callable[[str], Awaitable[BaseException]],
    error_type: str,
    retryable: bool,
    retry_after: float | None,
    fake_anthropic: FakeAnthropic,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    exc = await make(fake_anthropic.base_url)
    err = classify_sdk_error(exc)
    assert (err.error_type, err.retryable, err.retry_after) == (error_type, retryable, retry_after)
    # a raw SDK exception that escaped a handler, and the LLMError the client would have raised
    escaped, wrapped = classify_error(exc), classify_error(err)
    assert (escaped.error_type, escaped.retryable) == (error_type, retryable)
    assert (escaped.delay, escaped.exact) == (wrapped.delay, wrapped.exact)
    assert escaped.exact is (retry_after is not None)
    # what the registration changes: the engine alone disagrees on exactly the rows marked *
    monkeypatch.setattr(retry_rules, "_rules", ())
    alone = classify_error(exc)
    agrees = (alone.error_type, alone.retryable, alone.exact) == (
        escaped.error_type,
        escaped.retryable,
        escaped.exact,
    )
    assert agrees is not row.startswith("* ")


def test_a_payload_validation_error_stays_a_validation_error() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        StockAnalysisPayload.model_validate({"stock_id": "not a uuid"})
    c = classify_error(info.value)
    assert (c.error_type, c.retryable) == (E.VALIDATION_ERROR, False)


def test_judge_rejection_is_registered_with_its_5s_and_scaled_by_the_settings() -> None:
    info = error_type_info(JUDGE_REJECTION)
    assert info is not None and (info.delay, info.retryable) == (5.0, True)
    config = Settings(retry_scale=0.01).queue_config("judge-review")
    assert config.effective_retry_delays[JUDGE_REJECTION] == pytest.approx(0.05)
    c = classify_error(LLMError("rejected", error_type=JUDGE_REJECTION))
    assert (c.error_type, c.retryable, c.delay) == ("JUDGE_REJECTION", True, 5)
