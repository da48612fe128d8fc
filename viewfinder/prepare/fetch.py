"""Fetch a user-supplied image URL without letting it reach internal addresses (SSRF).

A server that fetches URLs its callers send can be turned against its own network:
`http://169.254.169.254/latest/meta-data` (cloud metadata and credentials),
`http://localhost:6379`, `http://10.0.0.5/admin`, or a public name whose DNS answer
points at any of those. `fetch_image` and `afetch_image` refuse all of them, and refuse
them BEFORE any connection is attempted:

1. Only `http` and `https`, with no user info (`http://user:pw@host/`), a port in
   1-65535, and a host that is a canonical IP address or a name (`2130706433`,
   `127.1` and `0x7f.1`, which resolvers read as IPv4 addresses, are refused).
2. The host is resolved (`resolver`, `socket.getaddrinfo` by default; a literal IP is
   not resolved) and EVERY address it resolves to must be public: not loopback,
   private, link-local (169.254/16, the metadata address included; fe80::/10),
   multicast, reserved, unspecified, shared (100.64/10), site-local (fec0::/10), nor
   one of `METADATA_ADDRESSES` (Azure's public-looking 168.63.129.16 among them).
   IPv4 addresses embedded in IPv6 (IPv4-mapped `::ffff:a.b.c.d`, 6to4, NAT64) are
   judged by their IPv4 address. One bad address refuses the host: a name that
   resolves to one public and one private address is refused.
3. Trusted internal hosts are opted in with `allow_hosts`: a host name matching an
   entry (case-insensitive, exact) skips the address check; an IP entry also admits a
   name that resolves to that address. `trusted_hosts` reads the library's setting:
   an `allow_hosts=` argument, else the `VIEWFINDER_ALLOW_HOSTS` environment variable.
4. The connection goes to an address validated in step 2 and nowhere else: the
   transport's network backend is pinned to the validated addresses of each
   `(host, port)`, so a second DNS answer (DNS rebinding) is never consulted, and a
   connection to any host that was not validated is refused. The URL keeps its host
   name, so the `Host` header, TLS SNI and certificate verification use the name as
   usual. By default no proxy is used: a proxy resolves the name itself. With
   `trust_env=True` (the library's fetches) the `HTTP(S)_PROXY` / `ALL_PROXY` /
   `NO_PROXY` environment is honoured as httpx2 reads it: the URL is still vetted by
   local resolution, but a proxied connection goes to the proxy, which resolves the
   name again, so the check cannot see where the proxy connects.
5. Redirects are followed by hand, at most `max_redirects`, each `Location` going
   through steps 1-4 before anything is sent to it.
6. The body is streamed and refused once it reaches `max_bytes` (a `Content-Length`
   of `max_bytes` or more is refused before reading); `timeout` strictly bounds the
   whole fetch, name resolution, redirects and body included, for both functions:
   `fetch_image` runs `afetch_image` on an event loop of its own (see there why).

Errors are `ImageFetchError` (refused, unreachable, HTTP error status, too many
redirects, timed out) or `ImageSizeError` (`limit="bytes"`: empty, or too large).
Messages name the URL through `viewfinder.prepare.redact.redact_url`: never its query
string (SAS tokens) nor user info; while a fetch runs, httpx2's and httpcore2's own log
records are scrubbed of both too.

This module is the one image fetcher: the library (`viewfinder.prepare.load`), the CLI,
batches and the server all fetch through it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import ipaddress
import logging
import os
import re
import socket
import ssl
import time
from collections.abc import (
    Callable,
    Collection,
    Coroutine,
    Iterable,
    Mapping,
    MutableMapping,
    Sequence,
)
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import httpcore2
import httpx2

from viewfinder.errors import ImageFetchError, ImageSizeError
from viewfinder.prepare._httpx2 import environment_proxies, pinned_transport
from viewfinder.prepare.redact import redact_url

__all__ = [
    "ALLOW_HOSTS_ENV",
    "METADATA_ADDRESSES",
    "Resolver",
    "address_problem",
    "afetch_image",
    "fetch_image",
    "trusted_hosts",
]

Resolver: TypeAlias = Callable[..., Iterable[Sequence[Any]]]
"""`socket.getaddrinfo`-like: called as `resolver(host, port, type=socket.SOCK_STREAM)`,
returns `(family, type, proto, canonname, sockaddr)` tuples; `sockaddr[0]` is the IP."""

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES: Final[frozenset[IPAddress]] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure IMDS, OpenStack, DigitalOcean...
        "169.254.169.253",  # AWS DNS
        "169.254.170.2",  # AWS ECS task metadata
        "168.63.129.16",  # Azure WireServer / platform DNS: outside every private range
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd00:ec2::23",  # AWS DNS over IPv6
    )
)
"""Cloud metadata and platform addresses, refused even if a range check missed them."""

ALLOW_HOSTS_ENV: Final = "VIEWFINDER_ALLOW_HOSTS"
"""Environment variable naming trusted internal hosts, comma-separated."""

# Azure's limit, `viewfinder.compat.service.MAX_IMAGE_BYTES` (not imported: that module
# imports the analyzers, which import this one through `viewfinder.prepare.load`).
MAX_IMAGE_BYTES: Final = 20 * 1024 * 1024

_SHARED = ipaddress.IPv4Network("100.64.0.0/10")
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")  # no DNS name ends in a number
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_HEADERS: Final = {
    "Accept": "image/*,*/*;q=0.8",
    "Accept-Encoding": "identity",
    "User-Agent": "viewfinder-image-fetch",
}

Pins: TypeAlias = MutableMapping[tuple[str, int], tuple[str, ...]]
"""`(host, port)` -> the validated addresses a connection to it may use."""


# --- secrets out of httpx2's logs (messages use `redact_url`) ------------------------


# httpx2 logs each request URL at INFO, query string included, and httpcore2's DEBUG
# trace logs redirect `Location` headers. While an image is fetched the flag below is
# set, and the filter scrubs query strings and user info from those records.
_FETCHING: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "viewfinder_fetching_image", default=False
)
_HTTP_LOGGERS: Final = (
    "httpx2",
    *(f"httpcore2.{n}" for n in ("connection", "http11", "http2", "proxy", "socks")),
)
_QUERY = re.compile(r"\?[^\s'\"]*")
_USERINFO = re.compile(r"(?<=//)[^/\s'\"@]*@")


class _ScrubFetchLogs(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _FETCHING.get():
            message = _QUERY.sub("?<redacted>", record.getMessage())
            record.msg, record.args = _USERINFO.sub("", message), None
        return True


for _name in _HTTP_LOGGERS:
    logging.getLogger(_name).addFilter(_ScrubFetchLogs())


# --- address policy -------------------------------------------------------------------


def trusted_hosts(
    allow_hosts: Collection[str] | None = None, *, env: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """The trusted internal hosts: `allow_hosts` when given, else `VIEWFINDER_ALLOW_HOSTS`.

    An argument replaces the environment variable rather than adding to it, as
    command-line options replace their environment variables: code that passes
    `allow_hosts=()` trusts no internal host, whatever the environment says.

    Args:
        allow_hosts: Host names or IP addresses, or None to read the environment.
        env: Environment variables (default `os.environ`).

    Returns:
        The hosts, stripped, empty entries dropped.
    """
    if allow_hosts is None:
        environ: Mapping[str, str] = os.environ if env is None else env
        allow_hosts = environ.get(ALLOW_HOSTS_ENV, "").split(",")
    elif isinstance(allow_hosts, str):  # a lone "host" is not a collection of letters
        allow_hosts = (allow_hosts,)
    return tuple(host.strip() for host in allow_hosts if host.strip())


def address_problem(ip: IPAddress) -> str | None:
    """Why an address must not be fetched from, or `None` when it is public.

    Args:
        ip: An IPv4 or IPv6 address.

    Returns:
        `"loopback"`, `"private"`, `"link-local"`, ..., or `None` for a public address.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            problem = address_problem(embedded)
            return None if problem is None else f"{problem} (IPv4 {embedded} inside IPv6)"
        if ip.is_site_local:
            return "site-local"
    checks = (
        (ip in METADATA_ADDRESSES, "cloud metadata"),
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED, "shared (carrier-grade NAT)"),
        (ip.is_private, "private"),
        (ip.is_reserved, "reserved"),
        (not ip.is_global, "non-global"),
    )
    return next((name for failed, name in checks if failed), None)


def _normal_host(host: str) -> str:
    """Lower-case, without IPv6 brackets or a trailing dot."""
    return host.strip().strip("[]").rstrip(".").lower()


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class _Policy:
    """Which hosts and addresses may be fetched from."""

    names: frozenset[str]
    addresses: frozenset[IPAddress]
    resolver: Resolver

    @classmethod
    def make(cls, allow_hosts: Collection[str], resolver: Resolver) -> _Policy:
        if isinstance(allow_hosts, str):  # a lone "host" is not a collection of letters
            allow_hosts = (allow_hosts,)
        normal = [_normal_host(h) for h in allow_hosts if h.strip()]
        ips = {ip for ip in map(_ip, normal) if ip is not None}
        return cls(frozenset(normal), frozenset(ips), resolver)

    def check(self, url: str, origin: str, *, redirected: bool = False) -> _Target:
        """Parse, resolve and vet `url`.

        Args:
            url: The URL to vet.
            origin: The redacted URL first asked for, named in errors.
            redirected: `url` came from a redirect's `Location`.

        Raises:
            ImageFetchError: The URL is malformed or refused.
        """
        label = redact_url(url) if redirected else None
        try:
            parsed = httpx2.URL(url)
            host = _normal_host(parsed.raw_host.decode("ascii"))
            port = parsed.port
        except (httpx2.InvalidURL, TypeError, ValueError, UnicodeError):
            raise _refused(origin, label, "not a valid URL") from None
        scheme = parsed.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise _refused(origin, label, f"only http and https URLs are fetched, not {scheme!r}")
        if parsed.userinfo:
            raise _refused(origin, label, "URLs with user info are refused")
        if not host:
            raise _refused(origin, label, "the URL has no host")
        port = _DEFAULT_PORTS[scheme] if port is None else port
        if not 0 < port < 65536:
            raise _refused(origin, label, f"port {port} is out of range")
        addresses = self._resolve(host, port, origin, label)
        if host not in self.names:
            for ip in addresses:
                problem = None if ip in self.addresses else address_problem(ip)
                if problem is not None:
                    what = (
                        f"is a {problem} address"
                        if _ip(host)
                        else f"resolves to {ip}, a {problem} address"
                    )
                    raise _refused(origin, label, f"{host} {what}; {_trust_hint(host)}")
        return _Target(str(parsed), host, port, tuple(str(ip) for ip in addresses))

    def _resolve(self, host: str, port: int, origin: str, label: str | None) -> list[IPAddress]:
        literal = _ip(host)
        if literal is not None:
            return [literal]
        if _NUMERIC_LABEL.match(host.rsplit(".", 1)[-1]):
            # 2130706433, 127.1, 0x7f.1: resolvers read these as IPv4 addresses
            raise _refused(origin, label, f"{host} is not a canonical IP address or host name")
        try:
            answers = list(self.resolver(host, port, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError, ValueError):
            raise _refused(origin, label, f"cannot resolve {host}") from None
        addresses: list[IPAddress] = []
        for answer in answers:
            ip = _ip(str(answer[4][0]))
            if ip is None:  # not an IP address: refuse rather than guess
                raise _refused(origin, label, f"{host} resolved to something that is not an IP")
            if ip not in addresses:
                addresses.append(ip)
        if not addresses:
            raise _refused(origin, label, f"{host} resolved to no address")
        return addresses


@dataclass(frozen=True)
class _Target:
    """A vetted URL and the addresses a connection to it may use."""

    url: str
    host: str
    port: int
    addresses: tuple[str, ...]


def _trust_hint(host: str) -> str:
    """How to trust `host`, in each of the three places a setting can come from."""
    return (
        f"to trust it, pass allow_hosts=[{host!r}], set {ALLOW_HOSTS_ENV}={host} "
        f"or use --allow-host {host}"
    )


def _refused(origin: str, label: str | None, reason: str) -> ImageFetchError:
    where = "" if label is None else f"redirect to {label}: "
    return ImageFetchError(f"refused to fetch the image: {where}{reason}", source=origin)


# --- pinned connections ---------------------------------------------------------------


def _pinned(
    pins: Mapping[tuple[str, int], tuple[str, ...]], host: str, port: int
) -> tuple[str, ...]:
    addresses = pins.get((_normal_host(host), port))
    if not addresses:
        raise httpcore2.ConnectError(f"refused: {host}:{port} was not validated")
    return addresses


class _AsyncPinnedBackend(httpcore2.AsyncNetworkBackend):
    """Connects only to the validated addresses of a validated `(host, port)`."""

    def __init__(self, pins: Mapping[tuple[str, int], tuple[str, ...]]) -> None:
        self._pins = pins
        self._inner = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        failure: httpcore2.ConnectError | None = None
        for address in _pinned(self._pins, host, port):
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore2.ConnectError as exc:  # try the next validated address
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.AsyncNetworkStream:
        raise httpcore2.ConnectError("refused: unix sockets are not fetched from")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


@functools.cache
def _ssl_context(trust_env: bool = False) -> ssl.SSLContext:
    """httpx2's default verifying context, built once (loading the CA bundle is slow).

    With `trust_env`, `SSL_CERT_FILE` / `SSL_CERT_DIR` name the CA bundle, as for any
    httpx2 client (a TLS-inspecting corporate proxy needs its own CA).
    """
    return httpx2.create_ssl_context(trust_env=trust_env)


def _client(pins: Pins, trust_env: bool) -> httpx2.AsyncClient:
    """A client whose direct connections are pinned; proxied ones (`trust_env`) are not.

    A `NO_PROXY` match maps to `None`, which httpx2 routes to the pinned transport.
    """
    mounts: dict[str, httpx2.AsyncBaseTransport | None] = {}
    if trust_env:
        mounts = {
            pattern: None
            if proxy is None
            else httpx2.AsyncHTTPTransport(
                proxy=proxy, verify=_ssl_context(trust_env), trust_env=False
            )
            for pattern, proxy in environment_proxies().items()
        }
    return httpx2.AsyncClient(
        transport=pinned_transport(_ssl_context(trust_env), _AsyncPinnedBackend(pins)),
        mounts=mounts,
        trust_env=False,
        follow_redirects=False,
        headers=_HEADERS,
    )


# --- one fetch: redirects, status, body -----------------------------------------------


class _Fetch:
    """The state of one fetch, shared by the sync and async loops."""

    def __init__(
        self,
        url: str,
        allow_hosts: Collection[str],
        resolver: Resolver,
        max_bytes: int,
        timeout: float,
        max_redirects: int,
    ) -> None:
        if max_bytes < 1 or timeout <= 0 or max_redirects < 0:
            raise ValueError("max_bytes and timeout must be positive, max_redirects >= 0")
        self.origin = redact_url(url)
        self.current = url
        self.policy = _Policy.make(allow_hosts, resolver)
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.max_redirects = max_redirects
        self.redirects = 0
        self.deadline = time.monotonic() + timeout
        self.pins: Pins = {}
        self.chunks: list[bytes] = []
        self.total = 0

    def vet(self) -> _Target:
        """Vet the current URL and pin its addresses."""
        target = self.policy.check(self.current, self.origin, redirected=self.redirects > 0)
        self.pins[(target.host, target.port)] = target.addresses
        return target

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise self.timed_out()
        return left

    def timed_out(self) -> ImageFetchError:
        return ImageFetchError(
            f"fetching the image timed out after {self.timeout:g} s", source=self.origin
        )

    def follow(self, response: httpx2.Response) -> bool:
        """Handle the response head: `True` to follow a redirect, `False` to read the body.

        Raises:
            ImageFetchError: Too many redirects, or an error status.
            ImageSizeError: A declared `Content-Length` of `max_bytes` or more.
        """
        location = response.headers.get("location")
        if response.status_code in _REDIRECTS and location:
            if self.redirects >= self.max_redirects:
                raise ImageFetchError(
                    f"fetching the image failed: more than {self.max_redirects} redirects",
                    source=self.origin,
                )
            self.redirects += 1
            try:
                self.current = str(response.url.join(location))
            except (httpx2.InvalidURL, TypeError, ValueError, UnicodeError):
                raise _refused(self.origin, "an invalid URL", "not a valid URL") from None
            return True
        if not response.is_success:
            raise ImageFetchError(
                f"fetching the image failed with HTTP status {response.status_code}",
                source=self.origin,
            )
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and "content-encoding" not in response.headers:
            self._check_size(int(declared))
        return False

    def feed(self, chunk: bytes) -> None:
        """Take one body chunk, refusing the body once it reaches `max_bytes`."""
        self.total += len(chunk)
        self._check_size(self.total)
        self.chunks.append(chunk)
        self.remaining()

    def body(self) -> bytes:
        if self.total == 0:
            raise ImageSizeError("the fetched image is empty", source=self.origin)
        return b"".join(self.chunks)

    def _check_size(self, count: int) -> None:
        if count >= self.max_bytes:
            raise ImageSizeError(
                f"the image must be smaller than {self.max_bytes} bytes", source=self.origin
            )

    def failed(self, exc: httpx2.HTTPError) -> ImageFetchError:
        if isinstance(exc, httpx2.TimeoutException):
            return self.timed_out()
        # Not chained by the callers: httpx2 messages and requests can carry the full URL.
        return ImageFetchError(
            f"fetching the image failed: {type(exc).__name__}", source=self.origin
        )


def fetch_image(
    url: str,
    *,
    allow_hosts: Collection[str] = (),
    max_bytes: int = MAX_IMAGE_BYTES,
    timeout: float = 10.0,
    max_redirects: int = 3,
    resolver: Resolver = socket.getaddrinfo,
    trust_env: bool = False,
) -> bytes:
    """GET an image from a user-supplied http(s) URL, refusing internal addresses.

    See the module docstring for the rules. This is `afetch_image` run to completion
    on a private event loop (on a thread of its own when the calling thread already
    runs one, as in a notebook). A blocking client can only bound each network wait,
    so a server that answers slowly, or a resolver that hangs, could hold it well past
    `timeout`; the event loop abandons them at the deadline. One fetch loop also
    means one set of rules for the sync and async callers.

    Args:
        url: The http(s) URL.
        allow_hosts: Trusted host names or IP addresses that may be internal (exact,
            case-insensitive, no ports), e.g. `("images.internal", "10.0.0.5")`.
        max_bytes: Bodies of this many bytes or more are refused (the service's rule:
            "zero or larger than 20971520 bytes").
        timeout: Seconds for the whole fetch, name resolution and redirects included.
        max_redirects: Redirects followed at most.
        resolver: Name resolution, `socket.getaddrinfo` by default (tests inject one).
        trust_env: Honour the proxy (`HTTP(S)_PROXY`, `ALL_PROXY`, `NO_PROXY`) and CA
            bundle (`SSL_CERT_FILE`, `SSL_CERT_DIR`) environment variables. The URL is
            vetted all the same, but the proxy resolves the name again: the check
            cannot see where it connects. Default False (the server's fetches).

    Returns:
        The body.

    Raises:
        ImageFetchError: Refused, unreachable, an error status, too many redirects, or
            timed out.
        ImageSizeError: The body is empty, or `max_bytes` or more (`limit="bytes"`).
        ValueError: `max_bytes` or `timeout` is not positive, or `max_redirects` < 0.
    """
    fetch = functools.partial(
        afetch_image,
        url,
        allow_hosts=allow_hosts,
        max_bytes=max_bytes,
        timeout=timeout,
        max_redirects=max_redirects,
        resolver=resolver,
        trust_env=trust_env,
    )
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # the usual case: no event loop in this thread
        return _run_on_private_loop(fetch)
    # This thread runs an event loop, which cannot be nested: use a thread of its own.
    with concurrent.futures.ThreadPoolExecutor(1, "viewfinder-fetch") as pool:
        context = contextvars.copy_context()
        return pool.submit(context.run, _run_on_private_loop, fetch).result()


def _run_on_private_loop(make: Callable[[], Coroutine[Any, Any, bytes]]) -> bytes:
    """Run the coroutine `make()` on a new event loop, then close the loop.

    Unlike `asyncio.run`, closing does not wait for the loop's worker threads: a name
    resolution abandoned at the deadline finishes in the background instead of
    holding the caller until the system resolver gives up.
    """
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(make())
    finally:
        try:
            pending = asyncio.all_tasks(loop)
            if pending:  # only after an interrupt (Ctrl+C)
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


async def afetch_image(
    url: str,
    *,
    allow_hosts: Collection[str] = (),
    max_bytes: int = MAX_IMAGE_BYTES,
    timeout: float = 10.0,
    max_redirects: int = 3,
    resolver: Resolver = socket.getaddrinfo,
    trust_env: bool = False,
) -> bytes:
    """Async twin of `fetch_image` (asyncio); `timeout` is a strict overall deadline.

    Name resolution runs in a worker thread, abandoned at the deadline. Same
    arguments, result and errors as `fetch_image`.
    """
    fetch = _Fetch(url, allow_hosts, resolver, max_bytes, timeout, max_redirects)
    token = _FETCHING.set(True)
    try:
        async with asyncio.timeout(timeout), _client(fetch.pins, trust_env) as client:
            while True:
                target = await asyncio.to_thread(fetch.vet)
                async with client.stream("GET", target.url, timeout=fetch.remaining()) as response:
                    if fetch.follow(response):
                        continue
                    async for chunk in response.aiter_bytes():
                        fetch.feed(chunk)
                    return fetch.body()
    except TimeoutError:
        raise fetch.timed_out() from None
    except httpx2.HTTPError as exc:
        raise fetch.failed(exc) from None
    finally:
        _FETCHING.reset(token)
