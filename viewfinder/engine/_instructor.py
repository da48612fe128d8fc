"""The one adapter to instructor: the only module of viewfinder that imports it.

instructor turns a response model into the chat-completions body of a structured-output
mode (a schema in the prompt, `response_format` or `tools`), validates the answer and
re-asks when it does not validate. viewfinder uses it in three places, all through here:

- the engine sends: `structured_create` wraps the engine's own `send` (one HTTP attempt
  loop, retried by tenacity) with `instructor.patch(create=...)`, instructor's public API;
- the Batch API writes the same body into its input file, and the estimator counts its
  tokens: `request_body` runs that same patched `create` up to the point where it would
  send, so the body is the engine's by construction, not a second rendering of it;
- the Batch API validates answers that arrived in a file: `parse_completion` hands the
  completion to the same patched `create` with no re-ask.

Workarounds, owned here because instructor has no public API for them:

- instructor cannot return the body it would send without sending it. `request_body`
  stops its `create` with `_Captured`, a `BaseException`: instructor catches
  `Exception` to log a failed API call at ERROR and wrap it in `InstructorRetryException`,
  and neither should happen to a body that was never meant to be sent.
- instructor cannot validate a completion received some other way: `parse_completion`
  gives it a `create` that returns that completion, and unwraps the retry exception.
- instructor logs at ERROR, in its own count of attempts, failures viewfinder reports
  itself: `structured_create` runs instructor with its records demoted to DEBUG
  (`_Demoted`, a filter on instructor's loggers, active only inside viewfinder's calls).

Nothing else of instructor's is reached: no `instructor.v2` internals, no handler
registry; the re-ask's reason comes from its public per-call `hooks=` (`parse:error`), and
the logger names are the ones its modules log under. `Mode`, `Hooks` and the exceptions
come from `instructor` and `instructor.core`, the packages instructor documents.
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any, TypeVar, cast

import instructor
from instructor.core import (
    IncompleteOutputException,
    InstructorRetryException,
    ResponseParsingError,
)
from instructor.core.hooks import Hooks
from openai.types.chat import ChatCompletion
from pydantic import BaseModel, ValidationError

__all__ = [
    "PARSE_ERRORS",
    "Mode",
    "failure_cause",
    "invalid_after_reasks",
    "last_completion",
    "parse_completion",
    "request_body",
    "structured_create",
]

# instructor logs at ERROR when the create it wraps raises ("API call failed on attempt
# 1") and when it gives up ("Max retries exceeded. Total attempts: 2"), counting
# completions where viewfinder counts HTTP attempts, so its lines contradict viewfinder's
# own (the engine's DEBUG line per attempt, its INFO retry lines and the typed error it
# raises). While viewfinder drives instructor, `_Demoted` turns those records into DEBUG
# records: a handler at INFO or above no longer shows them, a DEBUG handler still can.
# instructor calls made by the application itself are untouched. A logger's filter sees
# only records logged on that very logger, so it is put on each logger instructor 1.17
# logs to on this path: "instructor" (the OpenAI handlers, response, usage), "instructor.v2"
# (core/patch.py) and "instructor.v2.retry" (core/retry.py).
# The NullHandler keeps Python's last-resort handler from printing instructor's lines
# when the application configured no logging.
_DRIVING: ContextVar[bool] = ContextVar("viewfinder_driving_instructor", default=False)
_INSTRUCTOR_LOGGERS = ("instructor", "instructor.v2", "instructor.v2.retry")


class _Demoted(logging.Filter):
    """Makes instructor's records DEBUG while viewfinder drives instructor."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _DRIVING.get() and record.levelno > logging.DEBUG:
            record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return True


logging.getLogger("instructor").addHandler(logging.NullHandler())
for _name in _INSTRUCTOR_LOGGERS:
    logging.getLogger(_name).addFilter(_Demoted())

Mode = instructor.Mode
"""instructor's structured-output modes (viewfinder supports `providers.MODE_NAMES`)."""

PARSE_ERRORS: tuple[type[Exception], ...] = (
    ValidationError,
    ValueError,
    ResponseParsingError,
    AssertionError,
    IncompleteOutputException,
)
"""What instructor raises on an answer that does not validate (JSONDecodeError is a
ValueError; a refusal in a handler is an AssertionError; a cut-off answer is an
`IncompleteOutputException`). The engine re-asks on them; after the last re-ask, and in
a batch that cannot re-ask, they become `InvalidAnswerError`."""

M = TypeVar("M", bound=BaseModel)


def structured_create(
    send: Callable[..., Any],
    mode: instructor.Mode,
    *,
    on_parse_error: Callable[[BaseException], None] | None = None,
) -> Callable[..., Any]:
    """`send` made structured: takes `response_model=`, `max_retries=` (re-asks), sends
    the mode's body through `send` and returns the validated model.

    `send` is called with the body's fields as keyword arguments (once per completion,
    re-asks included) and returns a `ChatCompletion`; it may be a coroutine function, and
    then so is the result. `on_parse_error` is called with each answer's validation error
    (instructor's public `parse:error` hook), before the re-ask if one follows. While the
    result runs, instructor's own log records are DEBUG ones (see `_Demoted`).
    """
    patched = cast(
        Callable[..., Any],
        instructor.patch(create=send, mode=mode, provider=instructor.Provider.OPENAI),
    )
    hooks: dict[str, Any] = {}
    if on_parse_error is not None:
        instructor_hooks = Hooks()
        instructor_hooks.on("parse:error", lambda error, **_: on_parse_error(error))
        hooks["hooks"] = instructor_hooks

    if inspect.iscoroutinefunction(send):

        async def acreate(*args: Any, **kwargs: Any) -> Any:
            token = _DRIVING.set(True)
            try:
                return await patched(*args, **kwargs, **hooks)
            finally:
                _DRIVING.reset(token)

        return acreate

    def create(*args: Any, **kwargs: Any) -> Any:
        token = _DRIVING.set(True)
        try:
            return patched(*args, **kwargs, **hooks)
        finally:
            _DRIVING.reset(token)

    return create


class _Captured(BaseException):
    """Carries the body out of instructor's `create` (see the module docstring)."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__("request body captured")
        self.body = body


def request_body(
    response_model: type[BaseModel],
    messages: list[dict[str, Any]],
    *,
    model: str,
    mode: instructor.Mode,
    sampling: Mapping[str, Any],
) -> dict[str, Any]:
    """The chat-completions body `structured_create` sends first for these arguments.

    Pure: nothing is sent and `messages` is not modified.

    Args:
        response_model: The model-facing schema.
        messages: The chat messages, the image part included.
        model: `model` of the body.
        mode: instructor's structured-output mode.
        sampling: Sampling parameters (`temperature`, `seed`, `max_tokens`...).

    Returns:
        messages, model, sampling and the mode's schema parameters.
    """

    def capture(*args: Any, **body: Any) -> Any:
        raise _Captured(body)

    create = structured_create(capture, mode)
    try:
        create(
            response_model=response_model,
            messages=copy.deepcopy(messages),
            model=model,
            max_retries=0,
            **sampling,
        )
    except _Captured as captured:
        return captured.body
    raise AssertionError("instructor returned without calling create")  # pragma: no cover


def parse_completion(completion: ChatCompletion, response_model: type[M], mode: Mode) -> M:
    """Validate `completion` against `response_model` as the engine would, with no re-ask.

    For answers that arrived another way (a Batch API output file). Check refusals and
    truncation first (`viewfinder.engine.engine.check_completion`).

    Raises:
        One of `PARSE_ERRORS`: the answer does not validate.
    """

    def answered(*args: Any, **kwargs: Any) -> ChatCompletion:
        return completion

    create = structured_create(answered, mode)
    try:
        parsed = create(response_model=response_model, messages=[], max_retries=0)
    except InstructorRetryException as exc:
        cause = failure_cause(exc)
        if isinstance(cause, PARSE_ERRORS):
            raise cause from None
        raise
    return cast(M, parsed)


def failure_cause(exc: BaseException) -> BaseException:
    """What failed under instructor's retry wrapper: the exception it wraps, else `exc`."""
    if isinstance(exc, InstructorRetryException) and exc.__cause__ is not None:
        return exc.__cause__
    return exc


def invalid_after_reasks(exc: BaseException) -> bool:
    """Whether `exc` is instructor giving up because the answer never validated."""
    return isinstance(exc, InstructorRetryException) and isinstance(
        failure_cause(exc), PARSE_ERRORS
    )


def last_completion(exc: BaseException) -> ChatCompletion | None:
    """The last completion instructor received before giving up, if any."""
    completion = getattr(exc, "last_completion", None)
    return completion if isinstance(completion, ChatCompletion) else None
