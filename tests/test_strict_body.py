"""What the engine adds to instructor's body: `"strict": true` and `prompt_cache_key`.

Both are added by `BodyPolicy.apply`, once, for `Engine.run`, `Engine.arun` and
`request_body` alike (the Batch API's input file and the estimator read the latter).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import httpx2
import openai
import pytest
from pydantic import BaseModel, Field

from viewfinder.engine.body import (
    MAX_NESTING,
    BodyPolicy,
    prompt_cache_key_for,
    strict_schema,
)
from viewfinder.engine.cache import ResponseCache
from viewfinder.engine.engine import Engine, Request
from viewfinder.engine.providers import Mode, ProviderKind, resolve_provider
from viewfinder.engine.retry import RetryPolicy
from viewfinder.errors import InvalidOptionError

# --- schemas -------------------------------------------------------------------------


class Box(BaseModel):
    x: int = Field(ge=0, le=100, description="left edge")
    y: int = Field(ge=0, le=100)


class Tag(BaseModel):
    name: Literal["cat", "dog"]
    confidence: float
    box: Box | None


class Caption(BaseModel):
    text: str
    confidence: float
    tags: list[Tag] = Field(max_length=20)


class WithDefault(BaseModel):
    text: str
    words: list[str] = []


class WithOptionalDefault(BaseModel):
    text: str | None = None


class WithDict(BaseModel):
    text: str
    extra: dict[str, int]


class WithTuple(BaseModel):
    point: tuple[int, int]


class WithMinLength(BaseModel):
    text: str = Field(min_length=1)


Vocabulary = Enum("Vocabulary", {f"name_{i}": f"name_{i}" for i in range(1001)})  # type: ignore[misc]


class WithVocabulary(BaseModel):
    name: Vocabulary  # type: ignore[valid-type]


def _nested(levels: int) -> type[BaseModel]:
    """A model whose objects nest `levels` deep (the root is level 1)."""
    model: type[BaseModel] = type("Leaf", (BaseModel,), {"__annotations__": {"v": int}})
    for level in range(levels - 1):
        model = type(f"Level{level}", (BaseModel,), {"__annotations__": {"child": model}})
    return model


def _objects(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, list):
        for item in node:
            yield from _objects(item)
    elif isinstance(node, dict):
        if node.get("type") == "object":
            yield node
        for value in node.values():
            yield from _objects(value)


def test_a_schema_in_the_strict_subset_is_closed_on_every_object() -> None:
    schema = strict_schema(Caption)
    assert schema is not None
    objects = list(_objects(schema))
    assert len(objects) == 3  # Caption, Tag, Box (in $defs)
    assert all(node["additionalProperties"] is False for node in objects)
    plain = Caption.model_json_schema()
    assert "additionalProperties" not in json.dumps(plain)  # the model itself is untouched
    assert strict_schema(Caption) is schema  # cached per model


@pytest.mark.parametrize(
    "model",
    [WithDefault, WithOptionalDefault, WithDict, WithTuple, WithMinLength, WithVocabulary],
    ids=["default", "optional-default", "dict", "tuple", "min-length", "vocabulary-1001"],
)
def test_schemas_outside_the_strict_subset_are_sent_as_they_are(model: type[BaseModel]) -> None:
    assert strict_schema(model) is None


def test_enum_limit_counts_every_value() -> None:
    names = Enum("Names", {f"name_{i}": f"name_{i}" for i in range(1000)})  # type: ignore[misc]
    fits = type("Fits", (BaseModel,), {"__annotations__": {"name": names}})
    assert strict_schema(fits) is not None
    assert strict_schema(WithVocabulary) is None  # 1001 values


def test_nesting_limit() -> None:
    assert strict_schema(_nested(MAX_NESTING)) is not None
    assert strict_schema(_nested(MAX_NESTING + 1)) is None


# --- the wire ------------------------------------------------------------------------

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
ANSWER = {"text": "a cat", "confidence": 0.9, "tags": []}


def _request(image: str = "iVBORw0KGgo=", model: type[BaseModel] = Caption) -> Request[Any]:
    messages = copy.deepcopy(MESSAGES)
    messages[1]["content"][1]["image_url"]["url"] = f"data:image/png;base64,{image}"
    return Request(messages, model, "gpt-4.1-mini+test")


class Wire:
    """Answers every chat completion (the first `invalid` ones do not validate)."""

    def __init__(self, invalid: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.invalid = invalid

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.bodies.append(json.loads(request.content))
        answer = {"text": "no score"} if len(self.bodies) <= self.invalid else ANSWER
        message = {"role": "assistant", "content": json.dumps(answer)}
        return httpx2.Response(
            200,
            json={
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": "gpt-4.1-mini",
                "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            },
        )


def _engine(
    kind: ProviderKind,
    wire: Wire,
    *,
    mode: Mode = Mode.JSON_SCHEMA,
    cache: ResponseCache | None = None,
    **settings: Any,
) -> Engine:
    transport = httpx2.MockTransport(wire)
    if kind is ProviderKind.AZURE:
        options: dict[str, Any] = {
            "azure_endpoint": "https://res.openai.azure.com",
            "azure_deployment": "dep",
            "api_version": "2024-10-21",
            "api_key": "k",
        }
        client: openai.OpenAI = openai.AzureOpenAI(
            **options, http_client=httpx2.Client(transport=transport)
        )
        async_client: openai.AsyncOpenAI = openai.AsyncAzureOpenAI(
            **options, http_client=httpx2.AsyncClient(transport=transport)
        )
    else:
        url = "https://api.openai.com/v1" if kind is ProviderKind.OPENAI else "http://test/v1"
        client = openai.OpenAI(
            api_key="sk-test", base_url=url, http_client=httpx2.Client(transport=transport)
        )
        async_client = openai.AsyncOpenAI(
            api_key="sk-test", base_url=url, http_client=httpx2.AsyncClient(transport=transport)
        )
    provider = resolve_provider(
        client=client, async_client=async_client, model="gpt-4.1-mini", mode=mode
    )
    assert provider.kind is kind
    return Engine(
        provider, cache=cache, retry=RetryPolicy(), max_reasks=1, sampling=SAMPLING, **settings
    )


@pytest.mark.parametrize("kind", [ProviderKind.OPENAI, ProviderKind.AZURE])
async def test_strict_in_both_send_paths_and_request_body(kind: ProviderKind) -> None:
    wire = Wire()
    engine = _engine(kind, wire)
    expected = engine.request_body(_request())
    json_schema = expected["response_format"]["json_schema"]
    assert json_schema["strict"] is True
    assert json_schema["schema"] == strict_schema(Caption)
    assert json_schema["name"] == "Caption"
    engine.run(_request())
    await engine.arun(_request())
    assert wire.bodies == [expected, expected]


def test_openai_gets_a_prompt_cache_key_azure_and_compatible_servers_do_not() -> None:
    bodies = {kind: _engine(kind, Wire()).request_body(_request()) for kind in ProviderKind}
    assert bodies[ProviderKind.OPENAI]["prompt_cache_key"].startswith("vf-")
    assert "prompt_cache_key" not in bodies[ProviderKind.AZURE]
    assert "prompt_cache_key" not in bodies[ProviderKind.COMPATIBLE]


def test_compatible_servers_json_mode_and_strict_off_are_untouched() -> None:
    plain = {"messages": [], "response_format": {"type": "json_schema"}}
    for engine in (
        _engine(ProviderKind.COMPATIBLE, Wire()),
        _engine(ProviderKind.OPENAI, Wire(), mode=Mode.JSON),
        _engine(ProviderKind.AZURE, Wire(), mode=Mode.TOOLS),
        _engine(ProviderKind.OPENAI, Wire(), strict_schema=False, prompt_cache_shards=0),
    ):
        body = engine.request_body(_request())
        assert "strict" not in json.dumps(body.get("response_format", {}))
        assert "strict" not in json.dumps(body.get("tools", []))
        assert engine.body_policy.apply(plain, Caption, {}) == plain


def test_a_schema_outside_the_subset_goes_without_strict() -> None:
    wire = Wire()
    engine = _engine(ProviderKind.OPENAI, wire)
    body = engine.request_body(_request(model=WithDefault))
    assert "strict" not in body["response_format"]["json_schema"]
    assert body["response_format"]["json_schema"]["schema"] == WithDefault.model_json_schema()


def test_a_reask_keeps_strict_and_the_key() -> None:
    wire = Wire(invalid=1)
    engine = _engine(ProviderKind.OPENAI, wire)
    engine.run(_request())
    first, second = wire.bodies
    assert second["prompt_cache_key"] == first["prompt_cache_key"]
    assert second["response_format"] == first["response_format"]
    assert len(second["messages"]) > len(first["messages"])


# --- prompt_cache_key ----------------------------------------------------------------


def _key(image: str, shards: int = 16, model: type[BaseModel] = Caption) -> str:
    request = _request(image, model)
    return prompt_cache_key_for(
        request.messages, request.response_model, request.model_version, shards=shards
    )


def test_the_same_image_gets_the_same_key() -> None:
    assert _key("AAAA") == _key("AAAA")
    assert _key("AAAA") == "vf-" + _key("AAAA").split("-")[1] + "-" + _key("AAAA").split("-")[2]


def test_images_share_the_prefix_hash_and_spread_over_shards() -> None:
    keys = [_key(f"image{i}") for i in range(200)]
    prefixes = {key.rsplit("-", 1)[0] for key in keys}
    shards = {int(key.rsplit("-", 1)[1]) for key in keys}
    assert len(prefixes) == 1
    assert shards == set(range(16))  # 200 images hit all 16 routes
    assert {_key(f"image{i}", shards=1).rsplit("-", 1)[1] for i in range(20)} == {"0"}


def test_the_prefix_hash_follows_the_static_part() -> None:
    assert _key("AAAA").rsplit("-", 1)[0] != _key("AAAA", model=WithDefault).rsplit("-", 1)[0]


def test_the_shard_count_is_not_part_of_the_response_cache_key(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path)
    wire = Wire()
    _engine(ProviderKind.OPENAI, wire, cache=cache, prompt_cache_shards=16).run(_request())
    again = _engine(ProviderKind.OPENAI, wire, cache=cache, prompt_cache_shards=3)
    assert again.run(_request()).usage.cache_hit
    assert len(wire.bodies) == 1


def test_policy_and_analyzer_refuse_a_negative_shard_count() -> None:
    from viewfinder.analyzers import ImageAnalyzer

    with pytest.raises(ValueError):
        BodyPolicy(ProviderKind.OPENAI, Mode.JSON_SCHEMA, prompt_cache_shards=-1)
    with pytest.raises(InvalidOptionError):
        ImageAnalyzer(base_url="http://127.0.0.1:9/v1", cache=False, prompt_cache_shards=-1)
