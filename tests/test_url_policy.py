"""Image URLs everywhere the library takes them: one fetcher, one internal-address policy.

A loopback `http.server` plays an intranet image host. Without an allow-list every
entry point (analyzers, `vf.analyze`, batches, `draw`, the CLI commands) refuses its URL
before any request reaches it; `allow_hosts=`, `VIEWFINDER_ALLOW_HOSTS` or
`--allow-host` trust it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from endpoint_env import clear_endpoint_env
from pydantic import BaseModel
from typer.testing import CliRunner

import viewfinder as vf
from viewfinder.cli import app
from viewfinder.compat import server as server_module
from viewfinder.testing.simulator import Simulator

CAT = (Path(__file__).parent / "assets" / "chelsea.png").read_bytes()
CAPTION = {"caption": {"text": "a cat", "conf": 90}}
TRUST_WAYS = ("allow_hosts=['127.0.0.1']", "VIEWFINDER_ALLOW_HOSTS=127.0.0.1", "--allow-host")


class _Images(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(CAT)))
        self.end_headers()
        self.wfile.write(CAT)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class ImageHost:
    """The intranet image host: its URL and the paths it was asked for."""

    def __init__(self, base: str, paths: list[str]) -> None:
        self.base = base
        self.paths = paths

    def url(self, name: str = "cat.png") -> str:
        return f"{self.base}/{name}?sig=SECRET"


@pytest.fixture
def host() -> Iterator[ImageHost]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    httpd.paths = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield ImageHost(f"http://127.0.0.1:{httpd.server_address[1]}", httpd.paths)  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def assert_refused(error: BaseException) -> None:
    assert isinstance(error, vf.ImageFetchError)
    message = str(error)
    assert "127.0.0.1 is a loopback address" in message
    for way in TRUST_WAYS:
        assert way in message
    assert "SECRET" not in message


# --- the library ------------------------------------------------------------------------


def test_an_analyzer_refuses_an_internal_url_unless_its_host_is_allowed(
    make_analyzer: Callable[..., vf.ImageAnalyzer], sim: Simulator, host: ImageHost
) -> None:
    with pytest.raises(vf.ImageFetchError) as caught:
        make_analyzer().analyze(host.url(), ["caption"])
    assert_refused(caught.value)
    assert host.paths == [] and sim.requests == []

    sim.script(CAPTION)
    result = make_analyzer(allow_hosts=["127.0.0.1"]).analyze(host.url(), ["caption"])
    assert result.caption is not None and result.metadata.width == 451
    assert host.paths == ["/cat.png?sig=SECRET"]


async def test_the_async_analyzer_and_the_environment_variable(
    make_analyzer: Callable[..., vf.ImageAnalyzer],
    sim: Simulator,
    host: ImageHost,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with make_analyzer() as analyzer:
        with pytest.raises(vf.ImageFetchError) as caught:
            await analyzer.aanalyze(host.url(), ["caption"])
        assert_refused(caught.value)

        monkeypatch.setenv("VIEWFINDER_ALLOW_HOSTS", "127.0.0.1")  # read at each fetch
        sim.script(CAPTION)
        result = await analyzer.aanalyze(host.url(), ["caption"])
        assert result.caption is not None

    async with make_analyzer(allow_hosts=()) as analyzer:
        with pytest.raises(vf.ImageFetchError, match="loopback"):  # the argument wins
            await analyzer.aanalyze(host.url(), ["caption"])


def test_a_custom_analyzer_takes_allow_hosts(sim: Simulator, host: ImageHost) -> None:
    class Note(BaseModel):
        text: str

    options: dict[str, Any] = {"base_url": sim.base_url, "api_key": "unused", "cache": False}
    with vf.Analyzer(schema=Note, prompt="Read it.", **options) as refusing:
        with pytest.raises(vf.ImageFetchError) as caught:
            refusing.analyze(host.url())
        assert_refused(caught.value)
    sim.script({"text": "meow"})
    with vf.Analyzer(schema=Note, prompt="Read it.", allow_hosts=["127.0.0.1"], **options) as ok:
        assert ok.analyze(host.url()) == Note(text="meow")


def test_a_batch_fetches_under_the_analyzers_allow_hosts(
    make_analyzer: Callable[..., vf.ImageAnalyzer], sim: Simulator, host: ImageHost
) -> None:
    (refused,) = list(make_analyzer().analyze_many([host.url()], ["caption"]))
    assert refused.error is not None
    assert_refused(refused.error)

    sim.script(CAPTION)
    trusting = make_analyzer(allow_hosts=["127.0.0.1"])
    (item,) = list(trusting.analyze_many([host.url()], ["caption"]))
    assert item.error is None and item.result is not None


def test_vf_analyze_takes_allow_hosts(
    sim: Simulator, host: ImageHost, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", sim.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "unused")
    monkeypatch.setenv("VIEWFINDER_CACHE_DIR", str(tmp_path))
    try:
        with pytest.raises(vf.ImageFetchError) as caught:
            vf.analyze(host.url(), ["caption"])
        assert_refused(caught.value)
        assert sim.requests == []

        sim.script(CAPTION)
        result = vf.analyze(host.url(), ["caption"], allow_hosts=["127.0.0.1"])
        assert result.caption is not None
    finally:
        for analyzer in vf._defaults.values():
            analyzer.close()
        vf._defaults.clear()


def test_the_local_engine_fetches_under_the_analyzers_allow_hosts(host: ImageHost) -> None:
    with vf.ImageAnalyzer(engine="local", allow_hosts=["127.0.0.1"]) as local:
        result = local.analyze(host.url(), ["smart_crops"])
    assert result.metadata.width == 451
    with (
        vf.ImageAnalyzer(engine="local", allow_hosts=()) as local,
        pytest.raises(vf.ImageFetchError, match="loopback"),
    ):
        local.analyze(host.url(), ["smart_crops"])


def test_draw_takes_allow_hosts(host: ImageHost) -> None:
    class Nothing(BaseModel):
        pass

    with pytest.raises(vf.ImageFetchError) as caught:
        vf.draw(Nothing(), host.url())
    assert_refused(caught.value)
    assert vf.draw(Nothing(), host.url(), allow_hosts=["127.0.0.1"]).size == (451, 300)


# --- the command line -----------------------------------------------------------------


@pytest.fixture
def runner(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """The shared runner, with no endpoint configured in the environment."""
    clear_endpoint_env(monkeypatch)
    return runner


def test_cli_analyze_refuses_an_internal_url_unless_allowed(
    runner: CliRunner, sim: Simulator, host: ImageHost
) -> None:
    base = ["analyze", host.url(), "-f", "caption", "--base-url", sim.base_url, "--no-cache"]

    refused = runner.invoke(app, [*base, "--json"])
    assert refused.exit_code == 1
    (line,) = [json.loads(text) for text in refused.stdout.splitlines()]
    assert line["error"]["type"] == "ImageFetchError"
    assert all(way in line["error"]["message"] for way in TRUST_WAYS)
    assert host.paths == [] and sim.requests == []

    sim.script(CAPTION)
    allowed = runner.invoke(app, [*base, "--allow-host", "127.0.0.1"])
    assert allowed.exit_code == 0, allowed.output
    assert "a cat" in allowed.stdout


def test_cli_batch_takes_allow_host(
    runner: CliRunner, sim: Simulator, host: ImageHost, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    base = ["batch", host.url(), "--out", str(out), "--base-url", sim.base_url, "--no-cache"]

    refused = runner.invoke(app, [*base, "-f", "caption"])
    assert refused.exit_code == 1
    (line,) = [json.loads(text) for text in out.read_text().splitlines()]
    assert "loopback" in line["error"]["message"]

    sim.script(CAPTION)
    allowed = runner.invoke(app, [*base, "-f", "caption", "--allow-host", "127.0.0.1"])
    assert allowed.exit_code == 0, allowed.output
    *_, retried = [json.loads(text) for text in out.read_text().splitlines()]
    assert "error" not in retried and retried["result"]["caption"]["text"] == "a cat"


def test_cli_cost_takes_allow_host(runner: CliRunner, host: ImageHost) -> None:
    refused = runner.invoke(app, ["cost", host.url(), "--json"])
    assert refused.exit_code == 1
    assert "loopback" in refused.stdout

    allowed = runner.invoke(app, ["cost", host.url(), "--json", "--allow-host", "127.0.0.1"])
    assert allowed.exit_code == 0, allowed.output


def test_cli_serve_reads_the_environment_variable_when_no_flag_is_given(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[tuple[str, ...]] = []

    def fake_run(settings: server_module.ServerSettings, **options: Any) -> None:
        seen.append(settings.allow_hosts)
        if settings.analyzer is not None:
            settings.analyzer.close()

    monkeypatch.setattr(server_module, "run", fake_run)
    monkeypatch.setenv("VIEWFINDER_ALLOW_HOSTS", "nas.local, 10.0.0.5")
    monkeypatch.setenv("VIEWFINDER_CACHE_DIR", str(tmp_path))
    base = ["serve", "--api-key", "k" * 16, "--base-url", "http://127.0.0.1:9/v1"]

    assert runner.invoke(app, base).exit_code == 0
    assert runner.invoke(app, [*base, "--allow-host", "images.internal"]).exit_code == 0
    assert seen == [("nas.local", "10.0.0.5"), ("images.internal",)]
