"""A stand-in Microsoft Entra ID tenant for tests and samples: no network, no Azure.

`LocalTenant` holds an RSA key and mints access tokens shaped like Entra's v1 tokens
for Cognitive Services (`iss` `https://sts.windows.net/<tenant>/`, `aud`
`https://cognitiveservices.azure.com`, `tid`, `oid`, `appid`); `serve_jwks` publishes its
public key as a JSON Web Key Set on loopback, for `viewfinder serve --entra-jwks-url`.
`LocalTokenCredential` / `AsyncLocalTokenCredential` are azure-core token credentials
that mint with it, so Microsoft's SDK sends real bearer tokens.

Code that builds its own `DefaultAzureCredential` (Microsoft's Entra samples, and
`devtools_testutils`' `get_credential`) gets one through `write_identity_shim`: it
writes an `azure.identity` (and `azure.identity.aio`) whose `DefaultAzureCredential` is
the local credential of the tenant `save`d to the file named by `ENV_TENANT_FILE`.
Put the shim's directory first on `sys.path` (or `PYTHONPATH` for a subprocess); never
where the real azure-identity is installed.

`write_tls_certificate` makes a self-signed certificate for `localhost` and 127.0.0.1:
azure-core sends bearer tokens over HTTPS only.

Needs the `server` extra (PyJWT, cryptography).
"""

from __future__ import annotations

import datetime
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from pathlib import Path
from typing import Any, Final

import jwt
from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "AUDIENCE",
    "ENV_TENANT_FILE",
    "AsyncLocalTokenCredential",
    "DefaultAzureCredential",
    "JWKSServer",
    "LocalTenant",
    "LocalTokenCredential",
    "new_rsa_key",
    "serve_jwks",
    "write_identity_shim",
    "write_tls_certificate",
]

AUDIENCE: Final = "https://cognitiveservices.azure.com"
"""The audience of the SDK's scope `https://cognitiveservices.azure.com/.default`."""

ENV_TENANT_FILE: Final = "VIEWFINDER_TEST_ENTRA_TENANT_FILE"
"""Names the file `LocalTenant.save` wrote, for `DefaultAzureCredential`."""


def new_rsa_key() -> rsa.RSAPrivateKey:
    """A fresh 2048-bit RSA key (Entra signs with RS256 and 2048-bit keys)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class LocalTenant:
    """An Entra tenant of one signing key; every token it mints is RS256-signed.

    Attributes:
        tenant: The tenant (directory) id.
        principal: The `oid` of the tokens `credential()` mints.
        app_id: The `appid` of those tokens.
        kid: The key id in the JWKS and in every token's header.
        key: The signing key.
    """

    tenant: str = field(default_factory=lambda: str(uuid.uuid4()))
    principal: str = field(default_factory=lambda: str(uuid.uuid4()))
    app_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    kid: str = "viewfinder-test-key"
    key: rsa.RSAPrivateKey = field(default_factory=new_rsa_key, repr=False)

    @property
    def issuer(self) -> str:
        """The v1 issuer Entra writes in Cognitive Services tokens."""
        return f"https://sts.windows.net/{self.tenant}/"

    def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set publishing the public key under `kid`."""
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def mint(
        self,
        *,
        lifetime: float = 3600.0,
        not_before: float = 0.0,
        key: rsa.RSAPrivateKey | None = None,
        kid: str | None = None,
        algorithm: str = "RS256",
        **claims: Any,
    ) -> str:
        """A signed access token; `claims` override or (given `None`) drop defaults.

        Args:
            lifetime: Seconds from now to `exp` (negative: already expired).
            not_before: Seconds from now to `nbf` (positive: not yet valid).
            key: Sign with this key instead (a forgery, as far as the JWKS goes).
            kid: Header `kid` instead of `self.kid`.
            algorithm: The JWS algorithm (`"none"` gives an unsigned token).
            claims: Claims to set (`aud=`, `iss=`, `oid=`, `appid=`...); `None` drops one.
        """
        now = int(time.time())
        payload: dict[str, Any] = {
            "aud": AUDIENCE,
            "iss": self.issuer,
            "iat": now,
            "nbf": now + int(not_before),
            "exp": now + int(lifetime),
            "tid": self.tenant,
            "oid": self.principal,
            "appid": self.app_id,
            "sub": self.principal,
            "ver": "1.0",
        }
        payload.update(claims)
        payload = {name: value for name, value in payload.items() if value is not None}
        signer: rsa.RSAPrivateKey | str = "" if algorithm == "none" else (key or self.key)
        headers = {"kid": self.kid if kid is None else kid}
        return jwt.encode(payload, signer, algorithm=algorithm, headers=headers)

    def credential(self) -> LocalTokenCredential:
        """A token credential minting this tenant's tokens for `principal`."""
        return LocalTokenCredential(self)

    def async_credential(self) -> AsyncLocalTokenCredential:
        """The async twin of `credential()`."""
        return AsyncLocalTokenCredential(self)

    def save(self, path: Path) -> Path:
        """Write the tenant (its private key too: tests only) for `load`."""
        pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        data = {
            "tenant": self.tenant,
            "principal": self.principal,
            "app_id": self.app_id,
            "kid": self.kid,
            "key": pem.decode("ascii"),
        }
        path.write_text(json.dumps(data), encoding="utf-8")
        path.chmod(0o600)
        return path

    @classmethod
    def load(cls, path: Path) -> LocalTenant:
        """The tenant `save` wrote to `path`."""
        data = json.loads(path.read_text(encoding="utf-8"))
        key = serialization.load_pem_private_key(data.pop("key").encode("ascii"), None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise TypeError(f"{path} does not hold an RSA key")
        return cls(key=key, **data)


def _scope_audience(scopes: tuple[str, ...]) -> str:
    """The audience a scope asks for: `https://x/.default` -> `https://x`."""
    scope = scopes[0] if scopes else AUDIENCE
    return scope.removesuffix("/.default")


class LocalTokenCredential:
    """An azure-core `TokenCredential` (and `SupportsTokenInfo`) minting local tokens."""

    def __init__(self, tenant: LocalTenant, lifetime: float = 3600.0) -> None:
        self.tenant = tenant
        self.lifetime = lifetime
        self.calls = 0
        """How many tokens were asked for (the SDK caches a token until near expiry)."""

    def _mint(self, scopes: tuple[str, ...]) -> tuple[str, int]:
        self.calls += 1
        token = self.tenant.mint(lifetime=self.lifetime, aud=_scope_audience(scopes))
        return token, int(time.time() + self.lifetime)

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        """A token for `scopes[0]`'s audience (claims, tenant_id and CAE are ignored)."""
        return AccessToken(*self._mint(scopes))

    def get_token_info(
        self, *scopes: str, options: TokenRequestOptions | None = None
    ) -> AccessTokenInfo:
        """`get_token` in azure-core's newer shape."""
        return AccessTokenInfo(*self._mint(scopes))

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> LocalTokenCredential:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncLocalTokenCredential(LocalTokenCredential):
    """An azure-core `AsyncTokenCredential` minting local tokens."""

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:  # type: ignore[override]
        """A token for `scopes[0]`'s audience."""
        return AccessToken(*self._mint(scopes))

    async def get_token_info(  # type: ignore[override]
        self, *scopes: str, options: TokenRequestOptions | None = None
    ) -> AccessTokenInfo:
        """`get_token` in azure-core's newer shape."""
        return AccessTokenInfo(*self._mint(scopes))

    async def close(self) -> None:  # type: ignore[override]
        """Nothing to release."""

    async def __aenter__(self) -> AsyncLocalTokenCredential:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _saved_tenant() -> LocalTenant:
    path = os.environ.get(ENV_TENANT_FILE)
    if not path:
        raise RuntimeError(f"set {ENV_TENANT_FILE} to a file LocalTenant.save wrote")
    return LocalTenant.load(Path(path))


class DefaultAzureCredential(LocalTokenCredential):
    """azure-identity's `DefaultAzureCredential`, as the shim gives it: the tenant saved
    in `ENV_TENANT_FILE`; its keyword arguments are accepted and ignored."""

    def __init__(self, **_options: Any) -> None:
        super().__init__(_saved_tenant())


class AsyncDefaultAzureCredential(AsyncLocalTokenCredential):
    """`azure.identity.aio.DefaultAzureCredential`, as the shim gives it."""

    def __init__(self, **_options: Any) -> None:
        super().__init__(_saved_tenant())


def write_identity_shim(directory: Path) -> Path:
    """Write `azure/identity` (and `.aio`) under `directory`, exporting the local
    `DefaultAzureCredential`s; return `directory`, for the front of `sys.path`."""
    package = directory / "azure" / "identity"
    (package / "aio").mkdir(parents=True, exist_ok=True)
    header = '"""azure-identity stand-in (viewfinder.testing.entra): local tokens only."""\n'
    (package / "__init__.py").write_text(
        header + "from viewfinder.testing.entra import DefaultAzureCredential\n", encoding="utf-8"
    )
    (package / "aio" / "__init__.py").write_text(
        header
        + "from viewfinder.testing.entra import AsyncDefaultAzureCredential"
        + " as DefaultAzureCredential\n",
        encoding="utf-8",
    )
    return directory


class JWKSServer:
    """A JWKS document on `http://127.0.0.1:<port>/keys`, in a background thread.

    `jwks` may be replaced while serving (key rotation); `fetches` counts the GETs.
    """

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.jwks = jwks
        self.fetches = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                body = json.dumps(owner.jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read `fetches`, not stderr."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/keys"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> JWKSServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


@contextmanager
def serve_jwks(tenant: LocalTenant) -> Iterator[JWKSServer]:
    """Serve `tenant.jwks()` on loopback for the duration of the block."""
    server = JWKSServer(tenant.jwks()).start()
    try:
        yield server
    finally:
        server.stop()


def write_tls_certificate(
    directory: Path, hosts: tuple[str, ...] = ("localhost", "127.0.0.1")
) -> tuple[Path, Path]:
    """A self-signed certificate for `hosts` and its key, as PEM files in `directory`.

    The certificate is its own CA: give its path to clients (`connection_verify=`,
    `REQUESTS_CA_BUNDLE`, `SSL_CERT_FILE`).

    Returns:
        (certificate path, private key path).
    """
    key = new_rsa_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        # What Python 3.13's strict verification (VERIFY_X509_STRICT) asks of a CA.
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path
