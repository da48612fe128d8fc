"""Every error viewfinder raises, under one root.

```
ViewfinderError
├── UserError                    you misused it: fails at once, never retried
│   ├── ConfigurationError         no model endpoint configured, or conflicting settings
│   ├── InvalidOptionError         unknown feature, aspect ratio out of range, bad setting
│   ├── SchemaError                a custom schema viewfinder cannot map (raised when built)
│   ├── BatchLockedError           another process is writing the same batch output or job
│   └── ImageError                 the image cannot be used
│       ├── ImageFormatError         not an image, corrupt, or a format Azure does not accept
│       ├── ImageSizeError           file too large, or a side outside 50-16,000 px
│       ├── DecompressionBombError   more pixels than any legitimate photo
│       └── ImageFetchError          an image URL could not be fetched
├── ProviderError                the model endpoint failed (after retries where retried)
│   ├── AuthenticationError        401 / 403
│   ├── BadRequestError            400 / 404 / 422 and other non-retried statuses
│   ├── RateLimitError             429, attempts exhausted
│   ├── ServerError                5xx / 408 / 409, attempts exhausted
│   └── TransportError             timeouts, connection failures, blocked network, cassette miss
├── ModelBehaviorError           the endpoint answered, but not with a usable answer
│   ├── InvalidAnswerError         still failing validation after the bounded re-asks
│   ├── ContentFilterError         refused, or stopped by a content filter (never re-asked)
│   └── OutputTruncatedError       finish_reason == "length" (never re-asked)
├── DecodeBusyError              a pixel budget (the server's) stayed spent: retry later
└── BudgetExceededError          a token or dollar cap was reached; nothing more was sent
```

Errors carry context as attributes, never only in the message: `ProviderError` has
`status_code`, `request_id`, `attempts`, `retry_after` and `usage`; `ModelBehaviorError` has
`raw_answer`, `attempts` and `usage`. Messages never contain API keys or URL query
strings (SAS tokens).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from viewfinder.schemas.result import Usage

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "BatchLockedError",
    "BudgetExceededError",
    "ConfigurationError",
    "ContentFilterError",
    "DecodeBusyError",
    "DecompressionBombError",
    "ImageError",
    "ImageFetchError",
    "ImageFormatError",
    "ImageSizeError",
    "InvalidAnswerError",
    "InvalidOptionError",
    "ModelBehaviorError",
    "OutputTruncatedError",
    "ProviderError",
    "RateLimitError",
    "SchemaError",
    "ServerError",
    "TransportError",
    "UserError",
    "ViewfinderError",
]


class ViewfinderError(Exception):
    """Root of every error viewfinder raises."""


# --- you misused it -------------------------------------------------------------------


class UserError(ViewfinderError):
    """A mistake in how viewfinder was called: fails at once and is never retried."""


class ConfigurationError(UserError):
    """No model endpoint is configured, or the settings contradict each other."""


class InvalidOptionError(UserError, ValueError):
    """An option is out of range or unknown (feature name, aspect ratio, detail...)."""


class SchemaError(UserError, TypeError):
    """A custom schema uses `BoundingBox` or `Polygon` where viewfinder cannot map it."""


class BatchLockedError(UserError):
    """Another process is writing the same batch output (or Batch API job): refused at once.

    Attributes:
        path: The file it is writing: the `--out` file, or the job's `state.json`.
        pid: The other process's id, when it recorded one.
        host: The host it runs on.
        since: When it took the lock (ISO 8601, local time with offset).
        command: Its command line, URLs shown as `viewfinder.prepare.redact.safe_url` prints them.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        pid: int | None = None,
        host: str | None = None,
        since: str | None = None,
        command: str | None = None,
    ) -> None:
        # Keyword arguments with defaults: pickle rebuilds it as cls(message) + __dict__.
        super().__init__(message)
        self.path = path
        self.pid = pid
        self.host = host
        self.since = since
        self.command = command


class ImageError(UserError):
    """The image cannot be analysed.

    Attributes:
        source: A printable description of the input (a path, `<bytes>`, or a URL
            with its query string removed). Never contains secrets.
    """

    def __init__(self, message: str, *, source: str | None = None) -> None:
        super().__init__(f"{message} ({source})" if source else message)
        self.source = source


class ImageFormatError(ImageError):
    """Not an image, a corrupt image, or a format outside Azure's list."""


class ImageSizeError(ImageError):
    """The file is too large (or empty), or a side is outside the accepted pixel range.

    Attributes:
        limit: `"bytes"` for the file size, `"dimensions"` for the pixel size.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        limit: Literal["bytes", "dimensions"] = "bytes",
    ) -> None:
        super().__init__(message, source=source)
        self.limit = limit


class DecompressionBombError(ImageError):
    """The header declares more pixels than any legitimate photograph has."""


class ImageFetchError(ImageError):
    """An http(s) image URL could not be fetched."""


# --- the endpoint failed --------------------------------------------------------------


class ProviderError(ViewfinderError):
    """The model endpoint failed.

    Attributes:
        status_code: HTTP status of the last response, `None` when there was none.
        request_id: The provider's `x-request-id` of the last response, if any.
        attempts: HTTP attempts made for the request that failed (retries included);
            0 when a rate limiter refused to send it.
        retry_after: Seconds the endpoint (`retry-after` / `retry-after-ms` of the last
            answer) or the rate limiter asked to wait before trying again; None: unsaid.
        usage: Tokens and requests spent on the call before it failed.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        request_id: str | None = None,
        attempts: int = 1,
        retry_after: float | None = None,
        usage: Usage | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.request_id = request_id
        self.attempts = attempts
        self.retry_after = retry_after
        self.usage = usage

    def __str__(self) -> str:
        parts = [super().__str__()]
        if self.status_code is not None:
            parts.append(f"status={self.status_code}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        parts.append(f"attempts={self.attempts}")
        return " | ".join(parts)


class AuthenticationError(ProviderError):
    """The endpoint rejected the credentials (401) or the permission (403)."""


class BadRequestError(ProviderError):
    """The endpoint rejected the request (400, 404, 422...); retrying cannot help."""


class RateLimitError(ProviderError):
    """429 Too Many Requests, still failing after the bounded retries, or a request that
    a rate limiter with `max_wait` refused to queue (`attempts == 0`)."""


class ServerError(ProviderError):
    """5xx (or 408 / 409), still failing after the bounded retries."""


class TransportError(ProviderError):
    """No HTTP response: a timeout, a refused connection, a blocked network or a cassette miss."""


# --- the model misbehaved -------------------------------------------------------------


class ModelBehaviorError(ViewfinderError):
    """The endpoint answered, but the answer cannot be used.

    Attributes:
        raw_answer: The last text (or tool arguments) the model returned, if any.
        attempts: Completions received, re-asks included.
        usage: Tokens and requests spent, re-asks included.
    """

    def __init__(
        self,
        message: str,
        *,
        raw_answer: str | None = None,
        attempts: int = 1,
        usage: Usage | None = None,
    ) -> None:
        super().__init__(message)
        self.raw_answer = raw_answer
        self.attempts = attempts
        self.usage = usage


class InvalidAnswerError(ModelBehaviorError):
    """The answer still failed validation after the bounded re-asks."""


class ContentFilterError(ModelBehaviorError):
    """The model refused, or a content filter stopped the answer. Never re-asked."""


class OutputTruncatedError(ModelBehaviorError):
    """The answer hit the output-token cap (`finish_reason == "length"`). Never re-asked."""


# --- too busy to decode --------------------------------------------------------------------


class DecodeBusyError(ViewfinderError):
    """A pixel budget stayed spent for the whole wait; the image was not decoded.

    Raised under a `viewfinder.prepare.pixel_budget.PixelBudget` (the server's
    `max_decode_pixels`) when the image's pixels could not be had in time: other
    images were being decoded. Nothing was decoded or sent; retrying later can succeed.

    Attributes:
        retry_after: Seconds after which a retry may find room.
    """

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# --- a cap was reached --------------------------------------------------------------------


class BudgetExceededError(ViewfinderError):
    """A token or dollar cap (per call or per batch) was reached; no further request went out.

    Attributes:
        usage: What the call had spent when it stopped (retries and re-asks included).
        limit: Which cap, e.g. `"1000 tokens per call"` or `"$5.00 per batch"`.
    """

    def __init__(self, message: str, *, limit: str, usage: Usage | None = None) -> None:
        super().__init__(message)
        self.limit = limit
        self.usage = usage
