"""The async `ImageAnalysisClient`: a drop-in for `azure.ai.vision.imageanalysis.aio`.

```python
# before
from azure.ai.vision.imageanalysis.aio import ImageAnalysisClient
# after
from viewfinder.azure.aio import ImageAnalysisClient

async with ImageAnalysisClient(endpoint, AzureKeyCredential(key)) as client:
    result = await client.analyze(image_data, [VisualFeatures.CAPTION])
```

Microsoft's aio client, built with an async azure-core transport answered in-process
by `viewfinder.compat.handler.Service.ahandle` (the analyzer's `arun`). Everything else
is the sync client's (`viewfinder.azure`, whose docstring lists what matches the SDK
exactly and what differs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from azure.ai.vision.imageanalysis.aio import ImageAnalysisClient as _SdkClient

from viewfinder.analyzers.image_analysis import ImageAnalyzer
from viewfinder.azure._client import (
    DEFAULT_API_VERSION,
    AsyncInProcessTransport,
    ClientExtras,
)

if TYPE_CHECKING:
    from azure.core.credentials import AzureKeyCredential
    from azure.core.credentials_async import AsyncTokenCredential

    from viewfinder.compat.handler import TokenValidator

__all__ = ["ImageAnalysisClient"]


class ImageAnalysisClient(ClientExtras, _SdkClient):
    """Microsoft's aio `ImageAnalysisClient`, answered in-process by a GPT vision model.

    Arguments as for `viewfinder.azure.ImageAnalysisClient`; a token credential is an
    `AsyncTokenCredential`.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        credential: AzureKeyCredential | AsyncTokenCredential | None = None,
        *,
        api_version: str = DEFAULT_API_VERSION,
        analyzer: ImageAnalyzer | None = None,
        api_keys: str | list[str] | tuple[str, ...] | None = None,
        token_validator: TokenValidator | None = None,
        report_model_version: str | None = None,
        **options: Any,
    ) -> None:
        self._connect(
            AsyncInProcessTransport,
            endpoint,
            credential,
            api_version=api_version,
            analyzer=analyzer,
            api_keys=api_keys,
            token_validator=token_validator,
            report_model_version=report_model_version,
            options=options,
        )
