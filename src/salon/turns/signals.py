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


class SlowSignals:
    """Runs alongside a turn (:meth:`cancel` when it ends): after ``after_s`` with
    nothing ``shown`` yet, says busy and keeps a typing notice up.

    A timer until then, not a task: nearly every turn ends first, and a task apiece
    (with its sleep) was a visible share of the event loop's time per message."""

    def __init__(
        self,
        api: MatrixAPI,
        spec: TurnSpec,
        shown: Callable[[], bool],
        *,
        after_s: float,
        on_slow: Callable[[AgentId], None] | None,
    ) -> None:
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            after_s, self._fire, api, spec, shown, on_slow
        )

    def _fire(
        self,
        api: MatrixAPI,
        spec: TurnSpec,
        shown: Callable[[], bool],
        on_slow: Callable[[AgentId], None] | None,
    ) -> None:
        self._timer = None
        if not shown():
            self._task = spawn(_slow(api, spec, on_slow), f"slow:{spec.agent_id}")

    def cancel(self) -> None:
        """The turn ended: no signal from now on (a typing notice shown is cleared)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None:
            self._task.cancel()


async def _slow(api: MatrixAPI, spec: TurnSpec, on_slow: Callable[[AgentId], None] | None) -> None:
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
