"""The adapter to instructor: the body the engine sends is the body `request_body` builds.

The Batch API writes `request_body` into its input files and the estimator counts its
tokens, so both must see exactly what `Engine.run` / `arun` put on the wire, in every
mode viewfinder supports.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest
from pydantic import BaseModel

from viewfinder.engine import _instructor
from viewfinder.engine.engine import (
    PARSE_ERRORS,
    Engine,
    Request,
    parse_completion,
    request_body,
)
from viewfinder.engine.providers import MODE_NAMES, Mode, resolve_provider
from viewfinder.engine.retry import RetryPolicy
from viewfinder.errors import InvalidAnswerError


class Caption(BaseModel):
    text: str
    confidence: float


MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "You describe images."},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "Caption this image."},
            {
                "type": "image_url",
                "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
            },
        ],
    },
]
SAMPLING = {"temperature": 0.0, "seed": 7, "max_tokens": 300}
ANSWER = {"text": "a cat", "confidence": 0.9}


def _message(mode: Mode, arguments: str) -> dict[str, Any]:
    """An assistant message carrying `arguments` the way `mode` expects its answer."""
    if mode is Mode.TOOLS:
        call = {"id": "call_1", "type": "function"}
        call["function"] = {"name": "Caption", "arguments": arguments}  # type: ignore[assignment]
        return {"role": "assistant", "content": None, "tool_calls": [call]}
    if mode is Mode.MD_JSON:
        arguments = f"```json\n{arguments}\n```"
    return {"role": "assistant", "content": arguments}


def _completion(mode: Mode, arguments: str = json.dumps(ANSWER)) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4.1-mini",
        "choices": [{"index": 0, "finish_reason": "stop", "message": _message(mode, arguments)}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


class Wire:
    """A MockTransport handler that answers every chat completion and keeps the bodies."""

    def __init__(self, mode: Mode) -> None:
        self.mode = mode
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.bodies.append(json.loads(request.content))
        return httpx2.Response(200, json=_completion(self.mode))


@pytest.fixture(params=sorted(MODE_NAMES))
def mode(request: pytest.FixtureRequest) -> Mode:
    return MODE_NAMES[request.param]


@pytest.fixture
def wire(mode: Mode) -> Iterator[tuple[Engine, Wire]]:
    seen = Wire(mode)
    transport = httpx2.MockTransport(seen)
    client = openai.OpenAI(
        api_key="sk-test",
        base_url="http://test/v1",
        http_client=httpx2.Client(transport=transport),
    )
    async_client = openai.AsyncOpenAI(
        api_key="sk-test",
        base_url="http://test/v1",
        http_client=httpx2.AsyncClient(transport=transport),
    )
    provider = resolve_provider(
        client=client, async_client=async_client, model="gpt-4.1-mini", mode=mode
    )
    engine = Engine(provider, cache=None, retry=RetryPolicy(), max_reasks=1, sampling=SAMPLING)
    yield engine, seen
    client.close()


def _request() -> Request[Caption]:
    return Request(copy.deepcopy(MESSAGES), Caption, "gpt-4.1-mini+test")


def _expected(engine: Engine) -> dict[str, Any]:
    provider = engine.provider
    return request_body(_request(), model=provider.model, sampling=SAMPLING, mode=provider.mode)


def test_run_sends_request_body(wire: tuple[Engine, Wire]) -> None:
    engine, seen = wire
    done = engine.run(_request())
    assert done.answer == Caption(**ANSWER)
    assert seen.bodies == [_expected(engine)]


async def test_arun_sends_request_body(wire: tuple[Engine, Wire]) -> None:
    engine, seen = wire
    done = await engine.arun(_request())
    assert done.answer == Caption(**ANSWER)
    assert seen.bodies == [_expected(engine)]


def test_request_body_sends_nothing_and_keeps_the_messages(wire: tuple[Engine, Wire]) -> None:
    engine, seen = wire
    request = _request()
    body = _expected(engine)
    assert seen.bodies == []
    assert request.messages == MESSAGES
    assert body["model"] == "gpt-4.1-mini"
    assert {key: body[key] for key in SAMPLING} == SAMPLING


def test_request_body_does_not_log_a_failed_call(
    wire: tuple[Engine, Wire], caplog: pytest.LogCaptureFixture
) -> None:
    """Stopping instructor before it sends is not a failed API call."""
    with caplog.at_level("DEBUG", logger="instructor"):
        _expected(wire[0])
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_parse_completion_validates_like_the_engine(mode: Mode) -> None:
    from openai.types.chat import ChatCompletion

    good = ChatCompletion.model_validate(_completion(mode))
    parsed = parse_completion(good, Caption, mode)
    assert Caption.model_validate_json(parsed.model_dump_json()) == Caption(**ANSWER)

    bad = ChatCompletion.model_validate(_completion(mode, json.dumps({"text": "no score"})))
    with pytest.raises(PARSE_ERRORS):
        parse_completion(bad, Caption, mode)


def test_engine_gives_up_with_a_typed_error_after_reasks(mode: Mode) -> None:
    answers = iter([json.dumps({"text": "no score"})] * 2)

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json=_completion(mode, next(answers)))

    client = openai.OpenAI(
        api_key="sk-test",
        base_url="http://test/v1",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )
    provider = resolve_provider(client=client, model="gpt-4.1-mini", mode=mode)
    engine = Engine(provider, cache=None, retry=RetryPolicy(), max_reasks=1, sampling=SAMPLING)
    with pytest.raises(InvalidAnswerError) as caught:
        engine.run(_request())
    assert caught.value.attempts == 2
    assert caught.value.raw_answer is not None and "no score" in caught.value.raw_answer
    client.close()


def test_mode_is_instructors() -> None:
    import instructor

    assert _instructor.Mode is instructor.Mode
