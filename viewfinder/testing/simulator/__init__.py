"""A scripted, OpenAI-compatible HTTP server on the loopback interface (see `.server`)."""

from viewfinder.testing.simulator.server import (
    CREATED,
    SYSTEM_FINGERPRINT,
    BatchScript,
    Reply,
    ReplyLike,
    Simulator,
    SimulatorStats,
    estimate_prompt_tokens,
)

__all__ = [
    "CREATED",
    "SYSTEM_FINGERPRINT",
    "BatchScript",
    "Reply",
    "ReplyLike",
    "Simulator",
    "SimulatorStats",
    "estimate_prompt_tokens",
]
