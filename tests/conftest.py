"""Shared fixtures: a scripted local server, analyzers wired to it, test images.

The cassette configuration comes from viewfinder's own pytest plugin, as users get it.

Two test doubles, at two depths: `viewfinder.testing.fakes.FakeOpenAI` (in-process, for
unit tests of the engine's paths) and the `sim` fixture's HTTP simulator (end to end:
rate limits, the Batch API, cassettes, the server, the CLI). Both take `Reply` scripts.

Patching rule: a patch must fail loudly when its target moves. Patch module globals with
`monkeypatch.setattr(module, "name", value)` or `monkeypatch.setattr("viewfinder.x.y",
value)` (both raise when the attribute is gone); never with `raising=False`, `mock.patch(...,
create=True)`, or by assigning to a module. `test_patching_rules.py` enforces it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from local_server import Serving
from redis_server import RedisServer
from typer.testing import CliRunner

from viewfinder import ImageAnalyzer, RetryPolicy
from viewfinder.compat.server import ServerSettings, create_app

if TYPE_CHECKING:
    # Not imported here at run time: importing anything under viewfinder.testing before
    # pytest registers the plugin below would stop pytest from rewriting its asserts.
    from viewfinder.testing.fakes import FakeOpenAI
    from viewfinder.testing.simulator import Simulator

pytest_plugins = ["viewfinder.testing"]

ASSETS = Path(__file__).parent / "assets"
FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05)
"""Retries for stack tests: real waits, but short unless the server says otherwise."""
NO_WAIT_RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.0, max_backoff=0.0)
"""Retries for the in-process fake: three attempts, no waiting."""


@pytest.fixture(autouse=True)
def _no_trusted_hosts_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own VIEWFINDER_ALLOW_HOSTS must not change what the suite sees."""
    monkeypatch.delenv("VIEWFINDER_ALLOW_HOSTS", raising=False)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """A scripted OpenAI-compatible server on 127.0.0.1 (NOT a model).

    Cassettes are recorded against it; on replay it is started but never contacted.
    """
    from viewfinder.testing.simulator import Simulator

    with Simulator() as server:
        yield server


@pytest.fixture
def make_analyzer(sim: Simulator, tmp_path: Path) -> Iterator[Callable[..., ImageAnalyzer]]:
    """Build `ImageAnalyzer`s wired to the simulator, with a cache in a temp dir."""
    made: list[ImageAnalyzer] = []

    def make(**options: Any) -> ImageAnalyzer:
        settings: dict[str, Any] = {
            "base_url": sim.base_url,
            "api_key": "test-key-placeholder",
            "model": "gpt-4.1-mini",
            "cache": tmp_path / "cache",
            "retry": FAST_RETRY,
        }
        settings.update(options)
        analyzer = ImageAnalyzer(**settings)
        made.append(analyzer)
        return analyzer

    yield make
    for analyzer in made:
        analyzer.close()


@pytest.fixture
def fake() -> FakeOpenAI:
    """An in-process OpenAI double answering from its script (`fake.script(...)`)."""
    from viewfinder.testing.fakes import FakeOpenAI

    return FakeOpenAI()


@pytest.fixture
def make(fake: FakeOpenAI) -> Iterator[Callable[..., ImageAnalyzer]]:
    """Analyzers answered by `fake`: no cache, quick retries unless told otherwise."""
    made: list[ImageAnalyzer] = []

    def build(**options: Any) -> ImageAnalyzer:
        settings: dict[str, Any] = {"cache": False, "retry": NO_WAIT_RETRY, **options}
        analyzer = ImageAnalyzer(**fake.clients(), **settings)
        made.append(analyzer)
        return analyzer

    yield build
    for analyzer in made:
        analyzer.close()


@pytest.fixture
def cat_image() -> Path:
    """chelsea.png, 451x300, a cat (CC0, scikit-image)."""
    return ASSETS / "chelsea.png"


# --- viewfinder serve in this process ---------------------------------------------------


@pytest.fixture
def serve() -> Iterator[Callable[[ServerSettings], str]]:
    """Start a server for some settings; returns its endpoint. Stopped after the test."""
    with ExitStack() as stack:

        def start(settings: ServerSettings) -> str:
            serving = Serving(create_app(settings))
            stack.callback(serving.stop)
            return serving.start()

        yield start


# --- a real Redis ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One `redis-server` for the session (skipped without one, failed under CI=true)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied for this test: `redis://127.0.0.1:<port>/0`."""
    import redis

    with redis.Redis.from_url(redis_server.url()) as client:
        client.flushdb()
    return redis_server.url()


@pytest.fixture
def runner() -> CliRunner:
    """A CLI runner, wide and colourless, so rich neither wraps nor styles what tests read."""
    return CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})
