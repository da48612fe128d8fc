"""`viewfinder serve` with Microsoft Entra ID: bearer tokens over TLS, checked against a
tenant's signing keys, issuer, audience, lifetime and an allow-list of principals.

The tenant is `viewfinder.testing.entra.LocalTenant` (an RSA key made here), its JWKS is
served on loopback (plain HTTP is fine for keys in a test), and the server serves HTTPS
with a certificate made here. Requests past authentication ask for an unknown feature,
so they get the service's 400 without reaching a model; the SDK tests reach the
simulator (127.0.0.1, no cassette: its scripted answer is the whole model side).
"""

from __future__ import annotations

import gc
import logging
import os
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx2
import pytest
from azure.ai.vision.imageanalysis import ImageAnalysisClient
from azure.ai.vision.imageanalysis.aio import ImageAnalysisClient as AsyncImageAnalysisClient
from azure.ai.vision.imageanalysis.models import VisualFeatures
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
from local_server import Serving

from viewfinder import ConfigurationError, ImageAnalyzer, RetryPolicy
from viewfinder.compat.entra import EntraSettings, TokenRefused, TokenValidator
from viewfinder.compat.server import ServerSettings, create_app
from viewfinder.compat.service import unauthorized
from viewfinder.testing import compact_answer
from viewfinder.testing.entra import (
    ENV_TENANT_FILE,
    JWKSServer,
    LocalTenant,
    new_rsa_key,
    serve_jwks,
    write_identity_shim,
    write_tls_certificate,
)
from viewfinder.testing.simulator import Simulator

KEY = "entra-test-key-0c9d1f"
CAT = (Path(__file__).parent / "assets" / "chelsea.png").read_bytes()
PAST_AUTH = "api-version=2023-10-01&features=colour"  # 400 once authenticated, no model
ANSWER = compact_answer({"caption": {"text": "a tabby cat on a wooden floor", "confidence": 0.9}})


@pytest.fixture(scope="module")
def tenant() -> LocalTenant:
    return LocalTenant()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost, and its key."""
    return write_tls_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def jwks(tenant: LocalTenant) -> Iterator[JWKSServer]:
    with serve_jwks(tenant) as server:
        yield server


def _offline_analyzer() -> ImageAnalyzer:
    """Its model endpoint is a closed port: these tests stop before the model."""
    return ImageAnalyzer(
        base_url="http://127.0.0.1:9/v1", api_key="unused", model="gpt-4.1-mini", cache=False
    )


@pytest.fixture
def serve_entra(
    tenant: LocalTenant, jwks: JWKSServer, tls: tuple[Path, Path]
) -> Iterator[Callable[..., str]]:
    """Start an HTTPS server accepting KEY and the tenant's tokens for its principal;
    keyword arguments override `EntraSettings` (or, `analyzer=` / `api_keys=`, the server)."""
    with ExitStack() as stack:

        def start(
            analyzer: ImageAnalyzer | None = None, api_keys: tuple[str, ...] = (KEY,), **entra: Any
        ) -> str:
            options: dict[str, Any] = {
                "tenant": tenant.tenant,
                "principals": (tenant.principal,),
                "jwks_url": jwks.url,
                "jwks_cooldown": 0.0,
            }
            options.update(entra)
            settings = ServerSettings(
                api_keys=api_keys,
                entra=EntraSettings(**options),
                analyzer=analyzer or stack.enter_context(_offline_analyzer()),
            )
            serving = Serving(create_app(settings), str(tls[0]), str(tls[1]))
            stack.callback(serving.stop)
            return serving.start()

        yield start


def _post(endpoint: str, tls: tuple[Path, Path], headers: dict[str, str]) -> httpx2.Response:
    verify = ssl.create_default_context(cafile=str(tls[0]))
    with httpx2.Client(trust_env=False, timeout=10, verify=verify) as client:
        return client.post(
            f"{endpoint}/computervision/imageanalysis:analyze?{PAST_AUTH}",
            headers={"Content-Type": "application/octet-stream", **headers},
            content=CAT,
        )


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- tokens ---------------------------------------------------------------------------


def test_a_token_of_an_allowed_principal_passes(
    serve_entra: Callable[..., str],
    tenant: LocalTenant,
    tls: tuple[Path, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    response = _post(serve_entra(), tls, _bearer(tenant.mint()))
    assert response.status_code == 400  # past authentication: the unknown feature
    assert response.json()["error"]["innererror"]["code"] == "NotSupportedVisualFeature"


def test_an_allowed_application_id_passes(
    serve_entra: Callable[..., str], tenant: LocalTenant, tls: tuple[Path, Path]
) -> None:
    endpoint = serve_entra(principals=("the-app",))
    assert _post(endpoint, tls, _bearer(tenant.mint(appid="the-app"))).status_code == 400
    assert _post(endpoint, tls, _bearer(tenant.mint(appid=None, azp="the-app"))).status_code == 400


def _refused(tenant: LocalTenant) -> dict[str, tuple[str, str]]:
    """Refused tokens by case: (token, what the log says)."""
    other = LocalTenant()
    return {
        "another audience": (tenant.mint(aud="https://management.azure.com"), "Audience"),
        "another tenant's issuer": (tenant.mint(iss=other.issuer), "InvalidIssuerError"),
        "another principal": (
            tenant.mint(oid=other.principal, appid=other.app_id),
            "principal not allowed",
        ),
        "expired": (tenant.mint(lifetime=-3600), "ExpiredSignatureError"),
        "not yet valid": (tenant.mint(not_before=3600), "ImmatureSignatureError"),
        "badly signed": (tenant.mint(key=new_rsa_key()), "InvalidSignatureError"),
        "unknown kid": (tenant.mint(kid="rotated-away", key=new_rsa_key()), "signing key"),
        "alg none": (tenant.mint(algorithm="none"), "InvalidAlgorithmError"),
        "no exp": (tenant.mint(exp=None), "MissingRequiredClaimError"),
        "HS256 with a secret": (_hs256_forgery(tenant), "InvalidAlgorithmError"),
        "not a JWT": ("not-a-token", "DecodeError"),
    }


def _hs256_forgery(tenant: LocalTenant) -> str:
    """A token HMAC-signed with the tenant's public key (algorithm confusion)."""
    import jwt

    return jwt.encode(
        {"aud": "https://cognitiveservices.azure.com", "iss": tenant.issuer, "oid": "x"},
        "a-guessable-secret-of-32-bytes-or-more!",
        algorithm="HS256",
        headers={"kid": tenant.kid},
    )


CASES = list(_refused(LocalTenant()))


@pytest.mark.parametrize("case", CASES)
def test_a_refused_token_gets_the_services_401_and_the_log_says_why(
    serve_entra: Callable[..., str],
    tenant: LocalTenant,
    tls: tuple[Path, Path],
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    token, why = _refused(tenant)[case]
    endpoint = serve_entra()
    with caplog.at_level(logging.WARNING, logger="viewfinder.compat.server"):
        response = _post(endpoint, tls, _bearer(token))
    assert response.status_code == 401
    assert response.json() == unauthorized().body()  # nothing about why
    reasons = [r.getMessage() for r in caplog.records if "token refused" in r.getMessage()]
    assert len(reasons) == 1 and why in reasons[0]
    assert token not in reasons[0]
    assert all(part not in reasons[0] for part in token.split(".") if len(part) > 8)


def test_the_keys_are_fetched_once_and_an_unknown_kid_fetches_them_again(
    serve_entra: Callable[..., str], tenant: LocalTenant, jwks: JWKSServer, tls: tuple[Path, Path]
) -> None:
    endpoint = serve_entra()
    for _ in range(3):
        assert _post(endpoint, tls, _bearer(tenant.mint())).status_code == 400
    assert jwks.fetches == 1  # cached
    rotated = LocalTenant(tenant=tenant.tenant, principal=tenant.principal, kid="next-key")
    jwks.jwks = {"keys": tenant.jwks()["keys"] + rotated.jwks()["keys"]}
    assert _post(endpoint, tls, _bearer(rotated.mint())).status_code == 400  # refetched
    assert jwks.fetches == 2
    forged = tenant.mint(kid="never-published", key=new_rsa_key())
    assert _post(endpoint, tls, _bearer(forged)).status_code == 401  # refetched, still unknown
    assert jwks.fetches == 3


def test_the_refetch_cooldown_bounds_fetches_by_forged_kids(
    serve_entra: Callable[..., str], tenant: LocalTenant, jwks: JWKSServer, tls: tuple[Path, Path]
) -> None:
    endpoint = serve_entra(jwks_cooldown=3600.0)
    assert _post(endpoint, tls, _bearer(tenant.mint())).status_code == 400
    for n in range(3):
        forged = tenant.mint(kid=f"forged-{n}", key=new_rsa_key())
        assert _post(endpoint, tls, _bearer(forged)).status_code == 401
    assert jwks.fetches == 1


def test_unreachable_keys_are_a_503_not_a_401(
    serve_entra: Callable[..., str], tenant: LocalTenant, tls: tuple[Path, Path]
) -> None:
    endpoint = serve_entra(jwks_url="http://127.0.0.1:9/keys", jwks_timeout=2.0)
    response = _post(endpoint, tls, _bearer(tenant.mint()))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"


def test_keys_keep_working_beside_tokens(
    serve_entra: Callable[..., str], tls: tuple[Path, Path]
) -> None:
    endpoint = serve_entra()
    assert _post(endpoint, tls, {"Ocp-Apim-Subscription-Key": KEY}).status_code == 400
    assert _post(endpoint, tls, _bearer(KEY)).status_code == 400
    assert _post(endpoint, tls, {"Ocp-Apim-Subscription-Key": "wrong"}).status_code == 401
    assert _post(endpoint, tls, {}).status_code == 401


def test_a_token_in_the_key_header_is_not_a_token(
    serve_entra: Callable[..., str], tenant: LocalTenant, tls: tuple[Path, Path]
) -> None:
    headers = {"Ocp-Apim-Subscription-Key": tenant.mint()}
    assert _post(serve_entra(), tls, headers).status_code == 401


def test_entra_alone_needs_no_key(
    serve_entra: Callable[..., str], tenant: LocalTenant, tls: tuple[Path, Path]
) -> None:
    endpoint = serve_entra(api_keys=())
    assert _post(endpoint, tls, _bearer(tenant.mint())).status_code == 400
    assert _post(endpoint, tls, {"Ocp-Apim-Subscription-Key": ""}).status_code == 401


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"principals": ()}, "principals"),
        ({"principals": (" ",)}, "principals"),
        ({"tenant": ""}, "tenant id"),
        ({"audience": " "}, "audience"),
        ({"jwks_url": "file:///etc/passwd"}, "http(s)"),
        ({"jwks_timeout": 0.0}, "jwks_timeout"),
        ({"leeway": float("nan")}, "leeway"),
    ],
)
def test_settings_that_would_accept_too_much_are_refused(
    settings: dict[str, Any], message: str
) -> None:
    options: dict[str, Any] = {"tenant": "t", "principals": ("p",), **settings}
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ServerSettings(entra=EntraSettings(**options)).validate()


def test_entra_and_no_auth_contradict() -> None:
    entra = EntraSettings(tenant="t", principals=("p",))
    with pytest.raises(ConfigurationError, match="not both"):
        ServerSettings(entra=entra, no_auth=True).validate()


def test_the_defaults_are_the_tenants_own() -> None:
    entra = EntraSettings(tenant="t1", principals=("p",))
    assert entra.audience == "https://cognitiveservices.azure.com"
    assert entra.keys_url == "https://login.microsoftonline.com/t1/discovery/v2.0/keys"
    assert entra.accepted_issuers == (
        "https://sts.windows.net/t1/",
        "https://login.microsoftonline.com/t1/v2.0",
    )


def test_a_v2_token_passes(tenant: LocalTenant, jwks: JWKSServer) -> None:
    validator = TokenValidator(
        EntraSettings(tenant=tenant.tenant, principals=(tenant.principal,), jwks_url=jwks.url)
    )
    v2 = tenant.mint(iss=f"https://login.microsoftonline.com/{tenant.tenant}/v2.0", ver="2.0")
    assert validator.principal(v2) == tenant.principal
    with pytest.raises(TokenRefused, match="principal not allowed"):
        validator.principal(tenant.mint(oid="someone-else", appid="another-app"))


# --- Microsoft's SDK over TLS ---------------------------------------------------------


@pytest.fixture
def model_analyzer(sim: Simulator) -> Iterator[ImageAnalyzer]:
    sim.script(ANSWER)
    analyzer = ImageAnalyzer(
        base_url=sim.base_url,
        api_key="test-key-placeholder",
        model="gpt-4.1-mini",
        cache=False,
        retry=RetryPolicy(max_attempts=1),
    )
    yield analyzer
    analyzer.close()


def test_the_sdk_calls_over_tls_with_a_bearer_token(
    serve_entra: Callable[..., str],
    tenant: LocalTenant,
    tls: tuple[Path, Path],
    model_analyzer: ImageAnalyzer,
) -> None:
    endpoint = serve_entra(analyzer=model_analyzer)
    credential = tenant.credential()
    with ImageAnalysisClient(endpoint, credential, connection_verify=str(tls[0])) as client:
        result = client.analyze(image_data=CAT, visual_features=[VisualFeatures.CAPTION])
    assert result.caption is not None
    assert result.caption.text == "a tabby cat on a wooden floor"
    assert credential.calls == 1


async def test_the_async_sdk_calls_over_tls_with_a_bearer_token(
    serve_entra: Callable[..., str],
    tenant: LocalTenant,
    tls: tuple[Path, Path],
    model_analyzer: ImageAnalyzer,
) -> None:
    endpoint = serve_entra(analyzer=model_analyzer)
    credential = tenant.async_credential()
    async with AsyncImageAnalysisClient(
        endpoint, credential, connection_verify=str(tls[0])
    ) as client:
        result = await client.analyze(image_data=CAT, visual_features=[VisualFeatures.CAPTION])
    assert result.caption is not None
    assert result.caption.text == "a tabby cat on a wooden floor"


def test_the_sdk_gets_the_authentication_error_for_another_principal(
    serve_entra: Callable[..., str], tenant: LocalTenant, tls: tuple[Path, Path]
) -> None:
    endpoint = serve_entra(principals=("somebody-else",))
    with (
        ImageAnalysisClient(endpoint, tenant.credential(), connection_verify=str(tls[0])) as c,
        pytest.raises(ClientAuthenticationError) as caught,
    ):
        c.analyze(image_data=CAT, visual_features=[VisualFeatures.CAPTION])
    assert caught.value.status_code == 401
    assert caught.value.error is not None and caught.value.error.code == "401"
    # The error holds the response, whose TLS connection the server would wait for.
    del caught
    gc.collect()


def test_the_sdk_refuses_to_send_a_token_over_plain_http(tenant: LocalTenant) -> None:
    """Why Entra needs `--ssl-certfile`: azure-core sends no bearer token to http://."""
    with (
        ImageAnalysisClient("http://localhost:9", tenant.credential()) as client,
        pytest.raises(ServiceRequestError, match="non-TLS"),
    ):
        client.analyze(image_data=CAT, visual_features=[VisualFeatures.CAPTION])


def test_a_key_still_works_over_tls(
    serve_entra: Callable[..., str], tls: tuple[Path, Path], model_analyzer: ImageAnalyzer
) -> None:
    endpoint = serve_entra(analyzer=model_analyzer)
    credential = AzureKeyCredential(KEY)
    with ImageAnalysisClient(endpoint, credential, connection_verify=str(tls[0])) as client:
        result = client.analyze(image_data=CAT, visual_features=[VisualFeatures.CAPTION])
    assert result.caption is not None


# --- what a harness of Microsoft's samples sets ---------------------------------------

SAMPLE = """
from azure.ai.vision.imageanalysis import ImageAnalysisClient
from azure.ai.vision.imageanalysis.models import VisualFeatures
from azure.identity import DefaultAzureCredential
import os, sys
client = ImageAnalysisClient(
    endpoint=os.environ["VISION_ENDPOINT"],
    credential=DefaultAzureCredential(exclude_interactive_browser_credential=False),
)
result = client.analyze(image_data=open(sys.argv[1], "rb").read(),
                        visual_features=[VisualFeatures.CAPTION])
print(result.caption.text)
"""


def test_an_unmodified_entra_sample_runs_through_the_identity_shim(
    serve_entra: Callable[..., str],
    tenant: LocalTenant,
    tls: tuple[Path, Path],
    model_analyzer: ImageAnalyzer,
    tmp_path: Path,
) -> None:
    """The shape of Microsoft's Entra sample, in a subprocess: `azure.identity` is the
    shim, the tenant comes from `ENV_TENANT_FILE`, the certificate from the CA bundle
    variables (requests reads REQUESTS_CA_BUNDLE, aiohttp's ssl SSL_CERT_FILE)."""
    endpoint = serve_entra(analyzer=model_analyzer)
    shim = write_identity_shim(tmp_path / "shim")
    (tmp_path / "cat.png").write_bytes(CAT)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(shim), os.environ.get("PYTHONPATH", "")]),
        "VISION_ENDPOINT": endpoint,
        ENV_TENANT_FILE: str(tenant.save(tmp_path / "tenant.json")),
        "REQUESTS_CA_BUNDLE": str(tls[0]),
        "SSL_CERT_FILE": str(tls[0]),
    }
    run = subprocess.run(
        [sys.executable, "-c", SAMPLE, str(tmp_path / "cat.png")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "a tabby cat on a wooden floor"


# --- viewfinder serve -----------------------------------------------------------------


def _invoke_serve(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, args: list[str]
) -> tuple[Any, dict[str, Any]]:
    from typer.testing import CliRunner

    import viewfinder.compat.server as server_module
    from viewfinder.cli import app as cli_app

    seen: dict[str, Any] = {}
    monkeypatch.setattr(server_module, "run", lambda s, **o: seen.update(o, settings=s))
    monkeypatch.setenv("VIEWFINDER_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("VIEWFINDER_API_KEYS", raising=False)
    result = CliRunner().invoke(cli_app, ["serve", "--base-url", "http://127.0.0.1:9/v1", *args])
    if "settings" in seen:
        seen["settings"].analyzer.close()
    return result, seen


def test_serve_takes_entra_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tls: tuple[Path, Path]
) -> None:
    monkeypatch.setenv("VIEWFINDER_ENTRA_TENANT", "tenant-1")
    monkeypatch.setenv("VIEWFINDER_ENTRA_ALLOW", "oid-1, app-2")
    monkeypatch.setenv("VIEWFINDER_ENTRA_JWKS_URL", "http://127.0.0.1:9/keys")
    result, seen = _invoke_serve(
        monkeypatch,
        tmp_path,
        ["--ssl-certfile", str(tls[0]), "--ssl-keyfile", str(tls[1])],
    )
    assert result.exit_code == 0, result.output
    entra = seen["settings"].entra
    assert (entra.tenant, entra.principals) == ("tenant-1", ("oid-1", "app-2"))
    assert entra.audience == "https://cognitiveservices.azure.com"
    assert entra.keys_url == "http://127.0.0.1:9/keys"
    assert seen["settings"].api_keys == ()
    assert "Entra ID tenant tenant-1 (2 principals)" in result.output


def test_serve_flags_override_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tls: tuple[Path, Path]
) -> None:
    monkeypatch.setenv("VIEWFINDER_ENTRA_ALLOW", "from-env")
    args = ["--entra-tenant", "t2", "--entra-allow", "oid-9", "--entra-audience", "api://x"]
    args += ["--entra-issuer", "https://issuer.example/", "--api-key-file", str(tls[0])]
    result, seen = _invoke_serve(
        monkeypatch, tmp_path, [*args, "--ssl-certfile", str(tls[0]), "--ssl-keyfile", str(tls[1])]
    )
    assert result.exit_code == 0, result.output
    entra = seen["settings"].entra
    assert (entra.principals, entra.audience) == (("oid-9",), "api://x")
    assert entra.accepted_issuers == ("https://issuer.example/",)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--entra-tenant", "t", "--entra-allow", "p"], "needs TLS"),
        (["--entra-tenant", "t", "--ssl-certfile", "CERT"], "principals"),
    ],
)
def test_serve_refuses_entra_without_tls_or_principals(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    tls: tuple[Path, Path],
    args: list[str],
    message: str,
) -> None:
    monkeypatch.delenv("VIEWFINDER_ENTRA_ALLOW", raising=False)
    args = [str(tls[0]) if a == "CERT" else a for a in args]
    result, seen = _invoke_serve(monkeypatch, tmp_path, args)
    assert result.exit_code == 2 and message in result.output
    assert not seen
