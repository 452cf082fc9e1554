"""The offline, deterministic backend: answers with what it was told."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from salon._exceptions import BackendError
from salon.agents.attachments import describe_all
from salon.agents.backend import TurnRequest


class EchoBackend:
    """Echoes the message (with an optional prefix); ``fail_on`` text makes it fail."""

    # It answers from the message alone: no turn reads its persona or its session's
    # history for it (400 rows a turn were most of Salon's own cost per message,
    # bench/scale.py --part cost).
    reads_context = False

    def __init__(self, *, prefix: str = "", delay_s: float = 0.0, fail_on: str | None = None):
        self.prefix = prefix
        self.delay_s = delay_s
        self.fail_on = fail_on

    async def stream(self, request: TurnRequest) -> AsyncIterator[str]:
        """Yield the echo in one chunk, then a line describing each attachment."""
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_on and self.fail_on in request.text:
            raise BackendError(f"echo backend told to fail on {self.fail_on!r}")
        text = f"{self.prefix}{request.text}" if request.text or not request.attachments else ""
        yield describe_all(text, request.attachments)
