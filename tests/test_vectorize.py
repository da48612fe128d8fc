"""Multimodal embeddings on `viewfinder serve` (`viewfinder.compat.vectorize`): Azure's
`retrieval:vectorizeImage`/`:vectorizeText`, AI Search's custom Web API vectorizer and the
vectorize skill, as contract tests against the app.

Requests are the verbatim samples of `azure-vectorize-and-search.md` (A.4, B.6, B.7). The
embedding backend is the simulator's `/v1/embeddings` (Infinity's wire format): its
vectors come from the input's SHA-256, NOT from a model, so these tests check shapes,
limits, errors and that the route's vector is the `Embedder`'s, never retrieval quality.
One server with embeddings for the module, one without for the unconfigured answer.
"""

from __future__ import annotations

import base64
import io
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from local_server import Serving
from PIL import Image
from typer.testing import CliRunner

import viewfinder.compat.server as server_module
import viewfinder.embed.embedder as embedder_module
from viewfinder import ImageAnalyzer, RetryPolicy
from viewfinder.cli import app as cli_app
from viewfinder.compat.server import ServerSettings, create_app
from viewfinder.compat.skill import SkillSettings
from viewfinder.compat.vectorize import (
    VECTORIZE_IMAGE_PATH,
    VECTORIZE_SKILL_PATH,
    VECTORIZE_TEXT_PATH,
    VECTORIZER_PATH,
    model_version,
)
from viewfinder.embed import Embedder, OpenAICompatibleBackend
from viewfinder.prepare import prepare_image
from viewfinder.testing.simulator import EmbedFault, Simulator

KEY = "vectorize-test-key-41f0"
GA = "api-version=2024-02-01&model-version=2023-04-15"
DIMENSIONS = 1024


def _png(side: int, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    picture = Image.new("RGB", (side, side), color)
    picture.putpixel((1, 1), (0, 0, 0))
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return out.getvalue()


IMAGE = _png(64)
OTHER = _png(64, (20, 20, 220))
SMALL_OK = _png(11)  # A.3: more than 10 x 10 (the analyzer's own floor is 50)
TOO_SMALL = _png(8)


class _Images(BaseHTTPRequestHandler):
    """Serves `IMAGE` at any path and records the paths asked (an intranet image host)."""

    def do_GET(self) -> None:
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(IMAGE)))
        self.end_headers()
        self.wfile.write(IMAGE)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture(scope="session")
def images() -> Iterator[tuple[str, list[str]]]:
    """An image host on localhost (allow-listed by the server): its base URL, paths asked."""
    server = ThreadingHTTPServer(("localhost", 0), _Images)
    server.paths = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_port}", server.paths  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="session")
def sim() -> Iterator[Simulator]:
    with Simulator() as simulator:
        yield simulator


def _backend(sim: Simulator) -> OpenAICompatibleBackend:
    return OpenAICompatibleBackend(model="siglip2", base_url=sim.base_url, matryoshka=True)


def _analyzer(sim: Simulator) -> ImageAnalyzer:
    return ImageAnalyzer(
        base_url=sim.base_url, api_key="test-key-placeholder", cache=False, retry=RetryPolicy(1)
    )


@pytest.fixture(scope="session")
def app(sim: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    """The app with embeddings: the simulator's, a batch of 4 records."""
    analyzer = _analyzer(sim)
    settings = ServerSettings(
        api_keys=(KEY,),
        allow_hosts=("localhost",),
        analyzer=analyzer,
        read_store=tmp_path_factory.mktemp("vectorize"),
        skill=SkillSettings(batch_size=4),
        embedder=Embedder(_backend(sim)),
    )
    try:
        yield create_app(settings)
    finally:
        analyzer.close()


@pytest.fixture(scope="session")
def endpoint(app: FastAPI) -> Iterator[str]:
    serving = Serving(app)
    try:
        yield serving.start()
    finally:
        serving.stop()


def _post(endpoint: str, path: str, key: str | None = KEY, **kwargs: Any) -> httpx2.Response:
    headers = {"Ocp-Apim-Subscription-Key": key} if key else {}
    with httpx2.Client(trust_env=False, timeout=20) as client:
        return client.post(
            f"{endpoint}{path}", headers=headers | kwargs.pop("headers", {}), **kwargs
        )


def _vector(response: httpx2.Response) -> list[float]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"modelVersion", "vector"}
    assert body["modelVersion"] == "viewfinder-infinity-siglip2-1024"
    vector: list[float] = body["vector"]
    assert len(vector) == DIMENSIONS
    assert math.isclose(math.fsum(v * v for v in vector), 1.0, rel_tol=1e-5)
    return vector


def _error(response: httpx2.Response, status: int, inner: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert response.headers["x-ms-error-code"] == error["code"]
    if inner is not None:
        assert error["innererror"]["code"] == inner
    return error


# --- Azure's REST calls (A.1, A.4) ----------------------------------------------------------


def test_vectorize_rest_samples_answer_one_space(
    endpoint: str, images: tuple[str, list[str]], sim: Simulator
) -> None:
    """A.4's samples: `{"url"}` (both api-versions), raw bytes and `{"text"}`; all answer
    `{"modelVersion", "vector"}`, 1,024 unit-length values from the one configured model,
    and the route's image vector is `Embedder.embed_images`'s for the same image."""
    base, paths = images
    url = f"{base}/image.jpg"
    preview = "?model-version=2023-04-01-preview&api-version=2023-04-01-preview"
    by_url = _vector(_post(endpoint, VECTORIZE_IMAGE_PATH + preview, json={"url": url}))
    by_ga = _vector(_post(endpoint, f"{VECTORIZE_IMAGE_PATH}?{GA}", json={"url": url}))
    raw = _vector(
        _post(
            endpoint,
            f"{VECTORIZE_IMAGE_PATH}?{GA}",
            content=IMAGE,
            headers={"Content-Type": "application/octet-stream"},
        )
    )
    as_png = _vector(
        _post(
            endpoint,
            f"{VECTORIZE_IMAGE_PATH}?api-version=2023-02-01-preview&modelVersion=latest",
            content=OTHER,
            headers={"Content-Type": "image/png"},
        )
    )
    text = _vector(_post(endpoint, f"{VECTORIZE_TEXT_PATH}?{GA}", json={"text": "cat jumping"}))
    assert paths[-2:] == ["/image.jpg", "/image.jpg"]
    assert by_url == by_ga == raw != as_png != text
    with Embedder(_backend(sim)) as direct:
        (expected,) = direct.embed_images([IMAGE])
        (query,) = direct.embed_texts(["cat jumping"])
    assert raw == list(expected.vector) and text == list(query.vector)
    assert model_version(direct) == "viewfinder-infinity-siglip2-1024"
    small = {"Content-Type": "image/png"}
    _vector(_post(endpoint, f"{VECTORIZE_IMAGE_PATH}?{GA}", content=SMALL_OK, headers=small))


def test_vectorize_rest_errors(endpoint: str) -> None:
    """The service's error shape and `x-ms-error-code` for every refusal (A.1, A.3, A.5)."""
    image = f"{VECTORIZE_IMAGE_PATH}?{GA}"
    text = f"{VECTORIZE_TEXT_PATH}?{GA}"
    png = {"Content-Type": "image/png"}
    _error(
        _post(endpoint, f"{VECTORIZE_TEXT_PATH}?api-version=2023-10-01", json={"text": "a"}), 404
    )
    unknown = f"{VECTORIZE_TEXT_PATH}?api-version=2024-02-01&model-version=2099-01-01"
    _error(_post(endpoint, unknown, json={"text": "a"}), 400, "InvalidModelVersion")
    _error(_post(endpoint, image, content=b"not an image", headers=png), 400, "InvalidImageFormat")
    small = _error(_post(endpoint, image, content=TOO_SMALL, headers=png), 400, "InvalidImageSize")
    assert "10 x 10" in small["innererror"]["message"]
    _error(_post(endpoint, text, json={"text": "   "}), 400, "InvalidText")
    _error(_post(endpoint, text, json={"other": "x"}), 400, "InvalidText")
    long = _error(_post(endpoint, text, json={"text": "word " * 71}), 400, "TextTooLong")
    assert "71 words" in long["message"]
    _vector(_post(endpoint, text, json={"text": "word " * 70}))
    refused = _post(endpoint, image, json={"url": "http://169.254.169.254/latest/meta-data"})
    assert _error(refused, 400)["message"] == "The provided image url is not accessible."
    assert _error(_post(endpoint, image, key=None, content=IMAGE, headers=png), 401)
    assert _error(_post(endpoint, text, key="wrong", json={"text": "a"}), 401)


def test_image_decodes_hold_the_servers_pixel_budget(
    endpoint: str, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every route's image decode holds its pixels of the server's budget (the memory
    bound of `viewfinder serve`), and gives them back."""
    budget = app.state.pixel_budget
    held: list[int] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        held.append(budget.total - budget.available)
        return prepare_image(*args, **kwargs)

    monkeypatch.setattr(embedder_module, "prepare_image", spy)
    other = _png(40, (1, 2, 3))  # not cached by an earlier test: decoded here
    _vector(
        _post(
            endpoint,
            f"{VECTORIZE_IMAGE_PATH}?{GA}",
            content=other,
            headers={"Content-Type": "image/png"},
        )
    )
    record = {"recordId": "1", "data": {"image": base64.b64encode(_png(41)).decode()}}
    _values(_post(endpoint, VECTORIZE_SKILL_PATH, json={"values": [record]}))
    assert held == [40 * 40, 41 * 41]
    assert budget.available == budget.total


# --- AI Search's vectorizer (B.6) -----------------------------------------------------------


def _values(response: httpx2.Response) -> dict[str, dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    values = response.json()["values"]
    for item in values:
        assert set(item) == {"recordId", "data", "errors", "warnings"}
    return {item["recordId"]: item for item in values}


def test_vectorizer_one_record_contract(endpoint: str, images: tuple[str, list[str]]) -> None:
    """B.6/B.7's text, imageUrl and imageBinary queries, one record each; the vector under
    `data.vector`; the text vector is the REST one (the same space)."""
    base, _ = images
    encoded = base64.b64encode(IMAGE).decode()
    asked = {
        "text": {"text": "cat jumping"},
        "url": {"imageUrl": f"{base}/a.png"},
        "url-object": {"imageUrl": {"url": f"{base}/a.png"}},
        "binary": {"imageBinary": {"data": encoded}},
    }
    vectors = {}
    for name, data in asked.items():
        reply = _post(endpoint, VECTORIZER_PATH, json={"values": [{"recordId": "0", "data": data}]})
        item = _values(reply)["0"]
        assert (item["errors"], item["warnings"]) == (None, None)
        assert set(item["data"]) == {"vector"} and len(item["data"]["vector"]) == DIMENSIONS
        vectors[name] = item["data"]["vector"]
    assert vectors["url"] == vectors["url-object"] == vectors["binary"] != vectors["text"]
    rest = _vector(_post(endpoint, f"{VECTORIZE_TEXT_PATH}?{GA}", json={"text": "cat jumping"}))
    assert vectors["text"] == rest
    two = [{"recordId": "0", "data": {"text": "a"}}, {"recordId": "1", "data": {"text": "b"}}]
    refused = _error(_post(endpoint, VECTORIZER_PATH, json={"values": two}), 400)
    assert "exactly one record" in refused["message"]
    empty = {"values": [{"recordId": "0", "data": {"text": ""}}]}
    _error(_post(endpoint, VECTORIZER_PATH, json=empty), 400, "InvalidText")
    _error(_post(endpoint, VECTORIZER_PATH, key=None, json=empty), 401)


# --- AI Search's vectorize skill (B.3, B.5, B.7) --------------------------------------------


def test_vectorize_skill_records_and_their_errors(
    endpoint: str, images: tuple[str, list[str]]
) -> None:
    """B.7's request (`data.image` as base64, or the normalized image), text and url +
    queryString records: one answer per record, HTTP 200, a bad record's error its own."""
    base, paths = images
    encoded = base64.b64encode(IMAGE).decode()
    good = [
        {"recordId": "b64", "data": {"image": encoded}},
        {"recordId": "object", "data": {"image": {"data": encoded, "width": 64, "$type": "file"}}},
        {"recordId": "text", "data": {"text": "a red square"}},
        {"recordId": "url", "data": {"url": f"{base}/blob.png", "queryString": "?sv=1&sig=S"}},
    ]
    items = _values(_post(endpoint, VECTORIZE_SKILL_PATH, json={"values": good}))
    assert set(items) == {"b64", "object", "text", "url"}
    assert all((i["errors"], i["warnings"]) == (None, None) for i in items.values())
    assert items["b64"]["data"] == items["object"]["data"] == items["url"]["data"]
    assert len(items["text"]["data"]["vector"]) == DIMENSIONS
    assert paths[-1] == "/blob.png?sv=1&sig=S"
    bad = [
        {"recordId": "ok", "data": {"image": encoded}},
        {"recordId": "not-base64", "data": {"image": "%%%"}},
        {"recordId": "not-image", "data": {"image": base64.b64encode(b"text").decode()}},
        {"recordId": "long", "data": {"text": "word " * 71}},
    ]
    items = _values(_post(endpoint, VECTORIZE_SKILL_PATH, json={"values": bad}))
    assert len(items) == 4 and len(items["ok"]["data"]["vector"]) == DIMENSIONS
    for name, code in (
        ("not-base64", "InvalidImageFormat"),
        ("not-image", "InvalidImageFormat"),
        ("long", "TextTooLong"),
    ):
        assert items[name]["data"] == {}
        assert items[name]["errors"][0]["message"].startswith(f"{code}: ")
    more = [
        {"recordId": "small", "data": {"image": base64.b64encode(TOO_SMALL).decode()}},
        {"recordId": "none", "data": {"contractText": None}},
        {"recordId": "private", "data": {"url": "http://169.254.169.254/x.png"}},
    ]
    items = _values(_post(endpoint, VECTORIZE_SKILL_PATH, json={"values": more}))
    assert items["small"]["errors"][0]["message"].startswith("InvalidImageSize: ")
    assert items["none"]["errors"][0]["message"].startswith("InvalidInput: ")
    assert "not accessible" in items["private"]["errors"][0]["message"]


def test_vectorize_skill_refuses_whole_calls(endpoint: str, sim: Simulator) -> None:
    """Auth as the other routes; more records than the batch size, and a throttled
    endpoint for every record, are the call's errors (the indexer retries 429s, B.5)."""
    one = {"values": [{"recordId": "1", "data": {"text": "throttled text"}}]}
    _error(_post(endpoint, VECTORIZE_SKILL_PATH, key=None, json=one), 401)
    five = [{"recordId": str(n), "data": {"text": "t"}} for n in range(5)]
    big = _error(_post(endpoint, VECTORIZE_SKILL_PATH, json={"values": five}), 400)
    assert "batchSize to 4" in big["message"]
    # retry-after 0: the server's shared rate limiter pauses every later request for it
    sim.script_embed_faults(EmbedFault(429, {"retry-after": "0"}))
    throttled = _post(endpoint, VECTORIZE_SKILL_PATH, json=one)
    _error(throttled, 429)
    assert throttled.headers["Retry-After"] == "1"  # at least a second, as the service says


# --- unconfigured -------------------------------------------------------------------------


def test_without_an_embedder_every_route_says_so(
    sim: Simulator, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No embedding backend: a 404 whose inner error says how to configure one."""
    analyzer = _analyzer(sim)
    settings = ServerSettings(
        api_keys=(KEY,), analyzer=analyzer, read_store=tmp_path_factory.mktemp("plain")
    )
    serving = Serving(create_app(settings))
    try:
        endpoint = serving.start()
        for path, body in (
            (f"{VECTORIZE_TEXT_PATH}?{GA}", {"text": "a"}),
            (f"{VECTORIZE_IMAGE_PATH}?{GA}", {"url": "https://example.com/a.png"}),
            (VECTORIZER_PATH, {"values": [{"recordId": "0", "data": {"text": "a"}}]}),
            (VECTORIZE_SKILL_PATH, {"values": [{"recordId": "0", "data": {"text": "a"}}]}),
        ):
            error = _error(_post(endpoint, path, json=body), 404, "EmbeddingsNotConfigured")
            assert "--embed-backend" in error["innererror"]["message"]
        _error(_post(endpoint, VECTORIZER_PATH, key=None, json={}), 401)  # auth comes first
    finally:
        serving.stop()
        analyzer.close()


def _serve(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *args: str) -> tuple[Any, str]:
    """`viewfinder serve ARGS` up to the point it would serve: its settings and output."""
    seen: list[ServerSettings] = []
    monkeypatch.setattr(server_module, "run", lambda settings, **_: seen.append(settings))
    monkeypatch.setenv("VIEWFINDER_CACHE_DIR", str(tmp_path))
    command = ["serve", "--api-key", KEY, "--base-url", "http://127.0.0.1:9/v1", *args]
    result = CliRunner().invoke(cli_app, command)
    if seen:
        seen[0].analyzer.close()  # type: ignore[union-attr]
    return (seen[0] if seen else result.exit_code), result.output


def test_serve_turns_embeddings_on_from_flags_or_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sim: Simulator
) -> None:
    """`viewfinder serve`: no `--embed-*` flag and no VIEWFINDER_EMBED_* is embeddings off;
    the flags or the environment (`resolve_backend`) turn them on, 1,024 dimensions by
    default; the startup lines say which."""
    for name in ("BACKEND", "MODEL", "BASE_URL", "API_KEY"):
        monkeypatch.delenv(f"VIEWFINDER_EMBED_{name}", raising=False)
    monkeypatch.delenv("COHERE_API_KEY", raising=False)
    settings, output = _serve(monkeypatch, tmp_path)
    assert settings.embedder is None and "embeddings: off" in output
    flags = ("--embed-backend", "cohere", "--embed-base-url", sim.endpoint)
    settings, output = _serve(monkeypatch, tmp_path, *flags)
    assert "embeddings: on, modelVersion viewfinder-cohere-embed-v4.0-1024" in output
    monkeypatch.setenv("VIEWFINDER_EMBED_BACKEND", "infinity")
    monkeypatch.setenv("VIEWFINDER_EMBED_MODEL", "siglip2")
    monkeypatch.setenv("VIEWFINDER_EMBED_BASE_URL", sim.base_url)
    settings, output = _serve(monkeypatch, tmp_path, "--embed-dimensions", "512")
    assert settings.embedder is not None and settings.embedder.backend.model == "siglip2"
    assert "modelVersion viewfinder-infinity-siglip2-512" in output
    monkeypatch.setenv("VIEWFINDER_EMBED_BACKEND", "")
    code, output = _serve(monkeypatch, tmp_path, "--embed-dimensions", "512")
    assert code == 2 and "no embedding backend configured" in output


class _Held(BaseHTTPRequestHandler):
    """An embeddings endpoint that answers nothing until the test lets it go."""

    def do_POST(self) -> None:
        self.server.release.wait(10)  # type: ignore[attr-defined]
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def test_records_not_vectorised_by_the_deadline_get_a_timeout_error(
    sim: Simulator, tmp_path: Path
) -> None:
    """As the image-analysis skill: records not done at 90% of the skill's timeout are
    answered with a `Timeout` error, HTTP 200, before AI Search gives up on the call."""
    held = ThreadingHTTPServer(("localhost", 0), _Held)
    held.release = threading.Event()  # type: ignore[attr-defined]
    held.daemon_threads = True
    thread = threading.Thread(target=held.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    backend = OpenAICompatibleBackend(
        model="siglip2", base_url=f"http://localhost:{held.server_port}/v1", matryoshka=True
    )
    analyzer = _analyzer(sim)
    settings = ServerSettings(
        api_keys=(KEY,),
        analyzer=analyzer,
        read_store=tmp_path,
        skill=SkillSettings(timeout=0.5),
        embedder=Embedder(backend),
    )
    serving = Serving(create_app(settings))
    try:
        endpoint = serving.start()
        values = [{"recordId": "1", "data": {"text": "slow"}}, {"recordId": "2", "data": {}}]
        items = _values(_post(endpoint, VECTORIZE_SKILL_PATH, json={"values": values}))
        assert items["1"]["errors"][0]["message"].startswith("Timeout: ")
        assert items["2"]["errors"][0]["message"].startswith("InvalidInput: ")
    finally:
        held.release.set()  # type: ignore[attr-defined]
        serving.stop()
        analyzer.close()
        held.shutdown()
        held.server_close()
        thread.join(5)


# --- the README's AI Search definitions, written by Microsoft's SDK -------------------------

README_INDEX: dict[str, Any] = {
    "name": "images",
    "fields": [
        {"name": "id", "type": "Edm.String", "key": True},
        {
            "name": "image_vector",
            "type": "Collection(Edm.Single)",
            "searchable": True,
            "retrievable": False,
            "dimensions": 1024,
            "vectorSearchProfile": "image-profile",
        },
    ],
    "vectorSearch": {
        "algorithms": [{"name": "hnsw-1", "kind": "hnsw", "hnswParameters": {"metric": "cosine"}}],
        "vectorizers": [
            {
                "name": "viewfinder-vectorizer",
                "kind": "customWebApi",
                "customWebApiParameters": {
                    "uri": "https://viewfinder.example.com/vectorizers/multimodal",
                    "httpMethod": "POST",
                    "httpHeaders": {"Ocp-Apim-Subscription-Key": "<key>"},
                    "timeout": "PT30S",
                },
            }
        ],
        "profiles": [
            {"name": "image-profile", "algorithm": "hnsw-1", "vectorizer": "viewfinder-vectorizer"}
        ],
    },
}
"""The README's index after the move (B.7's, with viewfinder's paths)."""

README_SKILL: dict[str, Any] = {
    "@odata.type": "#Microsoft.Skills.Custom.WebApiSkill",
    "name": "image-vector",
    "description": "Replaces #Microsoft.Skills.Vision.VectorizeSkill: viewfinder serve",
    "context": "/document/normalized_images/*",
    "uri": "https://viewfinder.example.com/skills/vectorize",
    "httpMethod": "POST",
    "httpHeaders": {"Ocp-Apim-Subscription-Key": "<key>"},
    "timeout": "PT30S",
    "batchSize": 16,
    "inputs": [{"name": "image", "source": "/document/normalized_images/*"}],
    "outputs": [{"name": "vector", "targetName": "image_vector"}],
}
"""The README's vectorize skill after the move (B.3's image skill as a Web API skill);
`timeout` and `batchSize` are `viewfinder serve`'s `--skill-timeout` and
`--skill-batch-size` defaults."""


def test_readme_json_is_what_microsofts_search_sdk_writes(endpoint: str) -> None:
    """The index and skill JSON the README shows are what `azure-search-documents`
    serialises for `WebApiVectorizer` and `WebApiSkill`, and their `uri`s are the routes
    `viewfinder serve` answers; the skill's record shape is answered by it."""
    from datetime import timedelta

    m = pytest.importorskip("azure.search.documents.indexes.models")
    headers = {"Ocp-Apim-Subscription-Key": "<key>"}
    vectorizer = m.WebApiVectorizer(
        vectorizer_name="viewfinder-vectorizer",
        web_api_parameters=m.WebApiVectorizerParameters(
            url="https://viewfinder.example.com" + VECTORIZER_PATH,
            http_method="POST",
            http_headers=headers,
            timeout=timedelta(seconds=30),
        ),
    )
    index = m.SearchIndex(
        name="images",
        fields=[
            m.SearchField(name="id", type="Edm.String", key=True),
            m.SearchField(
                name="image_vector",
                type="Collection(Edm.Single)",
                searchable=True,
                hidden=True,
                vector_search_dimensions=DIMENSIONS,
                vector_search_profile_name="image-profile",
            ),
        ],
        vector_search=m.VectorSearch(
            algorithms=[
                m.HnswAlgorithmConfiguration(
                    name="hnsw-1", parameters=m.HnswParameters(metric="cosine")
                )
            ],
            vectorizers=[vectorizer],
            profiles=[
                m.VectorSearchProfile(
                    name="image-profile",
                    algorithm_configuration_name="hnsw-1",
                    vectorizer_name="viewfinder-vectorizer",
                )
            ],
        ),
    )
    skill = m.WebApiSkill(
        name="image-vector",
        description=README_SKILL["description"],
        context="/document/normalized_images/*",
        uri="https://viewfinder.example.com" + VECTORIZE_SKILL_PATH,
        http_method="POST",
        http_headers=headers,
        timeout=timedelta(seconds=30),
        batch_size=16,
        inputs=[m.InputFieldMappingEntry(name="image", source="/document/normalized_images/*")],
        outputs=[m.OutputFieldMappingEntry(name="vector", target_name="image_vector")],
    )
    written = index.serialize() if hasattr(index, "serialize") else index.as_dict()
    for field in written["fields"]:  # the SDK writes every field attribute it knows
        for key in [k for k, v in field.items() if v is None]:
            del field[key]
    assert _sorted(written) == _sorted(README_INDEX)
    assert _sorted(skill.as_dict()) == _sorted(README_SKILL)
    record = {"recordId": "1", "data": {"image": {"data": base64.b64encode(IMAGE).decode()}}}
    items = _values(_post(endpoint, VECTORIZE_SKILL_PATH, json={"values": [record]}))
    assert len(items["1"]["data"]["vector"]) == DIMENSIONS


def _sorted(value: Any) -> Any:
    """`value` with every object's keys in one order (the SDK orders them its own way)."""
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def test_serve_with_embeddings_only_needs_no_model_endpoint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sim: Simulator
) -> None:
    """A vectorize-only migration: an embedding backend and no model endpoint starts the
    server (analysis by the local engine, said at startup); without either it still fails."""
    from endpoint_env import clear_endpoint_env

    clear_endpoint_env(monkeypatch)
    for name in ("BACKEND", "MODEL", "BASE_URL", "API_KEY"):
        monkeypatch.delenv(f"VIEWFINDER_EMBED_{name}", raising=False)
    monkeypatch.delenv("COHERE_API_KEY", raising=False)
    monkeypatch.setattr(server_module, "run", lambda settings, **_: seen.append(settings))
    monkeypatch.setenv("VIEWFINDER_CACHE_DIR", str(tmp_path))
    seen: list[ServerSettings] = []
    flags = ("--embed-backend", "cohere", "--embed-base-url", sim.endpoint)
    result = CliRunner().invoke(cli_app, ["serve", "--api-key", KEY, *flags])
    assert result.exit_code == 0, result.output
    (settings,) = seen
    assert settings.embedder is not None and settings.analyzer is not None
    assert not settings.analyzer.has_endpoint and "no model endpoint" in result.output
    settings.analyzer.close()
    refused = CliRunner().invoke(cli_app, ["serve", "--api-key", KEY])
    assert refused.exit_code == 2 and "No model endpoint is configured" in refused.output
