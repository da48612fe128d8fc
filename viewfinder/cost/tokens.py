"""Count text tokens offline, with the `o200k_base` encoding shipped in the package.

tiktoken downloads its encodings on first use. viewfinder never lets it: the BPE ranks
of `o200k_base` ship gzipped in `viewfinder/data/o200k_base.tiktoken.gz` (MIT, from
OpenAI's public encodings via tiktoken; see `viewfinder/data/README.md`), their SHA-256
is checked on load, and the `tiktoken.Encoding` is built here from them. No cache
directory is read or written and nothing touches the network.

`o200k_base` is the encoding of every OpenAI vision model since gpt-4o: gpt-4o,
gpt-4o-mini, gpt-4.1, gpt-4.5, o1, o3, o4-mini and gpt-5. It is the only one shipped;
other models (gpt-4-turbo used `cl100k_base`) are counted with it too, as an
approximation.
"""

from __future__ import annotations

import binascii
import gzip
import hashlib
import json
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from typing import Any, Final

import tiktoken

__all__ = [
    "ENCODING_NAME",
    "O200K_SHA256",
    "REPLY_PRIMING_TOKENS",
    "TOKENS_PER_MESSAGE",
    "count_message_tokens",
    "count_tokens",
    "encoding",
    "load_ranks",
    "parse_ranks",
    "prefix_tokens",
    "schema_payload_tokens",
]

ENCODING_NAME: Final = "o200k_base"
"""The encoding viewfinder ships and counts with."""

O200K_SHA256: Final = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
"""SHA-256 of the decompressed ranks file: tiktoken's `expected_hash` for o200k_base."""

TOKENS_PER_MESSAGE: Final = 3
"""Tokens each chat message costs on top of its content (OpenAI's chat accounting)."""

REPLY_PRIMING_TOKENS: Final = 3
"""Tokens that prime the assistant's reply (`<|start|>assistant<|message|>`)."""

_DATA_FILE: Final = "o200k_base.tiktoken.gz"

# Copied from tiktoken 0.14's `tiktoken_ext.openai_public.o200k_base`, whose pattern is
# built inside the function that also downloads the ranks; tests check they still match.
_ENDOFTEXT: Final = "<|endoftext|>"
_ENDOFPROMPT: Final = "<|endofprompt|>"
_SPECIAL_TOKENS: Final = {_ENDOFTEXT: 199999, _ENDOFPROMPT: 200018}
_PAT_STR: Final = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)


def _decode_base64(token: bytes) -> bytes:
    return binascii.a2b_base64(token, strict_mode=True)


def parse_ranks(contents: bytes) -> dict[bytes, int]:
    """Parse a `.tiktoken` ranks file: one `base64(token) rank` pair per line.

    Args:
        contents: The decompressed file.

    Returns:
        Token bytes to rank.

    Raises:
        ValueError: The file is not pairs of a base64 token and an integer rank, or
            repeats a token.
    """
    fields = contents.split()
    if len(fields) % 2:
        raise ValueError("the ranks file has a token without a rank")
    try:
        ranks = dict(
            zip(
                map(_decode_base64, fields[0::2]),
                map(int, fields[1::2]),
                strict=True,
            )
        )
    except (ValueError, binascii.Error) as exc:
        raise ValueError(f"the ranks file is not valid: {exc}") from None
    if len(ranks) != len(fields) // 2:
        raise ValueError("the ranks file repeats a token")
    return ranks


def load_ranks(packed: bytes) -> dict[bytes, int]:
    """Decompress, check and parse a gzipped `o200k_base` ranks file.

    Args:
        packed: The gzipped file.

    Returns:
        Token bytes to rank.

    Raises:
        ValueError: The content is not `o200k_base` (its SHA-256 differs) or not valid.
    """
    try:
        contents = gzip.decompress(packed)
    except (OSError, EOFError) as exc:
        raise ValueError(f"the ranks file is not gzip data: {exc}") from None
    digest = hashlib.sha256(contents).hexdigest()
    if digest != O200K_SHA256:
        raise ValueError(
            f"the ranks file is not o200k_base: SHA-256 {digest}, expected {O200K_SHA256}"
        )
    return parse_ranks(contents)


@cache
def encoding() -> tiktoken.Encoding:
    """The `o200k_base` encoding, built from the shipped ranks (once per process).

    Returns:
        A `tiktoken.Encoding` equal to `tiktoken.get_encoding("o200k_base")`.

    Raises:
        ValueError: The shipped ranks file is corrupt (`viewfinder/data/o200k_base.tiktoken.gz`).
    """
    return tiktoken.Encoding(
        name=ENCODING_NAME,
        pat_str=_PAT_STR,
        mergeable_ranks=load_ranks(
            (resources.files("viewfinder") / "data" / _DATA_FILE).read_bytes()
        ),
        special_tokens=dict(_SPECIAL_TOKENS),
    )


def count_tokens(text: str) -> int:
    """Tokens of `text` in `o200k_base`.

    Special-token text such as `<|endoftext|>` is counted as the ordinary text it is
    when it appears in a prompt.

    Args:
        text: Any text.

    Returns:
        The number of tokens.
    """
    return len(encoding().encode_ordinary(text))


def count_message_tokens(messages: Iterable[Mapping[str, Any]], *, model: str) -> int:
    """Input tokens of chat `messages`, text only, by OpenAI's chat accounting.

    Each message costs `TOKENS_PER_MESSAGE` plus the tokens of its string fields (the
    role, the content, a `name` and one more token for it); the reply priming adds
    `REPLY_PRIMING_TOKENS`. Content given as parts counts its `text` parts only: image
    parts are counted by the image rules (`viewfinder.cost.estimate.estimate_image_tokens`),
    and other parts (audio, files) are not counted.

    Args:
        messages: Chat messages as sent to the Chat Completions API.
        model: The model the messages are for. Every OpenAI vision model since gpt-4o
            uses `o200k_base`; it is used for any other model too, as an approximation.

    Returns:
        The number of input tokens, images excluded.
    """
    del model  # every supported model uses o200k_base; kept for a future second encoding
    total = REPLY_PRIMING_TOKENS
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if key == "content":
                total += _content_tokens(value)
            elif isinstance(value, str):
                total += count_tokens(value)
                if key == "name":
                    total += 1
    return total


def schema_payload_tokens(body: Mapping[str, Any]) -> int:
    """Tokens of the answer schema a request body carries outside its messages.

    The JSON text of `tools`, `functions` or `response_format.json_schema` (a `json_object`
    response format carries none; the JSON modes put the schema in the messages instead).
    OpenAI does not publish how it bills that payload: the JSON text is an approximation.
    """
    total = 0
    for key in ("tools", "functions", "response_format"):
        payload = body.get(key)
        if key == "response_format" and isinstance(payload, Mapping):
            payload = payload.get("json_schema")
        if payload:
            total += count_tokens(json.dumps(payload, ensure_ascii=False))
    return total


def prefix_tokens(body: Mapping[str, Any], *, model: str) -> int:
    """Text input tokens of a request body: its messages' text and its schema payload.

    For a request whose image is its last part, this is the prefix before the image:
    what is identical across a batch and what a prompt cache can hold.
    """
    return count_message_tokens(body.get("messages", []), model=model) + schema_payload_tokens(body)


def _content_tokens(content: Any) -> int:
    if isinstance(content, str):
        return count_tokens(content)
    if isinstance(content, Iterable) and not isinstance(content, bytes | bytearray):
        return sum(
            count_tokens(part["text"])
            for part in content
            if isinstance(part, Mapping)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        )
    return 0
