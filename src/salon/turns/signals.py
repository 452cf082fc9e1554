"""Typing and "busy" for slow turns only: the fast path sends neither.

A reply whose first chunk comes within ``after_s`` costs one send, as for a bare
bot. A slower one shows a typing notice (refreshed while it lasts, cleared when
it ends) and tells the agent's heartbeat it is busy.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from salon._exceptions import MatrixError
from salon.ids import AgentId
from salon.matrix.api import MatrixAPI
from salon.tasks import spawn
from salon.turns.spec import TurnSpec

TYPING_REFRESH_S = 20.0


async def slow_signals(
    api: MatrixAPI,
    spec: TurnSpec,
    shown: Callable[[], bool],
    *,
    after_s: float,
    on_slow: Callable[[AgentId], None] | None,
) -> None:
    """Run alongside a turn (cancelled when it ends): after ``after_s`` with nothing
    ``shown`` yet, say busy and keep a typing notice up."""
    await asyncio.sleep(after_s)
    if shown():
        return
    if on_slow is not None:
        on_slow(spec.agent_id)
    try:
        while True:
            with contextlib.suppress(MatrixError):
                await api.set_typing(spec.room_id, True, int(TYPING_REFRESH_S * 1500))
            await asyncio.sleep(TYPING_REFRESH_S)
    finally:
        spawn(_typing_off(api, spec), f"typing-off:{spec.agent_id}")


async def _typing_off(api: MatrixAPI, spec: TurnSpec, tries: int = 3) -> None:
    """Clear the typing notice; a hiccup is tried again (else it lingers until it expires)."""
    for attempt in range(tries):
        try:
            await api.set_typing(spec.room_id, False)
            return
        except MatrixError:
            if attempt == tries - 1:
                raise
            await asyncio.sleep(1.0 * (attempt + 1))
