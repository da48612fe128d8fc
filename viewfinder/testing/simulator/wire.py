"""The OpenAI wire format the doubles answer in: completions, streams, errors.

Pure functions from a scripted :class:`~viewfinder.testing.simulator.replies.Reply` and
the request body to the bytes of an answer, so the HTTP simulator and the in-process
fakes (:mod:`viewfinder.testing.fakes`) send byte-identical JSON for the same script.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, cast

from viewfinder.testing.simulator.replies import (
    CREATED,
    SYSTEM_FINGERPRINT,
    Reply,
    answer_text,
    estimate_prompt_tokens,
)

__all__ = ["Response", "error_body", "models_body", "render_reply"]

_ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "not_found"),
    408: ("timeout", None),
    409: ("conflict", None),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
}


@dataclass
class Response:
    """An HTTP answer: status, body bytes, extra headers, content type."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


def error_body(
    status: int,
    message: str,
    error_type: str | None,
    code: str | None,
    inner: dict[str, Any] | None = None,
) -> bytes:
    """An OpenAI-shaped error body ``{"error": {"message", "type", "param", "code"}}``
    (and Azure OpenAI's ``innererror`` when given)."""
    default_type, default_code = _ERROR_KINDS.get(
        status, ("server_error", None) if status >= 500 else ("invalid_request_error", None)
    )
    error: dict[str, Any] = {
        "message": message,
        "type": error_type or default_type,
        "param": None,
        "code": code if code is not None else default_code,
    }
    if inner is not None:
        error["innererror"] = inner
    return json.dumps({"error": error}).encode()


def _requested_tool_name(body: dict[str, Any]) -> str | None:
    """Name of the function to answer with: the forced ``tool_choice``, else the first tool."""
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools:
        return None
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        function = choice.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return cast(str, function["name"])
    first = tools[0]
    if isinstance(first, dict):
        function = first.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return cast(str, function["name"])
    return "function"


def models_body(model_name: str | None) -> bytes:
    """The ``GET /v1/models`` answer: one model, `model_name` or the fingerprint."""
    name = model_name or SYSTEM_FINGERPRINT
    model = {"id": name, "object": "model", "created": CREATED, "owned_by": SYSTEM_FINGERPRINT}
    return json.dumps({"object": "list", "data": [model]}).encode()


def render_reply(
    reply: Reply, body: dict[str, Any], n: int, *, model_name: str | None, deployment: str | None
) -> Response:
    """Render a scripted reply into the response to the chat-completion request `body`.

    Args:
        reply: What to answer.
        body: The parsed request body (``tools``, ``stream`` and ``model`` shape it).
        n: The request's number, used in its ids (``chatcmpl-sim-<n>``, ``call_sim_<n>``).
        model_name: ``model`` of the answer; None echoes the request's (or `deployment`).
        deployment: The Azure deployment named in the path, if any.
    """
    if reply.status != 200:
        error = error_body(
            reply.status, reply.error_message, reply.error_type, reply.error_code, reply.error_inner
        )
        return Response(reply.status, error, dict(reply.headers))

    text = answer_text(reply.content)
    tool_name = _requested_tool_name(body)
    tool_call: dict[str, Any] | None = None
    if tool_name is not None and text is not None:
        tool_call = {
            "id": f"call_sim_{n}",
            "type": "function",
            "function": {"name": tool_name, "arguments": text},
        }
    finish_reason = reply.finish_reason or ("tool_calls" if tool_call else "stop")
    prompt_tokens = (
        reply.prompt_tokens if reply.prompt_tokens is not None else estimate_prompt_tokens(body)
    )
    completion_tokens = (
        reply.completion_tokens
        if reply.completion_tokens is not None
        else len(text or reply.refusal or "") // 4 + 1
    )
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    model = model_name or body.get("model") or deployment or SYSTEM_FINGERPRINT
    common = {
        "id": f"chatcmpl-sim-{n}",
        "created": CREATED,
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }

    if body.get("stream") is True:
        stream_body = _stream(common, text, tool_call, reply, finish_reason, usage, body)
        return Response(200, stream_body, dict(reply.headers), "text/event-stream")

    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if tool_call else text,
        "refusal": reply.refusal,
    }
    if tool_call:
        message["tool_calls"] = [tool_call]
    completion = {
        **common,
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}
        ],
        "usage": usage,
    }
    return Response(200, json.dumps(completion).encode(), dict(reply.headers))


def _stream(
    common: dict[str, Any],
    text: str | None,
    tool_call: dict[str, Any] | None,
    reply: Reply,
    finish_reason: str,
    usage: dict[str, Any],
    body: dict[str, Any],
) -> bytes:
    """Render a reply as a (single-content-chunk) server-sent-events stream."""
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        data: dict[str, Any] = {**common, "object": "chat.completion.chunk"}
        data["choices"] = [choice]
        if include_usage:
            data["usage"] = None
        return data

    chunks: list[dict[str, Any]] = []
    if tool_call:
        head = {**tool_call, "index": 0, "function": {**tool_call["function"], "arguments": ""}}
        chunks.append(chunk({"role": "assistant", "content": None, "tool_calls": [head]}, None))
        arguments = tool_call["function"]["arguments"]
        chunks.append(
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]}, None)
        )
    else:
        chunks.append(chunk({"role": "assistant", "content": "", "refusal": None}, None))
        if text:
            chunks.append(chunk({"content": text}, None))
    if reply.refusal:
        chunks.append(chunk({"refusal": reply.refusal}, None))
    chunks.append(chunk({}, finish_reason))
    if include_usage:
        chunks.append({**common, "object": "chat.completion.chunk", "choices": [], "usage": usage})
    events = [f"data: {json.dumps(item)}\n\n" for item in chunks]
    events.append("data: [DONE]\n\n")
    return "".join(events).encode()
