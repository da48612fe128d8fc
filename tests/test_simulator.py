"""Tests for the scripted OpenAI-compatible simulator, driven by the real openai SDK."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest

from viewfinder.testing.simulator import CREATED, Reply, Simulator, estimate_prompt_tokens

MESSAGES: list[Any] = [{"role": "user", "content": "describe the image"}]
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "ImageCaption",
            "description": "Caption of the image",
            "parameters": {
                "type": "object",
                "properties": {"text": {"type": "string"}},
                "required": ["text"],
            },
        },
    }
]


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator() as simulator:
        yield simulator


@pytest.fixture
def client(sim: Simulator) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key="sk-test", base_url=sim.base_url, max_retries=0) as c:
        yield c


@pytest.fixture
async def aclient(sim: Simulator) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(api_key="sk-test", base_url=sim.base_url, max_retries=0) as c:
        yield c


def ask(client: openai.OpenAI, **kwargs: Any) -> Any:
    return client.chat.completions.create(
        model=kwargs.pop("model", "gpt-4o"), messages=kwargs.pop("messages", MESSAGES), **kwargs
    )


def raw_request(
    sim: Simulator, method: str, path: str, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)
    try:
        headers = {"content-type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_scripted_json_round_trips_as_full_chat_completion(
    sim: Simulator, client: openai.OpenAI
) -> None:
    sim.script({"caption": "a cat on a mat", "confidence": 0.93})

    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
    completion = raw.parse()

    assert json.loads(completion.choices[0].message.content or "") == {
        "caption": "a cat on a mat",
        "confidence": 0.93,
    }
    assert completion.id == "chatcmpl-sim-1"
    assert completion.object == "chat.completion"
    assert completion.created == CREATED
    assert completion.model == "gpt-4o"
    assert completion.system_fingerprint == "viewfinder-simulator"
    choice = completion.choices[0]
    assert (choice.index, choice.finish_reason, choice.logprobs) == (0, "stop", None)
    assert choice.message.tool_calls is None
    assert choice.message.refusal is None
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == len("describe the image") // 4
    assert usage.completion_tokens == len(completion.choices[0].message.content or "") // 4 + 1
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert raw.headers["x-request-id"] == "req_sim_1"
    assert raw.headers["content-length"] == str(len(raw.content))


def test_string_content_is_sent_verbatim_and_token_counts_can_be_scripted(
    sim: Simulator, client: openai.OpenAI
) -> None:
    sim.script(Reply(content="{not json", prompt_tokens=1000, completion_tokens=7))

    completion = ask(client)

    assert completion.choices[0].message.content == "{not json"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (1000, 7)
    assert completion.usage.total_tokens == 1007


def test_tools_request_gets_a_tool_call(sim: Simulator, client: openai.OpenAI) -> None:
    sim.script({"text": "a dog"})

    completion = ask(client, tools=TOOLS)

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    [call] = choice.message.tool_calls
    assert call.id == "call_sim_1"
    assert call.type == "function"
    assert call.function.name == "ImageCaption"
    assert json.loads(call.function.arguments) == {"text": "a dog"}


def test_forced_tool_choice_names_the_tool_and_finish_reason_can_be_overridden(
    sim: Simulator, client: openai.OpenAI
) -> None:
    other = {**TOOLS[0], "function": {**TOOLS[0]["function"], "name": "Tags"}}
    sim.script(Reply(content={"text": "cut"}, finish_reason="length"))

    completion = ask(
        client,
        tools=[*TOOLS, other],
        tool_choice={"type": "function", "function": {"name": "Tags"}},
    )

    choice = completion.choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.tool_calls is not None
    assert choice.message.tool_calls[0].function.name == "Tags"


def test_replies_are_consumed_in_fifo_order(sim: Simulator, client: openai.OpenAI) -> None:
    sim.script({"n": 1}, "two", Reply(content=[3]))
    assert sim.pending == 3

    contents = [ask(client).choices[0].message.content for _ in range(3)]

    assert contents == ['{"n": 1}', "two", "[3]"]
    assert sim.pending == 0
    assert sim.stats.total == 3


def test_ids_are_numbered_per_instance(sim: Simulator, client: openai.OpenAI) -> None:
    sim.script("a", "b")
    ids = [ask(client).id for _ in range(2)]
    assert ids == ["chatcmpl-sim-1", "chatcmpl-sim-2"]

    sim.reset()
    sim.script("c")
    assert ask(client).id == "chatcmpl-sim-1"


def test_scripted_429_exposes_retry_after(sim: Simulator, client: openai.OpenAI) -> None:
    sim.script(Reply(status=429, error_message="slow down", headers={"retry-after": "0"}))

    with pytest.raises(openai.RateLimitError) as caught:
        ask(client)

    error = caught.value
    assert error.status_code == 429
    assert error.response.headers["retry-after"] == "0"
    assert error.response.headers["x-request-id"] == "req_sim_1"
    assert error.body == {
        "message": "slow down",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    assert sim.stats.rejected_429 == 1


def test_scripted_error_type_and_code(sim: Simulator, client: openai.OpenAI) -> None:
    sim.script(
        Reply(
            status=400,
            error_message="filtered",
            error_code="content_filter",
            headers={"x-request-id": "custom"},
        )
    )

    with pytest.raises(openai.BadRequestError) as caught:
        ask(client)

    assert caught.value.code == "content_filter"
    assert caught.value.type == "invalid_request_error"
    assert caught.value.response.headers["x-request-id"] == "custom"


def test_empty_script_answers_500(sim: Simulator, client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        ask(client)

    assert caught.value.status_code == 500
    assert "simulator: no scripted reply left" in caught.value.message
    assert sim.stats.errors == 1


def test_default_is_used_when_script_is_empty(client: openai.OpenAI, sim: Simulator) -> None:
    sim.default = lambda body: {"echo": body["model"]}

    assert ask(client, model="gpt-4.1").choices[0].message.content == '{"echo": "gpt-4.1"}'


def test_requests_and_headers_are_recorded(sim: Simulator, client: openai.OpenAI) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "12345678"}, image]}]
    sim.script("ok")

    completion = ask(client, messages=messages, temperature=0)

    assert sim.requests == [{"model": "gpt-4o", "messages": messages, "temperature": 0}]
    assert sim.headers_seen[0]["authorization"] == "Bearer sk-test"
    assert completion.usage.prompt_tokens == 8 // 4 + 85
    assert estimate_prompt_tokens(sim.requests[0]) == 87


def test_refusal_and_length_are_delivered(sim: Simulator, client: openai.OpenAI) -> None:
    sim.script(
        Reply(refusal="I can't help with that."),
        Reply(content='{"caption": "trunc', finish_reason="length"),
    )

    refused = ask(client).choices[0]
    truncated = ask(client).choices[0]

    assert refused.message.refusal == "I can't help with that."
    assert refused.message.content is None
    assert truncated.finish_reason == "length"
    assert truncated.message.content == '{"caption": "trunc'


def test_model_name_overrides_the_echoed_model(client: openai.OpenAI, sim: Simulator) -> None:
    sim.model_name = "gpt-sim"
    sim.script("x")

    assert ask(client).model == "gpt-sim"
    models = client.models.list()
    assert [m.id for m in models.data] == ["gpt-sim"]


async def test_max_concurrency_rejects_the_second_concurrent_request() -> None:
    with Simulator(max_concurrency=1) as sim:
        sim.script(Reply(content="slow", delay=0.15), Reply(content="unused"))
        async with openai.AsyncOpenAI(
            api_key="sk-test", base_url=sim.base_url, max_retries=0
        ) as aclient:

            async def one() -> Any:
                return await aclient.chat.completions.create(model="gpt-4o", messages=MESSAGES)

            results = await asyncio.gather(one(), one(), return_exceptions=True)

    errors = [r for r in results if isinstance(r, BaseException)]
    answers = [r for r in results if not isinstance(r, BaseException)]
    assert len(answers) == 1
    assert answers[0].choices[0].message.content == "slow"
    [error] = errors
    assert isinstance(error, openai.RateLimitError)
    assert 1 <= int(error.response.headers["retry-after-ms"]) <= 150
    assert sim.pending == 1  # the rejected request consumed nothing
    stats = sim.stats
    assert (stats.total, stats.ok, stats.rejected_429, stats.in_flight_max) == (2, 1, 1, 1)


async def test_a_concurrency_cap_without_retry_after_sends_no_rate_headers() -> None:
    # A server that only caps concurrency: its 429 names no delay and no budget.
    with Simulator(max_concurrency=1, concurrency_retry_after=False) as sim:
        sim.script(Reply(content="slow", delay=0.15), Reply(content="unused"))
        async with openai.AsyncOpenAI(
            api_key="sk-test", base_url=sim.base_url, max_retries=0
        ) as aclient:

            async def one() -> Any:
                return await aclient.chat.completions.create(model="gpt-4o", messages=MESSAGES)

            results = await asyncio.gather(one(), one(), return_exceptions=True)

    [error] = [r for r in results if isinstance(r, BaseException)]
    assert isinstance(error, openai.RateLimitError)
    names = {name.lower() for name in error.response.headers}
    assert not {name for name in names if name.startswith(("retry-after", "x-ratelimit"))}
    assert sim.stats.rejected_429 == 1


def test_rpm_limit_rejects_the_third_request_in_the_window() -> None:
    with (
        Simulator(rpm_limit=2) as sim,
        openai.OpenAI(api_key="sk-test", base_url=sim.base_url, max_retries=0) as client,
    ):
        sim.script("a", "b", "c")
        first = client.chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
        ask(client)
        with pytest.raises(openai.RateLimitError) as caught:
            ask(client)

    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")
    headers = caught.value.response.headers
    assert 59 <= int(headers["retry-after"]) <= 60
    assert 59_000 <= int(headers["retry-after-ms"]) <= 60_000
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert caught.value.code == "rate_limit_exceeded"
    assert sim.pending == 1


def test_limits_can_be_stated_per_minute_while_counted_per_window() -> None:
    with (
        Simulator(rpm_limit=2, tpm_limit=500, rate_window=6, limits_per_minute=True) as sim,
        openai.OpenAI(api_key="sk-test", base_url=sim.base_url, max_retries=0) as client,
    ):
        sim.script("a", "b", "c")
        first = client.chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
        ask(client)
        with pytest.raises(openai.RateLimitError):
            ask(client)  # counted per window: 2 in 6 s

    assert first.headers["x-ratelimit-limit-requests"] == "20"  # stated per minute
    assert first.headers["x-ratelimit-limit-tokens"] == "5000"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"  # the window's


def test_rate_window_frees_slots() -> None:
    with (
        Simulator(rpm_limit=1, rate_window=0.1) as sim,
        openai.OpenAI(api_key="sk-test", base_url=sim.base_url, max_retries=1) as client,
    ):
        sim.script("a", "b")
        ask(client)
        # The SDK honours retry-after-ms (< 0.1 s) and the retry gets the next slot.
        assert ask(client).choices[0].message.content == "b"
        assert sim.stats.rejected_429 == 1


def test_tpm_limit_counts_estimated_prompt_and_max_tokens() -> None:
    with (
        Simulator(tpm_limit=100) as sim,
        openai.OpenAI(api_key="sk-test", base_url=sim.base_url, max_retries=0) as client,
    ):
        sim.script("a", "b")
        ok = client.chat.completions.with_raw_response.create(
            model="m", messages=MESSAGES, max_tokens=60
        )
        with pytest.raises(openai.RateLimitError) as caught:
            ask(client, max_tokens=60)

    assert ok.headers["x-ratelimit-remaining-tokens"] == str(
        100 - 60 - len("describe the image") // 4
    )
    assert caught.value.type == "tokens"
    assert "retry-after" in caught.value.response.headers


async def test_async_client(sim: Simulator, aclient: openai.AsyncOpenAI) -> None:
    sim.script({"n": 1}, {"n": 2}, {"n": 3})

    results = await asyncio.gather(
        *(aclient.chat.completions.create(model="gpt-4o", messages=MESSAGES) for _ in range(3))
    )

    assert sorted(r.choices[0].message.content for r in results) == [
        '{"n": 1}',
        '{"n": 2}',
        '{"n": 3}',
    ]
    assert sim.stats.ok == 3


def test_streaming_delivers_content_and_usage(sim: Simulator, client: openai.OpenAI) -> None:
    sim.script({"caption": "streamed"})

    stream = client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert json.loads(text) == {"caption": "streamed"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None


def test_azure_deployment_path(sim: Simulator) -> None:
    sim.script("azure ok")
    with openai.AzureOpenAI(
        api_key="azure-key",
        azure_endpoint=sim.endpoint,
        api_version="2024-10-21",
        max_retries=0,
    ) as azure:
        completion = azure.chat.completions.create(model="my-deployment", messages=MESSAGES)

    assert completion.choices[0].message.content == "azure ok"
    assert completion.model == "my-deployment"
    assert sim.headers_seen[0]["api-key"] == "azure-key"


def test_bad_json_gets_openai_shaped_400(sim: Simulator) -> None:
    status, headers, body = raw_request(sim, "POST", "/v1/chat/completions", b"{oops")

    assert status == 400
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert headers["Content-Length"] == str(len(body))
    assert sim.requests == []
    assert sim.stats.errors == 1


def test_health_models_and_unknown_route(sim: Simulator) -> None:
    assert raw_request(sim, "GET", "/health")[0] == 200
    status, _, body = raw_request(sim, "GET", "/v1/models")
    assert status == 200
    assert json.loads(body)["object"] == "list"
    status, _, body = raw_request(sim, "POST", "/v1/audio/speech", b"{}")
    assert status == 404
    assert "simulator" in json.loads(body)["error"]["message"]
    status, _, body = raw_request(sim, "POST", "/v1/embeddings", b"{}")  # a route since issue 16
    assert status == 400
    assert "input" in json.loads(body)["error"]["message"]


def test_keep_alive_connection_is_reused_and_stop_does_not_hang() -> None:
    sim = Simulator().start()
    sim.script("a", "b")
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)
    try:
        body = json.dumps({"model": "m", "messages": MESSAGES}).encode()
        for expected in ("a", "b"):
            conn.request("POST", "/v1/chat/completions", body=body)
            response = conn.getresponse()
            assert json.loads(response.read())["choices"][0]["message"]["content"] == expected
        # The client keeps the connection open; stop() must still return promptly.
        stopper = threading.Thread(target=sim.stop)
        stopper.start()
        stopper.join(timeout=2)
        assert not stopper.is_alive()
    finally:
        conn.close()


def test_stop_wakes_sleeping_handlers() -> None:
    sim = Simulator(latency=30).start()
    sim.script("never delivered")
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)
    try:
        body = json.dumps({"model": "m", "messages": MESSAGES}).encode()
        conn.request("POST", "/v1/chat/completions", body=body)
        stopper = threading.Thread(target=sim.stop)
        stopper.start()
        stopper.join(timeout=2)
        assert not stopper.is_alive()
    finally:
        conn.close()


def test_base_url_requires_start() -> None:
    sim = Simulator()
    with pytest.raises(RuntimeError):
        _ = sim.base_url
    sim.stop()  # harmless before start
