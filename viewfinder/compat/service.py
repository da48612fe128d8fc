"""The Image Analysis 4.0 service's rules: option checks and error bodies.

Shared by the SDK look-alike (`viewfinder.azure`) and the compatible server
(`viewfinder serve`), so both refuse the same requests with the same errors, shaped as
the service shapes them: `{"error": {"code", "message", "innererror": {"code",
"message"}}}` plus an `x-ms-error-code` header. Needs no Azure package.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from viewfinder.analyzers.features import ALL_FEATURES, Feature
from viewfinder.build.plan import CallPlan
from viewfinder.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    DecodeBusyError,
    DecompressionBombError,
    ImageFetchError,
    ImageFormatError,
    ImageSizeError,
    InvalidOptionError,
    ModelBehaviorError,
    ProviderError,
    RateLimitError,
    ViewfinderError,
)

if TYPE_CHECKING:
    from viewfinder.analyzers.image_analysis import FeatureOptions, ImageAnalyzer
    from viewfinder.schemas.result import ImageAnalysisResult

__all__ = [
    "API_VERSIONS",
    "AZURE_MODEL_VERSION",
    "DEFAULT_RETRY_AFTER",
    "LANGUAGES",
    "MAX_IMAGE_BYTES",
    "MODEL_VERSIONS",
    "RESOURCE_NOT_FOUND",
    "ServiceError",
    "check_api_version",
    "check_options",
    "retry_after_header",
    "service_error_for",
    "unauthorized",
]

API_VERSIONS = ("2023-10-01", "2024-02-01")
AZURE_MODEL_VERSION = "2023-10-01"
"""The service's only public model version (what its results report)."""
MODEL_VERSIONS = ("latest", AZURE_MODEL_VERSION)
"""`model-version` values the service accepts in requests; both mean viewfinder's model."""
MAX_IMAGE_BYTES = 20 * 1024 * 1024
"""The service refuses bodies of this size or more ("larger than 20971520 bytes")."""
DEFAULT_RETRY_AFTER = 1
"""`Retry-After` seconds of a 429 / 503 when nobody said how long to wait."""

LANGUAGES = frozenset(
    (  # noqa: SIM905 - a word list reads better than 52 quoted items
        "ar az bg bs ca cs cy da de el en es et eu fi fr ga gl he hi hr hu id it ja kk ko lt lv "
        "mk ms nb nl pl prs pt-BR pt pt-PT ro ru sk sl sr-Cryl sr-Latn sv th tr uk vi zh "
        "zh-Hans zh-Hant"
    ).split()
)
"""Language codes the service accepts (its tags list, the widest). Unlike the service,
viewfinder also writes captions and object names in these languages."""

_FEATURES_BY_WIRE_NAME = {f.azure_name.lower(): f for f in ALL_FEATURES}  # 4.0 only


@dataclass(frozen=True)
class ServiceError(Exception):
    """An error answer exactly as the service shapes it.

    `retry_after` (whole seconds) becomes a `Retry-After` header: 429 and 503 answers
    carry one, so a client's retry policy (the SDK's honours it) knows when to return.
    """

    status: int
    code: str
    message: str
    inner_code: str | None = None
    inner_message: str | None = None
    retry_after: int | None = None

    def body(self) -> dict[str, Any]:
        """The JSON body: `{"error": {"code", "message"[, "innererror"]}}`."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.inner_code is not None:
            error["innererror"] = {"code": self.inner_code, "message": self.inner_message}
        return {"error": error}

    @property
    def headers(self) -> dict[str, str]:
        """Response headers the service adds to errors (`Retry-After` when known)."""
        headers = {"x-ms-error-code": self.code}
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return headers

    def __str__(self) -> str:
        inner = f" ({self.inner_code}: {self.inner_message})" if self.inner_code else ""
        return f"({self.code}) {self.message}{inner}"


def _invalid_query(inner_code: str, inner_message: str) -> ServiceError:
    return ServiceError(
        400, "InvalidRequest", "Analyze query is invalid.", inner_code, inner_message
    )


RESOURCE_NOT_FOUND = ServiceError(404, "404", "Resource not found")
"""What the service answers for an unknown path, method or api-version."""


def check_api_version(version: str | None) -> str:
    """The api-version if the service knows it.

    Raises:
        ServiceError: 404 "Resource not found", as the service answers an unknown version.
    """
    if version not in API_VERSIONS:
        raise RESOURCE_NOT_FOUND
    return version


def unauthorized() -> ServiceError:
    """The service's 401 body for a wrong or missing key."""
    return ServiceError(
        401,
        "401",
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
        "provide a valid key for an active subscription and use a correct regional API "
        "endpoint for your resource.",
    )


_BAD_RATIO = "'smartcrops-aspect-ratios' aspect ratio is not in allowed range [0.75 to 1.8]"


def check_options(
    analyzer: ImageAnalyzer,
    features: Iterable[str],
    *,
    language: str | None = None,
    gender_neutral_caption: bool | None = None,
    smart_crops_aspect_ratios: Sequence[float] | None = None,
    model_version: str | None = None,
) -> CallPlan[FeatureOptions, ImageAnalysisResult]:
    """`analyzer`'s call plan for a request, refused as the service refuses it.

    The service's own rules are applied here: features by their wire names, its list of
    languages (narrower than the language codes viewfinder accepts) and `model-version`.
    Everything else about the options (the ratios' range) is checked once, by
    `ImageAnalyzer.plan`; its refusal is answered with the service's words.

    Raises:
        ServiceError: 400 with the service's codes: no features, an unknown feature
            (`NotSupportedVisualFeature`), an unknown language (`NotSupportedLanguage`),
            a ratio outside 0.75-1.8 (`BadArgument`), a model version other than
            `latest` or `2023-10-01` (`InvalidModelVersion`).
    """
    names = [str(getattr(f, "value", f)).strip() for f in features]
    names = [n for n in names if n]
    if not names:
        raise ServiceError(
            400,
            "InvalidRequest",
            "Either 'features' or 'model-name' needs to be specified in the query parameter.",
        )
    chosen: list[Feature] = []
    for name in names:
        feature = _FEATURES_BY_WIRE_NAME.get(name.replace("_", "").lower())
        if feature is None:
            raise _invalid_query("NotSupportedVisualFeature", "Specified feature type is not valid")
        chosen.append(feature)
    if language is not None and language not in LANGUAGES:
        raise _invalid_query("NotSupportedLanguage", "The input language is not supported")
    try:
        # Features are known and the language is one of the service's: only the
        # ratios are left for the plan to refuse.
        plan = analyzer.plan(
            chosen,
            smart_crops_aspect_ratios=smart_crops_aspect_ratios,
            gender_neutral_caption=bool(gender_neutral_caption),
            language=language or "en",
        )
    except InvalidOptionError as exc:
        raise _invalid_query("BadArgument", _BAD_RATIO) from exc
    if model_version is not None and model_version not in MODEL_VERSIONS:
        raise _invalid_query(
            "InvalidModelVersion",
            f"The model version '{model_version}' is not supported; use 'latest' or "
            f"'{AZURE_MODEL_VERSION}'.",
        )
    return plan


def retry_after_header(seconds: float | None) -> int:
    """`Retry-After` seconds for a wait: rounded up, at least 1; unknown: the default."""
    if seconds is None or not math.isfinite(seconds):
        return DEFAULT_RETRY_AFTER
    return max(1, math.ceil(seconds))


def service_error_for(exc: ViewfinderError) -> ServiceError:
    """The service-shaped error for a viewfinder error (messages carry no secrets).

    A rate-limited model endpoint is a 429 and an unavailable one a 503, both with
    `retry_after` from the endpoint's own `retry-after` (else `DEFAULT_RETRY_AFTER`).
    """
    if isinstance(exc, ImageSizeError):
        if exc.limit == "bytes":
            return ServiceError(
                400,
                "InvalidRequest",
                "The image size is not allowed to be zero or larger than 20971520 bytes",
            )
        return ServiceError(
            400,
            "InvalidRequest",
            "Image size is not valid",
            "InvalidImageSize",
            "The image dimensions are not allowed to be smaller than 50 x 50 or larger "
            "than 16000 x 16000 pixels",
        )
    if isinstance(exc, DecompressionBombError):
        # Within the side limits but over the pixel ceiling: the remedy is the one for a
        # size error (send a smaller image), which is what clients key on the inner code.
        return ServiceError(
            400,
            "InvalidRequest",
            "Image size is not valid",
            "InvalidImageSize",
            "The image has more pixels than this server decodes; send a smaller image",
        )
    if isinstance(exc, ImageFormatError):
        return ServiceError(
            400,
            "InvalidRequest",
            "Image format is not valid",
            "InvalidImageFormat",
            "Image format is not valid",
        )
    if isinstance(exc, ImageFetchError):
        return ServiceError(400, "InvalidRequest", "The provided image url is not accessible.")
    if isinstance(exc, InvalidOptionError):
        return _invalid_query("BadArgument", str(exc))
    if isinstance(exc, RateLimitError):
        return ServiceError(
            429,
            "429",
            "Too many requests: the model endpoint behind viewfinder is rate limited.",
            retry_after=retry_after_header(exc.retry_after),
        )
    if isinstance(exc, DecodeBusyError):
        return ServiceError(
            429,
            "429",
            "Too many requests: the server is decoding as many image pixels as it allows. "
            "Retry later.",
            retry_after=retry_after_header(exc.retry_after),
        )
    if isinstance(exc, (ConfigurationError, AuthenticationError, BadRequestError)):
        return ServiceError(
            500,
            "InternalServerError",
            "The model endpoint behind this server is misconfigured or refused the request.",
        )
    if isinstance(exc, ProviderError):
        return ServiceError(
            503,
            "ServiceUnavailable",
            "The model endpoint behind this server is unavailable.",
            retry_after=retry_after_header(exc.retry_after),
        )
    if isinstance(exc, ModelBehaviorError):
        return ServiceError(
            500,
            "InternalServerError",
            "The image could not be analysed.",
            "FailedToProcess",
            type(exc).__name__,
        )
    return ServiceError(500, "InternalServerError", "Internal server error.")
