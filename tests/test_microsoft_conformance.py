"""Microsoft's own samples and tests of azure-ai-vision-imageanalysis 1.0.0, run unmodified
against viewfinder on both migration paths (issue 13).

- endpoint swap: `viewfinder serve` on loopback, the samples' `VISION_ENDPOINT` pointed at
  it; its model side is the simulator scripted with what `sample.jpg` shows
  (`microsoft_sdk.answer_for`), and it reports `model_version` as `2023-10-01`.
- import swap: a temp copy whose `azure.ai.vision.imageanalysis` imports are rewritten to
  `viewfinder.azure` (`microsoft_sdk.swap_imports`), the look-alike's model side the same
  simulator (`OPENAI_BASE_URL`).

Microsoft's files are fetched at test time (`microsoft_sdk.sdist`, cached) and only their
image URLs are edited (to a loopback image server, the bad one to its 404). Every sample
and every Microsoft test is one case here. The subprocesses of a run start together in a
thread pool when the first case asks, so the whole job takes about as long as its slowest
process; each case then waits for its own. A case that cannot pass yet would be marked
`xfail(strict=True)` with the missing piece named in `XFAIL` (none is today).

The Entra ID cases run through a local tenant (`viewfinder.testing.entra`): an
`azure.identity` stand-in on the subprocesses' path mints its tokens, the server (over
TLS: azure-core sends tokens over HTTPS only) and the import swap (`VIEWFINDER_ENTRA_*`)
check them against its keys, served on loopback, and allow its one principal.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import pytest
from local_server import Serving
from microsoft_sdk import answer_for, redirect_urls, sdist, swap_imports, unpack

from viewfinder.compat.entra import EntraSettings
from viewfinder.compat.server import ServerSettings, create_app
from viewfinder.compat.service import AZURE_MODEL_VERSION
from viewfinder.testing.entra import (
    ENV_TENANT_FILE,
    JWKSServer,
    LocalTenant,
    write_identity_shim,
    write_tls_certificate,
)
from viewfinder.testing.simulator import Simulator

KEY = "conformance-key-0123456789"
STANDIN = Path(__file__).parent / "devtools_standin"
SAMPLES = [
    "sample_analyze_all_image_file.py",
    "sample_caption_image_file.py",
    "sample_caption_image_file_entra_id_auth.py",
    "sample_caption_image_url.py",
    "sample_dense_captions_image_file.py",
    "sample_objects_image_file.py",
    "sample_ocr_image_file.py",
    "sample_ocr_image_url.py",
    "sample_people_image_file.py",
    "sample_smart_crops_image_file.py",
    "sample_tags_image_file.py",
    "async_samples/sample_caption_image_file_async.py",
    "async_samples/sample_ocr_image_url_async.py",
    "async_samples/sample_ocr_image_url_entra_id_auth_async.py",
]
MS_TESTS = [
    "test_image_analysis_client.py::TestImageAnalysisClient::" + name
    for name in (
        "test_analyze_sync_all_features_from_url",
        "test_analyze_sync_single_feature_from_file",
        "test_analyze_sync_single_feature_from_url_entra_id_auth",
        "test_analyze_sync_image_url_does_not_exist",
    )
] + [
    "test_image_analysis_async_client.py::TestImageAnalysisAsyncClient::" + name
    for name in (
        "test_analyze_async_all_features_from_file",
        "test_analyze_async_single_feature_from_url",
        "test_analyze_async_single_feature_from_file_entra_id_auth",
        "test_analyze_async_authentication_failure",
    )
]
PATHS = ("endpoint", "import")

XFAIL: dict[tuple[str, str], str] = {}
"""(path, case) -> the missing piece that makes Microsoft's file fail there (none left:
kept so that a case that cannot pass yet is marked, not deleted)."""


@dataclass(frozen=True)
class Outcome:
    passed: bool
    details: str


def _case_id(case: str) -> str:
    return case.rsplit("::", 1)[-1].removesuffix(".py").rsplit("/", 1)[-1]


def _params(cases: list[str]) -> list[Any]:
    return [
        pytest.param(
            path,
            case,
            id=f"{path}-{_case_id(case)}",
            marks=[pytest.mark.xfail(strict=True, reason=XFAIL[path, case])]
            if (path, case) in XFAIL
            else [],
        )
        for path in PATHS
        for case in cases
    ]


# --- loopback servers -----------------------------------------------------------------


class _Images(ThreadingHTTPServer):
    daemon_threads = True
    image = b""


class _ImageHandler(BaseHTTPRequestHandler):
    """`/sample.jpg`: Microsoft's picture; anything else: 404."""

    server: _Images

    def do_GET(self) -> None:
        if self.path != "/sample.jpg":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(self.server.image)))
        self.end_headers()
        self.wfile.write(self.server.image)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture(scope="module")
def microsoft(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Microsoft's sdist, unpacked; fails (never skips) when the index is unreachable."""
    try:
        archive = sdist()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    return unpack(archive, tmp_path_factory.mktemp("microsoft"))


@pytest.fixture(scope="module")
def images(microsoft: Path) -> Iterator[str]:
    """The loopback image server: `<base>/sample.jpg`, and a 404 for anything else."""
    server = _Images(("127.0.0.1", 0), _ImageHandler)
    server.image = (microsoft / "samples" / "sample.jpg").read_bytes()
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    """The model side of both paths: sample.jpg's content for whatever is asked."""
    with Simulator(default=answer_for) as sim:
        yield sim


@pytest.fixture(scope="module")
def tenant() -> LocalTenant:
    """A local Microsoft Entra tenant: its key signs the tokens of the Entra ID cases."""
    return LocalTenant()


@pytest.fixture(scope="module")
def jwks(tenant: LocalTenant) -> Iterator[JWKSServer]:
    """The tenant's signing keys on loopback, where the server fetches them."""
    server = JWKSServer(tenant.jwks()).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: azure-core sends tokens over HTTPS only."""
    return write_tls_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def endpoint(
    simulator: Simulator, tenant: LocalTenant, jwks: JWKSServer, tls: tuple[Path, Path]
) -> Iterator[str]:
    """`viewfinder serve` over TLS with one key and the local tenant's tokens (its one
    principal allowed), loopback images allowed, Azure's model version."""
    settings = ServerSettings(
        api_keys=(KEY,),
        entra=EntraSettings(
            tenant=tenant.tenant, principals=(tenant.principal,), jwks_url=jwks.url
        ),
        allow_hosts=("127.0.0.1",),
        model_version=AZURE_MODEL_VERSION,
        analyzer_options={
            "base_url": simulator.base_url,
            "api_key": "test-key-placeholder",
            "model": "gpt-4.1-mini",
            "cache": False,
        },
    )
    serving = Serving(create_app(settings), str(tls[0]), str(tls[1]))
    yield serving.start()
    serving.stop()


# --- the runs ---------------------------------------------------------------------------


def _copy(into: Path, images: str, *, swapped: bool) -> Path:
    """A copy of the sdist's samples and tests with only the allowed edits."""
    root = unpack(sdist(), into)
    redirect_urls(root, f"{images}/sample.jpg", f"{images}/for/sure.jpg")
    if swapped:
        swap_imports(root)
    return root


def _run_sample(root: Path, sample: str, env: dict[str, str]) -> Outcome:
    script = root / "samples" / sample
    done = subprocess.run(
        [sys.executable, script.name],
        cwd=script.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    passed = done.returncode == 0 and "Missing environment variable" not in done.stdout
    return Outcome(passed, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def _run_tests(root: Path, env: dict[str, str]) -> dict[str, Outcome]:
    report = root / "junit.xml"
    command = [
        sys.executable, "-m", "pytest", "tests", "-p", "no:cacheprovider",
        "-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function",
        "--rootdir", str(root), "-c", os.devnull, f"--junitxml={report}", "-q",
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    outcomes: dict[str, Outcome] = {}
    if report.is_file():
        for case in ET.parse(report).getroot().iter("testcase"):
            *_, module, cls = (case.get("classname") or "..").split(".")
            name = f"{module}.py::{cls}"
            problems = [child for child in case if child.tag in ("failure", "error", "skipped")]
            text = "\n".join((p.get("message") or "") + "\n" + (p.text or "") for p in problems)
            outcomes[f"{name}::{case.get('name')}"] = Outcome(not problems, text[-4000:])
    outcomes["<run>"] = Outcome(False, f"{done.stdout[-4000:]}\n{done.stderr[-2000:]}")
    return outcomes


@pytest.fixture(scope="module")
def runs(
    microsoft: Path,
    images: str,
    endpoint: str,
    simulator: Simulator,
    tenant: LocalTenant,
    jwks: JWKSServer,
    tls: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[tuple[str, str], Future[Any]]]:
    """Every sample and both test runs of both paths, started together (`microsoft`: the
    sdist is downloaded, or the fixture fails, before any copy is made)."""
    identity = write_identity_shim(tmp_path_factory.mktemp("identity"))
    tenant_file = tenant.save(tmp_path_factory.mktemp("tenant") / "tenant.json")
    base = {
        **os.environ,
        # Our devtools_testutils, and an azure.identity whose DefaultAzureCredential
        # mints the local tenant's tokens (azure-identity is not installed here).
        "PYTHONPATH": os.pathsep.join((str(STANDIN), str(identity))),
        ENV_TENANT_FILE: str(tenant_file),
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    envs = {
        "endpoint": {
            **base,
            "VISION_ENDPOINT": endpoint,
            "VISION_KEY": KEY,
            "REQUESTS_CA_BUNDLE": str(tls[0]),  # the sync clients trust our certificate
            "SSL_CERT_FILE": str(tls[0]),  # and the async (aiohttp) ones
        },
        "import": {
            **base,
            "VISION_ENDPOINT": "https://fake-resource-name.cognitiveservices.azure.com",
            "VISION_KEY": KEY,
            "OPENAI_BASE_URL": simulator.base_url,
            "OPENAI_API_KEY": "test-key-placeholder",
            "VIEWFINDER_MODEL": "gpt-4.1-mini",
            "VIEWFINDER_ALLOW_HOSTS": "127.0.0.1",
            "VIEWFINDER_CACHE_DIR": str(tmp_path_factory.mktemp("cache")),
            "VIEWFINDER_API_KEYS": KEY,  # a wrong key is refused, as Microsoft's test expects
            "VIEWFINDER_REPORT_MODEL_VERSION": AZURE_MODEL_VERSION,
            # Tokens checked against the local tenant's keys, as the server checks them.
            "VIEWFINDER_ENTRA_TENANT": tenant.tenant,
            "VIEWFINDER_ENTRA_ALLOW": tenant.principal,
            "VIEWFINDER_ENTRA_JWKS_URL": jwks.url,
        },
    }
    futures: dict[tuple[str, str], Future[Any]] = {}
    with ThreadPoolExecutor(max_workers=4) as pool:
        for path in PATHS:
            root = _copy(tmp_path_factory.mktemp(path), images, swapped=path == "import")
            futures[path, "tests"] = pool.submit(_run_tests, root, envs[path])
            for sample in SAMPLES:
                futures[path, sample] = pool.submit(_run_sample, root, sample, envs[path])
        yield futures


def test_an_unreachable_index_fails_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the sdist the job cannot run: it must fail loudly, never skip silently."""
    monkeypatch.setenv("VIEWFINDER_TEST_CACHE", str(tmp_path))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no find-links of the developer's
    with pytest.raises(RuntimeError, match="could not download Microsoft's"):
        sdist()


@pytest.mark.parametrize(("path", "sample"), _params(SAMPLES))
def test_microsoft_sample(
    runs: dict[tuple[str, str], Future[Outcome]], path: str, sample: str
) -> None:
    outcome = runs[path, sample].result()
    assert outcome.passed, outcome.details


@pytest.mark.parametrize(("path", "test"), _params(MS_TESTS))
def test_microsoft_test(
    runs: dict[tuple[str, str], Future[dict[str, Outcome]]], path: str, test: str
) -> None:
    outcomes = runs[path, "tests"].result()
    assert test in outcomes, f"not collected:\n{outcomes['<run>'].details}"
    assert outcomes[test].passed, outcomes[test].details
