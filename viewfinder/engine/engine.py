"""Run one request: cache -> instructor + openai (retried per HTTP attempt) -> usage.

instructor is reached only through `viewfinder.engine._instructor`; `request_body` is the
body `run` and `arun` send first, for the Batch API and the estimator.

Only this module does model I/O, and only the send differs between `run` and `arun`:
looking up and storing the cache, counting usage and translating errors are shared.

Two loops, never nested the wrong way round:
- tenacity (`viewfinder.engine.retry`) wraps each single HTTP attempt and sees its headers,
  so a 429 during a re-ask repeats that one request, not the conversation;
- instructor's validation re-asks wrap whole completions (bounded by `max_reasks`).
The openai SDK's own retries are off on every client (`Provider` guarantees it).

Each request has a `viewfinder.engine.retry.Deadline` (`RetryPolicy.max_total_seconds`): every
attempt's timeout is cut to the time left, and the rate limiter's wait counts.

Seeing inside: every HTTP attempt and every cache hit logs one DEBUG line on the
`viewfinder` logger (`model request: model=... attempt=... reask=... status=...
latency=... input_tokens=... cached_input_tokens=... output_tokens=... cache_hit=...
endpoint=...`; the endpoint through `viewfinder.prepare.redact.redact_url`, never a key, a
message or the image), and the engine's `Hooks` (`viewfinder.engine.hooks`) get the same
moments as typed events: request, response, retry, re-ask, error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import openai
from openai.types.chat import ChatCompletion
from pydantic import BaseModel

from viewfinder.engine import _instructor
from viewfinder.engine.body import DEFAULT_PROMPT_CACHE_SHARDS, BodyPolicy
from viewfinder.engine.budget import Budget
from viewfinder.engine.cache import AnswerCache, request_key
from viewfinder.engine.hooks import (
    ErrorEvent,
    Hooks,
    ReaskEvent,
    RequestEvent,
    ResponseEvent,
    RetryEvent,
)
from viewfinder.engine.providers import Provider
from viewfinder.engine.retry import (
    Deadline,
    RetryPolicy,
    async_retrying,
    retry_reason,
    sync_retrying,
    to_viewfinder_error,
)
from viewfinder.errors import (
    BudgetExceededError,
    ContentFilterError,
    InvalidAnswerError,
    ModelBehaviorError,
    OutputTruncatedError,
    ProviderError,
    ViewfinderError,
)
from viewfinder.prepare.redact import redact_text, redact_url
from viewfinder.schemas.result import ImageMetadata, Usage

__all__ = [
    "PARSE_ERRORS",
    "Completed",
    "Engine",
    "Gate",
    "Request",
    "Tally",
    "check_completion",
    "parse_completion",
    "raw_answer",
    "request_body",
]

logger = logging.getLogger("viewfinder")

A = TypeVar("A", bound=BaseModel)

PARSE_ERRORS = _instructor.PARSE_ERRORS
"""What an answer that does not validate raises (re-asked online, final in a batch)."""
parse_completion = _instructor.parse_completion
"""Validate a completion received another way (a Batch API answer), with no re-ask."""


@dataclass(frozen=True)
class Request(Generic[A]):
    """Everything one model call needs; built by an analyzer, pure data."""

    messages: list[dict[str, Any]]
    """Chat messages, the image part included."""
    response_model: type[A]
    """The model-facing schema (grid coordinates)."""
    model_version: str
    """`<model>+<hash>`; part of the cache key."""


class Gate(Protocol):
    """Paces HTTP attempts (a rate limiter): asked before each one, told how it went."""

    def acquire(self, tokens: int) -> None:
        """Block until an attempt expected to use `tokens` may go out.

        A gate may refuse instead of waiting (`RateLimiter(max_wait=...)`): the
        `RateLimitError` it raises ends the call, with no HTTP attempt made.
        """

    async def aacquire(self, tokens: int) -> None:
        """Async twin of `acquire`."""

    def observe(self, status: int | None, headers: Mapping[str, str]) -> None:
        """What an attempt got back: its HTTP status (None: no response) and headers.

        Called exactly once for every `acquire` / `aacquire` that returned, however the
        attempt ended (cancelled or timed out included), so a gate may count attempts
        in flight.
        """


@dataclass(frozen=True)
class Completed(Generic[A]):
    """A validated model-facing answer and what it cost."""

    answer: A
    usage: Usage
    request_id: str | None = None


@dataclass
class Tally:
    """Usage of one call, counted per HTTP response (re-asks and failures included).

    Public for the Batch API, which counts an answer read from a file the same way.
    """

    requests: int = 0
    completions: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    attempts: int = 0
    last_input_tokens: int = 0
    request_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    deadline: Deadline | None = None
    reask: int = 0
    """The request being sent: 0 for the first question, n for the n-th re-ask."""
    latency: float = 0.0
    """Seconds the last HTTP attempt took."""
    parse_error: str = ""
    """Why the last answer failed validation (log-safe), for the re-ask's event."""

    def start_request(self, max_seconds: float) -> Deadline:
        """Start one request (an HTTP call and its retries); returns its deadline."""
        self.attempts = 0
        self.deadline = Deadline(max_seconds)
        return self.deadline

    def attempt(self) -> None:
        self.requests += 1
        self.attempts += 1

    def record(self, completion: ChatCompletion, headers: dict[str, str]) -> Usage:
        """Count one completion; returns what it alone cost."""
        self.completions += 1
        self.headers = headers
        self.request_id = headers.get("x-request-id") or self.request_id
        usage = completion.usage
        if usage is None:
            return Usage()
        details = usage.prompt_tokens_details
        cached = details.cached_tokens or 0 if details is not None else 0
        self.input_tokens += usage.prompt_tokens
        self.output_tokens += usage.completion_tokens
        self.cached_input_tokens += cached
        self.last_input_tokens = usage.prompt_tokens
        return Usage(
            input_tokens=usage.prompt_tokens,
            cached_input_tokens=cached,
            output_tokens=usage.completion_tokens,
        )

    def usage(self) -> Usage:
        return Usage(
            input_tokens=self.input_tokens,
            cached_input_tokens=self.cached_input_tokens,
            output_tokens=self.output_tokens,
            requests=self.requests,
            reasks=max(self.completions - 1, 0),
        )


def check_completion(completion: ChatCompletion, tally: Tally) -> None:
    """Typed errors for answers that must never be re-asked (refusal, content filter,
    truncation); checked before the answer is validated, online and in a batch."""
    choice = completion.choices[0] if completion.choices else None
    if choice is None:
        raise InvalidAnswerError("the endpoint answered with no choices", usage=tally.usage())
    message = choice.message
    raw = message.content
    if choice.finish_reason == "content_filter" or getattr(message, "refusal", None):
        reason = getattr(message, "refusal", None) or "stopped by the content filter"
        raise ContentFilterError(
            f"the model refused to answer: {reason}",
            raw_answer=raw,
            attempts=tally.completions,
            usage=tally.usage(),
            categories=filtered_categories(getattr(choice, "content_filter_results", None)),
        )
    if choice.finish_reason == "length":
        raise OutputTruncatedError(
            "the answer hit the output-token cap (finish_reason=length); "
            "raise max_output_tokens or ask for fewer features",
            raw_answer=raw,
            attempts=tally.completions,
            usage=tally.usage(),
        )


def filtered_categories(results: Any) -> tuple[str, ...]:
    """The categories an Azure OpenAI content-filter result marks `filtered`.

    `results` is `{"sexual": {"filtered": true, "severity": "medium"}, ...}` (the
    `content_filter_result` of a refused prompt, or a choice's `content_filter_results`);
    anything else names none.
    """
    if not isinstance(results, Mapping):
        return ()
    return tuple(
        str(name)
        for name, verdict in results.items()
        if isinstance(verdict, Mapping) and verdict.get("filtered") is True
    )


def _prompt_filter_results(body: Any) -> Any:
    """A refused prompt's `content_filter_result` in an error body (Azure OpenAI puts it
    under `innererror`), or None."""
    if not isinstance(body, Mapping):
        return None
    inner = body.get("innererror")
    if isinstance(inner, Mapping) and "content_filter_result" in inner:
        return inner["content_filter_result"]
    return body.get("content_filter_result")


def _provider_error(exc: BaseException, tally: Tally) -> ViewfinderError:
    if isinstance(exc, openai.BadRequestError) and exc.code == "content_filter":
        return ContentFilterError(
            f"the prompt or image was stopped by the content filter: {exc.message}",
            attempts=tally.completions,
            usage=tally.usage(),
            categories=filtered_categories(_prompt_filter_results(exc.body)),
        )
    return to_viewfinder_error(
        exc, attempts=tally.attempts, usage=tally.usage(), deadline=tally.deadline
    )


def raw_answer(completion: ChatCompletion | None) -> str | None:
    """The text of an answer (its content, else its first tool call's arguments)."""
    if completion is None or not completion.choices:
        return None
    message = completion.choices[0].message
    if message.content:
        return message.content
    for call in message.tool_calls or []:
        function = getattr(call, "function", None)
        if function is not None:
            return str(function.arguments)
    return None


def request_body(
    request: Request[Any],
    *,
    model: str,
    sampling: Mapping[str, Any],
    mode: _instructor.Mode,
    policy: BodyPolicy | None = None,
) -> dict[str, Any]:
    """The chat-completions body `Engine.run` sends first for `request` (no I/O).

    The Batch API writes it into its input file and the estimator counts its tokens, so
    both see exactly what the engine sends (`Engine.request_body` passes its own policy).

    Args:
        request: What an analyzer's `build()` made.
        model: `model` of the body.
        sampling: Sampling parameters (`temperature`, `seed`, `max_tokens`...).
        mode: instructor's structured-output mode.
        policy: What the engine adds to instructor's body (strict, `prompt_cache_key`);
            None adds nothing.

    Returns:
        The JSON body: messages, model, sampling, the mode's schema parameters and what
        `policy` adds.
    """
    body = _instructor.request_body(
        request.response_model, request.messages, model=model, mode=mode, sampling=sampling
    )
    if policy is None:
        return body
    extras = policy.extras(request.messages, request.response_model, request.model_version)
    return policy.apply(body, request.response_model, extras)


def _translate(exc: Exception, tally: Tally) -> BaseException:
    """Map whatever instructor raised to viewfinder's error tree, usage attached."""
    cause = _instructor.failure_cause(exc)
    if isinstance(cause, ViewfinderError):
        if isinstance(cause, (ModelBehaviorError, ProviderError, BudgetExceededError)):
            cause.usage = tally.usage()
        return cause
    if isinstance(cause, openai.OpenAIError):
        return _provider_error(cause, tally)
    if _instructor.invalid_after_reasks(exc):
        return InvalidAnswerError(
            f"the answer still failed validation after {tally.completions} completion(s): {cause}",
            raw_answer=raw_answer(_instructor.last_completion(exc)),
            attempts=tally.completions,
            usage=tally.usage(),
        )
    return cause  # not ours to classify (a bug, KeyboardInterrupt...): surface it as it is


class Engine:
    """Sends requests for one provider, with one cache and one retry policy.

    Args:
        provider: The resolved endpoint, clients, model and mode.
        cache: Where answers are kept; `None` disables caching.
        retry: Policy for transient HTTP failures, per attempt.
        max_reasks: Validation re-asks after the first completion.
        sampling: Sampling parameters sent with every request.
        gate: Paces every HTTP attempt (e.g. a shared rate limiter); `None` for none.
        budget: Caps for each call (copied fresh per call); `None` for none.
        strict_schema: Send `"strict": true` when the provider and schema allow it
            (`viewfinder.engine.body`); False never does.
        prompt_cache_shards: Routes per prefix for OpenAI's `prompt_cache_key`; 0 sends
            no key.
        hooks: Handlers told of requests, responses, retries, re-asks and errors; shared
            (not copied) by copies of this engine, e.g. a batch's.
    """

    def __init__(
        self,
        provider: Provider,
        *,
        cache: AnswerCache | None,
        retry: RetryPolicy,
        max_reasks: int,
        sampling: dict[str, Any],
        gate: Gate | None = None,
        budget: Budget | None = None,
        strict_schema: bool = True,
        prompt_cache_shards: int = DEFAULT_PROMPT_CACHE_SHARDS,
        hooks: Hooks | None = None,
    ) -> None:
        self.provider = provider
        self.hooks = Hooks() if hooks is None else hooks
        """Told of every request, response, retry, re-ask and error (`on`)."""
        self._endpoint = redact_url(provider.endpoint)
        self.body_policy = BodyPolicy(
            provider.kind,
            provider.mode,
            strict_schema=strict_schema,
            prompt_cache_shards=prompt_cache_shards,
        )
        """What every body gets besides instructor's: the same online and in a batch."""
        self.gate = gate
        self.budget = budget
        self.cache = cache
        self.retry = retry
        self.max_reasks = max_reasks
        self.sampling = dict(sampling)

    # --- shared, no I/O but the cache --------------------------------------------------

    def _key(self, request: Request[A]) -> str:
        return request_key(
            endpoint=self.provider.endpoint,
            model=self.provider.model,
            mode=str(self.provider.mode.value),
            messages=request.messages,
            schema=request.response_model.model_json_schema(),
            sampling=self.sampling,
            model_version=request.model_version,
        )

    def _lookup(self, request: Request[A]) -> tuple[str | None, Completed[A] | None]:
        if self.cache is None:
            return None, None
        key = self._key(request)
        stored = self.cache.get(key)
        if stored is None:
            return key, None
        try:
            answer = request.response_model.model_validate_json(stored)
        except ValueError:
            logger.warning("ignoring a cache entry that no longer validates (key %s)", key[:12])
            return key, None
        self._cache_hit()
        return key, Completed(answer, Usage(cache_hit=True))

    # --- the source cache: answers found from the original bytes, before decoding ---------

    def lookup_source(self, request: Request[A]) -> tuple[Completed[A], ImageMetadata] | None:
        """A cached answer for a request whose image part names the original bytes.

        `request` is built with a `SourceRef` instead of the encoded copy, so a hit costs
        a read and a hash of the file, not a decode, resize and encode.
        """
        if self.cache is None:
            return None
        stored = self.cache.get(self._key(request))
        if stored is None:
            return None
        try:
            entry = json.loads(stored)
            answer = request.response_model.model_validate_json(entry["answer"])
            size = ImageMetadata(width=entry["width"], height=entry["height"])
        except (ValueError, KeyError, TypeError):
            return None
        self._cache_hit()
        return Completed(answer, Usage(cache_hit=True)), size

    def remember_source(self, request: Request[A], done: Completed[A], size: ImageMetadata) -> None:
        """Store `done` for `lookup_source`, with the image size `finish` needs."""
        if self.cache is None:
            return
        entry = {
            "answer": done.answer.model_dump_json(),
            "width": size.width,
            "height": size.height,
        }
        self.cache.set(self._key(request), json.dumps(entry))

    def _completed(
        self, key: str | None, request: Request[A], answer: A, tally: Tally
    ) -> Completed[A]:
        """Store the answer and return it exactly as a cache hit would.

        Round-tripping through JSON drops what instructor attaches to the answer (the
        raw completion), so a fresh answer and a cached one compare equal.
        """
        answer_json = answer.model_dump_json()
        if self.cache is not None and key is not None:
            self.cache.set(key, answer_json)
        clean = request.response_model.model_validate_json(answer_json)
        return Completed(clean, tally.usage(), tally.request_id)

    def _budgets(self, extra: Budget | None) -> list[Budget]:
        call = [self.budget.copy_fresh()] if self.budget is not None else []
        return call + ([extra] if extra is not None else [])

    @staticmethod
    def _before_attempt(budgets: Sequence[Budget], tally: Tally) -> None:
        for budget in budgets:
            budget.check(tally.last_input_tokens)

    def _after_attempt(self, status: int | None, headers: Mapping[str, str]) -> None:
        if self.gate is not None:
            self.gate.observe(status, headers)

    def _after_completion(
        self, budgets: Sequence[Budget], tally: Tally, completion: ChatCompletion, raw: Any
    ) -> None:
        spent = tally.record(completion, dict(raw.headers))
        for budget in budgets:
            budget.charge(spent)
        self._log_attempt(tally, raw.status_code, spent)
        if self.hooks:
            self.hooks.emit(
                "response",
                ResponseEvent(
                    self.provider.model,
                    tally.attempts,
                    tally.reask,
                    spent,
                    tally.latency,
                    request_id=tally.request_id,
                ),
            )
        check_completion(completion, tally)

    # --- seeing inside: the DEBUG line per attempt and the hooks -------------------------

    def _log_attempt(self, tally: Tally | None, status: int | None, spent: Usage) -> None:
        """The DEBUG line of one HTTP attempt (`tally`), or of a cache hit (None)."""
        if not logger.isEnabledFor(logging.DEBUG):
            return
        logger.debug(
            "model request: model=%s attempt=%d reask=%d status=%s latency=%.3fs "
            "input_tokens=%d cached_input_tokens=%d output_tokens=%d cache_hit=%s endpoint=%s",
            self.provider.model,
            0 if tally is None else tally.attempts,
            0 if tally is None else tally.reask,
            "-" if status is None else status,
            0.0 if tally is None else tally.latency,
            spent.input_tokens,
            spent.cached_input_tokens,
            spent.output_tokens,
            tally is None,
            self._endpoint,
        )

    def _cache_hit(self) -> None:
        self._log_attempt(None, None, Usage())
        if self.hooks:
            event = ResponseEvent(self.provider.model, 0, 0, Usage(cache_hit=True), 0.0, True)
            self.hooks.emit("response", event)

    def _before_request(self, tally: Tally) -> None:
        """One HTTP attempt about to go out (`tally.attempt()` just counted it)."""
        if self.hooks:
            event = RequestEvent(self.provider.model, tally.attempts, tally.reask)
            self.hooks.emit("request", event)

    def _attempt_failed(self, tally: Tally, status: int | None) -> None:
        self._log_attempt(tally, status, Usage())

    def _on_retry(self, tally: Tally) -> Callable[[Any], None]:
        """tenacity's `on_retry` for one request: the retry event."""

        def on_retry(state: Any) -> None:
            if self.hooks:
                wait = float(state.upcoming_sleep)
                event = RetryEvent(
                    self.provider.model, tally.attempts, tally.reask, retry_reason(state), wait
                )
                self.hooks.emit("retry", event)

        return on_retry

    def _start_completion(self, tally: Tally) -> None:
        """instructor asks for a completion: the first, or a re-ask after a failed one."""
        tally.reask = tally.completions
        if tally.reask == 0:
            return
        logger.debug(
            "model answer failed validation; re-ask %d of %d (%s)",
            tally.reask,
            self.max_reasks,
            tally.parse_error,
        )
        if self.hooks:
            event = ReaskEvent(self.provider.model, tally.reask, tally.parse_error)
            self.hooks.emit("reask", event)

    @staticmethod
    def _parse_failed(tally: Tally) -> Callable[[BaseException], None]:
        def note(error: BaseException) -> None:
            tally.parse_error = redact_text(f"{type(error).__name__}: {error}")[:500]

        return note

    def _failed(self, error: BaseException) -> BaseException:
        """The call ends with `error`: the error event (viewfinder's errors only)."""
        if self.hooks and isinstance(error, ViewfinderError):
            usage = getattr(error, "usage", None)
            event = ErrorEvent(
                self.provider.model, error, usage if isinstance(usage, Usage) else None
            )
            self.hooks.emit("error", event)
        return error

    def _call_kwargs(self, request: Request[A]) -> dict[str, Any]:
        return {
            "response_model": request.response_model,
            "messages": request.messages,
            "model": self.provider.model,
            "max_retries": self.max_reasks,
            **self.sampling,
        }

    def request_body(self, request: Request[Any], *, model: str | None = None) -> dict[str, Any]:
        """The body `run` sends first for `request`, policy included (no I/O).

        Args:
            request: What to send.
            model: `model` of the body (default: the provider's).
        """
        return request_body(
            request,
            model=model or self.provider.model,
            sampling=self.sampling,
            mode=self.provider.mode,
            policy=self.body_policy,
        )

    def _shaper(self, request: Request[A]) -> Callable[[dict[str, Any]], dict[str, Any]]:
        """Adds this engine's policy to each body instructor sends for `request` (re-asks
        included): the same `BodyPolicy.apply` as `request_body`."""
        policy, model = self.body_policy, request.response_model
        extras = policy.extras(request.messages, model, request.model_version)
        return lambda body: policy.apply(body, model, extras)

    # --- the I/O twins -------------------------------------------------------------------

    def run(self, request: Request[A], *, budget: Budget | None = None) -> Completed[A]:
        """Answer `request`: from the cache, else from the model.

        Args:
            request: What to send.
            budget: A shared cap (e.g. a batch's) charged besides the per-call one.
        """
        key, hit = self._lookup(request)
        if hit is not None:
            return hit
        tally, budgets = Tally(), self._budgets(budget)
        client = self.provider.client
        raw_create = client.chat.completions.with_raw_response.create

        def attempt_once(deadline: Deadline, *args: Any, **kwargs: Any) -> Any:
            self._before_attempt(budgets, tally)
            if self.gate is not None:
                self.gate.acquire(tally.last_input_tokens)  # checked when it ends, below
            try:
                timeout = deadline.attempt_timeout(client.timeout, attempts=tally.attempts)
                tally.attempt()
                self._before_request(tally)
                started = time.monotonic()
                try:
                    raw = raw_create(*args, timeout=timeout, **kwargs)
                finally:
                    tally.latency = time.monotonic() - started
            except openai.APIStatusError as exc:
                self._after_attempt(exc.status_code, exc.response.headers)
                self._attempt_failed(tally, exc.status_code)
                raise
            except BaseException:  # no response: the attempt still ends for the gate
                self._after_attempt(None, {})
                self._attempt_failed(tally, None)
                raise
            self._after_attempt(raw.status_code, raw.headers)
            return raw

        shape = self._shaper(request)

        def send(*args: Any, **kwargs: Any) -> ChatCompletion:
            kwargs = shape(kwargs)
            self._start_completion(tally)
            deadline = tally.start_request(self.retry.max_total_seconds)
            retrying = sync_retrying(self.retry, deadline=deadline, on_retry=self._on_retry(tally))
            for attempt in retrying:
                with attempt:
                    raw = attempt_once(deadline, *args, **kwargs)
            completion: ChatCompletion = raw.parse()
            self._after_completion(budgets, tally, completion, raw)
            return completion

        create = _instructor.structured_create(
            send, self.provider.mode, on_parse_error=self._parse_failed(tally)
        )
        try:
            answer: A = create(**self._call_kwargs(request))
        except Exception as exc:
            raise self._failed(_translate(exc, tally)) from exc
        return self._completed(key, request, answer, tally)

    async def arun(self, request: Request[A], *, budget: Budget | None = None) -> Completed[A]:
        """Async twin of `run`."""
        key, hit = self._lookup(request)
        if hit is not None:
            return hit
        tally, budgets = Tally(), self._budgets(budget)
        client = self.provider.async_client
        raw_create = client.chat.completions.with_raw_response.create

        async def attempt_once(deadline: Deadline, *args: Any, **kwargs: Any) -> Any:
            self._before_attempt(budgets, tally)
            scope = asyncio.timeout(max(deadline.remaining(), 0.0))
            try:
                # Strict: the gate's wait and the attempt are cancelled at the deadline.
                async with scope:
                    if self.gate is not None:
                        await self.gate.aacquire(tally.last_input_tokens)
                    try:
                        timeout = deadline.attempt_timeout(client.timeout, attempts=tally.attempts)
                        tally.attempt()
                        self._before_request(tally)
                        started = time.monotonic()
                        try:
                            raw = await raw_create(*args, timeout=timeout, **kwargs)
                        finally:
                            tally.latency = time.monotonic() - started
                    except openai.APIStatusError as exc:
                        self._after_attempt(exc.status_code, exc.response.headers)
                        self._attempt_failed(tally, exc.status_code)
                        raise
                    except BaseException:  # cancelled or timed out included: it ended
                        self._after_attempt(None, {})
                        self._attempt_failed(tally, None)
                        raise
            except TimeoutError:
                if not scope.expired():
                    raise
                deadline.reached = True
                raise deadline.error(tally.attempts) from None
            self._after_attempt(raw.status_code, raw.headers)
            return raw

        shape = self._shaper(request)

        async def send(*args: Any, **kwargs: Any) -> ChatCompletion:
            kwargs = shape(kwargs)
            self._start_completion(tally)
            deadline = tally.start_request(self.retry.max_total_seconds)
            retrying = async_retrying(self.retry, deadline=deadline, on_retry=self._on_retry(tally))
            async for attempt in retrying:
                with attempt:
                    raw = await attempt_once(deadline, *args, **kwargs)
            completion: ChatCompletion = raw.parse()  # the legacy raw response parses sync
            self._after_completion(budgets, tally, completion, raw)
            return completion

        create: Callable[..., Awaitable[A]] = _instructor.structured_create(
            send, self.provider.mode, on_parse_error=self._parse_failed(tally)
        )
        try:
            answer = await create(**self._call_kwargs(request))
        except Exception as exc:
            raise self._failed(_translate(exc, tally)) from exc
        return self._completed(key, request, answer, tally)
