"""Cache keys and the diskcache store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from viewfinder.cache import ResponseCache, default_cache_dir, request_key
from viewfinder.payloads import redact_image_payloads

BASE: dict[str, Any] = {
    "endpoint": "http://127.0.0.1:8000/v1",
    "model": "gpt-4.1-mini",
    "mode": "json_mode",
    "messages": [
        {"role": "system", "content": "be precise"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "caption"},
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/jpeg;base64,QUJD", "detail": "high"},
                },
            ],
        },
    ],
    "schema": {"title": "ImageAnalysis", "properties": {"caption": {}}},
    "sampling": {"temperature": 0, "seed": 0, "max_tokens": 4096},
    "model_version": "gpt-4.1-mini+0123456789",
}


def _with(**changes: Any) -> dict[str, Any]:
    return {**BASE, **changes}


def test_key_is_stable_and_hex() -> None:
    key = request_key(**BASE)
    assert key == request_key(**dict(BASE)) and len(key) == 64 and int(key, 16) >= 0


@pytest.mark.parametrize(
    "change",
    [
        {"endpoint": "https://example.openai.azure.com/openai/deployments/x"},
        {"model": "gpt-4.1"},
        {"mode": "tool_call"},
        {"schema": {"title": "Other"}},
        {"sampling": {"temperature": 0, "seed": 1, "max_tokens": 4096}},
        {"model_version": "gpt-4.1-mini+fedcba9876"},
    ],
)
def test_everything_that_changes_an_answer_changes_the_key(change: dict[str, Any]) -> None:
    assert request_key(**_with(**change)) != request_key(**BASE)


def test_another_image_or_detail_changes_the_key() -> None:
    messages = redact_image_payloads(BASE["messages"])
    assert "QUJD" not in str(messages) and "sha256=" in str(messages)
    other = [
        BASE["messages"][0],
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "caption"},
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/jpeg;base64,REVG", "detail": "high"},
                },
            ],
        },
    ]
    low = [
        BASE["messages"][0],
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "caption"},
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/jpeg;base64,QUJD", "detail": "low"},
                },
            ],
        },
    ]
    keys = {
        request_key(**BASE),
        request_key(**_with(messages=other)),
        request_key(**_with(messages=low)),
    }
    assert len(keys) == 3


def test_store_roundtrip_ttl_and_clear(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c")
    try:
        assert cache.get("k") is None
        cache.set("k", '{"a": 1}')
        assert cache.get("k") == '{"a": 1}' and len(cache) == 1
        cache.clear()
        assert cache.get("k") is None
    finally:
        cache.close()
    expiring = ResponseCache(tmp_path / "e", ttl=-1)  # already expired when stored
    try:
        expiring.set("k", "{}")
        assert expiring.get("k") is None
    finally:
        expiring.close()


def test_cache_dir_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VIEWFINDER_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("VIEWFINDER_CACHE_DIR")
    assert "viewfinder" in str(default_cache_dir())


def test_key_ignores_the_api_key_and_the_cache_dir(tmp_path: Path) -> None:
    from PIL import Image

    from viewfinder import ImageAnalyzer
    from viewfinder.analyzers.features import parse_features

    image = Image.new("RGB", (120, 80), "red")
    keys = []
    for secret in ("key-one", "key-two"):
        with ImageAnalyzer(
            base_url="http://127.0.0.1:9/v1", api_key=secret, cache=tmp_path / secret
        ) as analyzer:
            request = analyzer.build(analyzer.prepare(image), parse_features(["caption"]))
            keys.append(analyzer.engine._key(request))
    assert keys[0] == keys[1]


def test_a_cache_hit_needs_no_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    import viewfinder.analyzers.base as base
    from viewfinder import ImageAnalyzer
    from viewfinder.simulator import Simulator

    photo = tmp_path / "photo.png"
    Image.new("RGB", (300, 200), "navy").save(photo)
    answer = {"caption": {"text": "a navy rectangle", "confidence": 0.9}}
    with (
        Simulator(default=lambda body: answer) as sim,
        ImageAnalyzer(base_url=sim.base_url, cache=tmp_path / "cache") as analyzer,
    ):
        first = analyzer.analyze(photo, features=["caption"])

        def no_decoding(*args: object, **kwargs: object) -> None:
            raise AssertionError("a cache hit must not decode the image")

        monkeypatch.setattr(base, "prepare_image", no_decoding)
        second = analyzer.analyze(photo, features=["caption"])
        assert sim.stats.total == 1
    assert second.usage.cache_hit and second.usage.input_tokens == 0
    assert second.model_dump(exclude={"usage"}) == first.model_dump(exclude={"usage"})
    assert second.metadata.width == 300 and second.metadata.height == 200


def test_batch_cache_hits_need_no_decoding_either(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from PIL import Image

    import viewfinder.analyzers.base as base
    from viewfinder import ImageAnalyzer
    from viewfinder.simulator import Simulator

    images = []
    for shade in (10, 90, 170):
        buffer = io.BytesIO()
        Image.new("RGB", (120, 80), (shade, 0, 0)).save(buffer, "PNG")
        images.append(buffer.getvalue())
    answer = {"caption": {"text": "a red rectangle", "confidence": 0.9}}
    with (
        Simulator(default=lambda body: answer) as sim,
        ImageAnalyzer(base_url=sim.base_url, cache=tmp_path / "cache") as analyzer,
    ):
        first = list(analyzer.analyze_many(images, features=["caption"]))
        assert all(item.ok for item in first) and sim.stats.total == 3

        def no_decoding(*args: object, **kwargs: object) -> None:
            raise AssertionError("a cache hit must not decode the image")

        monkeypatch.setattr(base, "prepare_image", no_decoding)
        again = list(analyzer.analyze_many(images, features=["caption"]))
    assert all(item.ok and item.usage.cache_hit for item in again)
    assert sim.stats.total == 3
    assert {item.sha256 for item in again} == {item.sha256 for item in first}
