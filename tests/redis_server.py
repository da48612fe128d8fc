"""A real `redis-server` for the tests: on a free loopback port, in a temp dir, no persistence.

Debian's `redis-server` package (`.ci/run` installs it). Where it is not on PATH the
fixtures skip, saying why, except under `CI=true`, where they fail: CI must not pass
by skipping the Redis tests.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

STARTUP_TIMEOUT = 10.0
"""Seconds for redis-server to answer PING (it takes milliseconds)."""


def require_redis_server() -> str:
    """The `redis-server` executable; skips (fails under `CI=true`) when there is none."""
    found = shutil.which("redis-server")
    if found is None:
        reason = (
            "redis-server is not on PATH (Debian: apt-get install redis-server; "
            ".ci/run installs it)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    return found


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class RedisServer:
    """One redis-server process; `stop()` and `start()` again keep its port.

    Args:
        directory: Its working directory and log file.
        password: `requirepass`, if any (URLs then carry it).
    """

    def __init__(self, directory: Path, *, password: str | None = None) -> None:
        self.executable = require_redis_server()
        self.directory = directory
        self.password = password
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        """`redis://[:password@]127.0.0.1:<port>/<db>`."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    def start(self) -> RedisServer:
        """Start it and wait until it answers PING."""
        command = [
            self.executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        if self.password:
            command += ["--requirepass", self.password]
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with redis.Redis.from_url(self.url(), socket_connect_timeout=1) as client:
            while True:
                try:
                    client.ping()
                    return self
                except redis.ConnectionError:
                    if self._process.poll() is not None or time.monotonic() > deadline:
                        log = (self.directory / "redis.log").read_text(errors="replace")
                        self.stop()
                        raise RuntimeError(f"redis-server did not start:\n{log}") from None
                    time.sleep(0.01)  # polling for readiness, not waiting out a race

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL) and wait until it is gone."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
