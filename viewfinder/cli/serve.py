"""`viewfinder serve`: the Image Analysis 4.0 compatible server."""

from __future__ import annotations

import dataclasses
import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from viewfinder.cli.options import (
    BaseUrlOption,
    ModelOption,
    allow_hosts_of,
    shared_redis,
    split_commas,
    usage_exit,
)
from viewfinder.cli.render import plural
from viewfinder.errors import ConfigurationError, UserError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from viewfinder.compat.entra import EntraSettings
    from viewfinder.compat.server import ServerSettings
    from viewfinder.embed import Embedder

_LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
READ_STORE_NAME = "read-operations"
"""`--read-store`'s default: this folder of the answer cache's directory."""

WORKER_ARGS_ENV = "VIEWFINDER_SERVE_ARGS"
"""Where `serve` leaves its arguments (JSON) for `worker_app` in each worker process."""

SECRET_FILE_NAMES = ("OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "COHERE_API_KEY")
"""Model keys also read from a file named by `<NAME>_FILE` (a mounted secret)."""

_PATH_ARGS = ("api_key_file", "ssl_certfile", "ssl_keyfile", "read_store")

__all__ = ["register", "serve", "worker_app"]


def serve(
    host: Annotated[
        str, typer.Option(help="Address to listen on (loopback by default).", metavar="HOST")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=0, max=65535)] = 8080,
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            "--api-key",
            help=(
                "Accepted key (Ocp-Apim-Subscription-Key or Authorization: Bearer), "
                "repeatable. Visible to every user in `ps`: prefer VIEWFINDER_API_KEYS "
                "(comma-separated, the default) or --api-key-file."
            ),
            metavar="KEY",
            show_default=False,
        ),
    ] = None,
    api_key_file: Annotated[
        Path | None,
        typer.Option(
            "--api-key-file",
            help=(
                "File of accepted keys, one per line (blank and # lines ignored), e.g. a "
                "mounted secret. Default: VIEWFINDER_API_KEYS_FILE."
            ),
            metavar="FILE",
            dir_okay=False,
            show_default=False,
            envvar="VIEWFINDER_API_KEYS_FILE",
        ),
    ] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Serve without keys (trusted networks only).")
    ] = False,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            help=(
                "Internal host image URLs may point at (repeatable); others are refused. "
                "Default: VIEWFINDER_ALLOW_HOSTS, comma-separated."
            ),
            metavar="HOST",
            show_default=False,
        ),
    ] = None,
    ssl_certfile: Annotated[
        Path | None,
        typer.Option(help="PEM certificate: serve HTTPS.", metavar="FILE", dir_okay=False),
    ] = None,
    ssl_keyfile: Annotated[
        Path | None,
        typer.Option(help="PEM private key of --ssl-certfile.", metavar="FILE", dir_okay=False),
    ] = None,
    entra_tenant: Annotated[
        str | None,
        typer.Option(
            help=(
                "Accept Microsoft Entra ID tokens of this tenant id (needs --entra-allow and "
                "TLS). Default: VIEWFINDER_ENTRA_TENANT."
            ),
            metavar="TENANT",
            show_default=False,
        ),
    ] = None,
    entra_allow: Annotated[
        list[str] | None,
        typer.Option(
            "--entra-allow",
            help=(
                "Object id (oid) or application id (appid/azp) allowed to call with a token, "
                "repeatable. Default: VIEWFINDER_ENTRA_ALLOW, comma-separated."
            ),
            metavar="ID",
            show_default=False,
        ),
    ] = None,
    entra_audience: Annotated[
        str | None,
        typer.Option(
            help=(
                "Expected token audience. Default: VIEWFINDER_ENTRA_AUDIENCE, else "
                "https://cognitiveservices.azure.com."
            ),
            metavar="AUD",
            show_default=False,
        ),
    ] = None,
    entra_issuer: Annotated[
        list[str] | None,
        typer.Option(
            "--entra-issuer",
            help=(
                "Accepted token issuer, repeatable. Default: VIEWFINDER_ENTRA_ISSUERS, else "
                "the tenant's v1 and v2 issuers."
            ),
            metavar="URL",
            show_default=False,
        ),
    ] = None,
    entra_jwks_url: Annotated[
        str | None,
        typer.Option(
            help=(
                "The tenant's signing keys. Default: VIEWFINDER_ENTRA_JWKS_URL, else "
                "https://login.microsoftonline.com/TENANT/discovery/v2.0/keys."
            ),
            metavar="URL",
            show_default=False,
        ),
    ] = None,
    report_model_version: Annotated[
        str | None,
        typer.Option(
            help=(
                "What results' modelVersion says, e.g. 2023-10-01 for code that checks "
                "it. Default: VIEWFINDER_REPORT_MODEL_VERSION, else the engine's true "
                "<model>+<hash>, always in the x-viewfinder-model-version header."
            ),
            metavar="VERSION",
        ),
    ] = None,
    read_store: Annotated[
        Path | None,
        typer.Option(
            "--read-store",
            help=(
                "Directory of the Computer Vision 3.2 Read operations (read/analyze), shared "
                "by every server given it; finished results are kept 48 hours. A restart "
                "loses the operations in flight (a clean stop marks them failed), not the "
                "finished ones. Unused with --redis (the operations live in Redis). "
                "Default: read-operations under the cache directory."
            ),
            metavar="DIR",
            file_okay=False,
            show_default=False,
        ),
    ] = None,
    skill_batch_size: Annotated[
        int | None,
        typer.Option(
            help=(
                "Most records per call of the AI Search skill (POST /skills/image-analysis); "
                "set the skillset's batchSize to this or less. Default: 16."
            ),
            min=1,
            metavar="N",
            show_default=False,
        ),
    ] = None,
    skill_timeout: Annotated[
        float | None,
        typer.Option(
            help=(
                "Seconds of the AI Search skill's timeout (the skillset's timeout, 1-230); "
                "records not analysed within 90% of it are answered with a Timeout error. "
                "Default: 30, the skill's own default."
            ),
            min=1.0,
            max=230.0,
            metavar="SECONDS",
            show_default=False,
        ),
    ] = None,
    embed_backend: Annotated[
        str | None,
        typer.Option(
            help=(
                "Embedding backend of the vectorize routes (retrieval:vectorizeImage/Text, "
                "/vectorizers/multimodal, /skills/vectorize): cohere, infinity, vllm or local. "
                "Default: VIEWFINDER_EMBED_BACKEND (cohere when only COHERE_API_KEY is "
                "set); none: those routes answer that embeddings are not configured."
            ),
            metavar="NAME",
            show_default=False,
        ),
    ] = None,
    embed_model: Annotated[
        str | None,
        typer.Option(
            help="Embedding model (local: its directory). Default: VIEWFINDER_EMBED_MODEL.",
            metavar="MODEL",
            show_default=False,
        ),
    ] = None,
    embed_base_url: Annotated[
        str | None,
        typer.Option(
            help="Embedding endpoint. Default: VIEWFINDER_EMBED_BASE_URL.",
            metavar="URL",
            show_default=False,
        ),
    ] = None,
    embed_dimensions: Annotated[
        int | None,
        typer.Option(
            help="Vector length. Default: 1024 where the model allows it.",
            min=1,
            metavar="N",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            help=(
                "Processes sharing the port. They share the answer cache and the Read "
                "store; each has its own rate limiter unless --redis shares one (with "
                "replicas on other hosts too). Default: VIEWFINDER_WORKERS, else 1."
            ),
            min=1,
            envvar="VIEWFINDER_WORKERS",
            metavar="N",
        ),
    ] = 1,
    graceful_timeout: Annotated[
        int,
        typer.Option(
            help=(
                "Seconds requests in flight may take to finish after SIGTERM. "
                "Default: VIEWFINDER_GRACEFUL_TIMEOUT, else 30."
            ),
            min=0,
            envvar="VIEWFINDER_GRACEFUL_TIMEOUT",
            metavar="SECONDS",
        ),
    ] = 30,
    shutdown_delay: Annotated[
        float,
        typer.Option(
            help=(
                "Seconds between SIGTERM and closing the port, with /readyz answering 503 "
                "(a load balancer's probe interval). Default: VIEWFINDER_SHUTDOWN_DELAY, else 0."
            ),
            min=0.0,
            envvar="VIEWFINDER_SHUTDOWN_DELAY",
            metavar="SECONDS",
        ),
    ] = 0.0,
    redis: Annotated[
        str | None,
        typer.Option(
            "--redis",
            help=(
                "Redis URL (redis://[:PASSWORD@]HOST:6379/0) of the state replicas share: "
                "the Read operations and the rate limit of each model deployment, and the "
                "answer cache unless VIEWFINDER_CACHE names another. Visible in ps with a "
                "password: prefer VIEWFINDER_REDIS. Default: VIEWFINDER_REDIS, else "
                "VIEWFINDER_CACHE when it is a Redis URL."
            ),
            envvar="VIEWFINDER_REDIS",
            metavar="URL",
            show_default=False,
            show_envvar=False,
        ),
    ] = None,
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
) -> None:
    """Serve the Image Analysis 4.0 REST API (POST /computervision/imageanalysis:analyze).

    Point Microsoft's SDK at http://HOST:PORT with one of the keys. Image URLs may
    only point at public addresses, plus the --allow-host hosts. Give keys in
    VIEWFINDER_API_KEYS or --api-key-file: other users can read --api-key in `ps`.
    """
    args = dict(locals())
    err = Console(stderr=True, highlight=False)
    settings = _settings(args, err)
    from viewfinder.compat import server

    if workers > 1:
        # Each worker builds its own settings (clients cannot cross processes) from the
        # same arguments, in its inherited environment: key files are named, not copied;
        # --api-key values are (they are in `ps` already).
        os.environ[WORKER_ARGS_ENV] = json.dumps(
            {key: str(value) if isinstance(value, Path) else value for key, value in args.items()}
        )
    server.run(
        settings,
        host=host,
        port=port,
        ssl_certfile=None if ssl_certfile is None else str(ssl_certfile),
        ssl_keyfile=None if ssl_keyfile is None else str(ssl_keyfile),
        workers=workers,
        app_factory=f"{__name__}:worker_app",
        graceful_timeout=graceful_timeout,
    )


def worker_app() -> FastAPI:
    """The app of one `serve --workers N` worker, built from the arguments `serve` left in
    `VIEWFINDER_SERVE_ARGS` (its warnings were printed once, by `serve`)."""
    from viewfinder.compat import server

    args: dict[str, Any] = json.loads(os.environ[WORKER_ARGS_ENV])
    for name in _PATH_ARGS:
        if args.get(name) is not None:
            args[name] = Path(args[name])
    settings = _settings(args, Console(file=io.StringIO()))
    server.configure_logging()
    return server.create_app(settings)


def _settings(args: dict[str, Any], err: Console) -> ServerSettings:
    """The server's settings from `serve`'s arguments (and the environment), its
    warnings and startup lines printed on `err`.

    Raises:
        typer.Exit: A usage error, printed.
    """
    from viewfinder.analyzers.image_analysis import ImageAnalyzer  # the engine: lazily
    from viewfinder.engine.cache import default_cache_dir
    from viewfinder.prepare.fetch import trusted_hosts  # httpx2 and asyncio: lazily

    api_key: list[str] | None = args["api_key"]
    api_key_file: Path | None = args["api_key_file"]
    no_auth: bool = args["no_auth"]
    allow_host: list[str] | None = args["allow_host"]
    ssl_certfile: Path | None = args["ssl_certfile"]
    ssl_keyfile: Path | None = args["ssl_keyfile"]
    host: str = args["host"]
    port: int = args["port"]
    read_store: Path | None = args["read_store"]
    model: str | None = args["model"]
    base_url: str | None = args["base_url"]
    redis, cache, redis_cache = shared_redis(args["redis"])  # one variable is enough

    try:
        from viewfinder.compat import server
        from viewfinder.compat.handler import REPORT_MODEL_VERSION_ENV
        from viewfinder.compat.skill import SkillSettings
    except ImportError as exc:
        raise usage_exit(err, str(exc)) from None

    keys = [key.strip() for key in api_key or () if key.strip()]
    if api_key:
        err.print(
            Text(
                "warning: --api-key is visible in ps to every user of this machine; "
                "use VIEWFINDER_API_KEYS or --api-key-file",
                style="yellow",
            ),
            soft_wrap=True,
        )
    if api_key_file is not None:
        try:
            keys += _read_key_file(api_key_file)
        except UserError as exc:
            raise usage_exit(err, str(exc)) from None
    if not api_key and api_key_file is None:
        keys = split_commas([os.environ.get("VIEWFINDER_API_KEYS", "")])
    if ssl_keyfile is not None and ssl_certfile is None:
        raise usage_exit(err, "--ssl-keyfile needs --ssl-certfile")
    try:
        _read_secret_files()
        entra = _entra_settings(
            args["entra_tenant"],
            args["entra_allow"],
            args["entra_audience"],
            args["entra_issuer"],
            args["entra_jwks_url"],
        )
    except (ImportError, UserError) as exc:
        raise usage_exit(err, str(exc)) from None
    if entra is not None and ssl_certfile is None:
        raise usage_exit(
            err,
            "Entra ID needs TLS (--ssl-certfile/--ssl-keyfile): azure-core sends tokens "
            "over HTTPS only",
        )
    settings = server.ServerSettings(
        api_keys=tuple(keys),
        no_auth=no_auth,
        entra=entra,
        allow_hosts=trusted_hosts(allow_hosts_of(allow_host)),
        model_version=args["report_model_version"]
        or os.environ.get(REPORT_MODEL_VERSION_ENV, "").strip()
        or None,
        read_store=read_store or default_cache_dir() / READ_STORE_NAME,
        skill=SkillSettings(
            batch_size=args["skill_batch_size"] or SkillSettings.batch_size,
            timeout=args["skill_timeout"] or SkillSettings.timeout,
        ),
        shutdown_delay=args["shutdown_delay"],
        redis=redis,
    )
    try:
        settings.validate()  # before the analyzer: an open server is refused first
        embedder = _embedder(
            args["embed_backend"],
            args["embed_model"],
            args["embed_base_url"],
            args["embed_dimensions"],
            redis_cache,
        )
        cached: dict[str, Any] = {} if cache is None else {"cache": cache}
        try:
            analyzer = ImageAnalyzer(model=model, base_url=base_url, **cached)
        except ConfigurationError:
            if embedder is None or model or base_url:
                raise
            # Embeddings only (a vectorize-only migration): no model endpoint is needed;
            # the analysis routes get the local engine (what it serves, it serves; other
            # features are left out of the answers), and the startup line says so.
            analyzer = ImageAnalyzer(engine="local", **cached)
    except UserError as exc:
        raise usage_exit(err, str(exc)) from None
    settings = dataclasses.replace(settings, analyzer=analyzer, embedder=embedder)

    scheme = "https" if ssl_certfile else "http"
    if scheme == "http" and host not in _LOOPBACK_HOSTS:
        err.print(
            Text(
                f"warning: plain HTTP on {host}: keys and images cross the network "
                "unencrypted; use --ssl-certfile/--ssl-keyfile or a TLS proxy",
                style="yellow",
            ),
            soft_wrap=True,
        )
    auth = "no key (--no-auth)" if no_auth else plural(len(keys), "key")
    if entra is not None:
        auth += f", Entra ID tenant {entra.tenant} ({plural(len(entra.principals), 'principal')})"
    models = (
        f"model {analyzer.model}"
        if analyzer.has_endpoint
        else "no model endpoint: analysis by the local engine only (people, smart crops, "
        "read with the local extra; the other features are left out of the answers)"
    )
    err.print(Text(f"viewfinder serve: {scheme}://{host}:{port}, {auth}, {models}"), soft_wrap=True)
    if redis is not None:
        from viewfinder.prepare.redact import redact_url

        shared = "the answer cache, " if redis_cache == redis else ""
        err.print(
            Text(
                f"shared with other replicas through Redis at {redact_url(redis)}: {shared}"
                "the Read operations and the rate limits"
            ),
            soft_wrap=True,
        )
    if embedder is None:
        err.print(
            Text(
                "embeddings: off (no --embed-backend, VIEWFINDER_EMBED_BACKEND or "
                "COHERE_API_KEY): the vectorize routes answer 404"
            ),
            soft_wrap=True,
        )
    else:
        from viewfinder.compat.vectorize import model_version

        err.print(Text(f"embeddings: on, modelVersion {model_version(embedder)}"), soft_wrap=True)
    return settings


def _read_secret_files() -> None:
    """Set each model key of `SECRET_FILE_NAMES` that is unset from the file `<NAME>_FILE`
    names (the Docker / Kubernetes secret-file convention), so the provider reads it as
    usual and worker processes inherit it.

    Raises:
        ConfigurationError: The file cannot be read or is empty (its content never quoted).
    """
    for name in SECRET_FILE_NAMES:
        path = os.environ.get(f"{name}_FILE", "").strip()
        if not path or os.environ.get(name, "").strip():
            continue
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8"
            raise ConfigurationError(f"cannot read {name}_FILE {path}: {reason}") from None
        if not value:
            raise ConfigurationError(f"{name}_FILE {path} is empty")
        os.environ[name] = value


def _embedder(
    backend: str | None,
    model: str | None,
    base_url: str | None,
    dimensions: int | None,
    redis_cache: str | None = None,
) -> Embedder | None:
    """The vectorize routes' embedder from the flags, else `VIEWFINDER_EMBED_*` (read by
    `resolve_backend`); `None` when neither names a backend (embeddings off). It caches
    vectors only in a Redis answer cache (`redis_cache`), shared like the answers.

    Raises:
        UserError: A backend is named but cannot be configured.
    """
    env = os.environ
    named = backend or env.get("VIEWFINDER_EMBED_BACKEND") or env.get("COHERE_API_KEY")
    if not named and model is None and base_url is None and dimensions is None:
        return None
    from viewfinder.embed import Embedder  # httpx2 and the engine: lazily
    from viewfinder.engine.cache import open_cache

    cache = None if redis_cache is None else open_cache(redis_cache)
    return Embedder(backend, model=model, base_url=base_url, dimensions=dimensions, cache=cache)


def _entra_settings(
    tenant: str | None,
    allow: list[str] | None,
    audience: str | None,
    issuers: list[str] | None,
    jwks_url: str | None,
) -> EntraSettings | None:
    """Entra ID settings from the flags, else the VIEWFINDER_ENTRA_* variables; `None`
    without a tenant. `ServerSettings.validate` refuses a tenant without principals."""
    env = os.environ
    tenant = (tenant or env.get("VIEWFINDER_ENTRA_TENANT", "")).strip()
    if not tenant:
        return None
    from viewfinder.compat.entra import DEFAULT_AUDIENCE, EntraSettings  # PyJWT: lazily

    return EntraSettings(
        tenant=tenant,
        principals=tuple(split_commas(allow or [env.get("VIEWFINDER_ENTRA_ALLOW", "")])),
        audience=audience or env.get("VIEWFINDER_ENTRA_AUDIENCE") or DEFAULT_AUDIENCE,
        issuers=tuple(split_commas(issuers or [env.get("VIEWFINDER_ENTRA_ISSUERS", "")])),
        jwks_url=jwks_url or env.get("VIEWFINDER_ENTRA_JWKS_URL") or None,
    )


def _read_key_file(path: Path) -> list[str]:
    """The keys in `path`, one per line; blank lines and `#` comments are skipped.

    Raises:
        ConfigurationError: The file cannot be read or holds no key (never quoted).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise ConfigurationError(f"cannot read --api-key-file {path}: {reason}") from None
    keys = [line.strip() for line in text.splitlines()]
    keys = [key for key in keys if key and not key.startswith("#")]
    if not keys:
        raise ConfigurationError(f"--api-key-file {path} holds no key")
    return keys


def register(app: typer.Typer) -> None:
    """Add the `serve` command to `app`.

    Args:
        app: The Typer application (`viewfinder.cli.app`, or one a test builds).
    """
    app.command("serve")(serve)
