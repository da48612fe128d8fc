"""The Files and Batches APIs of the simulator, kept in memory.

:class:`FilesAndBatches` is a mixin of :class:`~viewfinder.testing.simulator.Simulator`:
uploads, file contents, batch creation, listing and retrieval (each retrieve moves a
batch one step, as scripted by :class:`~viewfinder.testing.simulator.replies.BatchScript`).
A finishing batch answers every input line through the SAME script as chat completions.
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import HeaderParser
from typing import Any
from urllib.parse import parse_qs

from viewfinder.testing.simulator.replies import (
    CREATED,
    BatchScript,
    Reply,
    ReplyLike,
    to_reply,
)
from viewfinder.testing.simulator.wire import Response, error_body, render_reply

__all__ = ["FILES_API_PATH", "FilesAndBatches", "StoredBatch", "StoredFile"]

FILES_API_PATH = re.compile(
    r"^(?:/v1|/openai)?/(?P<kind>files|batches)(?:/(?P<id>[^/]+))?(?:/(?P<action>content))?/?$"
)
_TERMINAL_BATCH = frozenset({"completed", "failed", "expired", "cancelled"})
"""Paths of the Files and Batches APIs (OpenAI's ``/v1`` and Azure's ``/openai``)."""


@dataclass
class StoredFile:
    """An uploaded (or output) file: its API object and its bytes."""

    meta: dict[str, Any]
    data: bytes = field(repr=False)


@dataclass
class StoredBatch:
    """A created batch: its API object, how it ends, and how often it was retrieved."""

    batch: dict[str, Any]
    script: BatchScript
    polls_seen: int = 0


def _multipart_fields(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Parse a ``multipart/form-data`` body into ``{name: (filename, bytes)}``."""
    header = HeaderParser().parsestr(f"Content-Type: {content_type}\r\n\r\n")
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise ValueError("multipart body without a boundary")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for chunk in body.split(b"--" + boundary.encode("latin-1"))[1:]:
        if chunk.startswith(b"--"):
            break
        head, sep, content = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("multipart part without headers")
        part = HeaderParser().parsestr(head.decode("latin-1") + "\r\n\r\n")
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            fields[name] = (part.get_filename(), content.removesuffix(b"\r\n"))
    return fields


def _batch_line_problem(
    number: int, line: bytes, endpoint: str, seen: set[str]
) -> dict[str, Any] | None:
    """The batch-validation error of one input line (1-based ``number``), or None."""
    try:
        request = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        request = None
    problem: tuple[str, str] | None = None
    if not isinstance(request, dict) or not isinstance(request.get("body"), dict):
        problem = ("invalid_json_line", "the line is not a JSON object with a 'body' object")
    elif not isinstance(request.get("custom_id"), str) or not request["custom_id"]:
        problem = ("missing_required_parameter", "'custom_id' must be a non-empty string")
    elif request["custom_id"] in seen:
        problem = ("duplicate_custom_id", f"duplicate custom_id {request['custom_id']!r}")
    elif request.get("method") != "POST":
        problem = ("invalid_method", "'method' must be POST")
    elif request.get("url") != endpoint:
        problem = ("invalid_url", f"'url' must be the batch endpoint {endpoint!r}")
    elif not isinstance(request["body"].get("messages"), list):
        problem = ("invalid_request", "'body.messages' must be a list")
    if problem is None:
        seen.add(request["custom_id"])
        return None
    code, message = problem
    return {"code": code, "message": message, "param": None, "line": number}


def _jsonl(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


class FilesAndBatches:
    """Mixin: the Files and Batches APIs, answered in a handler thread.

    The attributes below are set by ``Simulator.__init__`` (see its docstring).
    """

    default: Callable[[dict[str, Any]], ReplyLike] | None
    model_name: str | None
    batch_polls: int
    api_calls: list[str]
    batch_requests: list[dict[str, Any]]
    _lock: threading.Lock
    _queue: deque[Reply]
    _counter: int
    _files: dict[str, StoredFile]
    _batches: dict[str, StoredBatch]
    _batch_scripts: deque[BatchScript]
    _file_counter: int
    _batch_counter: int

    def _handle_files_api(
        self, method: str, path: str, query: str, raw: bytes, content_type: str
    ) -> Response:
        """Answer one Files / Batches API request (runs in a handler thread)."""
        match = FILES_API_PATH.match(path)
        assert match is not None
        kind, object_id, action = match.group("kind", "id", "action")
        with self._lock:
            self.api_calls.append(f"{method} {path}")
        if kind == "files":
            if method == "POST" and object_id is None:
                return self._upload_file(raw, content_type)
            if method == "GET" and object_id is not None:
                return self._get_file(object_id, content=action == "content")
        elif action is None:
            if method == "POST" and object_id is None:
                return self._create_batch(raw)
            if method == "GET" and object_id is None:
                return self._list_batches(query)
            if method == "GET" and object_id is not None:
                return self._retrieve_batch(object_id)
        message = f"simulator: no route {method} {path}"
        return Response(404, error_body(404, message, None, None))

    @staticmethod
    def _json(data: Any, status: int = 200) -> Response:
        return Response(status, json.dumps(data).encode())

    @staticmethod
    def _client_error(status: int, message: str) -> Response:
        return Response(status, error_body(status, f"simulator: {message}", None, None))

    def _store_file(self, filename: str, purpose: str, data: bytes) -> dict[str, Any]:
        """Keep `data` as a new file; caller holds the lock."""
        self._file_counter += 1
        file_id = f"file-sim-{self._file_counter}"
        meta: dict[str, Any] = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": CREATED,
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }
        self._files[file_id] = StoredFile(meta, data)
        return meta

    def _upload_file(self, raw: bytes, content_type: str) -> Response:
        try:
            fields = _multipart_fields(content_type, raw)
        except ValueError as exc:
            return self._client_error(400, f"the upload is not multipart/form-data: {exc}")
        filename, data = fields.get("file", (None, b""))
        purpose = fields.get("purpose", (None, b""))[1].decode("utf-8", "replace")
        if filename is None or not purpose:
            return self._client_error(400, "an upload needs a 'file' part and a 'purpose'")
        with self._lock:
            meta = self._store_file(filename, purpose, data)
        return self._json(meta)

    def _get_file(self, file_id: str, *, content: bool) -> Response:
        with self._lock:
            stored = self._files.get(file_id)
        if stored is None:
            return self._client_error(404, f"no such file {file_id!r}")
        if content:
            return Response(200, stored.data, content_type="application/octet-stream")
        return self._json(stored.meta)

    def _create_batch(self, raw: bytes) -> Response:
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("endpoint"), str):
            return self._client_error(400, "a batch needs 'input_file_id' and 'endpoint'")
        if body.get("completion_window") != "24h":
            return self._client_error(400, "'completion_window' must be '24h'")
        with self._lock:
            input_file_id = body.get("input_file_id")
            if not isinstance(input_file_id, str) or input_file_id not in self._files:
                return self._client_error(404, f"no such file {input_file_id!r}")
            self._batch_counter += 1
            batch: dict[str, Any] = {
                "id": f"batch_sim_{self._batch_counter}",
                "object": "batch",
                "endpoint": body["endpoint"],
                "errors": None,
                "input_file_id": input_file_id,
                "completion_window": "24h",
                "status": "validating",
                "output_file_id": None,
                "error_file_id": None,
                "created_at": CREATED,
                "in_progress_at": None,
                "expires_at": CREATED + 86_400,
                "finalizing_at": None,
                "completed_at": None,
                "failed_at": None,
                "expired_at": None,
                "cancelling_at": None,
                "cancelled_at": None,
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
                "metadata": body.get("metadata"),
            }
            script = self._batch_scripts.popleft() if self._batch_scripts else BatchScript()
            self._batches[batch["id"]] = StoredBatch(batch, script)
            return self._json(batch)

    def _list_batches(self, query: str) -> Response:
        params = parse_qs(query)
        after = params.get("after", [None])[0]
        try:
            limit = max(1, min(100, int(params.get("limit", ["20"])[0])))
        except ValueError:
            return self._client_error(400, "'limit' must be an integer")
        with self._lock:
            newest_first = [stored.batch for stored in reversed(self._batches.values())]
            ids = [batch["id"] for batch in newest_first]
            start = ids.index(after) + 1 if after in ids else 0
            page = [dict(batch) for batch in newest_first[start : start + limit]]
        return self._json(
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": start + limit < len(newest_first),
            }
        )

    def _retrieve_batch(self, batch_id: str) -> Response:
        """Return the batch, advancing it one step (answering its lines when it finishes)."""
        with self._lock:
            stored = self._batches.get(batch_id)
            if stored is None:
                return self._client_error(404, f"no such batch {batch_id!r}")
            batch = stored.batch
            if batch["status"] in _TERMINAL_BATCH or batch["status"] == "finalizing":
                return self._json(batch)
            stored.polls_seen += 1
            data = self._files[batch["input_file_id"]].data
            if batch["status"] == "validating":
                problems = self._validate_batch(batch, data)
                if problems:
                    self._fail_batch(batch, problems)
                    return self._json(batch)
                batch["status"], batch["in_progress_at"] = "in_progress", CREATED
            polls = stored.script.polls if stored.script.polls is not None else self.batch_polls
            if stored.polls_seen < polls:
                return self._json(batch)
            if stored.script.status == "failed":
                problem = {"code": "scripted_failure", "message": stored.script.error_message}
                self._fail_batch(batch, [{**problem, "param": None, "line": None}])
                return self._json(batch)
            batch["status"], batch["finalizing_at"] = "finalizing", CREATED
        self._run_batch(stored, data)
        with self._lock:
            return self._json(batch)

    @staticmethod
    def _validate_batch(batch: dict[str, Any], data: bytes) -> list[dict[str, Any]]:
        """Validation errors of the input file (empty when valid); sets the total count."""
        lines = [line for line in data.splitlines() if line.strip()]
        seen: set[str] = set()
        problems = [
            problem
            for number, line in enumerate(lines, start=1)
            if (problem := _batch_line_problem(number, line, batch["endpoint"], seen)) is not None
        ]
        if not lines:
            problems.append({"code": "empty_file", "message": "no requests", "param": None})
        batch["request_counts"] = {"total": len(lines), "completed": 0, "failed": 0}
        return problems

    @staticmethod
    def _fail_batch(batch: dict[str, Any], problems: list[dict[str, Any]]) -> None:
        batch["status"], batch["failed_at"] = "failed", CREATED
        batch["errors"] = {"object": "list", "data": problems}

    def _run_batch(self, stored: StoredBatch, data: bytes) -> None:
        """Answer every input line through the script; write the output and error files."""
        script, batch = stored.script, stored.batch
        outputs: list[bytes] = []
        errors: list[bytes] = []
        lines = [json.loads(line) for line in data.splitlines() if line.strip()]
        for index, request in enumerate(lines):
            if script.status in ("expired", "cancelled") and index >= script.answered:
                code = f"batch_{script.status}"
                error = {"code": code, "message": f"simulator: the batch was {script.status}"}
                record = {"id": None, "custom_id": request["custom_id"], "response": None}
                errors.append(json.dumps({**record, "error": error}).encode())
                continue
            record = self._answer_batch_line(request)
            ok = record["response"]["status_code"] == 200
            (outputs if ok else errors).append(json.dumps(record).encode())
        with self._lock:
            stem = batch["id"]
            if outputs:
                output = self._store_file(f"{stem}_output.jsonl", "batch_output", _jsonl(outputs))
                batch["output_file_id"] = output["id"]
            if errors:
                error_file = self._store_file(f"{stem}_error.jsonl", "batch_output", _jsonl(errors))
                batch["error_file_id"] = error_file["id"]
            total = len(lines)
            batch["request_counts"] = {
                "total": total,
                "completed": len(outputs),
                "failed": len(errors),
            }
            batch["status"], batch[f"{script.status}_at"] = script.status, CREATED

    def _answer_batch_line(self, request: dict[str, Any]) -> dict[str, Any]:
        """One output-file record: the scripted reply to `request["body"]`."""
        body = request["body"]
        with self._lock:
            self._counter += 1
            n = self._counter
            self.batch_requests.append(body)
            reply = self._queue.popleft() if self._queue else None
        response: Response | None = None
        if reply is None and self.default is not None:
            try:
                reply = to_reply(self.default(body))
            except Exception as exc:
                message = f"simulator: default raised {exc!r}"
                response = Response(500, error_body(500, message, None, None))
        if response is None and reply is None:
            message = "simulator: no scripted reply left"
            response = Response(500, error_body(500, message, None, None))
        if response is None and reply is not None:
            try:
                response = render_reply(
                    reply, {**body, "stream": False}, n, model_name=self.model_name, deployment=None
                )
            except Exception as exc:
                message = f"simulator: could not render the scripted reply: {exc!r}"
                response = Response(500, error_body(500, message, None, None))
        assert response is not None
        return {
            "id": f"batch_req_sim_{n}",
            "custom_id": request["custom_id"],
            "response": {
                "status_code": response.status,
                "request_id": response.headers.get("x-request-id", f"req_sim_{n}"),
                "body": json.loads(response.body),
            },
            "error": None,
        }
