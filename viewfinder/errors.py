"""Every error viewfinder raises, under one root.

```
ViewfinderError
├── UserError                    you misused it: fails at once, never retried
│   ├── ConfigurationError         no model endpoint configured, or conflicting settings
│   ├── InvalidOptionError         unknown feature, aspect ratio out of range, bad setting
│   ├── SchemaError                a custom schema viewfinder cannot map (raised when built)
│   ├── BatchLockedError           another process is writing the same batch output or job
│   ├── AzureInputError            stored Azure results (for compare) cannot be read
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
│   ├── TransportError             timeouts, connection failures, blocked network, cassette miss
│   └── BatchFailedError           a Batch API batch ended failed / expired / cancelled first
├── ModelBehaviorError           the endpoint answered, but not with a usable answer
│   ├── InvalidAnswerError         still failing validation after the bounded re-asks
│   ├── ContentFilterError         refused, or stopped by a content filter (never re-asked)
│   └── OutputTruncatedError       finish_reason == "length" (never re-asked)
├── DecodeBusyError              a pixel budget (the server's) stayed spent: retry later
├── BudgetExceededError          a token or dollar cap was reached; nothing more was sent
└── BatchTimeoutError            Batch API batches still unfinished after the total timeout
```

Errors carry context as attributes, never only in the message: `ProviderError` has
`status_code`, `request_id`, `attempts`, `retry_after`, `headers` (an allow-list of the
response's headers) and `usage`; `ModelBehaviorError` has `raw_answer`, `attempts` and
`usage`. Messages never contain API keys or URL query strings (SAS tokens).

One shape for all of them, so they cross process pools and batch files intact:

- `message` is what the constructor was given (`args == (message,)`; `str()` may add
  the context, as `ProviderError` and `ImageError` do), and every keyword-only
  parameter of a class's `__init__` is an attribute of the same name;
- `pickle.loads(pickle.dumps(e))` is an equal error (type, message, attributes);
- `e.to_record()` is a JSON-safe dict `{"type", "message", **attributes}` (a `Usage` as
  its JSON dump), and `ViewfinderError.from_record(record)` the typed error again: the
  batch record stores errors this way. Only the classes of this module are rebuilt.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel

from viewfinder.schemas.result import Usage

__all__ = [
    "KEPT_RESPONSE_HEADERS",
    "AuthenticationError",
    "AzureInputError",
    "BadRequestError",
    "BatchFailedError",
    "BatchLockedError",
    "BatchTimeoutError",
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
    "import_failure",
]


class ViewfinderError(Exception):
    """Root of every error viewfinder raises.

    Subclasses take the message positionally and their context as keyword-only
    arguments, each stored under its own name: that is what `attributes`, pickling,
    `to_record` and `from_record` rely on.
    """

    def __init__(self, message: str = "") -> None:
        super().__init__(message)

    @property
    def message(self) -> str:
        """The message the error was built with (`str()` may add its context)."""
        return str(self.args[0]) if self.args else ""

    @property
    def attributes(self) -> dict[str, Any]:
        """The context: every keyword-only argument of the constructor, by name."""
        return {name: getattr(self, name) for name in _attribute_names(type(self))}

    def __reduce__(self) -> tuple[Any, ...]:
        # The default rebuilds `cls(*args)`, which drops (or, for a required keyword
        # argument, fails on) the attributes; anything else in __dict__ (notes) follows.
        names = _attribute_names(type(self))
        extra = {k: v for k, v in self.__dict__.items() if k not in names}
        return (_rebuild, (type(self), self.message, self.attributes), extra or None)

    def to_record(self) -> dict[str, Any]:
        """`{"type": class name, "message", **attributes}`, JSON-safe (`Usage` dumped)."""
        record: dict[str, Any] = {"type": type(self).__name__, "message": self.message}
        for name, value in self.attributes.items():
            record[name] = _jsonable(value)
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ViewfinderError:
        """The error `record` (from `to_record`) describes, typed again.

        The type is looked up among the classes of `viewfinder.errors` only (a record is
        data, never a class path). An unknown type, or one outside `cls`, gives `cls`
        itself; a record without a required attribute (written by an older version)
        gives the nearest base class that can be built from it. Unknown keys are ignored.
        """
        found = _error_classes().get(str(record.get("type")))
        target = found if found is not None and issubclass(found, cls) else cls
        message = str(record.get("message", ""))
        for candidate in target.__mro__:
            if issubclass(candidate, cls):
                kwargs = _attributes_from(candidate, record)
                if kwargs is not None:
                    return candidate(message, **kwargs)
        return cls(message)  # pragma: no cover - `cls` itself needs no attribute


def _rebuild(cls: type[ViewfinderError], message: str, attributes: dict[str, Any]) -> Any:
    """Unpickle: the error `cls(message, **attributes)`."""
    return cls(message, **attributes)


def _attribute_names(cls: type[ViewfinderError]) -> tuple[str, ...]:
    """The keyword-only parameters of `cls.__init__`: its attributes."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    return tuple(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)


def _attributes_from(
    cls: type[ViewfinderError], record: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The keyword arguments of `cls` found in `record`; None if a required one is missing."""
    kwargs: dict[str, Any] = {}
    parameters = inspect.signature(cls.__init__).parameters
    for name in _attribute_names(cls):
        if name in record:
            value = record[name]
            usage = name == "usage" and value is not None
            kwargs[name] = Usage.model_validate(value) if usage else value
        elif parameters[name].default is inspect.Parameter.empty:
            return None
    return kwargs


def _jsonable(value: Any) -> Any:
    """`value` as JSON: models dumped, mappings as dicts, sequences as lists."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


@functools.cache
def _error_classes() -> dict[str, type[ViewfinderError]]:
    """Every error class of this module, by name."""
    return {
        name: value
        for name, value in globals().items()
        if isinstance(value, type) and issubclass(value, ViewfinderError)
    }


# --- you misused it -------------------------------------------------------------------


class UserError(ViewfinderError):
    """A mistake in how viewfinder was called: fails at once and is never retried."""


class ConfigurationError(UserError):
    """No model endpoint is configured, or the settings contradict each other."""


class InvalidOptionError(UserError, ValueError):
    """An option is out of range or unknown (feature name, aspect ratio, detail...)."""


class AzureInputError(UserError, ValueError):
    """Stored Azure results given to `viewfinder compare` (a directory or a JSONL file)
    cannot be read: missing, not JSON, or not Azure Image Analysis JSON."""


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
        super().__init__(message)
        self.source = source

    def __str__(self) -> str:
        return f"{self.message} ({self.source})" if self.source else self.message


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
        headers: The last response's headers named in `KEPT_RESPONSE_HEADERS` (names in
            lower case; others, cookies and credentials among them, are dropped here).
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
        headers: Mapping[str, str] | None = None,
        usage: Usage | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.request_id = request_id
        self.attempts = attempts
        self.retry_after = retry_after
        self.headers = kept_headers(headers or {})
        self.usage = usage

    def __str__(self) -> str:
        parts = [super().__str__()]
        if self.status_code is not None:
            parts.append(f"status={self.status_code}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        parts.append(f"attempts={self.attempts}")
        return " | ".join(parts)


KEPT_RESPONSE_HEADERS = frozenset(
    {
        "apim-request-id",
        "content-type",
        "date",
        "openai-model",
        "openai-processing-ms",
        "openai-version",
        "retry-after",
        "retry-after-ms",
        "x-ms-client-request-id",
        "x-ms-region",
        "x-request-id",
    }
)
"""Response headers a `ProviderError` keeps (with every `x-ratelimit-*` one): what helps
to diagnose a failure and says nothing secret. Cookies, credentials, organisation and
project ids, and anything not named here are dropped."""


def kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The allow-listed part of `headers` (`KEPT_RESPONSE_HEADERS`, `x-ratelimit-*`),
    names in lower case."""
    kept: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in KEPT_RESPONSE_HEADERS or lower.startswith("x-ratelimit-"):
            kept[lower] = str(value)
    return kept


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


class BatchFailedError(ProviderError):
    """A Batch API batch ended `failed`, `expired` or `cancelled` before answering this request.

    Attributes:
        batch_id: The batch.
        batch_status: Its final status.
    """

    def __init__(
        self,
        message: str,
        *,
        batch_id: str | None = None,
        batch_status: str | None = None,
        usage: Usage | None = None,
    ) -> None:
        super().__init__(message, usage=usage)
        self.batch_id = batch_id
        self.batch_status = batch_status


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
    """The model refused, or a content filter stopped the answer. Never re-asked.

    Attributes:
        categories: The filter's categories that were filtered, as the provider names
            them (Azure OpenAI: `sexual`, `violence`, `hate`, `self_harm`, ...); `()`
            when it named none (a plain refusal).
    """

    def __init__(
        self,
        message: str,
        *,
        raw_answer: str | None = None,
        attempts: int = 1,
        usage: Usage | None = None,
        categories: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, raw_answer=raw_answer, attempts=attempts, usage=usage)
        self.categories = tuple(categories)


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


# --- a Batch API job ran out of time -----------------------------------------------------


class BatchTimeoutError(ViewfinderError, TimeoutError):
    """The batches did not finish within the total timeout. Nothing is lost: run again
    with the same work directory to keep waiting on the same batches.

    Attributes:
        statuses: The last status seen, by batch id.
    """

    def __init__(self, message: str, *, statuses: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.statuses = dict(statuses or {})


def import_failure(extra: str, error: ImportError) -> str:
    """What an optional dependency's failed import means, to finish "X needs Y, which is ...".

    A module that is not there (`ModuleNotFoundError`) is what `pip install
    'viewfinder[<extra>]'` fixes: "not installed: pip install ...". Any other import
    failure means the package is installed but does not load here (no build of it for
    this Python or platform, a missing system library, a version without the API used, two
    OpenCV distributions overwriting each other's `cv2`): telling that user to install an
    extra they have sends them in a circle, so the import's own reason and this Python's
    version are given instead.
    """
    if isinstance(error, ModuleNotFoundError):
        return f"not installed: pip install 'viewfinder[{extra}]'"
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"installed but failed to import on Python {python}: {error}"
