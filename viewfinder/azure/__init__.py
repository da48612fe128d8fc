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
`azure-ai-vision-imageanalysis`.

What matches exactly:
    - The client IS Microsoft's `ImageAnalysisClient` (a subclass adding construction
      only), built with an azure-core transport that answers in-process through the
      rules `viewfinder serve` applies (`viewfinder.compat.handler`): the same request
      and response bytes, with no socket and no HTTP hop. So everything azure-core and
      the SDK do is theirs: the pipeline and its policies, `logging_enable`,
      `raw_request_hook` / `raw_response_hook`, per-call `params=` / `headers=`,
      `send_request`, `VERSION`, the result models (`viewfinder.azure.models`, also an
      attribute of this module) and the error mapping (401 ->
      `ClientAuthenticationError`, 404 -> `ResourceNotFoundError`, anything else ->
      `HttpResponseError`, parsed from the service's error body).
    - Options are refused as the service refuses them (`viewfinder.compat.service`);
      an unknown `api_version` is the service's 404. Failures of the model side are
      reported as the service would report its own (a rejected model key -> 500
      `InternalServerError`, a throttled model -> 429 with `Retry-After`).
    - Keys: when keys are configured (`api_keys=`, else `VIEWFINDER_API_KEYS`, as for
      `viewfinder serve`), a call presenting none of them is answered the service's
      401 (`ClientAuthenticationError`). With none configured any key is accepted, so
      existing Azure keys keep working.
    - Retries do not multiply: each model call gets one attempt and the SDK's own
      `RetryPolicy` waits (3 retries by default, honouring `Retry-After`), as against
      the server. An SDK call costs at most 4 model calls when the model side
      throttles or fails (times 1 + re-asks for invalid answers). An `analyzer=`
      given is adopted like the server adopts it: its retry policy becomes one attempt.

What differs:
    - The model side is configured as everywhere in viewfinder: `OPENAI_*` /
      `AZURE_OPENAI_*` environment variables, `ImageAnalyzer` settings passed as
      keywords (`model=`, `base_url=`, `client=`, `cache=`...), or a ready `analyzer=`.
      `endpoint` only names the resource in request URLs (never contacted; optional);
      `transport=` is replaced by the in-process one. `api_version` is the Image
      Analysis version, not Azure OpenAI's.
    - A `TokenCredential` (Microsoft Entra ID): its bearer token is accepted without a
      check unless a `token_validator=` is given (the hook for validating Entra ID
      tokens; `viewfinder.compat.handler.Service`). The SDK still asks the credential
      for a token, as it does against Azure.
    - Confidences are the model's own estimates, not calibrated detector scores.
    - `model_version` is viewfinder's `<model>+<hash of prompts and schemas>`, not a
      date such as `2023-10-01`; `model_version="latest"` (or `None`) is the only
      value accepted in requests.
    - `language` is checked against the service's list for tags, but captions, dense
      captions and object names are also written in that language, where the service
      accepts English only for them.
    - Errors are raised from the response, as the SDK raises them: the viewfinder error
      behind a failure is logged (logger `viewfinder.compat.handler`), not chained.
    - The 401's reason phrase is the service's `PermissionDenied` (the server sends
      `Unauthorized`).
"""

from __future__ import annotations

try:
    from azure.ai.vision.imageanalysis import ImageAnalysisClient as _SdkClient
    from azure.ai.vision.imageanalysis import __version__ as VERSION
    from azure.ai.vision.imageanalysis.models import VisualFeatures as _VisualFeatures
except ImportError as _missing:
    from viewfinder.errors import import_failure

    raise ImportError(
        "viewfinder.azure needs azure-core and azure-ai-vision-imageanalysis, and "
        f"{_missing.name or 'one'} is {import_failure('azure', _missing)}"
    ) from _missing

from typing import TYPE_CHECKING, Any

from viewfinder.analyzers.image_analysis import ImageAnalyzer
from viewfinder.azure import models
from viewfinder.azure._client import (
    DEFAULT_API_VERSION,
    ClientExtras,
    InProcessTransport,
)

if TYPE_CHECKING:
    from azure.core.credentials import AzureKeyCredential, TokenCredential

    from viewfinder.compat.handler import TokenValidator

__all__ = ["VERSION", "ImageAnalysisClient", "models"]

del _VisualFeatures  # imported above only to say what to install when it is missing

"""Sent when no credential is given: Microsoft's client needs one. It matches no
configured key, so it passes only when none is configured."""


class ImageAnalysisClient(ClientExtras, _SdkClient):
    """Microsoft's `ImageAnalysisClient`, answered in-process by a GPT vision model.

    Args:
        endpoint: Names the resource in request URLs; never contacted. Default
            `https://viewfinder.invalid`.
        credential: `AzureKeyCredential` (checked against the configured keys) or a
            `TokenCredential` (see `token_validator`). `None` presents no usable key.
        api_version: Image Analysis api-version: `2023-10-01` (the SDK's default) or
            `2024-02-01`. Others get the service's 404.
        analyzer: A ready `viewfinder.ImageAnalyzer`, adopted as the server adopts one
            (its model calls get one attempt each: the SDK's retry policy waits). It
            stays open when the client closes (the client closes only one it built).
        api_keys: Keys callers must present (a list, or a comma-separated string).
            Default: `VIEWFINDER_API_KEYS`; none configured accepts any key.
        token_validator: Decides whether a bearer token (Entra ID) is accepted.
            Default: checked as `viewfinder serve` checks them when
            `VIEWFINDER_ENTRA_TENANT` (and `_ALLOW`, `_JWKS_URL`...) is set, else
            accepted unchecked.
        report_model_version: What results' `model_version` says: `"2023-10-01"` for
            code that checks it. Default: `VIEWFINDER_REPORT_MODEL_VERSION`, else the
            engine's true `<model>+<hash>` (always in the `x-viewfinder-model-version`
            response header).
        **options: azure-core keywords (`logging_enable`, `retry_total`,
            `raw_response_hook`...), passed to Microsoft's client; any other keyword is
            an `ImageAnalyzer` setting (`model=`, `base_url=`, `client=`, `cache=`...),
            used when `analyzer` is not given.

    Raises:
        ConfigurationError: No model endpoint is configured, or both `analyzer` and
            analyzer settings were given.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        credential: AzureKeyCredential | TokenCredential | None = None,
        *,
        api_version: str = DEFAULT_API_VERSION,
        analyzer: ImageAnalyzer | None = None,
        api_keys: str | list[str] | tuple[str, ...] | None = None,
        token_validator: TokenValidator | None = None,
        report_model_version: str | None = None,
        **options: Any,
    ) -> None:
        self._connect(
            InProcessTransport,
            endpoint,
            credential,
            api_version=api_version,
            analyzer=analyzer,
            api_keys=api_keys,
            token_validator=token_validator,
            report_model_version=report_model_version,
            options=options,
        )
