"""A scripted, OpenAI-compatible HTTP server on the loopback interface.

This is **not a model**. It never looks at the images or the prompt to decide
what to say: every answer it gives is one that the calling test or benchmark
queued with :meth:`Simulator.script` (or produced with the ``default``
callable). Its purpose is to let tests record cassettes and let benchmarks
measure client behaviour (retries, rate limiting, concurrency, parsing)
against a server that speaks the OpenAI wire format without any network or
real model behind it.

What it does simulate, honestly labelled:

* the JSON shape of ``POST /v1/chat/completions`` answers (plain content,
  instructor ``TOOLS``-mode ``tool_calls``, refusals, finish reasons, and a
  minimal server-sent-events stream when ``"stream": true`` is requested), also
  under the Azure OpenAI path ``/openai/deployments/{name}/chat/completions``;
* OpenAI-shaped error bodies for scripted failures;
* ``429`` rate limiting (concurrency cap, requests-per-minute and
  tokens-per-minute over a sliding window) with ``retry-after``,
  ``retry-after-ms`` and ``x-ratelimit-*`` headers;
* embeddings (``POST /v1/embed`` and ``/v2/embed`` in Cohere's shape,
  ``POST /v1/embeddings`` in OpenAI's, Infinity's and vLLM's): vectors derived
  from the input's SHA-256, not from any model (see :mod:`.embeddings`);
* latency, via a sleep in the handler thread;
* the Files and Batches APIs a Batch API client needs (``POST /v1/files``
  multipart upload, ``GET /v1/files/{id}[/content]``, ``POST /v1/batches``,
  ``GET /v1/batches[/{id}]``, also under Azure's ``/openai/files`` and
  ``/openai/batches``): a batch moves ``validating -> in_progress -> completed``
  one step per retrieve, and its output file answers every input line through
  the SAME script as chat completions (see :class:`BatchScript`). Files live in
  memory; nothing is processed in the background.

The ``usage`` token counts are **not real usage**: unless the scripted
:class:`Reply` sets them, ``prompt_tokens`` is a deterministic estimate of
``(characters of all text parts) // 4 + 85 per image part`` and
``completion_tokens`` is ``len(answer text) // 4 + 1``.

Everything is deterministic for cassettes: ids are numbered per simulator
instance (``chatcmpl-sim-<n>``, ``call_sim_<n>``, ``req_sim_<n>``), ``created``
is the fixed :data:`CREATED` timestamp and the ``Date`` response header is the
same fixed instant. Only the standard library is used.

The package is split by responsibility: :mod:`.replies` (the scripting vocabulary),
:mod:`.wire` (the OpenAI JSON the answers are rendered in, shared with the in-process
:mod:`viewfinder.testing.fakes`), :mod:`.chat` (admission and chat completions),
:mod:`.batches` (the Files and Batches APIs) and :mod:`.server` (HTTP and lifecycle).
Import from this package: the split is not part of the API.

Example:
    >>> import openai
    >>> with Simulator() as sim:
    ...     sim.script({"caption": "a cat"})
    ...     client = openai.OpenAI(api_key="sk-test", base_url=sim.base_url, max_retries=0)
    ...     answer = client.chat.completions.create(
    ...         model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    ...     )
    ...     client.close()
    >>> answer.choices[0].message.content
    '{"caption": "a cat"}'
"""

from viewfinder.testing.simulator.chat import SimulatorStats
from viewfinder.testing.simulator.embeddings import EmbedFault, fake_vector
from viewfinder.testing.simulator.replies import (
    CREATED,
    SYSTEM_FINGERPRINT,
    BatchScript,
    Reply,
    ReplyLike,
    estimate_prompt_tokens,
)
from viewfinder.testing.simulator.server import Simulator

__all__ = [
    "CREATED",
    "SYSTEM_FINGERPRINT",
    "BatchScript",
    "EmbedFault",
    "Reply",
    "ReplyLike",
    "Simulator",
    "SimulatorStats",
    "estimate_prompt_tokens",
    "fake_vector",
]
