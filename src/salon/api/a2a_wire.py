"""The A2A (Agent2Agent) wire shapes Salon's agents speak: JSON-RPC over HTTP, in the
protocol's 1.0 form (``SendMessage``, ``SendStreamingMessage``) and its 0.3 form
(``message/send``, ``message/stream``), which differ in names and enum spellings only.

Salon answers ``SendMessage`` with one agent ``Message``; a stream is a ``Task``
(working), its text as ``artifactUpdate`` chunks, then a final ``statusUpdate``.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

V1 = "1.0"
V03 = "0.3"
# method → (protocol version, streamed)
METHODS: dict[str, tuple[str, bool]] = {
    "SendMessage": (V1, False),
    "SendStreamingMessage": (V1, True),
    "message/send": (V03, False),
    "message/stream": (V03, True),
}
# JSON-RPC error codes (A2A uses the standard ones for these).
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# A context id names a durable session (`agent:<id>:api:a2a-<context>`): kept short and plain.
_CONTEXT_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_STATES = {
    V1: {"working": "TASK_STATE_WORKING", "completed": "TASK_STATE_COMPLETED"},
    V03: {"working": "working", "completed": "completed"},
}
_STATES[V1]["failed"] = "TASK_STATE_FAILED"
_STATES[V03]["failed"] = "failed"


class WireError(Exception):
    """A request the JSON-RPC layer refuses, with its error code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Ask:
    """One ``SendMessage`` call: its text, the conversation (context) and the version."""

    text: str
    context_id: str
    version: str
    streamed: bool
    message_id: str


def parse_call(body: Any) -> tuple[Any, Ask]:
    """The JSON-RPC id and the ask of a request body.

    Raises:
        WireError: not a JSON-RPC request, an unknown method, or a message without text.
    """
    if not isinstance(body, dict) or body.get("jsonrpc") != "2.0" or "method" not in body:
        raise WireError(INVALID_REQUEST, "not a JSON-RPC 2.0 request")
    rpc_id = body.get("id")
    method = body["method"]
    if method not in METHODS:
        raise WireError(METHOD_NOT_FOUND, f"method {method!r} is not supported here")
    version, streamed = METHODS[method]
    params = body.get("params")
    message = params.get("message") if isinstance(params, dict) else None
    if not isinstance(message, dict):
        raise WireError(INVALID_PARAMS, "params.message: required")
    parts = message.get("parts")
    texts = [
        p["text"] for p in parts or [] if isinstance(p, dict) and isinstance(p.get("text"), str)
    ]
    text = "\n".join(texts).strip()
    if not text:
        raise WireError(INVALID_PARAMS, "params.message.parts: no text part")
    context = message.get("contextId") or uuid.uuid4().hex
    if not isinstance(context, str) or not _CONTEXT_RE.match(context):
        raise WireError(INVALID_PARAMS, "params.message.contextId: 1-128 of A-Z a-z 0-9 . _ : -")
    message_id = message.get("messageId")
    message_id = message_id if isinstance(message_id, str) else ""
    return rpc_id, Ask(text, context, version, streamed, message_id)


def result(rpc_id: Any, value: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rpc_id, "result": value}


def error(rpc_id: Any, code: int, message: str, salon_code: str | None = None) -> dict[str, Any]:
    """A JSON-RPC error (with Salon's stable catalogue code in ``data``, when there is one)."""
    body: dict[str, Any] = {"code": code, "message": message}
    if salon_code is not None:
        body["data"] = {"code": salon_code}
    return {"jsonrpc": "2.0", "id": rpc_id, "error": body}


def _parts(version: str, text: str) -> list[dict[str, str]]:
    return [{"text": text}] if version == V1 else [{"kind": "text", "text": text}]


def agent_message(ask: Ask, text: str, turn_id: str) -> dict[str, Any]:
    """The agent's answer as one ``Message`` (``metadata.salonTurn``: its ledger turn)."""
    message = {
        "messageId": uuid.uuid4().hex,
        "contextId": ask.context_id,
        "role": "ROLE_AGENT" if ask.version == V1 else "agent",
        "parts": _parts(ask.version, text),
        "metadata": {"salonTurn": turn_id},
    }
    return {"message": message} if ask.version == V1 else {"kind": "message", **message}


def task_event(ask: Ask, task_id: str) -> dict[str, Any]:
    """The stream's first event: the task, working."""
    task = {
        "id": task_id,
        "contextId": ask.context_id,
        "status": {"state": _STATES[ask.version]["working"]},
    }
    return {"task": task} if ask.version == V1 else {"kind": "task", **task}


def chunk_event(ask: Ask, task_id: str, artifact_id: str, text: str, first: bool) -> dict[str, Any]:
    """A piece of the answer: appended to the task's one ``answer`` artifact."""
    update = {
        "taskId": task_id,
        "contextId": ask.context_id,
        "artifact": {
            "artifactId": artifact_id,
            "name": "answer",
            "parts": _parts(ask.version, text),
        },
        "append": not first,
        "lastChunk": False,
    }
    return (
        {"artifactUpdate": update} if ask.version == V1 else {"kind": "artifact-update", **update}
    )


def status_event(ask: Ask, task_id: str, state: str, note: str | None = None) -> dict[str, Any]:
    """The stream's last event: the task ``completed`` or ``failed`` (with ``note``)."""
    status: dict[str, Any] = {"state": _STATES[ask.version][state]}
    if note:
        status["message"] = {
            "messageId": uuid.uuid4().hex,
            "role": "ROLE_AGENT" if ask.version == V1 else "agent",
            "parts": _parts(ask.version, note),
        }
    update = {"taskId": task_id, "contextId": ask.context_id, "status": status}
    if ask.version == V1:
        return {"statusUpdate": update}
    return {"kind": "status-update", **update, "final": True}
