"""A drop-in for `azure.ai.vision.imageanalysis`, answered by a GPT vision model.

Migrating costs the import lines:

```python
# before
from azure.ai.vision.imageanalysis import ImageAnalysisClient
from azure.ai.vision.imageanalysis.models import VisualFeatures
# after
from viewfinder.azure import ImageAnalysisClient
from viewfinder.azure.models import VisualFeatures

client = ImageAnalysisClient(endpoint, AzureKeyCredential(key))   # unchanged
result = client.analyze(image_data, [VisualFeatures.CAPTION, VisualFeatures.TAGS])
print(result.caption.text, [t.name for t in result.tags.list])
```

Needs the `azure` extra (`pip install 'viewfinder[azure]'`): azure-core and Microsoft's
`azure-ai-vision-imageanalysis`, whose classes are used as they are.

What matches exactly:
    - The result is the SDK's own `ImageAnalysisResult` (and the other 19 model
      classes, re-exported unchanged by `viewfinder.azure.models`): same attributes,
      `as_dict()`, wire-key access (`result["captionResult"]["text"]`), `isinstance`
      checks. It is built from the service's JSON for viewfinder's result
      (`viewfinder.compat.rest.to_azure_json`); features not requested are `None`.
    - `analyze` / `analyze_from_url` have the SDK's parameters (names, kinds, defaults);
      `visual_features` takes `VisualFeatures` members or their string values.
    - Options are refused as the service refuses them (`viewfinder.compat.service`):
      an unknown feature, language or model version, a crop ratio outside 0.75-1.8,
      no features, an unsupported `api_version`.
    - Errors are azure-core's own exceptions, raised as the SDK raises them: 401 ->
      `ClientAuthenticationError`, 404 -> `ResourceNotFoundError`, anything else ->
      `HttpResponseError`, with `status_code`, `reason`, `error` (`code`, `message`,
      `innererror`) and `message` parsed by azure-core from the service's error body.
      Failures of the model side are reported as the service would report its own
      (e.g. a rejected model key -> 500 `InternalServerError`, model rate limits after
      viewfinder's retries -> 429). The viewfinder error is chained (`__cause__`).

What differs:
    - `endpoint` and `credential` are accepted and never used to reach Azure (the
      credential is not even stored). The model side is configured as everywhere in
      viewfinder: `OPENAI_*` / `AZURE_OPENAI_*` environment variables, `ImageAnalyzer`
      settings passed as keywords (`model=`, `base_url=`, `client=`, `cache=`...), or a
      ready `analyzer=`. azure-core keywords (`logging_enable`, `retry_total`,
      `transport`...) are accepted and ignored; `api_version` is the Image Analysis
      version, not Azure OpenAI's (set `OPENAI_API_VERSION` or pass an `analyzer=`).
    - Confidences are the model's own estimates, not calibrated detector scores.
    - `model_version` is viewfinder's `<model>+<hash of prompts and schemas>`, not a
      date such as `2023-10-01`; `model_version="latest"` (or `None`) is the only
      value accepted in requests.
    - `language` is checked against the service's list for tags, but captions, dense
      captions and object names are also written in that language, where the service
      accepts English only for them.
    - Per-call `**kwargs` (azure-core's `headers`, `params`, `timeout`...) are ignored,
      and there is no `send_request`: nothing goes over an azure-core pipeline. Errors'
      `response` is an in-memory azure-core response whose `request` carries the URL
      and query the SDK would send, without body or credentials.
"""

from __future__ import annotations

try:
    from azure.ai.vision.imageanalysis.models import ImageAnalysisResult, VisualFeatures
except ImportError as _missing:
    raise ImportError(
        "viewfinder.azure needs azure-core and azure-ai-vision-imageanalysis: "
        "pip install 'viewfinder[azure]'"
    ) from _missing

from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from viewfinder.analyzers.image_analysis import ImageAnalyzer
from viewfinder.azure._client import (
    DEFAULT_API_VERSION,
    _Call,
    _ClientBase,
    image_bytes,
    url_image,
)
from viewfinder.errors import ViewfinderError

if TYPE_CHECKING:
    from azure.core.credentials import AzureKeyCredential, TokenCredential

__all__ = ["ImageAnalysisClient"]


class ImageAnalysisClient(_ClientBase):
    """`azure.ai.vision.imageanalysis.ImageAnalysisClient`, answered by a GPT vision model.

    Args:
        endpoint: Accepted for compatibility; never contacted (it only appears in the
            request URL of error responses).
        credential: Accepted for compatibility; never stored or used.
        api_version: Image Analysis api-version: `2023-10-01` (the SDK's default) or
            `2024-02-01`. Others fail every call with the service's 404 "Resource not found".
        analyzer: A ready `viewfinder.ImageAnalyzer`. It stays open when the client
            closes (the client closes only an analyzer it built).
        **options: `ImageAnalyzer` settings (`model=`, `base_url=`, `api_key=`,
            `client=`, `cache=`, `retry=`...), used when `analyzer` is not given.
            azure-core keywords (`logging_enable`, `retry_total`, `transport`...) are
            accepted and ignored.

    Raises:
        ConfigurationError: No model endpoint is configured, or both `analyzer` and
            analyzer settings were given.

    Example:
        >>> client = ImageAnalysisClient(  # doctest: +SKIP
        ...     endpoint, AzureKeyCredential(key), model="gpt-4.1-mini"
        ... )
        >>> result = client.analyze(data, [VisualFeatures.CAPTION])  # doctest: +SKIP
        >>> result.caption.text  # doctest: +SKIP
        'a cat lying on a wooden floor'
    """

    def __init__(
        self,
        endpoint: str | None = None,
        credential: AzureKeyCredential | TokenCredential | None = None,
        *,
        api_version: str = DEFAULT_API_VERSION,
        analyzer: ImageAnalyzer | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            endpoint, credential, api_version=api_version, analyzer=analyzer, **options
        )

    def _complete(self, image: Any, call: _Call, *, url: bool = False) -> ImageAnalysisResult:
        """Run the analysis; raise the service-shaped error outside the `except` block
        (as the SDK raises its own), chained to viewfinder's."""
        try:
            result = self._analyzer.run(call.plan, url_image(image) if url else image)
        except ViewfinderError as exc:
            failure = exc
        else:
            return call.finish(result)
        raise call.failure(failure) from failure

    def analyze_from_url(
        self,
        image_url: str,
        visual_features: Sequence[VisualFeatures | str],
        *,
        language: str | None = None,
        gender_neutral_caption: bool | None = None,
        smart_crops_aspect_ratios: Sequence[float] | None = None,
        model_version: str | None = None,
        **kwargs: Any,
    ) -> ImageAnalysisResult:
        """Analyse the image at a public http(s) URL (fetched by viewfinder).

        Args:
            image_url: An http(s) URL; anything else fails with the service's 400
                "The provided image url is not accessible."
            visual_features: `VisualFeatures` members or their values (`"caption"`,
                `"denseCaptions"`...), at least one.
            language: A language code from the service's list; default `en`.
            gender_neutral_caption: "person" / "child" instead of gendered words.
            smart_crops_aspect_ratios: Width/height ratios in 0.75-1.8, one crop each.
            model_version: `None` or `"latest"`.
            **kwargs: azure-core per-call options; ignored.

        Returns:
            The SDK's `ImageAnalysisResult`.

        Raises:
            HttpResponseError: As the service would answer (or a subclass of it).
        """
        call = self._start(
            visual_features,
            language=language,
            gender_neutral_caption=gender_neutral_caption,
            smart_crops_aspect_ratios=smart_crops_aspect_ratios,
            model_version=model_version,
            content_type="application/json",
        )
        return self._complete(image_url, call, url=True)

    def analyze(
        self,
        image_data: bytes,
        visual_features: Sequence[VisualFeatures | str],
        *,
        language: str | None = None,
        gender_neutral_caption: bool | None = None,
        smart_crops_aspect_ratios: Sequence[float] | None = None,
        model_version: str | None = None,
        **kwargs: Any,
    ) -> ImageAnalysisResult:
        """Analyse an image given as bytes (or a binary file object).

        Args:
            image_data: The whole image file: JPEG, PNG, GIF, BMP, WEBP, ICO, TIFF or
                MPO, under 20 MB, sides 50-16,000 px.
            visual_features: `VisualFeatures` members or their values, at least one.
            language: A language code from the service's list; default `en`.
            gender_neutral_caption: "person" / "child" instead of gendered words.
            smart_crops_aspect_ratios: Width/height ratios in 0.75-1.8, one crop each.
            model_version: `None` or `"latest"`.
            **kwargs: azure-core per-call options; ignored.

        Returns:
            The SDK's `ImageAnalysisResult`.

        Raises:
            HttpResponseError: As the service would answer (or a subclass of it).
            TypeError: `image_data` is neither bytes nor a binary file object.
        """
        data = image_bytes(image_data)
        call = self._start(
            visual_features,
            language=language,
            gender_neutral_caption=gender_neutral_caption,
            smart_crops_aspect_ratios=smart_crops_aspect_ratios,
            model_version=model_version,
            content_type="application/octet-stream",
        )
        return self._complete(data, call)

    def close(self) -> None:
        """Close the analyzer this client built (one passed as `analyzer=` stays open)."""
        if self._owns_analyzer:
            self._analyzer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
