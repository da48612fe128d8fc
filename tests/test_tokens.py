"""Offline token counting with the shipped o200k_base encoding."""

from __future__ import annotations

import gzip
import hashlib
import inspect
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import tiktoken
import tiktoken.load
import tiktoken_ext.openai_public as openai_public

from viewfinder.cost import tokens
from viewfinder.cost.tokens import (
    O200K_SHA256,
    REPLY_PRIMING_TOKENS,
    TOKENS_PER_MESSAGE,
    count_message_tokens,
    count_tokens,
    load_ranks,
    parse_ranks,
)


def _shipped() -> bytes:
    return (resources.files("viewfinder") / "data" / "o200k_base.tiktoken.gz").read_bytes()


def test_shipped_file_is_tiktokens_o200k_base() -> None:
    contents = gzip.decompress(_shipped())
    assert hashlib.sha256(contents).hexdigest() == O200K_SHA256
    # The hash tiktoken itself expects for o200k_base, read from the installed copy.
    assert f'expected_hash="{O200K_SHA256}"' in inspect.getsource(openai_public.o200k_base)


def test_definition_matches_installed_tiktoken(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pattern and special tokens are those of tiktoken_ext, built without its download."""
    asked: list[tuple[str, str | None]] = []

    def no_download(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        asked.append((url, expected_hash))
        return load_ranks(_shipped())

    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", no_download)
    definition: dict[str, Any] = openai_public.o200k_base()
    assert asked == [(asked[0][0], O200K_SHA256)]
    assert asked[0][0].endswith("/o200k_base.tiktoken")

    ours = tokens.encoding()
    assert ours.name == definition["name"] == "o200k_base"
    assert ours._pat_str == definition["pat_str"]
    assert ours._special_tokens == definition["special_tokens"]
    assert ours._mergeable_ranks == definition["mergeable_ranks"]
    assert ours.n_vocab == 200019


def test_offline_with_an_empty_tiktoken_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Runs under --block-network; tiktoken's cache dir stays empty, its loader unused."""
    cache_dir = tmp_path / "tiktoken-cache"
    cache_dir.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache_dir))

    def refuse(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("tiktoken tried to read or download an encoding")

    monkeypatch.setattr(tiktoken.load, "read_file", refuse)
    monkeypatch.setattr(tiktoken.load, "read_file_cached", refuse)
    tokens.encoding.cache_clear()  # build it again, here, under these conditions
    assert count_tokens("hello world") == 2
    assert tokens.encoding().encode("hello world") == [24912, 2375]
    sample = "Analyse the image: 3 cats, 12 dogs; naïve café — 東京タワー!\n\n  x"
    assert tokens.encoding().decode(tokens.encoding().encode(sample)) == sample
    assert list(cache_dir.iterdir()) == []


def test_encoding_is_cached() -> None:
    assert tokens.encoding() is tokens.encoding()


def test_count_tokens() -> None:
    assert count_tokens("") == 0
    assert count_tokens("hello world") == 2
    # Special-token text in a prompt is ordinary text, not an error.
    assert count_tokens("<|endoftext|>") > 1


def test_message_accounting() -> None:
    system, user = "You are a careful annotator.", "Describe the image."
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": [{"type": "text", "text": user}]},
    ]
    expected = (
        REPLY_PRIMING_TOKENS
        + 2 * TOKENS_PER_MESSAGE
        + count_tokens("system")
        + count_tokens(system)
        + count_tokens("user")
        + count_tokens(user)
    )
    assert count_message_tokens(messages, model="gpt-4o") == expected
    assert TOKENS_PER_MESSAGE == REPLY_PRIMING_TOKENS == 3


def test_image_parts_are_not_counted_here() -> None:
    text = {"type": "text", "text": "What is this?"}
    image = {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + "A" * 5000}}
    with_image = [{"role": "user", "content": [text, image]}]
    without = [{"role": "user", "content": [text]}]
    assert count_message_tokens(with_image, model="gpt-4.1-mini") == count_message_tokens(
        without, model="gpt-4.1-mini"
    )


def test_name_costs_one_more_token() -> None:
    plain = [{"role": "user", "content": "hi"}]
    named = [{"role": "user", "content": "hi", "name": "alice"}]
    extra = count_message_tokens(named, model="gpt-4o") - count_message_tokens(plain, model="x")
    assert extra == count_tokens("alice") + 1


def test_no_messages_is_the_reply_priming() -> None:
    assert count_message_tokens([], model="gpt-4o") == REPLY_PRIMING_TOKENS


def test_parse_ranks() -> None:
    assert parse_ranks(b"IQ== 0\nIg== 1\n\n") == {b"!": 0, b'"': 1}


@pytest.mark.parametrize(
    ("contents", "message"),
    [
        (b"IQ== x", "not valid"),
        (b"IQ==", "without a rank"),
        (b"!!! 0", "not valid"),
        (b"IQ== 0\nIQ== 1", "repeats"),
    ],
)
def test_parse_ranks_refuses_bad_files(contents: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_ranks(contents)


def test_load_ranks_checks_the_hash() -> None:
    with pytest.raises(ValueError, match="not o200k_base"):
        load_ranks(gzip.compress(b"IQ== 0\n"))
    with pytest.raises(ValueError, match="not gzip"):
        load_ranks(b"plain text")
