"""The container image's entry point, run as a plain command (CI has no container runtime).

The Dockerfile's ENTRYPOINT + CMD (exec form) are parsed and run as they are, with
`--port` swapped for a free one and the keys in the environment, against the simulator:
the probes, one authenticated analyze call, and a SIGTERM while a slow request is in
flight (readiness turns 503 first, the request completes, the process exits 0).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvicorn
from local_server import Serving
from typer.testing import CliRunner

from viewfinder import ConfigurationError, ImageAnalyzer
from viewfinder.cli import app as cli_app
from viewfinder.cli.serve import WORKER_ARGS_ENV, worker_app
from viewfinder.compat import server as server_module
from viewfinder.compat.server import ServerSettings
from viewfinder.testing import compact_answer
from viewfinder.testing.simulator import Reply, Simulator

ROOT = Path(__file__).parent.parent
KEY = "docker-test-key-81c3f0"
ASSETS = Path(__file__).parent / "assets"
CAT = (ASSETS / "chelsea.png").read_bytes()
ROCKET = (ASSETS / "rocket.jpg").read_bytes()  # another image: not the cached answer
ANALYZE = "/computervision/imageanalysis:analyze?api-version=2023-10-01&features=caption"
CAPTION = compact_answer({"caption": {"text": "a cat", "confidence": 0.9}})


def _instruction(text: str, name: str) -> list[str]:
    """The exec-form (JSON array) arguments of the last `name` instruction."""
    found: list[str] | None = None
    for line in text.replace("\\\n", " ").splitlines():
        keyword, _, rest = line.strip().partition(" ")
        if keyword.upper() == name:
            found = json.loads(rest)  # shell form would not parse: exec form is required
    assert found is not None, f"no {name} in the Dockerfile"
    return found


def entry_point() -> list[str]:
    """ENTRYPOINT + CMD of the Dockerfile, as the container runs them."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    return _instruction(text, "ENTRYPOINT") + _instruction(text, "CMD")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for(check: object, what: str, seconds: float = 30.0) -> None:
    """Poll `check()` until it is true (a condition, not a timing assumption)."""
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def container(sim: Simulator, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """The entry point as a subprocess (the `viewfinder` of this venv), on a free port."""
    argv = entry_point()
    assert argv[:2] == ["viewfinder", "serve"]
    port = _free_port()
    argv[argv.index("--port") + 1] = str(port)
    argv[0] = str(Path(sys.executable).with_name("viewfinder"))
    keys = tmp_path / "keys"
    keys.write_text(f"# mounted secret\n{KEY}\n", encoding="utf-8")
    model_key = tmp_path / "openai"
    model_key.write_text("sim-key-placeholder\n", encoding="utf-8")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("VIEWFINDER_", "OPENAI_", "AZURE_", "COHERE_"))
    }
    env |= {
        "VIEWFINDER_API_KEYS_FILE": str(keys),
        "OPENAI_API_KEY_FILE": str(model_key),
        "OPENAI_BASE_URL": sim.base_url,
        "VIEWFINDER_MODEL": "gpt-4.1-mini",
        "VIEWFINDER_CACHE_DIR": str(tmp_path / "cache"),
        "VIEWFINDER_SHUTDOWN_DELAY": "60",  # the second SIGTERM cuts it short
    }
    process = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE)
    endpoint = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                return httpx2.get(endpoint + "/readyz", timeout=5).status_code == 200
            except httpx2.TransportError:
                return False

        _wait_for(ready, "the server to be ready")
        yield process, endpoint
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        if process.stderr:
            process.stderr.close()


def test_the_entry_point_runs_as_a_plain_command(
    container: tuple[subprocess.Popen[bytes], str], sim: Simulator
) -> None:
    process, endpoint = container
    assert httpx2.get(endpoint + "/healthz").json() == {"status": "ok"}
    assert httpx2.get(endpoint + "/readyz").json() == {"status": "ready"}
    assert httpx2.post(endpoint + ANALYZE, content=CAT).status_code == 401
    sim.script(CAPTION)
    answered = httpx2.post(
        endpoint + ANALYZE,
        content=CAT,
        headers={"Ocp-Apim-Subscription-Key": KEY, "content-type": "application/octet-stream"},
        timeout=30,
    )
    assert answered.status_code == 200, answered.text
    assert answered.json()["captionResult"]["text"] == "a cat"

    # SIGTERM with a slow request in flight: not ready at once, the request finishes.
    sim.script(Reply(CAPTION, delay=0.5))
    with httpx2.Client(timeout=30) as client:
        slow = client.build_request(
            "POST",
            endpoint + ANALYZE,
            content=ROCKET,
            headers={"Ocp-Apim-Subscription-Key": KEY, "content-type": "image/jpeg"},
        )
        results: list[httpx2.Response] = []
        sender = threading.Thread(target=lambda: results.append(client.send(slow)))
        sender.start()
        _wait_for(lambda: sim.pending == 0, "the slow model request")
        process.send_signal(signal.SIGTERM)
        _wait_for(
            lambda: httpx2.get(endpoint + "/readyz").status_code == 503, "readiness to turn off"
        )
        process.send_signal(signal.SIGTERM)  # the delay is over: stop accepting, drain
        sender.join(30)
    (response,) = results
    assert response.status_code == 200
    assert response.json()["captionResult"]["text"] == "a cat"
    assert process.wait(30) == 0
    stderr = process.stderr.read().decode() if process.stderr else ""
    assert KEY not in stderr and "sim-key-placeholder" not in stderr


def test_the_entry_point_is_exec_form_and_named() -> None:
    argv = entry_point()
    assert argv[:2] == ["viewfinder", "serve"]
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    assert argv[argv.index("--port") + 1] == "8080"
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "USER " in text and "HEALTHCHECK" in text and "/healthz" in text


# --- workers and key files, in this process ---------------------------------------------


def _serve_cli(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *args: str
) -> tuple[Any, dict[str, Any]]:
    """`viewfinder serve ARGS` with `server.run` replaced: the CLI result and its options."""
    seen: dict[str, Any] = {}

    def fake_run(settings: ServerSettings, **options: Any) -> None:
        seen.update(options, settings=settings)

    monkeypatch.setenv("VIEWFINDER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv(WORKER_ARGS_ENV, "")  # restored after the test
    monkeypatch.setattr(server_module, "run", fake_run)
    result = CliRunner().invoke(cli_app, ["serve", *args, "--base-url", "http://127.0.0.1:9/v1"])
    if "settings" in seen:
        seen["settings"].analyzer.close()
    return result, seen


def test_workers_build_their_app_from_the_serve_arguments(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"{KEY}\n", encoding="utf-8")
    monkeypatch.setenv("VIEWFINDER_API_KEYS_FILE", str(keys))
    monkeypatch.setenv("VIEWFINDER_WORKERS", "3")
    result, seen = _serve_cli(monkeypatch, tmp_path, "--allow-host", "images.internal")
    assert result.exit_code == 0, result.output
    assert seen["workers"] == 3 and seen["app_factory"] == "viewfinder.cli.serve:worker_app"
    assert seen["settings"].api_keys == (KEY,)
    assert KEY not in os.environ[WORKER_ARGS_ENV]  # the file's name crosses, not its keys

    app = worker_app()  # what each worker process runs
    serving = Serving(app)
    endpoint = serving.start()
    try:
        assert httpx2.get(endpoint + "/readyz").json() == {"status": "ready"}
        assert httpx2.post(endpoint + ANALYZE, content=CAT).status_code == 401
        refused = httpx2.post(
            endpoint + ANALYZE,
            content=b"not an image",
            headers={"Ocp-Apim-Subscription-Key": KEY, "content-type": "image/png"},
        )
        assert refused.status_code == 400  # past the key check: the worker knows the key
    finally:
        serving.stop()


def test_model_keys_are_read_from_their_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "openai"
    secret.write_text("sk-from-a-mounted-file\n", encoding="utf-8")
    monkeypatch.setenv("OPENAI_API_KEY", "")  # restored after the test
    monkeypatch.setenv("OPENAI_API_KEY_FILE", str(secret))
    result, seen = _serve_cli(monkeypatch, tmp_path, "--api-key-file", str(secret))
    assert result.exit_code == 0, result.output
    assert os.environ["OPENAI_API_KEY"] == "sk-from-a-mounted-file"
    assert seen["workers"] == 1 and seen["graceful_timeout"] == 30

    monkeypatch.setenv("OPENAI_API_KEY", "")
    monkeypatch.setenv("OPENAI_API_KEY_FILE", str(tmp_path / "missing"))
    result, seen = _serve_cli(monkeypatch, tmp_path, "--api-key", KEY)
    assert result.exit_code == 2 and not seen
    assert "cannot read OPENAI_API_KEY_FILE" in result.output


def test_the_probes_need_no_key_and_the_old_health_path_stays(
    serve: Callable[[ServerSettings], str],
) -> None:
    endpoint = serve(ServerSettings(api_keys=(KEY,), analyzer=ImageAnalyzer(engine="local")))
    assert httpx2.get(endpoint + "/health").json() == {"status": "ok"}  # the old name
    assert httpx2.get(endpoint + "/readyz").status_code == 200


def test_run_hands_several_workers_the_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: seen.update(options, app=app))
    monkeypatch.setattr(server_module, "configure_logging", lambda: None)
    settings = ServerSettings(api_keys=(KEY,), analyzer_options={})
    server_module.run(settings, workers=2, app_factory="pkg.mod:factory", graceful_timeout=7)
    assert seen["app"] == "pkg.mod:factory" and seen["factory"] is True
    assert (seen["workers"], seen["timeout_graceful_shutdown"]) == (2, 7)
    with pytest.raises(ConfigurationError, match="app_factory"):
        server_module.run(settings, workers=2)
    with pytest.raises(ConfigurationError, match="open server"):
        server_module.run(ServerSettings(), workers=2, app_factory="pkg.mod:factory")


# --- --redis: one variable shares the server state (and the cache) ----------------------

SHARED = "redis://:pw-7f3a@127.0.0.1:9/2"  # nothing listens: settings only, nothing sent


def _cache_of(settings: ServerSettings) -> Any:
    assert settings.analyzer is not None
    return settings.analyzer._engine.cache if settings.analyzer._engine else None


@pytest.mark.parametrize(
    ("flag", "env", "redis", "cache"),
    [
        (None, {}, None, "disk"),
        (SHARED, {}, SHARED, "redis://127.0.0.1:9/2"),
        (None, {"VIEWFINDER_REDIS": SHARED}, SHARED, "redis://127.0.0.1:9/2"),
        (None, {"VIEWFINDER_CACHE": SHARED}, SHARED, "redis://127.0.0.1:9/2"),
        (SHARED, {"VIEWFINDER_CACHE": "redis://127.0.0.1:9/5"}, SHARED, "redis://127.0.0.1:9/5"),
        (SHARED, {"VIEWFINDER_CACHE": "DIR"}, SHARED, "disk"),
        (None, {"VIEWFINDER_CACHE": "DIR"}, None, "disk"),
    ],
    ids=["none", "flag", "env", "cache-env", "cache-apart", "cache-dir", "dir-only"],
)
def test_redis_and_the_answer_cache_follow_one_variable(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    flag: str | None,
    env: dict[str, str],
    redis: str | None,
    cache: str,
) -> None:
    from viewfinder.engine.redis_cache import RedisCache

    monkeypatch.delenv("VIEWFINDER_REDIS", raising=False)
    monkeypatch.delenv("VIEWFINDER_CACHE", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, str(tmp_path / "dir") if value == "DIR" else value)
    result, seen = _serve_cli(
        monkeypatch, tmp_path, "--no-auth", *(["--redis", flag] if flag else [])
    )
    assert result.exit_code == 0, result.output
    assert seen["settings"].redis == redis
    answers = _cache_of(seen["settings"])
    if cache == "disk":
        assert not isinstance(answers, RedisCache)
    else:
        assert isinstance(answers, RedisCache) and answers.url == cache
    assert "pw-7f3a" not in result.output and "pw-7f3a" not in repr(seen["settings"])
    if redis is not None:
        assert "through Redis at redis://127.0.0.1:9/2" in result.output


def test_redis_reaches_the_workers_and_the_embedder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from viewfinder.engine.redis_cache import RedisCache

    monkeypatch.delenv("VIEWFINDER_CACHE", raising=False)
    monkeypatch.setenv("VIEWFINDER_REDIS", SHARED)
    monkeypatch.setenv("VIEWFINDER_WORKERS", "2")
    result, seen = _serve_cli(
        monkeypatch,
        tmp_path,
        "--no-auth",
        "--embed-backend",
        "infinity",
        "--embed-base-url",
        "http://127.0.0.1:9",
        "--embed-model",
        "some-model",
    )
    assert result.exit_code == 0, result.output
    embedder = seen["settings"].embedder
    assert isinstance(embedder.cache, RedisCache) and embedder.cache.url == "redis://127.0.0.1:9/2"
    embedder.cache.close()
    embedder.close()
    # What each worker process rebuilds its settings from:
    assert json.loads(os.environ[WORKER_ARGS_ENV])["redis"] == SHARED


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("http://user:pw-7f3a@127.0.0.1:9/0", "must be a redis://, rediss:// or unix:// URL"),
        ("redis://:pw-7f3a@127.0.0.1:port/0", "not a Redis URL redis-py can open"),
    ],
)
def test_a_redis_that_is_not_one_is_refused_redacted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str, error: str
) -> None:
    monkeypatch.delenv("VIEWFINDER_CACHE", raising=False)
    result, seen = _serve_cli(monkeypatch, tmp_path, "--no-auth", "--redis", url)
    assert result.exit_code == 2 and not seen
    assert error in result.output and "pw-7f3a" not in result.output
    with pytest.raises(ConfigurationError, match=error):
        ServerSettings(no_auth=True, redis=url).validate()


def test_redis_without_redis_py_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import viewfinder.engine
    import viewfinder.engine.redis_link  # loaded, so that removing it below is never a no-op

    monkeypatch.setitem(sys.modules, "redis", None)  # what an install without the extra sees
    monkeypatch.delitem(sys.modules, "viewfinder.engine.redis_link")
    monkeypatch.delattr(viewfinder.engine, "redis_link")
    with pytest.raises(ConfigurationError, match=r"pip install 'viewfinder\[redis\]'"):
        ServerSettings(no_auth=True, redis=SHARED).validate()
