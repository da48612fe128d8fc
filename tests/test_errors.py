"""The error model: every class of `viewfinder.errors`, found by introspection, is drawn
in the module's tree, pickles, and round-trips through its JSON record."""

from __future__ import annotations

import inspect
import json
import pickle
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

import httpx2
import openai
import pytest

from viewfinder import errors
from viewfinder.engine.retry import to_viewfinder_error
from viewfinder.errors import ProviderError, ViewfinderError
from viewfinder.schemas.result import Usage

ERROR_CLASSES = sorted(
    (
        value
        for value in vars(errors).values()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == errors.__name__
    ),
    key=lambda cls: cls.__name__,
)


def sample(annotation: Any, name: str) -> Any:
    """A value of `annotation` that is not the parameter's default."""
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        return sample(options[0], name)
    if origin is Literal:
        return typing.get_args(annotation)[-1]
    if annotation is Usage:
        return Usage(input_tokens=1200, cached_input_tokens=200, output_tokens=80, requests=2)
    if origin is tuple:
        return ("sexual", "violence")
    if origin is Mapping or annotation is Mapping:
        return {"x-request-id": "req_1", "retry-after": "2"}
    if annotation is str:
        return f"{name} value"
    if annotation is bool:
        return True
    if annotation is int:
        return 3
    if annotation is float:
        return 1.5
    raise AssertionError(f"no sample for {annotation!r} ({name}): add one to this test")


def build(cls: type[ViewfinderError]) -> ViewfinderError:
    """An instance of `cls` with every keyword-only attribute set to a non-default value."""
    hints = typing.get_type_hints(cls.__init__, vars(errors))
    parameters = inspect.signature(cls.__init__).parameters.values()
    kwargs = {
        p.name: sample(hints[p.name], p.name)
        for p in parameters
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    return cls(f"{cls.__name__} happened", **kwargs)


def assert_same(copy: BaseException, original: ViewfinderError) -> None:
    assert type(copy) is type(original)
    assert isinstance(copy, ViewfinderError)
    assert copy.message == original.message
    assert copy.attributes == original.attributes and original.attributes.keys() == (
        set(inspect.signature(type(original).__init__).parameters) - {"self", "message"}
    )
    assert str(copy) == str(original)


def drawn_tree() -> dict[str, str | None]:
    """The parent of every class drawn in the module docstring's tree, by name."""
    tree = (errors.__doc__ or "").split("```")[1].strip("\n").splitlines()
    parents: dict[str, str | None] = {}
    path: list[str] = []
    for line in tree:
        name = re.sub(r"^[│├└─\s]*", "", line).split()[0]
        depth = (len(line) - len(line.lstrip("│├└─ "))) // 4
        del path[depth:]
        parents[name] = path[-1] if path else None
        path.append(name)
    return parents


def test_the_module_holds_errors_only_and_draws_each_under_its_base() -> None:
    assert len(ERROR_CLASSES) >= 25
    parents = drawn_tree()
    assert sorted(parents) == sorted(cls.__name__ for cls in ERROR_CLASSES)
    for cls in ERROR_CLASSES:
        assert issubclass(cls, ViewfinderError), cls
        assert cls.__name__ in errors.__all__, cls
        bases = [b.__name__ for b in cls.__bases__ if issubclass(b, ViewfinderError)]
        assert bases == ([parents[cls.__name__]] if parents[cls.__name__] else []), cls


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_every_error_pickles_with_its_attributes(cls: type[ViewfinderError]) -> None:
    error = build(cls)
    assert_same(pickle.loads(pickle.dumps(error)), error)


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_every_error_round_trips_through_its_json_record(cls: type[ViewfinderError]) -> None:
    error = build(cls)
    record = json.loads(json.dumps(error.to_record(), allow_nan=False))
    assert record["type"] == cls.__name__ and record["message"] == error.message
    assert_same(ViewfinderError.from_record(record), error)


def test_budget_exceeded_crosses_a_process_boundary() -> None:
    # It raised TypeError on unpickling: its `limit` is a required keyword argument.
    error = errors.BudgetExceededError("stop", limit="$5.00 per batch", usage=Usage(input_tokens=9))
    error.add_note("seen in worker 3")
    copy = pickle.loads(pickle.dumps(error))
    assert_same(copy, error)
    assert copy.__notes__ == ["seen in worker 3"]


def test_records_are_data_not_class_paths() -> None:
    unknown = ViewfinderError.from_record({"type": "SystemExit", "message": "no"})
    assert type(unknown) is ViewfinderError and unknown.message == "no"
    outside = ProviderError.from_record({"type": "ImageFormatError", "message": "m"})
    assert type(outside) is ProviderError
    # Written before the attribute existed: the nearest class that can be built.
    old = ViewfinderError.from_record({"type": "BudgetExceededError", "message": "over"})
    assert type(old) is ViewfinderError and old.message == "over"
    # Older records: extra keys ignored, a message that already carried the context kept.
    legacy = ViewfinderError.from_record(
        {"type": "ImageFetchError", "message": "HTTP 503", "status_code": 503}
    )
    assert type(legacy) is errors.ImageFetchError and str(legacy) == "HTTP 503"


def test_provider_error_keeps_only_allow_listed_headers() -> None:
    error = ProviderError(
        "rate limited",
        headers={
            "Retry-After": "7",
            "X-RateLimit-Remaining-Requests": "0",
            "Set-Cookie": "session=secret",
            "Authorization": "Bearer sk-secret",
            "api-key": "secret",
            "openai-organization": "org-secret",
        },
    )
    assert error.headers == {"retry-after": "7", "x-ratelimit-remaining-requests": "0"}
    assert "secret" not in json.dumps(error.to_record())


def test_a_status_error_becomes_a_provider_error_with_headers_and_retry_after() -> None:
    response = httpx2.Response(
        429,
        headers={
            "retry-after": "3",
            "x-request-id": "req_9",
            "x-ratelimit-limit-tokens": "30000",
            "set-cookie": "__cf_bm=secret",
        },
        request=httpx2.Request("POST", "https://api.openai.com/v1/chat/completions"),
    )
    api_error = openai.RateLimitError("slow down", response=response, body=None)
    error = to_viewfinder_error(api_error, attempts=4)
    assert isinstance(error, errors.RateLimitError)
    assert error.retry_after == 3.0 and error.request_id == "req_9" and error.attempts == 4
    assert error.headers == {
        "retry-after": "3",
        "x-request-id": "req_9",
        "x-ratelimit-limit-tokens": "30000",
    }
    assert_same(pickle.loads(pickle.dumps(error)), error)


def test_image_errors_keep_the_source_out_of_the_message() -> None:
    error = errors.ImageFormatError("not an image", source="photo.png")
    assert str(error) == "not an image (photo.png)" and error.args == ("not an image",)
    assert errors.ImageFormatError("not an image").__str__() == "not an image"
