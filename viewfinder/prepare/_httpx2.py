"""What the fetcher needs of httpx2 beyond its public API: the one place.

The fetcher (`viewfinder.prepare.fetch`) connects only to addresses it has validated, so
its transport needs a network backend of its own, and it honours the environment's
proxies (`trust_env`) while its direct connections stay pinned. httpx2 has a public
argument for neither:

- `AsyncHTTPTransport` takes no network backend. `pinned_transport` subclasses it and
  swaps the httpcore2 connection pool it built (`_pool`) for one with the given backend.
  Subclassing, not rewriting, keeps httpx2's request/response and error mapping, and
  test tooling that patches `handle_async_request` (vcrpy), working. A transport whose
  pool is not where this expects refuses to be built rather than fetch unpinned.
- `AsyncClient(trust_env=True)` reads the proxy variables only when it builds its own
  transport. `environment_proxies` is the reader it uses (`httpx2._utils`), so the
  proxy rules (`NO_PROXY`, `ALL_PROXY`, schemes) are httpx2's, not a copy of them.
"""

from __future__ import annotations

import ssl

import httpcore2
import httpx2
from httpx2._utils import get_environment_proxies

__all__ = ["environment_proxies", "pinned_transport"]


class _BackendTransport(httpx2.AsyncHTTPTransport):
    def __init__(self, ssl_context: ssl.SSLContext, backend: httpcore2.AsyncNetworkBackend) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        if not isinstance(getattr(self, "_pool", None), httpcore2.AsyncConnectionPool):
            raise RuntimeError("unexpected httpx2 transport layout: refusing to fetch unpinned")
        self._pool = httpcore2.AsyncConnectionPool(ssl_context=ssl_context, network_backend=backend)


def pinned_transport(
    ssl_context: ssl.SSLContext, backend: httpcore2.AsyncNetworkBackend
) -> httpx2.AsyncHTTPTransport:
    """An httpx2 transport whose connections are all opened by `backend`.

    Raises:
        RuntimeError: httpx2's transport is not laid out as this module expects.
    """
    return _BackendTransport(ssl_context, backend)


def environment_proxies() -> dict[str, str | None]:
    """The proxies of the environment, by URL pattern, as httpx2 reads them.

    A `NO_PROXY` match maps to `None` (no proxy).
    """
    return get_environment_proxies()
