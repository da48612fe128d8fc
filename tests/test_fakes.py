"""The in-process fake (`viewfinder.testing.fakes`) speaks exactly as the simulator does."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx2
import openai
import pytest

from viewfinder.testing.fakes import FakeOpenAI
from viewfinder.testing.simulator import Reply, Simulator

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "Answer", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    ("reply", "extra"),
    [
        (Reply({"caption": "a cat"}), {}),
        (Reply({"caption": "a cat"}, prompt_tokens=7, completion_tokens=3), {"tools": [TOOL]}),
        (Reply(None, refusal="no", finish_reason="content_filter"), {}),
        (Reply("{not json", finish_reason="length"), {}),
        (Reply(status=429, error_message="slow down", headers={"retry-after": "0"}), {}),
        (Reply({"caption": "a cat"}), {"stream": True}),
    ],
    ids=["content", "tool_call", "refusal", "truncated", "error", "stream"],
)
def test_the_fake_answers_byte_for_byte_as_the_simulator(
    reply: Reply, extra: dict[str, Any]
) -> None:
    body = {"model": "gpt-4.1-mini", "messages": MESSAGES, **extra}
    fake = FakeOpenAI(reply)
    with Simulator() as sim, httpx2.Client() as http:
        sim.script(reply)
        over_http = http.post(f"{sim.base_url}/chat/completions", json=body)
    with fake.http_client() as http:
        in_process = http.post("https://api.openai.com/v1/chat/completions", json=body)

    assert in_process.status_code == over_http.status_code
    assert in_process.content == over_http.content
    assert in_process.headers["x-request-id"] == over_http.headers["x-request-id"] == "req_sim_1"
    assert in_process.headers["content-type"] == over_http.headers["content-type"]
    assert fake.requests == sim.requests == [body]


def test_openai_clients_parse_the_scripted_answers_sync_and_async() -> None:
    fake = FakeOpenAI({"caption": "a cat"}, Reply({"caption": "a dog"}, delay=0.01))
    with fake.client() as client:
        first = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    async def second() -> Any:
        async with fake.async_client() as client:
            return await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    assert first.choices[0].message.content == '{"caption": "a cat"}'
    assert asyncio.run(second()).choices[0].message.content == '{"caption": "a dog"}'
    assert fake.pending == 0
    assert fake.headers_seen[0]["authorization"] == "Bearer sk-fake-viewfinder"


def test_an_empty_script_fails_loudly_and_default_answers_instead() -> None:
    fake = FakeOpenAI()
    with fake.client() as client, pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert "fake: no scripted reply left" in caught.value.message

    fake.default = lambda body: {"echo": body["model"]}
    with fake.client() as client:
        answer = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert json.loads(answer.choices[0].message.content or "") == {"echo": "gpt-4o"}


def test_azure_clients_get_the_deployment_as_model_and_other_routes_a_404() -> None:
    fake = FakeOpenAI({"ok": True})
    with openai.AzureOpenAI(
        azure_endpoint="https://res.openai.azure.com",
        azure_deployment="vision-prod",
        api_version="2024-10-21",
        api_key="k",
        http_client=fake.http_client(),
    ) as azure:
        answer = azure.chat.completions.create(model="ignored", messages=MESSAGES)
    assert answer.model == "ignored"  # the request's model is echoed first, as the simulator does

    with fake.client() as client, pytest.raises(openai.NotFoundError, match="fake: no route"):
        client.models.list()
