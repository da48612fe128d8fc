"""The answer cache over a REAL Redis (tests/redis_server.py): shared hits, size rules, outages.

No fake Redis: two analyzers and two `viewfinder serve` apps share hits through one
redis-server, and a server killed mid-run (then restarted on its port) degrades the cache
to misses with one warning and recovers. Model answers come from the simulator.
"""

from __future__ import annotations

import io
import logging
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from endpoint_env import clear_endpoint_env
from local_server import post_analyze
from PIL import Image
from redis_server import RedisServer, free_port

from viewfinder import ImageAnalyzer
from viewfinder.compat.server import ServerSettings
from viewfinder.engine.cache import AnswerCache, ResponseCache, open_cache
from viewfinder.engine.redis_cache import KEY_PREFIX, RedisCache
from viewfinder.errors import InvalidOptionError
from viewfinder.testing.simulator import Simulator

CAPTION = {"caption": {"text": "a coloured rectangle", "conf": 90}}
SECRET = "s3cret-Pa55"


def _png(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (120, 80), (shade, 40, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def _analyzer(sim: Simulator, cache: str | AnswerCache) -> ImageAnalyzer:
    return ImageAnalyzer(base_url=sim.base_url, api_key="test-key-placeholder", cache=cache)


def test_two_analyzers_share_one_redis(redis_url: str) -> None:
    image = _png(10)
    with Simulator(default=lambda body: CAPTION) as sim:
        with _analyzer(sim, redis_url) as first:
            assert isinstance(first.engine.cache, RedisCache)
            fresh = first.analyze(image, features=["caption"])
        with _analyzer(sim, redis_url) as second:  # another process, as far as Redis knows
            again = second.analyze(image, features=["caption"])
        assert sim.stats.total == 1  # the second analyzer sent nothing
    assert not fresh.usage.cache_hit and again.usage.cache_hit
    assert again.model_dump(exclude={"usage"}) == fresh.model_dump(exclude={"usage"})


def test_viewfinder_cache_selects_redis_for_two_serve_apps(
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    serve: Callable[[ServerSettings], str],
) -> None:
    """Two replicas configured only by VIEWFINDER_CACHE: one pays, the other hits."""
    monkeypatch.setenv("VIEWFINDER_CACHE", redis_url)
    image = _png(20)
    with Simulator(default=lambda body: CAPTION) as sim:
        options = {"base_url": sim.base_url, "api_key": "test-key-placeholder"}
        replicas = [
            serve(ServerSettings(api_keys=("k",), analyzer_options=options)) for _ in range(2)
        ]
        bodies = []
        for endpoint in replicas:
            response = post_analyze(
                endpoint, "api-version=2024-02-01&features=caption", key="k", image=image
            )
            assert response.status_code == 200, response.text
            bodies.append(response.json())
        assert sim.stats.total == 1
    assert bodies[0]["captionResult"] == bodies[1]["captionResult"]


def test_entries_are_compressed_expire_and_keep_to_their_prefix(redis_url: str) -> None:
    with redis.Redis.from_url(redis_url) as raw:
        raw.set("someone-else", "kept")
        cache = RedisCache(redis_url, ttl=60)
        answer = '{"caption": "' + "a red rectangle " * 50 + '"}'
        cache.set("k1", answer)
        stored = raw.get(KEY_PREFIX + "k1")
        assert isinstance(stored, bytes) and len(stored) < len(answer) / 4
        assert zlib.decompress(stored).decode() == answer == cache.get("k1")
        assert 0 < raw.pttl(KEY_PREFIX + "k1") <= 60_000
        assert len(cache) == 1
        raw.set(KEY_PREFIX + "junk", b"not zlib")
        assert cache.get("junk") is None  # an unreadable entry is a miss
        cache.clear()
        assert len(cache) == 0 and raw.get("someone-else") == b"kept"
        cache.close()

        forever = RedisCache(redis_url)
        forever.set("k2", "{}")
        assert raw.pttl(KEY_PREFIX + "k2") == -1  # no TTL: Redis' maxmemory policy evicts
        expired = RedisCache(redis_url, ttl=-1)  # already expired when stored, as on disk
        expired.set("k3", "{}")
        small = RedisCache(redis_url, max_entry_bytes=16)
        small.set("k4", '{"x": "' + "incompressible?".join(map(str, range(200))) + '"}')
        assert raw.exists(KEY_PREFIX + "k3", KEY_PREFIX + "k4") == 0
        for cache in (forever, expired, small):
            cache.close()


def test_open_cache_chooses_by_url_and_environment(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VIEWFINDER_CACHE", raising=False)
    monkeypatch.setenv("VIEWFINDER_CACHE_DIR", str(tmp_path / "default"))
    chosen: list[AnswerCache] = [open_cache(), open_cache(tmp_path / "d"), open_cache(redis_url)]
    monkeypatch.setenv("VIEWFINDER_CACHE", redis_url)
    chosen.append(open_cache())
    monkeypatch.setenv("VIEWFINDER_CACHE", str(tmp_path / "env-dir"))
    chosen.append(open_cache())
    kinds = [type(cache) for cache in chosen]
    assert kinds == [ResponseCache, ResponseCache, RedisCache, RedisCache, ResponseCache]
    assert isinstance(chosen[-1], ResponseCache) and chosen[-1].directory == tmp_path / "env-dir"
    for cache in chosen:
        assert isinstance(cache, AnswerCache)
        cache.close()


def test_a_password_never_shows(redis_server: RedisServer, tmp_path: Path) -> None:
    url = f"redis://:{SECRET}@127.0.0.1:{redis_server.port}/0"
    cache = RedisCache(url)
    assert SECRET not in repr(cache) and SECRET not in cache.url
    cache.close()
    with pytest.raises(InvalidOptionError) as caught:
        RedisCache(f"redis://:{SECRET}@127.0.0.1:port/0")
    assert SECRET not in str(caught.value)


def test_an_outage_degrades_with_one_warning_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """redis-server killed mid-run, then restarted on its port: analyses never fail."""
    server = RedisServer(tmp_path, password=SECRET).start()
    url = server.url()
    caplog.set_level(logging.DEBUG, logger="viewfinder.cache")
    try:
        with (
            Simulator(default=lambda body: CAPTION) as sim,
            _analyzer(sim, RedisCache(url, retry_interval=0)) as analyzer,
        ):
            images = [_png(shade) for shade in (30, 60, 90, 120)]
            analyzer.analyze(images[0], features=["caption"])
            assert analyzer.analyze(images[0], features=["caption"]).usage.cache_hit

            server.stop()
            for image in images[:3]:  # a hit before, a miss now; never an error
                assert not analyzer.analyze(image, features=["caption"]).usage.cache_hit
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1, [r.getMessage() for r in warnings]
            assert "unreachable" in warnings[0].getMessage()
            assert sim.stats.total == 4

            server.start()  # empty (no persistence), same port
            analyzer.analyze(images[3], features=["caption"])
            assert analyzer.analyze(images[3], features=["caption"]).usage.cache_hit
            assert sim.stats.total == 5
            assert any("reachable again" in r.getMessage() for r in caplog.records)
    finally:
        server.stop()
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    assert SECRET not in caplog.text


def test_unreachable_redis_is_skipped_between_retries(caplog: pytest.LogCaptureFixture) -> None:
    """After a failure Redis is left alone for `retry_interval`: no connect per call."""
    cache = RedisCache(f"redis://:{SECRET}@127.0.0.1:{free_port()}/0", retry_interval=3600)
    calls: list[str] = []
    real_get = cache._client.get

    def counting_get(name: str) -> object:
        calls.append(name)
        return real_get(name)

    cache._client.get = counting_get  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="viewfinder.cache"):
        assert [cache.get("a"), cache.get("b"), cache.get("c")] == [None, None, None]
        cache.set("a", "{}")
        assert len(cache) == 0
    assert len(calls) == 1 and len(caplog.records) == 1
    assert SECRET not in caplog.text
    cache.close()


def test_the_console_script_shows_an_unreachable_redis_as_one_warning_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`viewfinder analyze` with VIEWFINDER_CACHE naming a Redis nobody runs: it answers."""
    from viewfinder.cli import main

    clear_endpoint_env(monkeypatch)
    monkeypatch.setenv("VIEWFINDER_CACHE", f"redis://:{SECRET}@127.0.0.1:{free_port()}/0")
    photo = tmp_path / "x.png"
    photo.write_bytes(_png(140))
    with Simulator(default=lambda body: CAPTION) as sim:
        arguments = ["viewfinder", "analyze", str(photo), "-f", "caption", "--base-url"]
        monkeypatch.setattr(sys, "argv", [*arguments, sim.base_url])
        with pytest.raises(SystemExit) as exited:
            main()
    assert exited.value.code == 0
    captured = capsys.readouterr()
    assert "a coloured rectangle" in captured.out
    (line,) = captured.err.splitlines()
    assert (
        line.startswith("warning: the answer cache at redis://127.0.0.1:") and "unreachable" in line
    )
    assert SECRET not in captured.err + captured.out
