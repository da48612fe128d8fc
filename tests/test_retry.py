"""Retry policy, classification and error mapping, driven through real openai clients."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
import types
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
import tenacity

import viewfinder as vf
from viewfinder.engine.retry import (
    NO_RETRY,
    Deadline,
    RetryPolicy,
    async_retrying,
    describe_cause,
    is_retryable,
    parse_retry_after,
    retry_after_seconds,
    sync_retrying,
    to_viewfinder_error,
    wait_seconds,
)
from viewfinder.errors import (
    AuthenticationError,
    BadRequestError,
    InvalidOptionError,
    ProviderError,
    RateLimitError,
    ServerError,
    TransportError,
    ViewfinderError,
)
from viewfinder.prepare.redact import redact_text
from viewfinder.schemas.result import Usage
from viewfinder.testing.simulator import Reply, Simulator

API_KEY = "sk-" + "test-SECRET-0123456789"  # split so secret scanners do not flag a fake

COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 0,
    "model": "gpt-4.1-mini",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "ok"},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}

Step = httpx2.Response | BaseException


class CannotOverwriteExistingCassetteException(Exception):
    """Stands in for vcrpy's cassette miss (vcr is not imported by viewfinder)."""


def ok() -> httpx2.Response:
    return httpx2.Response(200, json=COMPLETION)


def error(status: int, message: str = "boom", **headers: str) -> httpx2.Response:
    body = {"error": {"message": message, "type": "error", "code": None}}
    return httpx2.Response(status, json=body, headers=headers)


class Script:
    """A MockTransport handler answering with a fixed sequence of responses/exceptions."""

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, BaseException):
            raise step
        return step


@pytest.fixture
def make_client() -> Iterator[Callable[[Script], openai.OpenAI]]:
    clients: list[openai.OpenAI] = []

    def make(script: Script) -> openai.OpenAI:
        client = openai.OpenAI(
            api_key=API_KEY,
            base_url="http://test/v1",
            http_client=httpx2.Client(transport=httpx2.MockTransport(script)),
            max_retries=0,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


class Outcome:
    """What one retried request did: attempts, requested waits, result or error."""

    def __init__(self) -> None:
        self.attempts = 0
        self.waits: list[float] = []
        self.result: Any = None
        self.error: ViewfinderError | None = None


def run(
    client: openai.OpenAI,
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] | None = None,
) -> Outcome:
    """Send one chat completion inside `sync_retrying`, as the engine does."""
    outcome = Outcome()

    def record(seconds: float) -> None:
        outcome.waits.append(seconds)
        if sleep is not None:
            sleep(seconds)

    create = client.with_options(max_retries=0).chat.completions.with_raw_response.create
    try:
        for attempt in sync_retrying(policy, sleep=record):
            with attempt:
                outcome.attempts = attempt.retry_state.attempt_number
                raw = create(model="gpt-4.1-mini", messages=[{"role": "user", "content": "hi"}])
                outcome.result = raw.parse()
    except openai.OpenAIError as exc:
        outcome.error = to_viewfinder_error(exc, attempts=outcome.attempts)
    return outcome


FAST = RetryPolicy(max_attempts=6, initial_backoff=0.5, max_backoff=30.0, jitter=0.25)


# --- through a real client ------------------------------------------------------------


def test_429_with_retry_after_is_honoured(make_client: Callable[[Script], openai.OpenAI]) -> None:
    script = Script(error(429, "slow down", **{"retry-after": "2"}), ok())
    outcome = run(make_client(script), FAST)
    assert outcome.error is None
    assert outcome.result.choices[0].message.content == "ok"
    assert outcome.attempts == 2
    assert len(script.requests) == 2
    assert outcome.waits == [2.0]


def test_retry_after_ms_wins(make_client: Callable[[Script], openai.OpenAI]) -> None:
    script = Script(error(429, **{"retry-after-ms": "1500", "retry-after": "9"}), ok())
    outcome = run(make_client(script), FAST)
    assert outcome.attempts == 2
    assert outcome.waits == [1.5]


def test_retry_after_http_date(make_client: Callable[[Script], openai.OpenAI]) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    script = Script(error(503, **{"retry-after": when}), ok())
    outcome = run(make_client(script), FAST)
    assert outcome.attempts == 2
    assert len(outcome.waits) == 1
    assert 28.0 <= outcome.waits[0] <= 30.0


def test_retry_after_is_capped_not_ignored(make_client: Callable[[Script], openai.OpenAI]) -> None:
    script = Script(error(429, **{"retry-after": "100"}), ok())
    outcome = run(make_client(script), RetryPolicy(max_retry_after=60.0, max_total_seconds=120.0))
    assert outcome.attempts == 2
    assert outcome.waits == [60.0]


def test_5xx_backs_off_exponentially_within_jitter(
    make_client: Callable[[Script], openai.OpenAI],
) -> None:
    script = Script(error(500), error(500), ok())
    outcome = run(make_client(script), FAST)
    assert outcome.error is None
    assert outcome.attempts == 3
    first, second = outcome.waits
    assert 0.5 * 0.75 <= first <= 0.5
    assert 1.0 * 0.75 <= second <= 1.0


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, AuthenticationError),
        (404, BadRequestError),
        (422, BadRequestError),
    ],
)
def test_client_errors_are_not_retried(
    make_client: Callable[[Script], openai.OpenAI],
    status: int,
    error_class: type[ProviderError],
) -> None:
    script = Script(error(status, "nope", **{"x-request-id": "req_4xx"}), ok())
    outcome = run(make_client(script), FAST)
    assert len(script.requests) == 1
    assert outcome.waits == []
    assert type(outcome.error) is error_class
    assert outcome.error.status_code == status
    assert outcome.error.attempts == 1
    assert outcome.error.request_id == "req_4xx"
    assert "nope" in str(outcome.error)


def test_exhausted_503_is_a_server_error(make_client: Callable[[Script], openai.OpenAI]) -> None:
    policy = RetryPolicy(max_attempts=3)
    script = Script(error(503, "overloaded", **{"x-request-id": "req_503"}))
    outcome = run(make_client(script), policy)
    assert len(script.requests) == 3
    assert len(outcome.waits) == 2
    err = outcome.error
    assert isinstance(err, ServerError)
    assert err.attempts == policy.max_attempts
    assert err.status_code == 503
    assert err.request_id == "req_503"
    assert "overloaded" in str(err)
    assert "req_503" in str(err)


def test_exhausted_429_is_a_rate_limit_error(
    make_client: Callable[[Script], openai.OpenAI],
) -> None:
    outcome = run(make_client(Script(error(429, **{"retry-after": "0"}))), RetryPolicy(3))
    assert isinstance(outcome.error, RateLimitError)
    assert outcome.error.attempts == 3
    assert outcome.waits == [0.0, 0.0]


def test_x_should_retry_false_stops(make_client: Callable[[Script], openai.OpenAI]) -> None:
    script = Script(error(500, **{"x-should-retry": "false"}), ok())
    outcome = run(make_client(script), FAST)
    assert len(script.requests) == 1
    assert isinstance(outcome.error, ServerError)


def test_x_should_retry_true_retries(make_client: Callable[[Script], openai.OpenAI]) -> None:
    script = Script(error(425, **{"x-should-retry": "true"}), ok())
    outcome = run(make_client(script), FAST)
    assert outcome.attempts == 2
    assert outcome.error is None


def test_connect_error_is_retried(make_client: Callable[[Script], openai.OpenAI]) -> None:
    script = Script(httpx2.ConnectError("connection refused"), ok())
    outcome = run(make_client(script), FAST)
    assert outcome.error is None
    assert outcome.attempts == 2


def test_exhausted_connect_error_is_a_transport_error(
    make_client: Callable[[Script], openai.OpenAI],
) -> None:
    script = Script(httpx2.ConnectError("connection refused"))
    outcome = run(make_client(script), RetryPolicy(max_attempts=2))
    err = outcome.error
    assert isinstance(err, TransportError)
    assert err.attempts == 2
    assert err.status_code is None
    assert "ConnectError: connection refused" in str(err)


def test_read_timeout_is_retried(make_client: Callable[[Script], openai.OpenAI]) -> None:
    script = Script(httpx2.ReadTimeout("read timed out"), ok())
    outcome = run(make_client(script), FAST)
    assert outcome.error is None
    assert outcome.attempts == 2


@pytest.mark.parametrize(
    ("cause", "text"),
    [
        (RuntimeError("Network is disabled"), "RuntimeError: Network is disabled"),
        (
            CannotOverwriteExistingCassetteException(
                "Can't overwrite existing cassette ('t.yaml') in your current record mode "
                "('none'). No match for the request (<Request (POST) http://test/v1/chat>)"
            ),
            "CannotOverwriteExistingCassetteException: Can't overwrite existing cassette",
        ),
    ],
)
def test_non_transport_connection_errors_surface_at_once(
    make_client: Callable[[Script], openai.OpenAI], cause: Exception, text: str
) -> None:
    script = Script(cause, ok())
    outcome = run(make_client(script), FAST)
    assert len(script.requests) == 1
    assert outcome.waits == []
    err = outcome.error
    assert isinstance(err, TransportError)
    assert err.attempts == 1
    assert text in str(err)


def test_total_time_bound_stops_retries(
    make_client: Callable[[Script], openai.OpenAI], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [0.0]

    def advance(seconds: float) -> None:
        clock[0] += seconds

    # tenacity measures elapsed time with `time.monotonic`; make it follow our sleeps.
    monkeypatch.setattr(tenacity, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    policy = RetryPolicy(max_attempts=10, max_total_seconds=10.0, initial_backoff=4.0, jitter=0.0)
    script = Script(error(500))
    outcome = run(make_client(script), policy, sleep=advance)
    # t=0 fails, waits 4; t=4 fails and would wait 8, ending at 12 > 10: stop.
    assert outcome.waits == [4.0]
    assert len(script.requests) == 2
    assert isinstance(outcome.error, ServerError)
    assert outcome.error.attempts == 2


def test_retry_after_beyond_deadline_stops_instead_of_sleeping(
    make_client: Callable[[Script], openai.OpenAI],
) -> None:
    script = Script(error(429, **{"retry-after": "45"}), ok())
    outcome = run(make_client(script), RetryPolicy(max_total_seconds=30.0))
    assert outcome.waits == []
    assert len(script.requests) == 1
    assert isinstance(outcome.error, RateLimitError)


def test_no_retry_policy_makes_one_attempt(
    make_client: Callable[[Script], openai.OpenAI],
) -> None:
    script = Script(error(503), ok())
    outcome = run(make_client(script), NO_RETRY)
    assert len(script.requests) == 1
    assert isinstance(outcome.error, ServerError)


def test_api_key_never_leaks(make_client: Callable[[Script], openai.OpenAI]) -> None:
    script = Script(error(401, f"Incorrect API key provided: {API_KEY}."))
    outcome = run(make_client(script), FAST)
    assert script.requests[0].headers["authorization"] == f"Bearer {API_KEY}"
    err = outcome.error
    assert isinstance(err, AuthenticationError)
    for text in (str(err), repr(err), *map(str, err.args)):
        assert API_KEY not in text
        assert "SECRET" not in text
        assert "Bearer" not in text


def test_retries_are_logged_without_urls_or_headers(
    make_client: Callable[[Script], openai.OpenAI], caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []
    script = Script(error(429, **{"retry-after": "1"}), ok())
    client = make_client(script)
    with caplog.at_level(logging.INFO, logger="viewfinder"):
        retrying = sync_retrying(
            FAST, sleep=lambda _: None, on_retry=lambda s: calls.append(s.attempt_number)
        )
        for attempt in retrying:
            with attempt:
                client.chat.completions.create(
                    model="gpt-4.1-mini", messages=[{"role": "user", "content": "hi"}]
                )
    assert calls == [1]
    records = [r for r in caplog.records if r.name == "viewfinder"]
    assert len(records) == 1
    message = records[0].getMessage()
    assert "HTTP 429" in message
    assert "1.00 s" in message
    assert "attempt 1 of 6" in message
    assert "http" not in message.replace("HTTP", "")
    assert API_KEY not in message


async def test_async_429_then_200() -> None:
    script = Script(error(429, **{"retry-after": "2"}), ok())
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    client = openai.AsyncOpenAI(
        api_key=API_KEY,
        base_url="http://test/v1",
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(script)),
        max_retries=0,
    )
    attempts = 0
    try:
        create = client.with_options(max_retries=0).chat.completions.with_raw_response.create
        async for attempt in async_retrying(FAST, sleep=record):
            with attempt:
                attempts = attempt.retry_state.attempt_number
                raw = await create(
                    model="gpt-4.1-mini", messages=[{"role": "user", "content": "hi"}]
                )
    finally:
        await client.close()
    assert attempts == 2
    assert waits == [2.0]
    assert raw.parse().choices[0].message.content == "ok"


async def test_async_exhausted_maps_to_rate_limit_error() -> None:
    script = Script(error(429, **{"retry-after-ms": "10"}))

    async def no_sleep(seconds: float) -> None:
        return None

    client = openai.AsyncOpenAI(
        api_key=API_KEY,
        base_url="http://test/v1",
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(script)),
        max_retries=0,
    )
    attempts = 0
    with pytest.raises(openai.RateLimitError) as caught:
        try:
            async for attempt in async_retrying(RetryPolicy(max_attempts=2), sleep=no_sleep):
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    await client.chat.completions.create(
                        model="gpt-4.1-mini", messages=[{"role": "user", "content": "hi"}]
                    )
        finally:
            await client.close()
    usage = Usage(requests=2)
    err = to_viewfinder_error(caught.value, attempts=attempts, usage=usage)
    assert isinstance(err, RateLimitError)
    assert err.attempts == 2
    assert err.usage == usage


# --- unit level -----------------------------------------------------------------------


def status_error(status: int, **headers: str) -> openai.APIStatusError:
    request = httpx2.Request("POST", "http://test/v1/chat/completions")
    response = httpx2.Response(status, headers=headers, request=request)
    return openai.APIStatusError(f"Error code: {status}", response=response, body=None)


def connection_error(cause: BaseException | None) -> openai.APIConnectionError:
    request = httpx2.Request("POST", "http://test/v1/chat/completions")
    try:
        try:
            if cause is not None:
                raise cause
        except Exception as inner:
            raise openai.APIConnectionError(request=request) from inner
        raise openai.APIConnectionError(request=request)
    except openai.APIConnectionError as exc:
        return exc


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (408, {}, True),
        (409, {}, True),
        (429, {}, True),
        (500, {}, True),
        (502, {}, True),
        (503, {}, True),
        (504, {}, True),
        (400, {}, False),
        (401, {}, False),
        (403, {}, False),
        (404, {}, False),
        (422, {}, False),
        (500, {"x-should-retry": "false"}, False),
        (429, {"x-should-retry": "false"}, False),
        (418, {"x-should-retry": "true"}, True),
        (401, {"x-should-retry": "true"}, False),
    ],
)
def test_is_retryable_statuses(status: int, headers: dict[str, str], expected: bool) -> None:
    assert is_retryable(status_error(status, **headers)) is expected


def test_is_retryable_transport_causes() -> None:
    request = httpx2.Request("POST", "http://test/v1")
    assert is_retryable(openai.APITimeoutError(request=request))
    assert is_retryable(connection_error(httpx2.ConnectError("refused")))
    assert is_retryable(connection_error(httpx2.RemoteProtocolError("server disconnected")))
    assert is_retryable(connection_error(ConnectionResetError(104, "reset")))
    assert is_retryable(connection_error(TimeoutError("timed out")))
    # a transport failure deeper in the chain counts too
    assert is_retryable(connection_error(_chained(httpx2.ReadError("x"), OSError("eof"))))


def _chained(outer: BaseException, inner: BaseException) -> BaseException:
    outer.__cause__ = inner
    return outer


def test_is_retryable_rejects_non_transport_causes() -> None:
    assert not is_retryable(connection_error(RuntimeError("Network is disabled for host 'x'")))
    assert not is_retryable(connection_error(CannotOverwriteExistingCassetteException("miss")))
    assert not is_retryable(connection_error(None))
    assert not is_retryable(connection_error(httpx2.UnsupportedProtocol("ftp://")))
    assert not is_retryable(connection_error(FileNotFoundError("cert.pem")))
    assert not is_retryable(ValueError("bad"))
    assert not is_retryable(ServerError("ours"))
    assert not is_retryable(openai.OpenAIError("client misuse"))


def test_retry_after_seconds_parsing() -> None:
    assert retry_after_seconds(status_error(429, **{"retry-after": "2"})) == 2.0
    assert retry_after_seconds(status_error(429, **{"retry-after": "0.5"})) == 0.5
    assert retry_after_seconds(status_error(429, **{"retry-after-ms": "1500"})) == 1.5
    ms_invalid = status_error(429, **{"retry-after-ms": "soon", "retry-after": "3"})
    assert retry_after_seconds(ms_invalid) == 3.0
    assert retry_after_seconds(status_error(429)) is None
    assert retry_after_seconds(status_error(429, **{"retry-after": "-1"})) is None
    assert retry_after_seconds(status_error(429, **{"retry-after": "nan"})) is None
    assert retry_after_seconds(status_error(429, **{"retry-after": "inf"})) is None
    assert retry_after_seconds(status_error(429, **{"retry-after": "garbage"})) is None
    past = email.utils.formatdate(time.time() - 60, usegmt=True)
    assert retry_after_seconds(status_error(429, **{"retry-after": past})) == 0.0
    assert retry_after_seconds(ValueError("x")) is None


NOON = email.utils.parsedate_to_datetime("Wed, 21 Oct 2015 12:00:00 GMT").timestamp()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": " 0.5 "}, 0.5),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after-ms": "soon", "retry-after": "3"}, 3.0),
        ({"retry-after": "Wed, 21 Oct 2015 12:00:30 GMT"}, 30.0),
        ({"retry-after": "Wed, 21 Oct 2015 11:59:00 GMT"}, 0.0),  # in the past: now
        ({"retry-after": "Wed, 21 Oct 2015 12:00:00 GMT"}, 0.0),
        ({"retry-after": "Wed, 21 Oct 2015 12:00:30 -0000"}, None),  # no time zone
        ({"retry-after": "1s"}, None),  # not RFC 9110 (x-ratelimit-reset-* use this form)
        ({"retry-after-ms": "20ms"}, None),
        ({"retry-after": "-1"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": ""}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, now=lambda: NOON) == expected


def test_wait_seconds() -> None:
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=4.0, jitter=0.25, max_retry_after=10)
    no_jitter = RetryPolicy(initial_backoff=0.5, max_backoff=4.0, jitter=0.0)
    assert [wait_seconds(no_jitter, n, None) for n in range(1, 7)] == [
        0.5,
        1.0,
        2.0,
        4.0,
        4.0,
        4.0,
    ]
    rng = random.Random(7)
    for n in range(1, 10):
        base = min(0.5 * 2 ** (n - 1), 4.0)
        assert base * 0.75 <= wait_seconds(policy, n, status_error(500), rng) <= base
    assert wait_seconds(policy, 1, status_error(429, **{"retry-after": "3"})) == 3.0
    assert wait_seconds(policy, 1, status_error(429, **{"retry-after": "99"})) == 10.0
    assert wait_seconds(policy, 10_000, None) <= 4.0  # no overflow


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"max_attempts": 1.5},
        {"max_attempts": True},
        {"max_total_seconds": 0},
        {"initial_backoff": -1},
        {"max_backoff": float("inf")},
        {"initial_backoff": 5, "max_backoff": 1},
        {"max_retry_after": -1},
        {"jitter": 1.5},
    ],
)
def test_policy_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidOptionError):
        RetryPolicy(**kwargs)


def test_describe_cause_follows_the_chain() -> None:
    exc = connection_error(CannotOverwriteExistingCassetteException("No match for the request"))
    assert describe_cause(exc) == (
        "CannotOverwriteExistingCassetteException: No match for the request"
    )
    assert describe_cause(ValueError()) == "ValueError"
    implicit: BaseException
    try:
        try:
            raise KeyError("root")
        except KeyError:
            raise ValueError("outer") from None
    except ValueError as suppressed:
        implicit = suppressed
    assert describe_cause(implicit) == "ValueError: outer"


def test_describe_cause_redacts_queries_and_keys() -> None:
    text = describe_cause(
        RuntimeError(
            "GET https://acct.blob.core.windows.net/c/img.jpg?sv=2024&sig=SECRETSIG failed; "
            "Authorization: Bearer eyJSECRET api-key: abc123SECRET sk-proj-SECRETKEY "
            "http://user:pw@host/x"
        )
    )
    assert "SECRET" not in text
    assert "pw@" not in text
    assert "https://acct.blob.core.windows.net/c/img.jpg?<redacted>" in text
    assert redact_text("no secrets here") == "no secrets here"


def test_to_viewfinder_error_mapping() -> None:
    assert type(to_viewfinder_error(status_error(408), attempts=1)) is ServerError
    assert type(to_viewfinder_error(status_error(409), attempts=1)) is ServerError
    assert type(to_viewfinder_error(status_error(502), attempts=1)) is ServerError
    assert type(to_viewfinder_error(status_error(418), attempts=1)) is BadRequestError
    request = httpx2.Request("POST", "http://test/v1")
    timeout = to_viewfinder_error(openai.APITimeoutError(request=request), attempts=4)
    assert isinstance(timeout, TransportError)
    assert timeout.attempts == 4
    ours = ServerError("already mapped")
    assert to_viewfinder_error(ours, attempts=3) is ours
    other = to_viewfinder_error(ValueError("odd"), attempts=1)
    assert type(other) is ProviderError
    assert "ValueError: odd" in str(other)
    with_id = to_viewfinder_error(status_error(500, **{"x-request-id": "req_9"}), attempts=2)
    assert isinstance(with_id, ProviderError)
    assert with_id.request_id == "req_9"


def test_provider_message_is_preferred_over_raw_body() -> None:
    request = httpx2.Request("POST", "http://test/v1/chat/completions")
    response = httpx2.Response(400, request=request)
    exc = openai.BadRequestError(
        "Error code: 400 - {...}",
        response=response,
        body={"message": "Invalid image.", "type": "invalid_request_error"},
    )
    err = to_viewfinder_error(exc, attempts=1)
    assert str(err).startswith("The model endpoint rejected the request (HTTP 400): Invalid image.")
    assert "Error code" not in str(err)


def test_a_status_error_keeps_the_endpoints_retry_after() -> None:
    limited = to_viewfinder_error(status_error(429, **{"retry-after": "7"}), attempts=1)
    assert isinstance(limited, RateLimitError) and limited.retry_after == 7.0
    busy = to_viewfinder_error(status_error(503, **{"retry-after-ms": "1500"}), attempts=1)
    assert isinstance(busy, ServerError) and busy.retry_after == 1.5
    unsaid = to_viewfinder_error(status_error(503), attempts=1)
    assert isinstance(unsaid, ServerError) and unsaid.retry_after is None


# --- the deadline bounds the whole request ----------------------------------------------

CAPTION = {"caption": {"text": "a cat", "confidence": 0.9}}
ONE_SECOND = RetryPolicy(max_attempts=3, max_total_seconds=1.0, initial_backoff=0.01)


def test_the_deadline_cuts_the_last_attempt(
    make_analyzer: Callable[..., vf.ImageAnalyzer], sim: Simulator, cat_image: Path
) -> None:
    # A 500 at once, then an answer that would take 30 s: the old bound only stopped
    # retries from starting, so the call ran for the whole 30 s (or a client timeout).
    sim.script(Reply(status=500), Reply(content=CAPTION, delay=30))
    analyzer = make_analyzer(retry=ONE_SECOND, cache=False)
    started = time.monotonic()
    with pytest.raises(
        TransportError, match=r"1 s deadline \(RetryPolicy\.max_total_seconds\)"
    ) as caught:
        analyzer.analyze(cat_image, ["caption"])
    assert time.monotonic() - started < 10  # against 30 s without the deadline
    assert caught.value.attempts == 2
    assert caught.value.usage is not None and caught.value.usage.requests == 2


async def test_the_async_deadline_cuts_the_last_attempt(
    make_analyzer: Callable[..., vf.ImageAnalyzer], sim: Simulator, cat_image: Path
) -> None:
    sim.script(Reply(status=500), Reply(content=CAPTION, delay=30))
    started = time.monotonic()
    async with make_analyzer(retry=ONE_SECOND, cache=False) as analyzer:
        with pytest.raises(TransportError, match="1 s deadline") as caught:
            await analyzer.aanalyze(cat_image, ["caption"])
    assert time.monotonic() - started < 10  # against 30 s without the deadline
    assert caught.value.attempts == 2


def test_a_retry_the_deadline_cannot_fit_says_the_deadline_ended_it(
    make_analyzer: Callable[..., vf.ImageAnalyzer], sim: Simulator, cat_image: Path
) -> None:
    sim.script(Reply(status=429, headers={"retry-after": "5"}), Reply(content=CAPTION))
    with pytest.raises(RateLimitError, match="1 s deadline") as caught:
        make_analyzer(retry=ONE_SECOND, cache=False).analyze(cat_image, ["caption"])
    assert caught.value.attempts == 1 and len(sim.requests) == 1


class SlowGate:
    """A rate limiter that holds every attempt for `wait` seconds."""

    def __init__(self, wait: float) -> None:
        self.wait = wait

    def acquire(self, tokens: int) -> None:
        time.sleep(self.wait)

    async def aacquire(self, tokens: int) -> None:
        await asyncio.sleep(self.wait)

    def observe(self, status: int | None, headers: Mapping[str, str]) -> None:
        pass


def test_no_attempt_starts_once_the_rate_limiter_held_it_past_the_deadline(
    make_analyzer: Callable[..., vf.ImageAnalyzer], sim: Simulator, cat_image: Path
) -> None:
    sim.script(Reply(content=CAPTION))
    policy = RetryPolicy(max_total_seconds=0.2)
    analyzer = make_analyzer(retry=policy, cache=False, rate_limiter=SlowGate(0.4))
    with pytest.raises(TransportError, match=r"0\.2 s deadline") as caught:
        analyzer.analyze(cat_image, ["caption"])
    assert caught.value.attempts == 0 and sim.requests == []


async def test_the_async_rate_limiter_wait_is_cut_at_the_deadline(
    make_analyzer: Callable[..., vf.ImageAnalyzer], sim: Simulator, cat_image: Path
) -> None:
    sim.script(Reply(content=CAPTION))
    policy = RetryPolicy(max_total_seconds=0.3)
    started = time.monotonic()
    async with make_analyzer(retry=policy, cache=False, rate_limiter=SlowGate(30)) as analyzer:
        with pytest.raises(TransportError, match=r"0\.3 s deadline"):
            await analyzer.aanalyze(cat_image, ["caption"])
    assert time.monotonic() - started < 10  # against 30 s without the deadline
    assert sim.requests == []


def test_deadline_cuts_each_timeout_to_the_time_left() -> None:
    now = [0.0]
    deadline = Deadline(10.0, clock=lambda: now[0])
    now[0] = 4.0
    assert deadline.attempt_timeout(120.0, attempts=1) == 6.0
    assert deadline.attempt_timeout(2.0, attempts=1) == 2.0
    assert deadline.attempt_timeout(None, attempts=1) == 6.0
    assert deadline.attempt_timeout(
        httpx2.Timeout(600.0, connect=5.0, pool=None), attempts=1
    ) == httpx2.Timeout(connect=5.0, read=6.0, write=6.0, pool=6.0)
    assert not deadline.reached
    now[0] = 10.0
    with pytest.raises(TransportError, match="10 s deadline") as caught:
        deadline.attempt_timeout(120.0, attempts=3)
    assert deadline.reached and caught.value.attempts == 3
