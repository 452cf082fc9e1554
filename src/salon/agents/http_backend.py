"""The ``http`` backend: hand each turn to an upstream agent service.

The gateway POSTs the turn as JSON to the configured ``base_url`` and reads
either one JSON reply or a Server-Sent Events stream of deltas (the wire
format is documented in docs/backends.md and in :func:`wire_request`). aiohttp,
JSON and SSE errors are mapped to :class:`BackendError` here.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from salon._exceptions import BackendError, ConfigError
from salon.agents.attachments import AttachmentWire, current_wire
from salon.agents.backend import TurnRequest
from salon.agents.errors import BackendRejectedError, BackendUnavailableError
from salon.agents.reply_files import attach, from_wire
from salon.config.models import HttpBackend as HttpConfig

# 2: ``attachments`` filled: name, mime_type, size, and ``data`` (base64) or ``url``.
# A JSON answer may carry ``attachments`` too (name, mime_type, base64 ``data``): files
# the agent answers with. Added without a version bump: older services never send it.
WIRE_VERSION = 2


def wire_request(request: TurnRequest, wire: AttachmentWire | None = None) -> dict[str, Any]:
    """The JSON body posted to an upstream agent service for one turn (blocking when
    it inlines files: call it in a thread then). ``wire``: default the turn's own."""
    wire = wire or current_wire()
    return {
        "v": WIRE_VERSION,
        "agent": str(request.agent_id),
        "user": request.sender,
        "for_user": request.for_user,
        "chat_id": request.chat_id,
        "session": request.session_key,
        "text": request.text,
        "history": [{"role": m.role, "content": m.content} for m in request.history],
        "persona": request.persona,
        "attachments": [wire.wire(a) for a in request.attachments],
    }


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error_text(value: Any) -> str:
    """The message of an ``error`` field: a string or ``{"message": ...}``."""
    if isinstance(value, Mapping) and "message" in value:
        value = value["message"]
    return _short(value if isinstance(value, str) else json.dumps(value))


@dataclass(frozen=True)
class SSEEvent:
    """One Server-Sent Event: its type, its data lines joined by newlines, its id."""

    event: str = "message"
    data: str = ""
    id: str | None = None


MAX_LINE_BYTES = 1 << 20
"""Default cap on one SSE line (a single ``data:`` line included)."""
MAX_EVENT_BYTES = 4 << 20
"""Default cap on the data of one SSE event (its ``data:`` lines together)."""

_EOL = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"


class SSEParser:
    """Incremental ``text/event-stream`` parser following the WHATWG rules.

    Feed it bytes as they arrive; it returns the events completed so far. Lines
    may end in CRLF, LF or CR (even split across reads), ``:`` lines are
    comments, several ``data:`` lines make one multi-line value, and a blank
    line ends an event. :meth:`close` also returns an event the stream left
    unterminated.

    Each byte is scanned once (only the new chunk is searched for line ends),
    and a line over ``max_line_bytes`` or an event over ``max_event_bytes``
    raises :class:`BackendRejectedError`, so a hostile or broken stream can
    neither stall the event loop nor fill memory.
    """

    def __init__(
        self, *, max_line_bytes: int = MAX_LINE_BYTES, max_event_bytes: int = MAX_EVENT_BYTES
    ) -> None:
        self.max_line_bytes = max_line_bytes
        self.max_event_bytes = max_event_bytes
        self._partial = bytearray()  # the current line, not yet terminated
        self._after_cr = False  # the last line ended in CR: a leading LF belongs to it
        self._started = False
        self._event = ""
        self._data: list[str] = []
        self._data_bytes = 0
        self._id: str | None = None

    def feed(self, chunk: bytes, *, final: bool = False) -> list[SSEEvent]:
        """Parse ``chunk``; return the events it completed."""
        events: list[SSEEvent] = []
        pos = 0
        if self._after_cr and chunk:
            self._after_cr = False
            if chunk[:1] == b"\n":
                pos = 1
        for match in _EOL.finditer(chunk, pos):
            self._grow(match.start() - pos)
            if self._partial:
                self._partial += chunk[pos : match.start()]
                line = bytes(self._partial)
                self._partial.clear()
            else:
                line = chunk[pos : match.start()]
            self._line(line, events)
            pos = match.end()
        if pos < len(chunk):
            self._grow(len(chunk) - pos)
            self._partial += chunk[pos:]
        if chunk:
            self._after_cr = chunk.endswith(b"\r")
        if final and self._partial:
            self._line(bytes(self._partial), events)
            self._partial.clear()
        return events

    def close(self) -> list[SSEEvent]:
        """End of stream: the events still pending (an unterminated last one included)."""
        events = self.feed(b"", final=True)
        self._line(b"", events)
        return events

    def _grow(self, more: int) -> None:
        if len(self._partial) + more > self.max_line_bytes:
            raise BackendRejectedError(
                f"sent an SSE line longer than {self.max_line_bytes} bytes (max_line_bytes)"
            )

    def _line(self, raw: bytes, events: list[SSEEvent]) -> None:
        if not self._started:
            self._started = True
            raw = raw.removeprefix(_BOM)
        if not raw:
            if self._data:
                events.append(SSEEvent(self._event or "message", "\n".join(self._data), self._id))
            self._event, self._data, self._data_bytes = "", [], 0
            return
        if raw.startswith(b":"):
            return
        name, _, value = raw.partition(b":")
        value = value.removeprefix(b" ")
        if name == b"data":
            self._data_bytes += len(value) + 1
            if self._data_bytes > self.max_event_bytes:
                raise BackendRejectedError(
                    f"sent an SSE event larger than {self.max_event_bytes} bytes (max_event_bytes)"
                )
            self._data.append(value.decode("utf-8", "replace"))
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id" and b"\0" not in value:
            self._id = value.decode("utf-8", "replace")


class HttpAgentBackend:
    """Posts turns to an upstream agent service and relays its reply.

    ``env`` (default: ``os.environ``) is where ``token_env`` is looked up; a
    configured ``token_env`` that is unset is a :class:`ConfigError` at start-up.
    ``max_line_bytes`` and ``max_event_bytes`` cap an SSE stream's lines and
    events; ``deadline_s`` bounds the whole reply, however the service keeps the
    connection alive (``timeout_s`` only bounds each pause).
    """

    def __init__(
        self,
        config: HttpConfig,
        *,
        agent_id: str = "",
        env: Mapping[str, str] | None = None,
        max_line_bytes: int = MAX_LINE_BYTES,
        max_event_bytes: int = MAX_EVENT_BYTES,
        deadline_s: float = 600.0,
    ) -> None:
        self.config = config
        self.agent_id = agent_id
        self.url = config.base_url
        self.max_line_bytes = max_line_bytes
        self.max_event_bytes = max_event_bytes
        self.deadline_s = deadline_s
        env = os.environ if env is None else env
        accept = "text/event-stream, application/json" if config.stream else "application/json"
        self._headers = {"Accept": accept, **config.headers}
        if config.token_env:
            token = env.get(config.token_env)
            if not token:
                key = f"agents.{agent_id}.backend.token_env"
                raise ConfigError(
                    f"{key}: environment variable {config.token_env} is not set", path=key
                )
            self._headers["Authorization"] = f"Bearer {token}"
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=config.timeout_s, sock_read=config.timeout_s
        )
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def aclose(self) -> None:
        """Close the HTTP session (a later turn opens a new one)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def stream(self, request: TurnRequest) -> AsyncIterator[str]:
        """Yield the service's reply (one chunk for JSON, deltas for SSE)."""
        try:
            if request.attachments:  # files are read (and base64-encoded) off the loop
                body = json.dumps(await asyncio.to_thread(wire_request, request, current_wire()))
            else:
                body = json.dumps(wire_request(request))
        except OSError as exc:
            raise BackendError(f"cannot read an attachment for {self.url}: {exc}") from exc
        except (TypeError, ValueError) as exc:
            raise BackendError(f"cannot encode the turn for {self.url}: {exc}") from exc
        headers = {**self._headers, "Content-Type": "application/json"}
        deadline = asyncio.get_running_loop().time() + self.deadline_s
        try:
            async with self._client().post(self.url, data=body, headers=headers) as resp:
                if not 200 <= resp.status < 300:
                    raise await self._status_error(resp)
                ctype = resp.content_type
                if ctype == "text/event-stream":
                    async for chunk in self._read_sse(resp, deadline):
                        yield chunk
                elif ctype == "application/json" or ctype.endswith("+json"):
                    async with self._before(deadline):
                        raw = await resp.read()
                    reply = self._json_reply(raw)
                    if reply:
                        yield reply
                else:
                    raise BackendRejectedError(
                        f"{self.url} answered with content type {ctype!r} "
                        "(expected application/json or text/event-stream)"
                    )
        except TimeoutError as exc:
            raise BackendUnavailableError(
                f"{self.url} did not answer within {self.config.timeout_s:g} s"
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise BackendUnavailableError(f"cannot reach {self.url}") from exc
        except aiohttp.ClientError as exc:
            raise BackendUnavailableError(
                f"connection to {self.url} failed: {type(exc).__name__}: {exc}"
            ) from exc

    async def _status_error(self, resp: aiohttp.ClientResponse) -> BackendError:
        detail = (await resp.content.read(4096)).decode("utf-8", "replace")
        try:
            data = json.loads(detail)
        except ValueError:
            data = None
        if isinstance(data, Mapping) and "error" in data:
            detail = _error_text(data["error"])
        msg = f"{self.url} answered HTTP {resp.status}: {_short(detail) or resp.reason}"
        if resp.status >= 500 or resp.status in (408, 429):
            return BackendUnavailableError(msg, status=resp.status)
        return BackendRejectedError(msg, status=resp.status)

    def _json_reply(self, raw: bytes) -> str:
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise BackendRejectedError(f"{self.url} sent invalid JSON: {exc}") from exc
        if not isinstance(data, Mapping):
            raise BackendRejectedError(f"{self.url} sent JSON that is not an object")
        if data.get("error") is not None:
            raise BackendRejectedError(
                f"{self.url} reported an error: {_error_text(data['error'])}"
            )
        reply = data.get("reply")
        if not isinstance(reply, str):
            raise BackendRejectedError(f'{self.url} sent no "reply" string')
        files = data.get("attachments") or []
        if not isinstance(files, list):
            raise BackendRejectedError(f'{self.url} sent "attachments" that is not a list')
        try:
            for file in [from_wire(entry) for entry in files]:
                attach(file)  # sent after the reply's text
        except ValueError as exc:
            raise BackendRejectedError(f"{self.url} sent a bad attachment: {exc}") from exc
        return reply

    @asynccontextmanager
    async def _before(self, deadline: float) -> AsyncIterator[None]:
        """Bound a read by the reply's deadline (never spans a ``yield`` to the caller)."""
        try:
            async with asyncio.timeout_at(deadline):
                yield
        except TimeoutError as exc:
            if asyncio.get_running_loop().time() < deadline:
                raise  # aiohttp's own pause timeout: reported as such by stream()
            raise BackendUnavailableError(
                f"{self.url} did not finish its reply within {self.deadline_s:g} s (deadline_s)"
            ) from exc

    async def _read_sse(self, resp: aiohttp.ClientResponse, deadline: float) -> AsyncIterator[str]:
        parser = SSEParser(max_line_bytes=self.max_line_bytes, max_event_bytes=self.max_event_bytes)
        while True:
            async with self._before(deadline):
                raw = await resp.content.readany()  # b"" at the end of the body
            try:
                events = parser.feed(raw) if raw else parser.close()
            except BackendRejectedError as exc:
                raise BackendRejectedError(f"{self.url} {exc}") from exc
            for event in events:
                delta, done = self._sse_delta(event)
                if delta:
                    yield delta
                if done:
                    return
            if not raw:
                raise BackendUnavailableError(f"the stream from {self.url} ended before done")

    def _sse_delta(self, event: SSEEvent) -> tuple[str, bool]:
        """The text an SSE event carries, and whether the reply is complete."""
        if event.event not in ("message", "error"):
            return "", False  # other event types (progress, ping, …) are for the future
        data = event.data.strip()
        if event.event == "message" and data == "[DONE]":
            return "", True
        try:
            payload = json.loads(data) if data else {}
        except ValueError as exc:
            if event.event == "error":
                raise BackendRejectedError(f"{self.url} reported an error: {_short(data)}") from exc
            raise BackendRejectedError(f"{self.url} sent an event that is not JSON: {exc}") from exc
        if event.event == "error" or (
            isinstance(payload, Mapping) and payload.get("error") is not None
        ):
            error = payload.get("error", payload) if isinstance(payload, Mapping) else payload
            raise BackendRejectedError(f"{self.url} reported an error: {_error_text(error)}")
        if not isinstance(payload, Mapping):
            raise BackendRejectedError(f"{self.url} sent an event that is not a JSON object")
        delta = payload.get("delta", "")
        if not isinstance(delta, str):
            raise BackendRejectedError(f'{self.url} sent a "delta" that is not a string')
        return delta, bool(payload.get("done"))
