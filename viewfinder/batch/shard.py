"""Which of N machines takes an input: `viewfinder batch --shard I/N`, pure.

An input belongs to shard `1 + int(sha256(id as UTF-8)[:8]) % N`: a hash of the record's
`"id"` (the one `viewfinder batch` writes and resumes by), never Python's `hash()`, which
is salted per process. So N hosts given the same inputs and `--shard 1/N` ... `--shard N/N`
each take a disjoint share, together all of them, with no coordination, and a re-run (on
any host, any Python) takes the same share. `viewfinder merge --expect-shards N` checks
an output file against the same function.

No imports beyond the standard library: the command line loads it for `--help`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Final

__all__ = ["MAX_SHARDS", "Shard", "shard_of"]

MAX_SHARDS: Final = 65_536
"""The most shards a job may be split into (far more hosts than a job uses)."""

_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def shard_of(ident: str, count: int) -> int:
    """The shard (1 to `count`) that takes the input whose record id is `ident`.

    The first 8 bytes of the SHA-256 of `ident`'s UTF-8 bytes, big-endian, modulo `count`
    (the bias of a 64-bit value modulo at most `MAX_SHARDS` is below 1e-14).
    """
    digest = hashlib.sha256(ident.encode("utf-8", "surrogatepass")).digest()
    return 1 + int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True)
class Shard:
    """One share of a job: shard `index` (from 1) of `count`.

    Attributes:
        index: Which share, 1 to `count`.
        count: How many shares the job is split into.
    """

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ValueError(f"the shard count must be 1 to {MAX_SHARDS}, not {self.count}")
        if not 1 <= self.index <= self.count:
            raise ValueError(f"the shard must be 1 to {self.count}, not {self.index}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`Shard` of `"I/N"` (e.g. `"2/8"`).

        Raises:
            ValueError: Not `I/N` with 1 <= I <= N <= `MAX_SHARDS`; the message says why.
        """
        match = _SPEC.fullmatch(text)
        if match is None:
            raise ValueError(f"{text!r} is not I/N (e.g. 2/8: the second of eight shards)")
        return cls(int(match[1]), int(match[2]))

    def takes(self, ident: str) -> bool:
        """Whether the input whose record id is `ident` is this shard's."""
        return self.count == 1 or shard_of(ident, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
