"""The async `ImageAnalysisClient`: a drop-in for `azure.ai.vision.imageanalysis.aio`.

```python
# before
from azure.ai.vision.imageanalysis.aio import ImageAnalysisClient
# after
from viewfinder.azure.aio import ImageAnalysisClient

async with ImageAnalysisClient(endpoint, AzureKeyCredential(key)) as client:
    result = await client.analyze(image_data, [VisualFeatures.CAPTION])
```

Everything but the call is shared with the sync client (`viewfinder.azure`, whose
docstring lists what matches the SDK exactly and what differs): the same option checks,
result model and errors. Here the analysis runs through `ImageAnalyzer.arun`, and
errors carry an `azure.core.rest.AsyncHttpResponse`, as the aio SDK's do.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from azure.ai.vision.imageanalysis.models import ImageAnalysisResult, VisualFeatures

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
    from azure.core.credentials import AzureKeyCredential
    from azure.core.credentials_async import AsyncTokenCredential

__all__ = ["ImageAnalysisClient"]


class ImageAnalysisClient(_ClientBase):
    """`azure.ai.vision.imageanalysis.aio.ImageAnalysisClient`, answered by a GPT vision model.

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
    """

    _asynchronous = True

    def __init__(
        self,
        endpoint: str | None = None,
        credential: AzureKeyCredential | AsyncTokenCredential | None = None,
        *,
        api_version: str = DEFAULT_API_VERSION,
        analyzer: ImageAnalyzer | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            endpoint, credential, api_version=api_version, analyzer=analyzer, **options
        )

    async def _complete(self, image: Any, call: _Call, *, url: bool = False) -> ImageAnalysisResult:
        """Run the analysis; raise the service-shaped error outside the `except` block
        (as the SDK raises its own), chained to viewfinder's."""
        try:
            source = url_image(image) if url else image
            result = await self._analyzer.arun(call.plan, source)
        except ViewfinderError as exc:
            failure = exc
        else:
            return call.finish(result)
        raise call.failure(failure) from failure

    async def analyze_from_url(
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
        """
        call = self._start(
            visual_features,
            language=language,
            gender_neutral_caption=gender_neutral_caption,
            smart_crops_aspect_ratios=smart_crops_aspect_ratios,
            model_version=model_version,
            content_type="application/json",
        )
        return await self._complete(image_url, call, url=True)

    async def analyze(
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
        return await self._complete(data, call)

    async def close(self) -> None:
        """Close the analyzer this client built (one passed as `analyzer=` stays open)."""
        if self._owns_analyzer:
            await self._analyzer.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
