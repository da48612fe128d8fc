"""Microsoft Entra ID bearer tokens for `viewfinder serve`.

Microsoft's SDK sends `Authorization: Bearer <token>` when it is given a
`TokenCredential` (scope `https://cognitiveservices.azure.com/.default`). The server
accepts such a token only when all of these hold:

- it is signed (RS256) by a key of the tenant's JSON Web Key Set, fetched from
  `EntraSettings.jwks_url` with a timeout, cached for `jwks_lifespan` seconds, and
  fetched again when a token names an unknown `kid` (key rotation), at most once per
  `jwks_cooldown` seconds so that forged `kid`s cannot make the server hammer the
  tenant;
- its issuer is the tenant's (`https://sts.windows.net/<tenant>/`, the v1 tokens
  Entra issues for Cognitive Services, or `https://login.microsoftonline.com/<tenant>/v2.0`)
  and its audience is `EntraSettings.audience`;
- it has not expired and is already valid (`exp`, `nbf`, with `leeway` seconds of
  clock skew);
- its caller is allow-listed: its `oid` (the object id of a user, group member or
  managed identity) or its `appid` / `azp` (the application) is in
  `EntraSettings.principals`. A valid token of the tenant alone authorises nobody:
  every user and app of the tenant can get one.

PyJWT does the work (`jwt.PyJWKClient` caches the key set and refetches on an unknown
`kid`). Its key fetch blocks (urllib), so `TokenValidator.aprincipal` runs it in a
worker thread. A refused token raises `TokenRefused`, whose reason is for the log only
(it never quotes the token); the caller answers the service's 401. A key set that
cannot be fetched raises `KeysUnavailable` (answered 503: the token may be good).

Needs the `server` extra (`pyjwt[crypto]`).
"""

from __future__ import annotations

from viewfinder.errors import import_failure

try:
    import jwt
    from jwt import PyJWKClient, PyJWKClientConnectionError, PyJWKClientError
except ImportError as _missing:
    raise ImportError(
        f"Entra ID tokens need PyJWT with cryptography, and {_missing.name or 'it'} is "
        + import_failure("server", _missing)
    ) from _missing

import asyncio
import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from viewfinder.errors import ConfigurationError

__all__ = [
    "DEFAULT_AUDIENCE",
    "EntraSettings",
    "KeysUnavailable",
    "TokenRefused",
    "TokenValidator",
    "settings_from_env",
    "token_check",
]

DEFAULT_AUDIENCE: Final = "https://cognitiveservices.azure.com"
"""The audience of the tokens Microsoft's SDK asks for (its scope minus `/.default`)."""

ALGORITHMS: Final = ("RS256",)
"""Entra ID signs access tokens with RS256; anything else (`none`, HS256) is refused."""

_CLAIMS_REQUIRED: Final = ["exp", "iss", "aud"]
_PRINCIPAL_CLAIMS: Final = ("oid", "appid", "azp")


@dataclass(frozen=True)
class EntraSettings:
    """Which Entra ID tokens the server accepts, and from whom.

    Attributes:
        tenant: The directory (tenant) id whose tokens are accepted.
        principals: Object ids (`oid`) and application ids (`appid` / `azp`) allowed to
            call. Required: without it every identity of the tenant could call.
        audience: The token's expected `aud`.
        issuers: Accepted `iss` values; empty means the tenant's v1 and v2 issuers.
        jwks_url: The tenant's signing keys; `None` means Entra's discovery keys URL
            of `tenant`.
        jwks_timeout: Seconds allowed for one key-set fetch.
        jwks_lifespan: Seconds a fetched key set is used before it is fetched again.
        jwks_cooldown: Least seconds between two fetches caused by an unknown `kid`.
        leeway: Seconds of clock skew allowed on `exp` and `nbf`.
    """

    tenant: str
    principals: tuple[str, ...]
    audience: str = DEFAULT_AUDIENCE
    issuers: tuple[str, ...] = ()
    jwks_url: str | None = None
    jwks_timeout: float = 10.0
    jwks_lifespan: float = 3600.0
    jwks_cooldown: float = 30.0
    leeway: float = 60.0

    @property
    def accepted_issuers(self) -> tuple[str, ...]:
        """`issuers`, or the tenant's v1 and v2 issuers."""
        return self.issuers or (
            f"https://sts.windows.net/{self.tenant}/",
            f"https://login.microsoftonline.com/{self.tenant}/v2.0",
        )

    @property
    def keys_url(self) -> str:
        """`jwks_url`, or the tenant's discovery keys URL."""
        return (
            self.jwks_url or f"https://login.microsoftonline.com/{self.tenant}/discovery/v2.0/keys"
        )

    def validate(self) -> None:
        """Refuse settings that would accept too much or cannot work.

        Raises:
            ConfigurationError: No tenant, no principal, an empty audience, a key-set
                URL that is not http(s), or a non-positive or non-finite duration.
        """
        if not self.tenant.strip() or "/" in self.tenant:
            raise ConfigurationError(f"the Entra tenant must be a tenant id, not {self.tenant!r}")
        if not [p for p in self.principals if p.strip()]:
            raise ConfigurationError(
                "Entra ID needs the principals (object or application ids) allowed to call: "
                "any identity of the tenant can get a token"
            )
        if not self.audience.strip():
            raise ConfigurationError("the Entra audience is empty")
        if urlsplit(self.keys_url).scheme not in ("http", "https"):
            raise ConfigurationError(f"the JWKS URL must be http(s): {self.keys_url!r}")
        durations = {
            "jwks_timeout": self.jwks_timeout,
            "jwks_lifespan": self.jwks_lifespan,
            "jwks_cooldown": self.jwks_cooldown,
            "leeway": self.leeway,
        }
        for name, value in durations.items():
            zero_ok = name in ("jwks_cooldown", "leeway")
            if not (math.isfinite(value) and (value >= 0 if zero_ok else value > 0)):
                bound = ">= 0" if zero_ok else "> 0"
                raise ConfigurationError(f"{name} must be a finite number {bound}, not {value!r}")


class TokenRefused(Exception):
    """A bearer token that does not authorise its caller; `str()` is for the log."""


class KeysUnavailable(Exception):
    """The tenant's signing keys could not be fetched; `str()` is for the log."""


def _loggable(text: str) -> str:
    """A log-safe reason: attacker-chosen parts (`kid`, ids) escaped and cut short."""
    return repr(text[:200])[1:-1]


class TokenValidator:
    """Checks Entra ID access tokens against `EntraSettings`; one per server."""

    def __init__(self, settings: EntraSettings) -> None:
        settings.validate()
        self.settings = settings
        self._principals = frozenset(p.strip() for p in settings.principals if p.strip())
        self._issuers = list(settings.accepted_issuers)
        self._keys = PyJWKClient(
            settings.keys_url,
            cache_jwk_set=True,
            lifespan=settings.jwks_lifespan,
            timeout=settings.jwks_timeout,
            cooldown_duration=settings.jwks_cooldown,
            headers={"User-Agent": "viewfinder-serve"},
        )

    def principal(self, token: str) -> str:
        """The allow-listed id (`oid`, else `appid` / `azp`) that `token` authorises.

        Blocks while the key set is fetched (see `aprincipal`).

        Raises:
            TokenRefused: A malformed, badly signed, expired, not yet valid token, one of
                another issuer or audience, or of a principal not allow-listed.
            KeysUnavailable: The key set could not be fetched.
        """
        try:
            key = self._keys.get_signing_key_from_jwt(token)
        except PyJWKClientConnectionError as exc:
            raise KeysUnavailable(_loggable(str(exc))) from None
        except (PyJWKClientError, jwt.PyJWTError) as exc:
            raise TokenRefused(_loggable(f"signing key: {type(exc).__name__}: {exc}")) from None
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=list(ALGORITHMS),
                audience=self.settings.audience,
                issuer=self._issuers,
                leeway=self.settings.leeway,
                options={"require": _CLAIMS_REQUIRED},
            )
        except jwt.PyJWTError as exc:
            raise TokenRefused(_loggable(f"{type(exc).__name__}: {exc}")) from None
        ids = [claims.get(name) for name in _PRINCIPAL_CLAIMS]
        allowed = next((i for i in ids if isinstance(i, str) and i in self._principals), None)
        if allowed is None:
            named = ", ".join(f"{n}={i!r}" for n, i in zip(_PRINCIPAL_CLAIMS, ids, strict=True))
            raise TokenRefused(_loggable(f"principal not allowed ({named})"))
        return allowed

    async def aprincipal(self, token: str) -> str:
        """`principal(token)` in a worker thread: the key fetch must not block the loop."""
        return await asyncio.to_thread(self.principal, token)


def _names(value: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in value.split(",") if name.strip())


def settings_from_env(env: Mapping[str, str] | None = None) -> EntraSettings | None:
    """Entra ID settings from the `VIEWFINDER_ENTRA_*` variables, as `viewfinder serve`
    reads them (`_TENANT`, `_ALLOW`, `_AUDIENCE`, `_ISSUERS`, `_JWKS_URL`); `None` when no
    tenant is set.

    Raises:
        ConfigurationError: The settings are not valid (`EntraSettings.validate`).
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    tenant = environ.get("VIEWFINDER_ENTRA_TENANT", "").strip()
    if not tenant:
        return None
    settings = EntraSettings(
        tenant=tenant,
        principals=_names(environ.get("VIEWFINDER_ENTRA_ALLOW", "")),
        audience=environ.get("VIEWFINDER_ENTRA_AUDIENCE", "").strip() or DEFAULT_AUDIENCE,
        issuers=_names(environ.get("VIEWFINDER_ENTRA_ISSUERS", "")),
        jwks_url=environ.get("VIEWFINDER_ENTRA_JWKS_URL", "").strip() or None,
    )
    settings.validate()
    return settings


def token_check(settings: EntraSettings) -> Callable[[str], bool]:
    """A yes/no check of bearer tokens under `settings`, for the import swap's
    `token_validator`: a refused token, or signing keys that cannot be fetched, is a no
    (logged on `viewfinder.compat.entra` with the reason, never the token)."""
    validator = TokenValidator(settings)

    def check(token: str) -> bool:
        try:
            validator.principal(token)
        except TokenRefused as exc:
            _logger.warning("bearer token refused: %s", exc)
            return False
        except KeysUnavailable as exc:
            _logger.error("Entra signing keys unavailable: %s", exc)
            return False
        return True

    return check


_logger = logging.getLogger(__name__)
