"""One writer at a time per batch output: an OS lock beside the file that names its holder.

Two `viewfinder batch` runs on the same `--out` file would both analyse (and pay for)
every image and write every line twice; two Batch API runs on the same work directory
would submit the same batches twice. `WriterLock(path)` makes the second one fail at
once:

- it takes an exclusive lock on `<path>.lock` without waiting (the `filelock` library:
  `flock` on Linux and macOS, `LockFileEx` on Windows). The kernel drops the lock when
  the process ends, however it ends (`kill -9` included), so a crash never leaves a
  stale lock behind; the empty `.lock` file itself stays, which is harmless;
- while it holds the lock it records who it is in `<path>.lock.json` (pid, host, start
  time, command line), so the refusal, a `BatchLockedError`, names the first process.
  The record is removed before the lock is released.

```python
with WriterLock(out, hint="wait for it or choose another --out"):
    ...  # append to `out`
```

The lock is reentrant within one `WriterLock` object. Two `WriterLock` objects on the
same path exclude each other even inside one process.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import socket
import sys
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import filelock

from viewfinder.errors import BatchLockedError, ConfigurationError
from viewfinder.prepare.redact import is_secret_name, safe_url

__all__ = ["Holder", "WriterLock", "printable_command"]

_MAX_COMMAND: Final = 300
"""Characters of the holder's command line kept (a shell glob can expand to thousands)."""

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as it recorded itself.

    Attributes:
        pid: Process id.
        host: Host name.
        since: When it took the lock (ISO 8601, local time with offset).
        command: Its command line, without secrets, cut at 300 characters.
    """

    pid: int | None = None
    host: str | None = None
    since: str | None = None
    command: str | None = None

    @classmethod
    def me(cls) -> Holder:
        """This process."""
        return cls(
            pid=os.getpid(),
            host=socket.gethostname(),
            since=datetime.now().astimezone().isoformat(timespec="seconds"),
            command=printable_command(sys.argv),
        )

    @classmethod
    def read(cls, path: Path) -> Holder | None:
        """The holder recorded at `path`; None when there is none or it is unreadable."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        pid = data.get("pid")
        return cls(
            pid=pid if isinstance(pid, int) else None,
            host=_str_or_none(data.get("host")),
            since=_str_or_none(data.get("since")),
            command=_str_or_none(data.get("command")),
        )

    def describe(self) -> str:
        """E.g. `pid 1234 on build-7, since 2026-01-05T10:00:00+01:00: viewfinder batch ...`."""
        text = f"pid {self.pid}" if self.pid is not None else "pid unknown"
        if self.host:
            text += f" on {self.host}"
        if self.since:
            text += f", since {self.since}"
        if self.command:
            text += f": {self.command}"
        return text


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def printable_command(argv: list[str]) -> str:
    """`argv` as a shell line without secrets: URLs through `safe_url`, the value of any
    secret-looking option (`--api-key X`, `--token=X`) masked, cut at 300 characters."""
    shown: list[str] = []
    if argv:
        program, *argv = argv
        if os.path.basename(program) == "__main__.py":  # python -m viewfinder
            shown += ["python", "-m", os.path.basename(os.path.dirname(program))]
        else:
            shown.append(os.path.basename(program))
    mask_next = False
    for arg in argv:
        if mask_next:
            shown.append("***")
            mask_next = False
            continue
        name, equals, _ = arg.partition("=")
        if arg.startswith("-") and is_secret_name(name.lstrip("-")):
            if equals:
                arg = f"{name}=***"
            else:
                mask_next = True
        shown.append(_URL.sub(lambda found: safe_url(found.group()), arg))
    command = shlex.join(shown)
    return command if len(command) <= _MAX_COMMAND else command[: _MAX_COMMAND - 1] + "…"


class WriterLock:
    """An exclusive, non-waiting, reentrant lock for writing `path`; see the module docstring.

    Args:
        path: The file one process at a time may write.
        hint: What the refused user can do, e.g. "wait for it or choose another --out".
        doing: What the holder is doing to `path`, for the refusal message.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        hint: str,
        doing: str = "being written by another viewfinder batch",
    ) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.holder_path = self.path.with_name(self.path.name + ".lock.json")
        self.hint = hint
        self.doing = doing
        # thread_local=False: a batch may take the lock in one thread and end in another.
        self._lock = filelock.FileLock(self.lock_path, timeout=0, thread_local=False)
        self._depth = 0

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._depth > 0

    def acquire(self) -> None:
        """Take the lock, or fail at once.

        Raises:
            BatchLockedError: Another process (or another `WriterLock` object) holds it.
            ConfigurationError: The lock file cannot be created (a missing or read-only
                directory); directories are never created here.
        """
        if self._depth == 0:
            self._take()
        self._depth += 1

    def release(self) -> None:
        """Give the lock back (the last of nested `acquire`s does); a no-op when not held."""
        if self._depth == 0:
            return
        self._depth -= 1
        if self._depth == 0:
            with contextlib.suppress(OSError):
                self.holder_path.unlink(missing_ok=True)  # before unlocking: never the next one's
            self._lock.release()

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def _take(self) -> None:
        if not self.lock_path.parent.is_dir():  # some filelock versions would create it
            raise ConfigurationError(
                f"cannot lock {self.path}: no such directory {self.lock_path.parent}"
            )
        try:
            self._lock.acquire()
        except filelock.Timeout:
            raise self._refusal() from None
        except OSError as exc:
            raise ConfigurationError(
                f"cannot lock {self.path}: {exc.strerror or type(exc).__name__}"
            ) from None
        with contextlib.suppress(OSError):  # the lock is what counts; the record only names it
            self._record(Holder.me())

    def _record(self, holder: Holder) -> None:
        """Write `holder` to the record file atomically (a reader never sees half of it)."""
        directory = self.holder_path.parent
        fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{self.holder_path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as stream:
                json.dump(asdict(holder), stream)
            os.replace(temp, self.holder_path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    def _refusal(self) -> BatchLockedError:
        holder = Holder.read(self.holder_path)
        who = (
            holder.describe()
            if holder is not None
            else f"which one is not recorded yet; its lock is {self.lock_path}"
        )
        holder = holder or Holder()
        return BatchLockedError(
            f"{self.path} is {self.doing} ({who}): {self.hint}",
            path=str(self.path),
            pid=holder.pid,
            host=holder.host,
            since=holder.since,
            command=holder.command,
        )
