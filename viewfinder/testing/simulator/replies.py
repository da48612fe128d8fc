"""The scripting vocabulary: what a test queues and what the simulator counts as usage.

:class:`Reply` (one answer to a chat completion), :class:`BatchScript` (how a Batch API
batch ends) and the deterministic, NOT real, :func:`estimate_prompt_tokens`. Both doubles
speak it: the HTTP :class:`~viewfinder.testing.simulator.Simulator` and the in-process
:mod:`viewfinder.testing.fakes`. Only the standard library is used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, cast

__all__ = [
    "CREATED",
    "IMAGE_PART_TOKENS",
    "SYSTEM_FINGERPRINT",
    "BatchScript",
    "BatchStatus",
    "Reply",
    "ReplyLike",
    "answer_text",
    "estimate_prompt_tokens",
    "to_reply",
]

CREATED = 1_700_000_000
"""Fixed ``created`` timestamp of every answer (2023-11-14T22:13:20Z)."""

SYSTEM_FINGERPRINT = "viewfinder-simulator"
"""``system_fingerprint`` of every answer; also the default model name."""

IMAGE_PART_TOKENS = 85
"""Tokens the prompt estimate charges per image part (the low-detail tile cost)."""


@dataclass
class Reply:
    """One scripted answer.

    Attributes:
        content: The answer. A ``dict``/``list`` is JSON-encoded; a ``str`` is
            sent verbatim (so malformed JSON can be scripted); an object with
            ``model_dump_json()`` (a pydantic model) is dumped with it;
            ``None`` sends ``content: null`` and no tool call.
        status: HTTP status. Anything other than 200 sends an OpenAI-shaped
            error body ``{"error": {"message", "type", "param", "code"}}``.
        error_message: ``error.message`` of a non-200 answer.
        headers: Extra response headers, e.g. ``{"retry-after": "0"}``.
            ``x-request-id: req_sim_<n>`` is added unless given here.
        finish_reason: ``choices[0].finish_reason``. ``None`` means ``"stop"``,
            or ``"tool_calls"`` when the answer is delivered as a tool call.
        refusal: ``message.refusal``.
        prompt_tokens: ``usage.prompt_tokens``; default is the deterministic
            estimate from :func:`estimate_prompt_tokens` (NOT real usage).
        completion_tokens: ``usage.completion_tokens``; default
            ``len(answer text) // 4 + 1`` (NOT real usage).
        delay: Seconds to wait before answering, on top of the simulator's
            ``latency``.
        error_type: ``error.type`` of a non-200 answer; default derived from
            ``status`` (e.g. ``invalid_request_error``, ``requests``,
            ``server_error``).
        error_code: ``error.code`` of a non-200 answer, e.g.
            ``"content_filter"``; default derived from ``status``.
        error_inner: ``error.innererror`` of a non-200 answer, as Azure OpenAI sends
            it with a refused prompt (``{"code": "ResponsibleAIPolicyViolation",
            "content_filter_result": {"sexual": {"filtered": true, ...}}}``).
    """

    content: Any = None
    status: int = 200
    error_message: str = "scripted error"
    headers: dict[str, str] = field(default_factory=dict)
    finish_reason: str | None = None
    refusal: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    delay: float = 0.0
    error_type: str | None = None
    error_code: str | None = None
    error_inner: dict[str, Any] | None = None


ReplyLike = Reply | dict[str, Any] | list[Any] | str
"""What :meth:`Simulator.script` and ``default`` accept; non-Replies become ``Reply(content=x)``."""


BatchStatus = Literal["completed", "failed", "expired", "cancelled"]


@dataclass
class BatchScript:
    """How the next created batch ends (queue with :meth:`Simulator.script_batch`).

    Unscripted batches complete after :attr:`Simulator.batch_polls` retrieves.

    Attributes:
        status: Final status. ``completed`` answers every line; ``expired`` and
            ``cancelled`` answer the first ``answered`` lines and put the rest in
            the error file (codes ``batch_expired`` / ``batch_cancelled``);
            ``failed`` answers nothing and sets the batch's ``errors``.
        polls: Retrieves before the final status (default
            :attr:`Simulator.batch_polls`).
        answered: Lines answered before an ``expired`` / ``cancelled`` batch stops.
        error_message: ``errors.data[0].message`` of a ``failed`` batch.
    """

    status: BatchStatus = "completed"
    polls: int | None = None
    answered: int = 0
    error_message: str = "simulator: scripted batch failure"


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    """Estimate prompt tokens of a chat-completion request. NOT real usage.

    The estimate is ``(characters of all text parts) // 4 + 85`` per image
    part. Text parts are string message contents and ``{"type": "text"}``
    parts; image parts are ``{"type": "image_url"}`` parts. The (large) base64
    image payload is deliberately not counted as text.

    Args:
        body: The parsed request body.

    Returns:
        The deterministic estimate.
    """
    chars = 0
    images = 0
    messages = body.get("messages")
    if not isinstance(messages, list):
        return 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, dict):
                    continue
                if part.get("type") == "text" and isinstance(part.get("text"), str):
                    chars += len(part["text"])
                elif part.get("type") == "image_url":
                    images += 1
    return chars // 4 + IMAGE_PART_TOKENS * images


def to_reply(item: ReplyLike) -> Reply:
    """`item` as a :class:`Reply`: a non-Reply becomes ``Reply(content=item)``."""
    return item if isinstance(item, Reply) else Reply(content=item)


def answer_text(content: Any) -> str | None:
    """The text a reply's ``content`` is sent as (see :attr:`Reply.content`)."""
    if content is None:
        return None
    if isinstance(content, str):
        return content
    dump = getattr(content, "model_dump_json", None)
    if callable(dump):
        return cast(str, dump())
    return json.dumps(content, ensure_ascii=False)
