"""A drop-in for `azure.cognitiveservices.vision.computervision` (Computer Vision 3.2).

Migrating costs the import lines (reference `azure-computer-vision-3.2.md` §9.2, §10):

```python
# before
from azure.cognitiveservices.vision.computervision import ComputerVisionClient
from azure.cognitiveservices.vision.computervision.models import VisualFeatureTypes
# after
from viewfinder.azure.computervision import ComputerVisionClient
from viewfinder.azure.computervision.models import VisualFeatureTypes

client = ComputerVisionClient(endpoint, CognitiveServicesCredentials(key))   # unchanged
analysis = client.analyze_image(url, [VisualFeatureTypes.description])
```

Needs the `computervision` extra (`pip install 'viewfinder[computervision]'`): Microsoft's
3.2 SDK (msrest, requests; deprecated by Microsoft since 2024-11-01, §9.1) and the
server's FastAPI, whose app answers in-process.

What matches exactly:
    - The client IS Microsoft's `ComputerVisionClient` (a subclass adding construction
      and closing only). Its msrest `requests.Session` gets a transport adapter
      (`viewfinder.azure._asgi.ASGIAdapter`, mounted for `http://` and `https://` by
      `config.session_configuration_callback`, chained before any callback already
      set) that hands each request to `viewfinder serve`'s own app
      (`viewfinder.compat.server.create_app`: the 3.2 routes of `compat/ops32.py` and
      `compat/read32.py`) on a private event loop, with no socket and no port. So every
      method, argument, header, query and body is the SDK's (§9.3, §9.4), answered with
      the bytes the server sends: the result models (`.models` is Microsoft's module),
      `raw=True` with the `Operation-Location` header for `read` / `read_in_stream`, then
      `get_read_result` polled until `succeeded` (Read runs in the background, as on
      the server), `generate_thumbnail*`'s chunk iterator, and the errors (§9.5):
      `ComputerVisionErrorResponseException` (a bad key's 401 included),
      `ComputerVisionOcrErrorException` for Read, `HttpOperationError` for thumbnails.
    - Retries do not multiply: the adapter makes one attempt per SDK call (msrest's
      retry policy, 3 retries of a 5xx by default, lives in urllib3, which the adapter
      does not use), and the model calls behind it are retried by the analyzer's own
      policy, waits and `Retry-After` included (also for Read's pages, which run after
      the 202 where no SDK retry could reach them). A failing model side costs one
      analyzer's worth of attempts per SDK call, never 4 times that.
    - Keys: when keys are configured (`api_keys=`, else `VIEWFINDER_API_KEYS`, as for
      `viewfinder serve`), a call presenting none of them is the service's 401. With
      none configured any key is accepted, so existing Azure keys keep working.

What differs:
    - The model side is configured as everywhere in viewfinder: `OPENAI_*` /
      `AZURE_OPENAI_*` environment variables, `ImageAnalyzer` settings passed as
      keywords (`model=`, `base_url=`, `client=`, `cache=`...), or a ready `analyzer=`.
      `endpoint` only names the resource in request URLs and `Operation-Location`
      (never contacted; optional).
    - An `analyzer=` given is adopted as `viewfinder serve` adopts one: its async client
      runs on the client's private event loop, it gets a rate limiter when it has none,
      and it is closed when the client closes (the 4.0 swap leaves it open).
    - Image URLs are fetched with the server's address policy: internal addresses are
      refused unless allow-listed (`allow_hosts=`, else `VIEWFINDER_ALLOW_HOSTS`).
    - Read operations live in a store: a temp directory of the client by default,
      removed when it closes (`read_store=` to keep them); operations still running
      then are lost.
    - What the 3.2 routes of `viewfinder serve` answer differently from Azure, this
      client answers too (README's 3.2 table): celebrities are refused (403), faces have
      no age or gender, confidences are the model's estimates, `model_version` is
      viewfinder's `<model>+<hash>`.
    - Close the client (`close()` or `with`): it owns an event-loop thread.
"""

from __future__ import annotations

try:
    from azure.cognitiveservices.vision.computervision import (
        ComputerVisionClient as _SdkClient,
    )
    from azure.cognitiveservices.vision.computervision import (
        ComputerVisionClientConfiguration,
    )
    from azure.cognitiveservices.vision.computervision import __version__ as VERSION
    from msrest.authentication import CognitiveServicesCredentials

    from viewfinder.compat.server import ServerSettings, create_app
except ImportError as _missing:
    from viewfinder.errors import import_failure

    raise ImportError(
        "viewfinder.azure.computervision needs Microsoft's 3.2 SDK and the server's "
        f"FastAPI, and {_missing.name or 'one'} is " + import_failure("computervision", _missing)
    ) from _missing

import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

import requests

from viewfinder.analyzers.image_analysis import ImageAnalyzer
from viewfinder.azure._asgi import ASGIAdapter
from viewfinder.azure._client import ANONYMOUS_KEY, configured_keys
from viewfinder.azure.computervision import models
from viewfinder.errors import ConfigurationError

__all__ = ["VERSION", "ComputerVisionClient", "ComputerVisionClientConfiguration", "models"]

DEFAULT_ENDPOINT = "https://viewfinder.invalid"
"""The endpoint when none is given: never resolved (`.invalid` is reserved)."""

ALLOW_HOSTS_ENV = "VIEWFINDER_ALLOW_HOSTS"
"""Comma-separated internal hosts image URLs may point at, as for the library."""

MAX_QUEUE_SECONDS = 60.0
"""Longest a call waits for the analyzer's rate limiter before its 429. Longer than the
server's 2 s: the server answers at once so that the SDK retries, while here nothing
retries above the engine, so waiting is the retry."""


def _listed(value: str | Collection[str] | None, env: str) -> tuple[str, ...]:
    """`value`, else the comma-separated environment variable `env`: stripped, no blanks.

    (`azure` may not import `prepare`, whose `trusted_hosts` reads the same variable but
    takes a lone string as one host, not a comma-separated list.)
    """
    if value is None:
        value = os.environ.get(env, "")
    items = value.split(",") if isinstance(value, str) else value
    return tuple(item.strip() for item in items if item.strip())


class ComputerVisionClient(_SdkClient):
    """Microsoft's `ComputerVisionClient`, answered in-process by a GPT vision model.

    Args:
        endpoint: Names the resource in request URLs; never contacted. Default
            `https://viewfinder.invalid`.
        credentials: `CognitiveServicesCredentials(key)`, checked against the configured
            keys; `None` presents no usable key.
        analyzer: A ready `viewfinder.ImageAnalyzer`, adopted as the server adopts one
            (closed with the client). Its retry policy is kept: it is the only one.
        api_keys: Keys callers must present (a list, or a comma-separated string).
            Default: `VIEWFINDER_API_KEYS`; none configured accepts any key.
        allow_hosts: Internal hosts image URLs may point at. Default:
            `VIEWFINDER_ALLOW_HOSTS`.
        read_store: Directory of the Read operations; default a temp directory of this
            client, removed when it closes.
        **options: `ImageAnalyzer` settings (`model=`, `base_url=`, `client=`,
            `cache=`...), used when `analyzer` is not given.

    Raises:
        ConfigurationError: No model endpoint is configured, or both `analyzer` and
            analyzer settings were given.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        credentials: Any = None,
        *,
        analyzer: ImageAnalyzer | None = None,
        api_keys: str | Collection[str] | None = None,
        allow_hosts: str | Collection[str] | None = None,
        read_store: str | Path | None = None,
        **options: Any,
    ) -> None:
        if analyzer is not None and options:
            raise ConfigurationError(
                f"pass either analyzer= or analyzer settings, not both (got {sorted(options)})"
            )
        if analyzer is None:
            analyzer = ImageAnalyzer(**options)
        keys = configured_keys(api_keys)
        settings = ServerSettings(
            api_keys=keys,
            no_auth=not keys,
            allow_hosts=_listed(allow_hosts, ALLOW_HOSTS_ENV),
            analyzer=analyzer,
            retry=None,  # the analyzer's own: nothing retries above it on this path
            max_queue_seconds=MAX_QUEUE_SECONDS,
            read_store=None if read_store is None else Path(read_store),
        )
        try:
            self._adapter = ASGIAdapter(create_app(settings))
        except BaseException:
            analyzer.close()
            raise
        super().__init__(  # type: ignore[no-untyped-call]  # msrest is untyped
            endpoint or DEFAULT_ENDPOINT,
            credentials or CognitiveServicesCredentials(ANONYMOUS_KEY),
        )
        self.analyzer = analyzer
        """The viewfinder analyzer that answers (given, or built from the options)."""
        chained = self.config.session_configuration_callback
        adapter = self._adapter

        def in_process(
            session: requests.Session, global_config: Any, local_config: Any, **kwargs: Any
        ) -> Any:
            """Mount the in-process adapter on msrest's session (one per thread), then
            leave the request's keywords to the callback that was set before."""
            for scheme in ("http", "https"):  # every URL requests sends, not a URL test
                if session.adapters.get(f"{scheme}://") is not adapter:
                    session.mount(f"{scheme}://", adapter)
            answer = chained(session, global_config, local_config, **kwargs)
            return kwargs if answer is None else answer

        self.config.session_configuration_callback = in_process

    def close(self) -> None:
        """Close msrest's pipeline, then the in-process app: Read operations, the
        analyzer, the event-loop thread."""
        try:
            super().close()
        finally:
            self._adapter.shutdown()

    def __enter__(self) -> ComputerVisionClient:
        super().__enter__()
        return self

    def __exit__(self, *exc_details: object) -> None:
        try:
            super().__exit__(*exc_details)  # type: ignore[no-untyped-call]
        finally:
            self._adapter.shutdown()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(analyzer={self.analyzer!r})"
