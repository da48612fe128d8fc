"""What viewfinder adds to the body instructor builds: strict schemas, a prompt-cache key.

instructor renders the chat-completions body of a mode; `BodyPolicy.apply` then adds, in
ONE place used by `Engine.run`, `Engine.arun` and `request_body` (so the Batch API's input
file and the estimator see exactly what is sent):

- `"strict": true` in `response_format` (OpenAI and Azure OpenAI, `json_schema` mode) when
  the response model's schema passes OpenAI's strict subset, checked locally by
  `strict_schema` (a pure function, cached per response model); the schema is then sent
  with `"additionalProperties": false` on every object, as strict mode requires. A schema
  outside the subset is sent as before, without `strict`: strict mode would refuse it
  with a 400, and making it fit would change what the answer means (a default made
  required, a dict made empty).
- `prompt_cache_key` (OpenAI only), `prompt_cache_key_for`: OpenAI routes a request to a
  machine by a hash of its prefix and this key, and a route spills to other machines
  above roughly 15 requests a minute; the key is sharded by the image so a busy batch
  spreads over `shards` routes. Azure's older api-versions and OpenAI-compatible servers
  may refuse a parameter they do not know, so they never get it.

Neither changes the answer's meaning, so neither is part of the response cache key
(`viewfinder.engine.cache.request_key`).

Sources of the limits (OpenAI, "Structured Outputs", section "Supported schemas",
https://developers.openai.com/api/docs/guides/structured-outputs#supported-schemas, as
summarised in https://jsonschemaprofiles.unitvectorylabs.com/schemas/openai): root an
object and not `anyOf`; every property `required`; `additionalProperties: false`; up to
5,000 object properties in total, up to 10 levels of nesting, up to 1,000 enum values in
total; at most 120,000 characters of property names, definition names, enum and const
values; a string enum of more than 250 values at most 15,000 characters. These limits
have been raised before (100 properties and 5 levels at launch, 500 enum values in 2024:
community.openai.com threads 918388 and 974416), so a schema near them may be refused by
an older deployment; turn strict off with `strict_schema=False` then.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from viewfinder.engine._instructor import Mode
from viewfinder.engine.providers import ProviderKind

__all__ = [
    "DEFAULT_PROMPT_CACHE_SHARDS",
    "MAX_ENUM_VALUES",
    "MAX_NESTING",
    "MAX_PROPERTIES",
    "STRICT_KEYWORDS",
    "BodyPolicy",
    "prompt_cache_key_for",
    "strict_schema",
]

logger = logging.getLogger("viewfinder")

DEFAULT_PROMPT_CACHE_SHARDS = 16
"""Routes per prefix: ~15 requests a minute each before OpenAI spills, so ~240 a minute."""

STRICT_KEYWORDS = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "const",
        "anyOf",
        "$ref",
        "$defs",
        "description",
        "title",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "pattern",
        "format",
    }
)
"""The JSON Schema keywords strict mode accepts; any other (`default`, `prefixItems`,
`minLength`, `allOf`...) keeps the schema out of strict mode."""
MAX_NESTING = 10
"""Levels of nested objects strict mode accepts (the root object is level 1)."""
MAX_PROPERTIES = 5000
"""Object properties in the whole schema."""
MAX_ENUM_VALUES = 1000
"""Enum values in the whole schema."""
_MAX_NAME_CHARS = 120_000
_LARGE_ENUM = 250
_MAX_LARGE_ENUM_CHARS = 15_000


class _NotStrict(Exception):
    """The schema is outside the strict subset (the message says why, for logs and tests)."""


@dataclass
class _Tally:
    properties: int = 0
    enum_values: int = 0
    name_chars: int = 0


def _check(
    node: Any, defs: Mapping[str, Any], tally: _Tally, depth: int, path: tuple[str, ...]
) -> None:
    """Check one subschema; `depth` counts the objects around it, `path` the $refs open."""
    if not isinstance(node, dict):
        raise _NotStrict(f"a subschema is not an object: {node!r}")
    unknown = set(node) - STRICT_KEYWORDS
    if unknown:
        raise _NotStrict(f"unsupported keywords {sorted(unknown)}")
    if "$ref" in node:
        ref = node["$ref"]
        name = ref.removeprefix("#/$defs/") if isinstance(ref, str) else ""
        if name not in defs:
            raise _NotStrict(f"unresolvable $ref {ref!r}")
        if name in path:
            raise _NotStrict(f"recursive $ref {ref!r}")  # depth unbounded: not checked here
        _check(defs[name], defs, tally, depth, (*path, name))
    if "enum" in node:
        values = node["enum"]
        tally.enum_values += len(values)
        chars = sum(len(v) for v in values if isinstance(v, str))
        tally.name_chars += chars
        if len(values) > _LARGE_ENUM and chars > _MAX_LARGE_ENUM_CHARS:
            raise _NotStrict(f"a {len(values)}-value enum of {chars} characters")
    if isinstance(node.get("const"), str):
        tally.name_chars += len(node["const"])
    for branch in node.get("anyOf", []):
        _check(branch, defs, tally, depth, path)
    if "items" in node:
        _check(node["items"], defs, tally, depth, path)
    if node.get("type") == "object" or "properties" in node:
        _check_object(node, defs, tally, depth + 1, path)


def _check_object(
    node: dict[str, Any], defs: Mapping[str, Any], tally: _Tally, depth: int, path: tuple[str, ...]
) -> None:
    if depth > MAX_NESTING:
        raise _NotStrict(f"objects nested more than {MAX_NESTING} levels")
    properties = node.get("properties")
    if not isinstance(properties, dict) or not properties:
        raise _NotStrict("an object without properties (a dict field)")
    if node.get("additionalProperties", False) is not False:
        raise _NotStrict("an object with additionalProperties (a dict field)")
    missing = set(properties) - set(node.get("required", []))
    if missing:
        raise _NotStrict(f"properties not required (a default or an optional): {sorted(missing)}")
    tally.properties += len(properties)
    tally.name_chars += sum(len(name) for name in properties)
    for child in properties.values():
        _check(child, defs, tally, depth, path)


def _closed(node: Any) -> Any:
    """A copy of `node` with `"additionalProperties": false` on every object."""
    if isinstance(node, list):
        return [_closed(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {
        key: (
            {name: _closed(sub) for name, sub in value.items()}
            if key in ("properties", "$defs")
            else _closed(value)
        )
        for key, value in node.items()
    }
    if out.get("type") == "object" or "properties" in out:
        out["additionalProperties"] = False
    return out


@functools.lru_cache(maxsize=256)
def strict_schema(response_model: type[BaseModel]) -> dict[str, Any] | None:
    """`response_model`'s JSON schema in the form strict mode wants, or None if it does not fit.

    Pure and cached per model (callers must not modify the result). The check is the
    subset described in the module docstring; nothing about the schema's meaning is
    changed: a field with a default, an optional field that may be left out, a dict
    field, a tuple (`prefixItems`) or a string length make the answer None.
    """
    return _strict_form(response_model.model_json_schema(), response_model.__name__)


def _strict_form(schema: dict[str, Any], name: str) -> dict[str, Any] | None:
    try:
        if "anyOf" in schema or schema.get("type") != "object":
            raise _NotStrict("the root is not an object")
        defs = schema.get("$defs", {})
        tally = _Tally(name_chars=sum(len(name) for name in defs))
        _check(schema, defs, tally, 0, ())
        for name, sub in defs.items():  # unused definitions are sent too: check them
            _check(sub, defs, _Tally(), 0, (name,))
        if tally.properties > MAX_PROPERTIES:
            raise _NotStrict(f"{tally.properties} properties, over {MAX_PROPERTIES}")
        if tally.enum_values > MAX_ENUM_VALUES:
            raise _NotStrict(f"{tally.enum_values} enum values, over {MAX_ENUM_VALUES}")
        if tally.name_chars > _MAX_NAME_CHARS:
            raise _NotStrict(f"{tally.name_chars} characters of names, over {_MAX_NAME_CHARS}")
    except _NotStrict as exc:
        logger.debug("%s is sent without strict mode: %s", name, exc)
        return None
    closed: dict[str, Any] = _closed(schema)
    return closed


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


@functools.lru_cache(maxsize=256)
def _schema_digest(response_model: type[BaseModel]) -> str:
    return _digest(json.dumps(response_model.model_json_schema(), sort_keys=True))


def prompt_cache_key_for(
    messages: list[dict[str, Any]],
    response_model: type[BaseModel],
    model_version: str,
    *,
    shards: int,
) -> str:
    """`vf-<static>-<shard>`: the same for every image of a batch but for the shard.

    `static` hashes what comes before the image (model version, schema, the messages
    without their image parts); `shard` is a stable hash of the image parts (their URLs,
    the data URL of the copy sent) modulo `shards`. Deterministic across processes, so
    recorded requests replay.
    """
    static_messages: list[Any] = []
    images: list[str] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            kept = []
            for part in content:
                if isinstance(part, dict) and part.get("type") == "image_url":
                    images.append(str(part.get("image_url", {}).get("url", "")))
                else:
                    kept.append(part)
            message = {**message, "content": kept}
        static_messages.append(message)
    static = _digest(
        json.dumps(
            [model_version, _schema_digest(response_model), static_messages],
            sort_keys=True,
            ensure_ascii=False,
        )
    )
    shard = int(_digest("\n".join(images)), 16) % shards
    return f"vf-{static[:12]}-{shard}"


@dataclass(frozen=True)
class BodyPolicy:
    """What to add to the bodies sent to one provider.

    Attributes:
        kind: The provider's kind: strict for OpenAI and Azure, the key for OpenAI only.
        mode: instructor's mode: strict only in `json_schema` mode.
        strict_schema: False never sends `"strict": true`.
        prompt_cache_shards: Routes per prefix for `prompt_cache_key`; 1 is one route,
            0 sends no key.
    """

    kind: ProviderKind
    mode: Mode
    strict_schema: bool = True
    prompt_cache_shards: int = DEFAULT_PROMPT_CACHE_SHARDS

    def __post_init__(self) -> None:
        if self.prompt_cache_shards < 0:
            raise ValueError("prompt_cache_shards must be >= 0")

    def extras(
        self, messages: list[dict[str, Any]], response_model: type[BaseModel], model_version: str
    ) -> dict[str, Any]:
        """The fields one request adds, computed once (re-asks keep the same key)."""
        if self.kind is not ProviderKind.OPENAI or self.prompt_cache_shards == 0:
            return {}
        key = prompt_cache_key_for(
            messages, response_model, model_version, shards=self.prompt_cache_shards
        )
        return {"prompt_cache_key": key}

    def apply(
        self, body: dict[str, Any], response_model: type[BaseModel], extras: Mapping[str, Any]
    ) -> dict[str, Any]:
        """`body` (instructor's) with strict and `extras` added; `body` is not modified."""
        out = {**body, **extras}
        if not self.strict_schema or self.mode is not Mode.JSON_SCHEMA:
            return out
        if self.kind not in (ProviderKind.OPENAI, ProviderKind.AZURE):
            return out
        response_format = body.get("response_format")
        if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
            return out
        schema = strict_schema(response_model)
        if schema is None:
            return out
        json_schema = {**response_format["json_schema"], "schema": copy.deepcopy(schema)}
        json_schema["strict"] = True
        out["response_format"] = {**response_format, "json_schema": json_schema}
        return out
