"""`WriterLock`: one writer per batch output, refusals that name the holder."""

from __future__ import annotations

import os
import pickle
import socket
from pathlib import Path

import pytest

import viewfinder as vf
from viewfinder.batch.locks import Holder, WriterLock, printable_command

HINT = "wait for it or choose another --out"


def test_a_second_writer_is_refused_at_once_naming_the_first(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    with WriterLock(out, hint=HINT), pytest.raises(vf.BatchLockedError) as caught:
        WriterLock(out, hint=HINT).acquire()

    error = caught.value
    assert isinstance(error, vf.UserError)
    assert (error.path, error.pid, error.host) == (str(out), os.getpid(), socket.gethostname())
    assert error.since and error.command
    assert str(error).startswith(f"{out} is being written by another viewfinder batch (pid ")
    assert f"pid {os.getpid()} on {socket.gethostname()}, since {error.since}" in str(error)
    assert str(error).endswith(f"): {HINT}")


def test_the_error_survives_pickling(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    with WriterLock(out, hint=HINT), pytest.raises(vf.BatchLockedError) as caught:
        WriterLock(out, hint=HINT).acquire()

    copy = pickle.loads(pickle.dumps(caught.value))

    assert type(copy) is vf.BatchLockedError and str(copy) == str(caught.value)
    assert vars(copy) == vars(caught.value)


def test_released_on_exit_reentrant_and_the_record_removed(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    first = WriterLock(out, hint=HINT)
    with first:
        with first:  # nested: the same object takes it again
            assert first.held
        assert first.held
        recorded = Holder.read(first.holder_path)
        assert recorded is not None and recorded.pid == os.getpid()
    assert not first.held and not first.holder_path.exists()

    with WriterLock(out, hint=HINT) as second:  # free again
        assert second.held


def test_a_refusal_without_a_record_still_says_where_the_lock_is(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    with WriterLock(out, hint=HINT) as first:
        first.holder_path.unlink()
        with pytest.raises(vf.BatchLockedError, match="not recorded yet") as caught:
            WriterLock(out, hint=HINT).acquire()
    assert caught.value.pid is None and str(first.lock_path) in str(caught.value)


def test_the_recorded_command_carries_no_secret() -> None:
    argv = [
        "/venv/bin/viewfinder",
        "batch",
        "https://acct.blob.core.windows.net/c/a.png?sp=r&sig=SECRETSIG",
        "--base-url=https://user:SECRETPW@proxy.example/v1",
        "--api-key",
        "SECRETKEY",
        "--token=SECRETTOKEN",
        "--out",
        "o.jsonl",
    ]

    command = printable_command(argv)

    assert "SECRET" not in command
    assert command.startswith("viewfinder batch 'https://acct.blob.core.windows.net/c/a.png?sp=r")
    assert "--api-key '***'" in command and "--token=***" in command
    assert command.endswith("--out o.jsonl")
    assert len(printable_command(["viewfinder", *(["photo.jpg"] * 500)])) == 300
    main = "/venv/lib/python3.11/site-packages/viewfinder/__main__.py"
    assert printable_command([main, "batch", "-"]) == "python -m viewfinder batch -"


def test_a_missing_directory_is_a_typed_error_and_is_not_created(tmp_path: Path) -> None:
    with pytest.raises(vf.ConfigurationError, match="no such directory"):
        WriterLock(tmp_path / "nowhere" / "o.jsonl", hint=HINT).acquire()
    assert not (tmp_path / "nowhere").exists()
