"""Tests for viewfinder.prepare (load, decode): loading, validation and the model copy."""

from __future__ import annotations

import hashlib
import io
import logging
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest
from local_images import serving
from PIL import Image, ImageFile

from viewfinder.errors import (
    DecompressionBombError,
    ImageError,
    ImageFetchError,
    ImageFormatError,
    ImageSizeError,
    InvalidOptionError,
)
from viewfinder.prepare import DEFAULT_MAX_SIDE, PreparedImage, prepare_image
from viewfinder.prepare.decode import DEFAULT_LIMITS, ImageLimits
from viewfinder.prepare.load import load_image
from viewfinder.prepare.redact import redact_url

SAS = "sv=2024-01-01&sig=SECRETSIG"


# --- helpers --------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def gradient(size: tuple[int, int] = (320, 200)) -> Image.Image:
    """An RGB image with structure, so resampling and encoding are exercised."""
    width, height = size
    red = Image.linear_gradient("L").resize(size)
    green = Image.linear_gradient("L").rotate(90).resize(size)
    blue = Image.new("L", size, 128)
    image = Image.merge("RGB", (red, green, blue))
    image.paste((255, 0, 0), (width // 4, height // 4, width // 2, height // 2))
    return image


def noise_jpeg(size: tuple[int, int] = (400, 300)) -> bytes:
    return encode(Image.effect_noise(size, 64).convert("RGB"), "JPEG", quality=95)


def decoded(prepared: PreparedImage) -> Image.Image:
    image = Image.open(io.BytesIO(prepared.model_bytes))
    image.load()
    return image


def png_with_declared_size(width: int, height: int) -> bytes:
    """A valid tiny PNG whose IHDR is patched to declare `width` x `height`."""
    data = bytearray(encode(Image.new("1", (1, 1)), "PNG"))
    assert data[12:16] == b"IHDR"
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


# --- accepted inputs ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "mode"),
    [
        ("JPEG", "RGB"),
        ("PNG", "RGB"),
        ("GIF", "P"),
        ("BMP", "RGB"),
        ("WEBP", "RGB"),
        ("TIFF", "RGB"),
        ("ICO", "RGBA"),
    ],
)
def test_accepted_formats(fmt: str, mode: str) -> None:
    size = (128, 96)
    params: dict[str, Any] = {"sizes": [size]} if fmt == "ICO" else {}
    data = encode(gradient(size).convert(mode), fmt, **params)

    prepared = prepare_image(data)

    assert prepared.format == fmt
    assert (prepared.width, prepared.height) == size
    assert prepared.sha256 == hashlib.sha256(data).hexdigest()
    assert prepared.model_media_type == "image/jpeg"
    assert (prepared.model_width, prepared.model_height) == size
    model = decoded(prepared)
    assert (model.format, model.mode, model.size) == ("JPEG", "RGB", size)


def test_input_kinds_give_identical_results(tmp_path: Path) -> None:
    data = encode(gradient(), "PNG")
    path = tmp_path / "photo.png"
    path.write_bytes(data)

    results = [
        prepare_image(str(path)),
        prepare_image(path),
        prepare_image(data),
        prepare_image(bytearray(data)),
        prepare_image(io.BytesIO(data)),
    ]
    with path.open("rb") as stream:
        results.append(prepare_image(stream))

    assert {r.model_bytes for r in results} == {results[0].model_bytes}
    assert {r.sha256 for r in results} == {hashlib.sha256(data).hexdigest()}
    assert [r.source for r in results] == [
        str(path),
        str(path),
        "<bytes>",
        "<bytes>",
        "<file object>",
        "<file object>",
    ]


def test_pil_image_input_matches_file_input() -> None:
    image = gradient()
    data = encode(image, "PNG")

    from_pil = prepare_image(image)
    from_bytes = prepare_image(data)

    assert from_pil.source == "<PIL image>"
    assert from_pil.format == "PNG"
    assert from_pil.model_bytes == from_bytes.model_bytes
    assert from_pil.sha256 == prepare_image(image).sha256  # deterministic PNG encoding


def test_pil_image_input_is_not_refused_for_its_png_size() -> None:
    image = Image.effect_noise((200, 200), 64)

    prepared = prepare_image(image, limits=ImageLimits(max_bytes=1000))

    assert (prepared.width, prepared.height) == (200, 200)


def test_pil_image_input_applies_exif_orientation() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    image = Image.open(io.BytesIO(encode(gradient((200, 100)), "JPEG", exif=exif)))

    prepared = prepare_image(image)

    assert (prepared.width, prepared.height) == (100, 200)
    assert decoded(prepared).size == (100, 200)


def test_model_copy_is_deterministic() -> None:
    data = noise_jpeg((1500, 900))

    first, second = prepare_image(data), prepare_image(data)

    assert first.model_bytes == second.model_bytes
    assert first.model_sha256 == hashlib.sha256(first.model_bytes).hexdigest()
    assert first == second


def test_exif_orientation_swaps_width_and_height() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    data = encode(gradient((200, 100)), "JPEG", exif=exif)

    prepared = prepare_image(data)

    assert (prepared.width, prepared.height) == (100, 200)
    assert (prepared.model_width, prepared.model_height) == (100, 200)
    assert decoded(prepared).size == (100, 200)


def test_downscale_keeps_aspect_ratio() -> None:
    prepared = prepare_image(encode(gradient((2000, 1000)), "PNG"), max_side=512)

    assert (prepared.width, prepared.height) == (2000, 1000)
    assert (prepared.model_width, prepared.model_height) == (512, 256)
    assert decoded(prepared).size == (512, 256)


def test_default_max_side_on_a_portrait_image() -> None:
    prepared = prepare_image(encode(gradient((600, 3000)), "PNG"))

    assert max(prepared.model_width, prepared.model_height) == DEFAULT_MAX_SIDE == 1024
    assert (prepared.model_width, prepared.model_height) == (205, 1024)


def test_small_image_is_not_upscaled() -> None:
    prepared = prepare_image(encode(gradient((60, 51)), "PNG"), max_side=2048)

    assert (prepared.model_width, prepared.model_height) == (60, 51)


def test_model_copy_has_no_metadata() -> None:
    data = encode(gradient(), "JPEG", icc_profile=b"\0" * 128, comment=b"secret", dpi=(300, 300))

    model = decoded(prepare_image(data))

    assert not {"icc_profile", "exif", "comment", "dpi"} & set(model.info)
    assert not model.info.get("progressive")


def _half_transparent_rgba() -> Image.Image:
    image = Image.new("RGBA", (80, 80), (0, 0, 0, 0))
    image.paste((0, 0, 255, 255), (0, 0, 40, 80))
    return image


def _half_transparent_palette() -> Image.Image:
    image = Image.new("P", (80, 80), 0)
    image.putpalette([0, 0, 0, 0, 0, 255])
    image.paste(1, (0, 0, 40, 80))
    image.info["transparency"] = 0
    return image


@pytest.mark.parametrize(
    "make",
    [
        _half_transparent_rgba,
        lambda: _half_transparent_rgba().convert("LA"),
        _half_transparent_palette,
        lambda: _half_transparent_rgba().convert("PA"),  # not writable as PNG: PIL input only
    ],
    ids=["RGBA", "LA", "P", "PA"],
)
def test_transparency_is_flattened_onto_white(make: Callable[[], Image.Image]) -> None:
    image = make()
    source: Image.Image | bytes = image if image.mode == "PA" else encode(image, "PNG")

    model = decoded(prepare_image(source))

    assert model.mode == "RGB"
    assert all(channel > 245 for channel in model.getpixel((70, 40)))  # type: ignore[union-attr]
    assert sum(model.getpixel((10, 40))) < 300  # type: ignore[arg-type]  # the opaque half


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [("L", 200, 200), ("1", 1, 255), ("P", 3, None), ("I;16", 32768, 128), ("CMYK", 0, 255)],
)
def test_other_modes_become_rgb(mode: str, value: int, expected: int | None) -> None:
    image = Image.new(mode, (64, 64), value)
    data = encode(image, "TIFF" if mode == "CMYK" else "PNG")

    model = decoded(prepare_image(data))

    assert model.mode == "RGB"
    if expected is not None:
        assert all(abs(c - expected) <= 2 for c in model.getpixel((32, 32)))  # type: ignore[union-attr]


def test_animated_gif_uses_first_frame() -> None:
    frames = [Image.new("RGB", (64, 64), colour) for colour in ("white", "black", "black")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])

    model = decoded(prepare_image(data))

    assert all(c > 245 for c in model.getpixel((32, 32)))  # type: ignore[union-attr]


def test_data_url() -> None:
    prepared = prepare_image(encode(gradient(), "PNG"))

    assert prepared.data_url().startswith("data:image/jpeg;base64,/9j/")
    assert "model_bytes" not in repr(prepared)


def test_limit_boundaries() -> None:
    prepare_image(encode(gradient((51, 51)), "PNG"))  # more than 50 (50: test_conformance_fixes)
    data = encode(gradient((64, 64)), "PNG")
    prepare_image(data, limits=ImageLimits(max_bytes=len(data) + 1))
    with pytest.raises(ImageSizeError, match=f"smaller than {len(data)} bytes"):
        prepare_image(data, limits=ImageLimits(max_bytes=len(data)))


# --- refused inputs -------------------------------------------------------------------


def test_truncated_jpeg() -> None:
    data = noise_jpeg()

    with pytest.raises(ImageFormatError, match="corrupt or truncated"):
        prepare_image(data[: len(data) // 2])


def test_text_file_named_png(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n" * 10)

    with pytest.raises(ImageFormatError, match="not a recognised image"):
        prepare_image(path)


def test_tiny_image() -> None:
    with pytest.raises(ImageSizeError, match="10x10"):
        prepare_image(encode(Image.new("RGB", (10, 10)), "PNG"))


def test_too_long_image() -> None:
    with pytest.raises(ImageSizeError, match="17000x60"):
        prepare_image(encode(Image.new("L", (17000, 60)), "PNG"))


@pytest.fixture
def no_pillow_open(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("Image.open must not be reached")

    monkeypatch.setattr(Image, "open", refuse)


@pytest.mark.usefixtures("no_pillow_open")
def test_30_mb_file_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    with path.open("wb") as stream:
        stream.write(b"\x89PNG\r\n\x1a\n")
        stream.truncate(30 * 1024 * 1024)

    with pytest.raises(ImageSizeError, match="smaller than 20971520 bytes"):
        prepare_image(path)
    with path.open("rb") as stream, pytest.raises(ImageSizeError):
        prepare_image(stream)


@pytest.mark.usefixtures("no_pillow_open")
def test_empty_input() -> None:
    with pytest.raises(ImageSizeError, match="empty"):
        prepare_image(b"")


def test_decompression_bomb_fails_fast() -> None:
    # Within the side limits, over Pillow's own ceiling (2 * MAX_IMAGE_PIXELS, ~179 MP).
    data = png_with_declared_size(15_999, 15_000)
    assert len(data) < 100

    started = time.perf_counter()
    with pytest.raises(DecompressionBombError, match="15999x15000"):
        prepare_image(data)
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(("width", "height"), [(30_000, 30_000), (16_001, 60), (60, 65_000)])
def test_a_side_out_of_range_is_a_size_error_even_past_pillows_ceiling(
    width: int, height: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pillow refuses 30000x30000 at Image.open, before viewfinder sees the size.
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded"))
    with pytest.raises(ImageSizeError, match=f"{width}x{height}") as caught:
        prepare_image(png_with_declared_size(width, height))
    assert caught.value.limit == "dimensions"


def test_sides_are_checked_before_the_pixel_ceiling() -> None:
    data = png_with_declared_size(17_000, 4_000)  # 68 MP: over this ceiling, and too wide
    with pytest.raises(ImageSizeError, match="17000x4000"):
        prepare_image(data, limits=ImageLimits(max_pixels=50_000_000))


def test_an_unaccepted_format_past_pillows_ceiling_is_a_format_error() -> None:
    ppm = b"P5\n30000 30000\n255\n" + bytes(64)  # refused by Pillow at Image.open
    with pytest.raises(ImageFormatError, match="format PPM is not accepted"):
        prepare_image(ppm)


def test_own_pixel_ceiling_is_checked_from_the_header(monkeypatch: pytest.MonkeyPatch) -> None:
    # Declares 8000x8000 but holds no pixel data: decoding it would fail differently.
    data = png_with_declared_size(8000, 8000)
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded"))

    with pytest.raises(DecompressionBombError, match="8000x8000"):
        prepare_image(data, limits=ImageLimits(max_pixels=50_000_000))


@pytest.mark.parametrize("fmt", ["PPM", "PCX"])
def test_unsupported_format_is_named(fmt: str) -> None:
    with pytest.raises(ImageFormatError, match=f"format {fmt} is not accepted"):
        prepare_image(encode(gradient(), fmt))


def test_format_list_is_configurable() -> None:
    limits = ImageLimits(formats=DEFAULT_LIMITS.formats - {"PNG"})

    with pytest.raises(ImageFormatError, match="PNG"):
        prepare_image(encode(gradient(), "PNG"), limits=limits)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageFetchError, match="no such file"):
        prepare_image(str(tmp_path / "missing.jpg"))
    with pytest.raises(ImageFetchError, match="no such file"):
        prepare_image(tmp_path / "missing.jpg")


def test_unreadable_path_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageFetchError, match="cannot read image file"):
        prepare_image(tmp_path)


@pytest.mark.parametrize(
    "url", ["ftp://example.com/a.jpg", "file:///etc/passwd", "data:image/png;base64,AAAA"]
)
def test_other_url_schemes(url: str) -> None:
    with pytest.raises(InvalidOptionError, match="unsupported URL scheme"):
        prepare_image(url)


def test_text_mode_file_object(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(encode(gradient(), "PNG"))

    with path.open(encoding="latin-1") as stream, pytest.raises(InvalidOptionError):
        prepare_image(stream)  # type: ignore[arg-type]
    with pytest.raises(InvalidOptionError):
        prepare_image(io.StringIO("x"))  # type: ignore[arg-type]


def test_closed_file_object() -> None:
    stream = io.BytesIO(b"x")
    stream.close()

    with pytest.raises(ImageFetchError):
        prepare_image(stream)


@pytest.mark.parametrize("value", [42, None, 1.5, ["a.png"]])
def test_unsupported_input_type(value: object) -> None:
    with pytest.raises(InvalidOptionError, match="unsupported image input type"):
        prepare_image(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("max_side", [63, 0, -1, True, 512.0, "1024"])
def test_bad_max_side(max_side: object) -> None:
    with pytest.raises(InvalidOptionError, match="max_side"):
        prepare_image(encode(gradient(), "PNG"), max_side=max_side)  # type: ignore[arg-type]


def test_errors_are_image_errors() -> None:
    for data in (b"junk", b"", encode(Image.new("RGB", (5, 5)), "PNG")):
        with pytest.raises(ImageError):
            prepare_image(data)


# --- URLs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            f"https://acct.blob.core.windows.net/c/a.jpg?{SAS}",
            "https://acct.blob.core.windows.net/c/a.jpg",
        ),
        ("https://user:pw@example.com:8443/x/y.png#frag", "https://example.com:8443/x/y.png"),
        ("http://[::1]:8080/a.png?sig=1", "http://[::1]:8080/a.png"),
        ("http://example.com", "http://example.com"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize("url", [f"http://[::1/a.png?{SAS}", f"http://host:abc/a?{SAS}"])
def test_invalid_url(url: str) -> None:
    with pytest.raises(InvalidOptionError, match="not a valid URL") as caught:
        prepare_image(url)

    assert "SECRETSIG" not in str(caught.value)


PNG_BODY = encode(gradient((120, 80)), "PNG")
LOOPBACK = ["127.0.0.1"]
"""The allow-list every fetch from the loopback test server needs."""


class _Handler(BaseHTTPRequestHandler):
    seen: list[str] = []  # noqa: RUF012  # paths asked for, in order, by any test

    def do_GET(self) -> None:
        path = self.path.partition("?")[0]
        self.seen.append(path)
        routes: dict[str, Callable[[], None]] = {
            "/trickle": self._trickle,
            "/image.png": lambda: self._send(200, PNG_BODY),
            "/missing.png": lambda: self._send(404, b"not found"),
            "/big": lambda: self._send(200, b"\x89PNG" + b"\0" * 5000),
            "/big-unsized": lambda: self._send(200, b"\x89PNG" + b"\0" * 5000, sized=False),
            "/redirect": lambda: self._redirect(f"/image.png?{SAS}"),
            "/loop": lambda: self._redirect(f"/loop?{SAS}"),
        }
        routes.get(path, lambda: self._send(404, b""))()

    def _send(self, status: int, body: bytes, *, sized: bool = True) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "image/png")
        if sized:
            self.send_header("Content-Length", str(len(body)))
        else:
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def _trickle(self) -> None:
        """A 100-byte body, one byte every 0.2 s: each read is quick, the whole is not."""
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
        try:
            for _ in range(100):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:  # the client hung up
            pass

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serving(_Handler) as base:
        yield base


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_fetch_image(server: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    prepared = prepare_image(f"{server}/image.png?{SAS}#part", allow_hosts=LOOPBACK)

    assert prepared.source == f"{server}/image.png"
    assert prepared.sha256 == hashlib.sha256(PNG_BODY).hexdigest()
    assert (prepared.width, prepared.height) == (120, 80)
    assert "/image.png" in caplog.text
    assert "SECRETSIG" not in caplog.text


def test_fetch_follows_redirects(server: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    prepared = prepare_image(f"{server}/redirect?{SAS}", allow_hosts=LOOPBACK)

    assert prepared.model_bytes == prepare_image(PNG_BODY).model_bytes
    assert "SECRETSIG" not in caplog.text


def test_fetch_logs_never_carry_the_query(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("httpx2").info("GET %s", httpx2.URL(f"https://u:pw@h/a?{SAS}"))
    assert "SECRETSIG" in caplog.text  # outside a fetch, other code's logs are untouched


def test_fetch_404(server: str) -> None:
    with pytest.raises(ImageFetchError, match="404") as caught:
        prepare_image(f"{server}/missing.png?{SAS}", allow_hosts=LOOPBACK)

    assert "SECRETSIG" not in str(caught.value)
    assert "sv=" not in str(caught.value)
    assert caught.value.source == f"{server}/missing.png"


def test_fetch_too_many_redirects(server: str) -> None:
    with pytest.raises(ImageFetchError, match="redirects") as caught:
        prepare_image(f"{server}/loop?{SAS}", allow_hosts=LOOPBACK)

    assert "SECRETSIG" not in str(caught.value)


@pytest.mark.parametrize("path", ["/big", "/big-unsized"])
def test_fetch_body_too_large(server: str, path: str) -> None:
    with pytest.raises(ImageSizeError, match="smaller than 1000 bytes") as caught:
        prepare_image(
            f"{server}{path}?{SAS}", limits=ImageLimits(max_bytes=1000), allow_hosts=LOOPBACK
        )

    assert "SECRETSIG" not in str(caught.value)


def test_fetch_connection_refused() -> None:
    with socket.socket() as sock:  # a port nothing listens on once the socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    with pytest.raises(ImageFetchError, match="ConnectError") as caught:
        prepare_image(f"http://127.0.0.1:{port}/a.png?{SAS}", fetch_timeout=2, allow_hosts=LOOPBACK)

    assert "SECRETSIG" not in str(caught.value)


# --- the internal-address policy and the whole-fetch deadline ----------------------------


def test_a_loopback_url_is_refused_by_default_and_never_fetched(server: str) -> None:
    with pytest.raises(ImageFetchError, match="loopback address") as caught:
        prepare_image(f"{server}/never-fetched.png?{SAS}")

    message = str(caught.value)
    for way in ("allow_hosts=['127.0.0.1']", "VIEWFINDER_ALLOW_HOSTS=127.0.0.1", "--allow-host"):
        assert way in message
    assert "SECRETSIG" not in message
    assert "/never-fetched.png" not in _Handler.seen


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://10.0.0.5/admin.png",
        "http://[::1]/a.png",
        "http://localhost:6379/",
    ],
)
def test_internal_addresses_are_refused_before_any_connection(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    connected: list[Any] = []
    monkeypatch.setattr(socket.socket, "connect", lambda _s, address: connected.append(address))

    with pytest.raises(ImageFetchError, match="refused to fetch the image"):
        load_image(url)

    assert connected == []


def test_the_environment_variable_trusts_a_host(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIEWFINDER_ALLOW_HOSTS", " images.internal , 127.0.0.1")

    assert load_image(f"{server}/image.png").data == PNG_BODY


def test_an_allow_hosts_argument_replaces_the_environment_variable(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIEWFINDER_ALLOW_HOSTS", "127.0.0.1")

    with pytest.raises(ImageFetchError, match="loopback"):
        load_image(f"{server}/image.png", allow_hosts=())
    with pytest.raises(ImageFetchError, match="loopback"):
        load_image(f"{server}/image.png", allow_hosts=["images.internal"])


def test_the_fetch_timeout_bounds_the_whole_fetch_not_each_read(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIEWFINDER_ALLOW_HOSTS", "127.0.0.1")
    started = time.monotonic()

    with pytest.raises(ImageFetchError, match=r"timed out after 1 s") as caught:
        load_image(f"{server}/trickle?{SAS}", fetch_timeout=1.0)

    assert time.monotonic() - started < 10  # each read is quick; the whole trickle is 20 s
    assert "SECRETSIG" not in str(caught.value)


@pytest.mark.parametrize("timeout", [0, -1.0, float("nan")])
def test_a_bad_fetch_timeout_is_an_option_error(timeout: float) -> None:
    with pytest.raises(InvalidOptionError, match="fetch_timeout"):
        load_image("https://example.com/a.png", fetch_timeout=timeout)


class _Proxy(BaseHTTPRequestHandler):
    """A forward proxy that answers every request itself, recording what it was asked."""

    asked: list[str] = []  # noqa: RUF012

    def do_GET(self) -> None:
        self.asked.append(self.path)  # a proxy request names the absolute URL
        self.send_response(200)
        self.send_header("Content-Length", str(len(PNG_BODY)))
        self.end_headers()
        self.wfile.write(PNG_BODY)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """HTTP_PROXY pointing at a loopback `_Proxy`; yields the URLs it was asked for."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    _Proxy.asked = []
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{httpd.server_address[1]}")
    try:
        yield _Proxy.asked
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_the_library_fetches_through_the_proxy_environment(
    proxy: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    connected: list[Any] = []
    original = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> None:
        connected.append(address)
        original(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)

    loaded = load_image(f"http://93.184.215.14/cat.png?{SAS}")  # public: vetted, allowed

    assert loaded.data == PNG_BODY
    assert proxy == [f"http://93.184.215.14/cat.png?{SAS}"]
    assert {address[0] for address in connected} == {"127.0.0.1"}  # only the proxy


def test_behind_a_proxy_internal_addresses_are_still_refused(proxy: list[str]) -> None:
    for url in ("http://169.254.169.254/latest/meta-data", "http://10.0.0.5/a.png"):
        with pytest.raises(ImageFetchError, match="refused to fetch the image"):
            load_image(url)
    assert proxy == []
