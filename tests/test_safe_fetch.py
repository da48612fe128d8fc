"""SSRF-safe image fetching: internal addresses are refused before any connection.

Only loopback is ever connected to: a local `http.server` on 127.0.0.1 plays the
image host. Every refused address (private, link-local, metadata, ...) is checked
with a guard on `socket.socket.connect` that records any attempt and lets only
127.0.0.1 through, so "refused without connecting" is asserted, not assumed.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpcore2
import pytest

from viewfinder.compat import service as azure_service
from viewfinder.errors import ImageFetchError, ImageSizeError
from viewfinder.prepare import fetch as safe_fetch
from viewfinder.prepare.fetch import (
    _AsyncPinnedBackend,
    address_problem,
    afetch_image,
    fetch_image,
    trusted_hosts,
)

CAT = (Path(__file__).parent / "assets" / "chelsea.png").read_bytes()
METADATA_URL = "http://169.254.169.254/latest/meta-data"


class ImageServer(ThreadingHTTPServer):
    """Serves the cat and a few misbehaving routes; records each request's path and Host."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__((host, 0), _Handler)
        self.requests: list[tuple[str, str]] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up on purpose (size limit, timeout) is not news


class _Handler(BaseHTTPRequestHandler):
    server: ImageServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        if "Content_Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Host", "")))
        path = self.path.split("?")[0]
        if path == "/cat.png":
            self._send(200, CAT, Content_Type="image/png")
        elif path == "/to-metadata":
            self._send(302, Location=f"{METADATA_URL}?sig=SECRET-IN-LOCATION")
        elif path.startswith("/hop/"):
            left = int(path.rsplit("/", 1)[1])
            self._send(302, Location=f"/hop/{left - 1}" if left else "/cat.png")
        elif path == "/big":
            self._send(200, b"x" * 5000, Content_Type="image/png")
        elif path == "/big-undeclared":  # HTTP/1.0, no Content-Length: read to close
            self.send_response(200)
            self.end_headers()
            for _ in range(10):
                self.wfile.write(b"x" * 500)
        elif path == "/empty":
            self._send(200, b"", Content_Type="image/png")
        elif path == "/slow":
            time.sleep(5)  # daemon handler threads: nobody waits for it at teardown
            self._send(200, CAT)
        elif path == "/trickle":  # one byte every 0.2 s: each read is quick, the whole is not
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.2)
        else:
            self._send(404, b"not found")


@pytest.fixture
def image_server() -> Iterator[ImageServer]:
    server = ImageServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every address a socket tried to connect to; anything but 127.0.0.1 is stopped."""
    attempts: list[Any] = []
    original = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] != "127.0.0.1":
            raise AssertionError(f"connection attempted to {address!r}")
        original(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    return attempts


class Resolver:
    """A fake `getaddrinfo` answering fixed addresses; records the names asked."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses
        self.asked: list[str] = []

    def __call__(self, host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        self.asked.append(host)
        if not self.addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (
                socket.AF_INET6 if ":" in a else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (a, port),
            )
            for a in self.addresses
        ]


Fetch = Callable[..., bytes]


@pytest.fixture(params=["sync", "async"])
def fetch(request: pytest.FixtureRequest) -> Fetch:
    """`fetch_image`, or `afetch_image` run to completion: both must behave the same."""
    if request.param == "sync":
        return fetch_image

    def run_async(url: str, **options: Any) -> bytes:
        import asyncio

        return asyncio.run(afetch_image(url, **options))

    return run_async


# --- allowed --------------------------------------------------------------------------


def test_an_allow_listed_host_is_fetched(
    fetch: Fetch, image_server: ImageServer, connections: list[Any]
) -> None:
    assert fetch(f"{image_server.base}/cat.png", allow_hosts=["127.0.0.1"]) == CAT
    assert [path for path, _ in image_server.requests] == ["/cat.png"]


def test_the_connection_goes_to_the_validated_address_and_keeps_the_name(
    fetch: Fetch, image_server: ImageServer, connections: list[Any]
) -> None:
    # images.test exists only in the fake resolver: reaching the server proves the
    # connection used the validated (pinned) address, never a second lookup.
    resolver = Resolver("127.0.0.1")
    url = f"http://images.test:{image_server.server_port}/cat.png"
    assert fetch(url, allow_hosts=["Images.Test"], resolver=resolver) == CAT
    assert resolver.asked == ["images.test"]
    assert image_server.requests == [("/cat.png", f"images.test:{image_server.server_port}")]
    assert {address[0] for address in connections} == {"127.0.0.1"}


def test_an_allow_listed_ip_admits_a_name_resolving_to_it(
    fetch: Fetch, image_server: ImageServer, connections: list[Any]
) -> None:
    url = f"http://cats.test:{image_server.server_port}/cat.png"
    assert fetch(url, allow_hosts=["127.0.0.1"], resolver=Resolver("127.0.0.1")) == CAT


def test_redirects_are_followed_up_to_the_limit(
    fetch: Fetch, image_server: ImageServer, connections: list[Any]
) -> None:
    assert fetch(f"{image_server.base}/hop/2", allow_hosts=["127.0.0.1"], max_redirects=3) == CAT
    assert len(image_server.requests) == 4  # /hop/2, /hop/1, /hop/0, /cat.png


# --- refused before connecting --------------------------------------------------------


def test_loopback_is_refused_without_connecting(
    fetch: Fetch, image_server: ImageServer, connections: list[Any]
) -> None:
    with pytest.raises(ImageFetchError, match="loopback"):
        fetch(f"{image_server.base}/cat.png")
    assert image_server.requests == []
    assert connections == []


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/cat.png",
        "http://172.16.0.1/cat.png",
        "http://192.168.1.1/cat.png",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:8080/cat.png",
        "http://0.0.0.0/cat.png",
        "http://100.64.0.1/cat.png",
        "http://100.100.100.200/latest/meta-data",  # Alibaba metadata
        "http://168.63.129.16/machine",  # Azure WireServer: not in a private range
        "http://224.0.0.1/cat.png",
        "http://[fe80::1]/cat.png",
        "http://[fec0::1]/cat.png",
        "http://[fd00:ec2::254]/latest/meta-data",
        "http://[::ffff:127.0.0.1]/cat.png",
        "http://[::ffff:a9fe:a9fe]/latest/meta-data",  # IPv4-mapped 169.254.169.254
        "http://[2002:a00:1::]/cat.png",  # 6to4 of 10.0.0.1
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data",  # NAT64 of 169.254.169.254
        "https://10.0.0.1/cat.png",
    ],
)
def test_internal_literal_addresses_are_refused_without_connecting(
    fetch: Fetch, url: str, connections: list[Any]
) -> None:
    resolver = Resolver("127.0.0.1")
    with pytest.raises(ImageFetchError, match="refused to fetch the image"):
        fetch(url, resolver=resolver)
    assert resolver.asked == []  # a literal address is judged as it is, not resolved
    assert connections == []


@pytest.mark.parametrize(
    "addresses",
    [("10.1.2.3",), ("169.254.169.254",), ("::1",), ("93.184.215.14", "10.0.0.1")],
    ids=["private", "metadata", "ipv6-loopback", "public-and-private"],
)
def test_a_name_resolving_to_any_internal_address_is_refused(
    fetch: Fetch, addresses: tuple[str, ...], connections: list[Any]
) -> None:
    resolver = Resolver(*addresses)
    with pytest.raises(ImageFetchError, match="resolves to") as caught:
        fetch("https://images.example.com/cat.png", resolver=resolver)
    assert resolver.asked == ["images.example.com"]
    assert "allow_hosts" in str(caught.value)
    assert connections == []


def test_a_redirect_to_the_metadata_address_is_refused_not_followed(
    fetch: Fetch, image_server: ImageServer, connections: list[Any]
) -> None:
    with pytest.raises(ImageFetchError) as caught:
        fetch(f"{image_server.base}/to-metadata?sig=SECRET", allow_hosts=["127.0.0.1"])
    message = str(caught.value)
    assert f"redirect to {METADATA_URL}: 169.254.169.254 is a cloud metadata address" in message
    assert "SECRET" not in message  # neither the URL's query nor the Location's
    assert [path.split("?")[0] for path, _ in image_server.requests] == ["/to-metadata"]
    assert {address[0] for address in connections} == {"127.0.0.1"}


def test_too_many_redirects(
    fetch: Fetch, image_server: ImageServer, connections: list[Any]
) -> None:
    with pytest.raises(ImageFetchError, match="more than 3 redirects"):
        fetch(f"{image_server.base}/hop/9", allow_hosts=["127.0.0.1"], max_redirects=3)
    assert len(image_server.requests) == 4


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://127.0.0.1/cat.png", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("gopher://127.0.0.1:6379/_INFO", "only http and https"),
        ("http://user:password@127.0.0.1/cat.png", "user info"),
        ("http://127.0.0.1:99999/cat.png", "out of range"),
        ("http:///cat.png", "no host"),
        ("not a url at all", "only http and https"),
    ],
)
def test_malformed_or_unsupported_urls_are_refused(
    fetch: Fetch, url: str, reason: str, connections: list[Any]
) -> None:
    with pytest.raises(ImageFetchError, match=reason) as caught:
        fetch(url, allow_hosts=["127.0.0.1"])
    assert "password" not in str(caught.value)
    assert connections == []


@pytest.mark.parametrize(
    "host", ["2130706433", "127.1", "0x7f.1", "0x7f000001", "0177.0.0.1", "images.test.0"]
)
def test_non_canonical_numeric_hosts_are_refused_unresolved(
    fetch: Fetch, host: str, connections: list[Any]
) -> None:
    resolver = Resolver("127.0.0.1")
    with pytest.raises(ImageFetchError, match="refused"):
        fetch(f"http://{host}/cat.png", resolver=resolver)
    assert resolver.asked == [] and connections == []


def test_an_unresolvable_name_is_refused(fetch: Fetch, connections: list[Any]) -> None:
    with pytest.raises(ImageFetchError, match=r"cannot resolve images\.invalid"):
        fetch("http://images.invalid/cat.png", resolver=Resolver())
    assert connections == []


async def test_the_pinned_backend_refuses_any_host_that_was_not_validated(
    connections: list[Any],
) -> None:
    backend = _AsyncPinnedBackend({("images.test", 80): ("127.0.0.1",)})
    for host, port in [("169.254.169.254", 80), ("images.test", 8080), ("other.test", 80)]:
        with pytest.raises(httpcore2.ConnectError, match="not validated"):
            await backend.connect_tcp(host, port)
    with pytest.raises(httpcore2.ConnectError, match="unix"):
        await backend.connect_unix_socket("/var/run/docker.sock")
    assert connections == []


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("8.8.8.8", None),
        ("93.184.215.14", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),
        ("127.0.0.53", "loopback"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("100.64.0.1", "shared (carrier-grade NAT)"),
        ("192.0.2.1", "private"),  # documentation range
        ("240.0.0.1", "private"),
        ("ff02::1", "multicast"),
        ("::", "unspecified"),
    ],
)
def test_address_problem(address: str, problem: str | None) -> None:
    assert address_problem(ipaddress.ip_address(address)) == problem


# --- what comes back ------------------------------------------------------------------


def test_a_declared_body_over_max_bytes_is_refused(
    fetch: Fetch, image_server: ImageServer, connections: list[Any]
) -> None:
    with pytest.raises(ImageSizeError, match="smaller than 1000 bytes") as caught:
        fetch(f"{image_server.base}/big", allow_hosts=["127.0.0.1"], max_bytes=1000)
    assert caught.value.limit == "bytes"


def test_an_undeclared_body_is_cut_off_at_max_bytes(
    fetch: Fetch, image_server: ImageServer, connections: list[Any]
) -> None:
    with pytest.raises(ImageSizeError) as caught:
        fetch(f"{image_server.base}/big-undeclared", allow_hosts=["127.0.0.1"], max_bytes=1000)
    assert caught.value.limit == "bytes"


def test_an_empty_body_is_a_size_error(
    fetch: Fetch, image_server: ImageServer, connections: list[Any]
) -> None:
    with pytest.raises(ImageSizeError, match="empty"):
        fetch(f"{image_server.base}/empty", allow_hosts=["127.0.0.1"])


def test_an_error_status_never_shows_the_query_string(
    fetch: Fetch, image_server: ImageServer, connections: list[Any]
) -> None:
    url = f"{image_server.base}/missing.png?sv=2024&sig=SECRET%2Bsig&se=2030"
    with pytest.raises(ImageFetchError, match="HTTP status 404") as caught:
        fetch(url, allow_hosts=["127.0.0.1"])
    assert caught.value.source == f"{image_server.base}/missing.png"
    assert "SECRET" not in str(caught.value) and "sig" not in str(caught.value)


def test_a_refusal_never_shows_the_query_string(fetch: Fetch, connections: list[Any]) -> None:
    with pytest.raises(ImageFetchError) as caught:
        fetch("http://10.0.0.1/cat.png?sig=SECRET")
    assert "SECRET" not in str(caught.value)
    assert caught.value.source == "http://10.0.0.1/cat.png"


def test_the_overall_timeout(
    fetch: Fetch, image_server: ImageServer, connections: list[Any]
) -> None:
    started = time.monotonic()
    with pytest.raises(ImageFetchError, match=r"timed out after 0\.1 s"):
        fetch(f"{image_server.base}/slow", allow_hosts=["127.0.0.1"], timeout=0.1)
    assert time.monotonic() - started < 3  # the server answers after 5 s


def test_the_deadline_bounds_a_trickling_body(
    fetch: Fetch, image_server: ImageServer, connections: list[Any]
) -> None:
    started = time.monotonic()
    with pytest.raises(ImageFetchError, match=r"timed out after 1 s"):
        fetch(f"{image_server.base}/trickle", allow_hosts=["127.0.0.1"], timeout=1.0)
    assert time.monotonic() - started < 10  # the whole trickle takes 20 s


class HangingResolver:
    """A resolver that answers only once released (or after 20 s)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def __call__(self, host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        self.release.wait(20)
        return Resolver("93.184.215.14")(host, port)


def test_the_deadline_bounds_a_hanging_name_resolution(connections: list[Any]) -> None:
    resolver = HangingResolver()
    started = time.monotonic()
    try:
        with pytest.raises(ImageFetchError, match="timed out"):
            fetch_image("http://images.example.com/cat.png", resolver=resolver, timeout=0.5)
        assert time.monotonic() - started < 10  # the resolver would hold it 20 s
    finally:
        resolver.release.set()
    assert connections == []


async def test_the_async_deadline_bounds_a_hanging_name_resolution(
    connections: list[Any],
) -> None:
    resolver = HangingResolver()
    started = time.monotonic()
    try:
        with pytest.raises(ImageFetchError, match="timed out"):
            await afetch_image("http://images.example.com/cat.png", resolver=resolver, timeout=0.5)
        assert time.monotonic() - started < 10  # the resolver would hold it 20 s
    finally:
        resolver.release.set()
    assert connections == []


async def test_the_sync_fetch_works_inside_a_running_event_loop(
    image_server: ImageServer, connections: list[Any]
) -> None:
    # A notebook, or sync code called from async code: the loop cannot be nested.
    assert fetch_image(f"{image_server.base}/cat.png", allow_hosts=["127.0.0.1"]) == CAT


def test_the_server_fetch_ignores_the_proxy_environment(
    fetch: Fetch, image_server: ImageServer, connections: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy would resolve the name itself: the server's fetches never use one.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    assert fetch(f"{image_server.base}/cat.png", allow_hosts=["127.0.0.1"]) == CAT
    assert [path for path, _ in image_server.requests] == ["/cat.png"]


def test_trusted_hosts_argument_or_environment() -> None:
    env = {"VIEWFINDER_ALLOW_HOSTS": " images.internal, ,10.0.0.5 "}
    assert trusted_hosts(env=env) == ("images.internal", "10.0.0.5")
    assert trusted_hosts([], env=env) == ()  # an argument replaces the environment
    assert trusted_hosts("nas.local", env=env) == ("nas.local",)
    assert trusted_hosts(env={}) == ()


def test_the_default_size_limit_is_the_services() -> None:
    assert safe_fetch.MAX_IMAGE_BYTES == azure_service.MAX_IMAGE_BYTES
