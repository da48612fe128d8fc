# viewfinder serve: the Image Analysis 4.0 / Computer Vision 3.2 compatible server.
#
#   docker build -t viewfinder .
#   docker run -p 8080:8080 -e OPENAI_API_KEY_FILE=/run/secrets/openai \
#     -e VIEWFINDER_API_KEYS_FILE=/run/secrets/keys -v ./secrets:/run/secrets:ro viewfinder
#
# The server extra and redis-py (`redis`: VIEWFINDER_CACHE=redis://... shares the answer
# cache between replicas; a few hundred kB): the local engine (`local`: ONNX Runtime,
# RapidOCR, OpenCV) adds some 300 MB and is needed only for answers computed on the
# machine (read_geometry="detector", faces, people without a model). Add it with
# --build-arg EXTRAS=server,redis,local.
# tests/test_container.py runs this file's ENTRYPOINT + CMD as a plain command (CI has
# no container runtime); `docker build` itself is not run there.
FROM python:3.11-slim-bookworm

ARG EXTRAS=server,redis

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIEWFINDER_WORKERS=1 \
    VIEWFINDER_CACHE_DIR=/var/cache/viewfinder

WORKDIR /opt/viewfinder
COPY pyproject.toml README.md ./
COPY viewfinder ./viewfinder
RUN pip install ".[${EXTRAS}]" \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin viewfinder \
    && mkdir -p /var/cache/viewfinder \
    && chown viewfinder /var/cache/viewfinder

USER 10001
EXPOSE 8080
VOLUME ["/var/cache/viewfinder"]

# Liveness on the image's port (change it here too if you pass another --port);
# orchestrators probe /healthz and /readyz themselves (see README).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]

# Workers: VIEWFINDER_WORKERS; keys: VIEWFINDER_API_KEYS or VIEWFINDER_API_KEYS_FILE; the
# model: OPENAI_API_KEY / OPENAI_API_KEY_FILE (or the Azure OpenAI variables). Arguments
# after the image name are appended (a later --port overrides this one).
ENTRYPOINT ["viewfinder", "serve", "--host", "0.0.0.0", "--port", "8080"]
CMD []
