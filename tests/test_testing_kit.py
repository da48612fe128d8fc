"""The cassette kit users get from `pytest_plugins = ["viewfinder.testing"]`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import vcr as vcrpy
from PIL import Image
from pydantic import BaseModel

import viewfinder as vf
from viewfinder.testing import (
    BODY_MATCHER,
    body_difference,
    cassette_config,
    compact_answer,
    find_secrets,
    scrub_request,
    scrub_response,
    viewfinder_body,
)
from viewfinder.testing.simulator import Simulator

REPO = Path(__file__).resolve().parents[1]
ANSWER = compact_answer({"caption": {"text": "a grey square", "confidence": 0.8}})


# --- configuration ----------------------------------------------------------------------


def test_config_has_no_record_mode_and_refuses_one() -> None:
    config = cassette_config()
    assert "record_mode" not in config
    assert config["match_on"] == ["method", "path", BODY_MATCHER]
    assert config["decode_compressed_response"] is True
    assert {name for name, _ in config["filter_headers"]} >= {
        "authorization",
        "api-key",
        "openai-organization",
        "openai-project",
        "cookie",
    }
    assert cassette_config(ignore_hosts=["x"])["ignore_hosts"] == ["x"]
    with pytest.raises(ValueError, match="record_mode"):
        cassette_config(record_mode="once")


def test_requests_lose_secrets_and_image_payloads() -> None:
    request = vcrpy.request.Request(
        "POST",
        "https://res.openai.azure.com/openai/deployments/d/chat/completions"
        "?api-version=2024-10-21&api-key=SECRETSECRET&sig=SASSIGNATURE",
        json.dumps({"url": "data:image/jpeg;base64,QUJDRA=="}).encode(),
        {"Authorization": "Bearer abc", "api-key": "k", "Content-Type": "application/json"},
    )
    scrubbed = scrub_request(request)
    assert "SECRETSECRET" not in scrubbed.uri and "SASSIGNATURE" not in scrubbed.uri
    assert "api-version=2024-10-21" in scrubbed.uri
    assert set(scrubbed.headers) == {"Content-Type"}
    assert b"QUJDRA" not in scrubbed.body and b"sha256=" in scrubbed.body


def test_responses_keep_only_allow_listed_headers() -> None:
    response = {
        "headers": {
            "Content-Type": ["application/json"],
            "retry-after": ["1"],
            "x-request-id": ["req_1"],
            "x-ratelimit-remaining-requests": ["9"],
            "set-cookie": ["session=secret"],
            "openai-organization": ["org-secret"],
            "cf-ray": ["1"],
        }
    }
    assert set(scrub_response(response)["headers"]) == {
        "Content-Type",
        "retry-after",
        "x-request-id",
        "x-ratelimit-remaining-requests",
    }


# --- explained misses ---------------------------------------------------------------------


def _body(**changes: Any) -> bytes:
    body: dict[str, Any] = {
        "model": "gpt-4.1-mini",
        "temperature": 0,
        "messages": [
            {
                "role": "system",
                "content": 'You annotate images. Schema follows: json_schema {"properties": 1}',
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Caption the image."},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,QUJD"}},
                ],
            },
        ],
        "response_format": {"type": "json_object"},
    }
    body.update(changes)
    return json.dumps(body).encode()


def test_equal_bodies_match_whatever_the_key_order() -> None:
    reordered = json.dumps(dict(reversed(list(json.loads(_body()).items())))).encode()
    assert body_difference(_body(), reordered) is None


@pytest.mark.parametrize(
    ("live", "expected"),
    [
        (_body(model="gpt-4o"), "the model changed"),
        (_body(temperature=1), "the sampling parameters (temperature) changed"),
        (_body(response_format={"type": "json_schema"}), "the schema"),
    ],
)
def test_a_miss_names_what_changed(live: bytes, expected: str) -> None:
    difference = body_difference(_body(), live)
    assert difference is not None and difference.startswith(expected)
    assert "--record-mode=rewrite" in difference


def test_a_changed_image_or_prompt_is_named() -> None:
    messages = json.loads(_body())["messages"]
    other_image = json.loads(json.dumps(messages))
    other_image[1]["content"][1]["image_url"]["url"] = "data:image/jpeg;base64,REVG"
    difference = body_difference(_body(), _body(messages=other_image))
    assert difference is not None and difference.startswith("the image")

    other_prompt = json.loads(json.dumps(messages))
    other_prompt[1]["content"][0]["text"] = "Caption the photo."
    difference = body_difference(_body(), _body(messages=other_prompt))
    assert difference is not None and difference.startswith("the prompt text changed")
    assert "'Caption the image.'" in difference and "'Caption the photo.'" in difference

    other_schema = json.loads(json.dumps(messages))
    other_schema[0]["content"] = other_schema[0]["content"].replace("1}", "2}")
    difference = body_difference(_body(), _body(messages=other_schema))
    assert difference is not None and difference.startswith("the schema (as instructor")

    reask = [*messages, {"role": "user", "content": "fix it"}]
    difference = body_difference(_body(), _body(messages=reask))
    assert difference is not None and "number of messages" in difference


def test_the_matcher_raises_the_explanation() -> None:
    class Req:
        def __init__(self, body: bytes) -> None:
            self.body = body

    viewfinder_body(Req(_body()), Req(_body()))
    with pytest.raises(AssertionError, match="the model changed"):
        viewfinder_body(Req(_body()), Req(_body(model="gpt-4o")))


# --- recording a 12-megapixel photo, replaying it, missing loudly --------------------------


def _analyze(
    cassette: Path, record_mode: str, image: Any, base_url: str = "http://127.0.0.1:9/v1"
) -> vf.ImageAnalysisResult:
    """One caption analysis inside a cassette, configured as the plugin configures it."""
    recorder = vcrpy.VCR()
    recorder.register_matcher(BODY_MATCHER, viewfinder_body)
    with (
        recorder.use_cassette(str(cassette), record_mode=record_mode, **cassette_config()),
        vf.ImageAnalyzer(base_url=base_url, cache=False) as analyzer,
    ):
        return analyzer.analyze(image, features=["caption"])


def test_a_12_megapixel_photo_records_to_a_few_kilobytes_and_replays_identically(
    tmp_path: Path,
) -> None:
    photo = tmp_path / "photo.jpg"
    Image.effect_noise((4000, 3000), 64).convert("RGB").save(photo, quality=90)
    assert photo.stat().st_size > 3_000_000
    cassette = tmp_path / "photo.yaml"
    with Simulator() as sim:
        sim.script(ANSWER)
        recorded = _analyze(cassette, "once", photo, sim.base_url)
    assert cassette.stat().st_size < 20_000
    assert "sha256=" in cassette.read_text()
    replays = [_analyze(cassette, "none", photo).model_dump_json() for _ in range(2)]
    assert replays[0] == replays[1] == recorded.model_dump_json()


def test_a_miss_fails_at_once_and_says_why(tmp_path: Path) -> None:
    cassette = tmp_path / "miss.yaml"
    with Simulator() as sim:
        sim.script(ANSWER)
        _analyze(cassette, "once", Image.new("RGB", (320, 200), "grey"), sim.base_url)
    with pytest.raises(vf.TransportError) as caught:
        _analyze(cassette, "none", Image.new("RGB", (320, 200), "white"))
    assert caught.value.attempts == 1
    assert "the image (its sha256 digest" in str(caught.value)


# --- fixtures ---------------------------------------------------------------------------------

_ORIGINAL_CACHE_DIR = os.environ.get("VIEWFINDER_CACHE_DIR")


@pytest.mark.vcr
def test_vcr_tests_get_an_isolated_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    cache_dir = os.environ.get("VIEWFINDER_CACHE_DIR")
    assert cache_dir and cache_dir != _ORIGINAL_CACHE_DIR
    assert Path(cache_dir).is_relative_to(tmp_path_factory.getbasetemp())


def test_other_tests_keep_the_environment() -> None:
    assert os.environ.get("VIEWFINDER_CACHE_DIR") == _ORIGINAL_CACHE_DIR


def test_viewfinder_analyzer_is_wired_for_replay(
    viewfinder_analyzer: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    analyzer = viewfinder_analyzer()
    assert isinstance(analyzer, vf.ImageAnalyzer)
    assert analyzer.engine.retry.max_attempts == 1
    assert analyzer.engine.cache is not None
    assert analyzer.engine.cache.directory.is_relative_to(tmp_path)
    assert analyzer.provider.client.api_key == "viewfinder-test-placeholder"

    class Note(BaseModel):
        text: str

    custom = viewfinder_analyzer(schema=Note, prompt="read the note")
    assert isinstance(custom, vf.Analyzer)


# --- no secrets in any cassette of this repository ----------------------------------------------


def test_find_secrets_catches_key_shaped_strings(tmp_path: Path) -> None:
    fake = tmp_path / "leaky.yaml"
    fake_key = "sk-" + "proj" + "A" * 30
    fake.write_text(
        "request:\n"
        "  headers:\n"
        "    authorization:\n"
        f"    - Bearer {fake_key}\n"
        "  uri: https://acct.blob.core.windows.net/c/p.jpg?sv=2024&sig=abcdEFGH1234%3D\n"
    )
    kinds = {finding.kind for finding in find_secrets([tmp_path])}
    assert kinds >= {"OpenAI-style key", "bearer token", "key header", "SAS signature"}


def test_no_cassette_in_the_repository_holds_a_secret() -> None:
    roots = [p for p in (REPO / "tests", REPO / "examples") if p.exists()]
    cassettes = [p for root in roots for p in root.rglob("cassettes")]
    assert cassettes, "expected committed cassettes"
    findings = find_secrets(cassettes)
    assert not findings, "\n".join(map(str, findings))
