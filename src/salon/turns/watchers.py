"""Following a turn from outside: its chunks as they come, and its outcome.

The HTTP API starts a turn and waits on it (streaming its chunks to the caller)
through a watcher; the turn itself runs in the one turn runner like any other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from salon.ids import AgentId
from salon.turns.spec import Outcome

TurnKey = tuple[str, AgentId]


@dataclass
class TurnWatcher:
    """Chunks of one turn (to ``on_chunk``) and its outcome (``done``)."""

    on_chunk: Callable[[str], None] | None = None
    done: asyncio.Future[Outcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Watchers:
    """The watchers of turns running in this process."""

    def __init__(self) -> None:
        self._by_key: dict[TurnKey, TurnWatcher] = {}

    def watch(self, key: TurnKey, on_chunk: Callable[[str], None] | None = None) -> TurnWatcher:
        """Follow the turn ``key`` (call before submitting it)."""
        watcher = TurnWatcher(on_chunk)
        self._by_key[key] = watcher
        return watcher

    def forget(self, key: TurnKey) -> None:
        """Stop following (the caller went away)."""
        self._by_key.pop(key, None)

    def chunk(self, key: TurnKey, text: str) -> None:
        """A chunk of ``key`` came from the backend."""
        watcher = self._by_key.get(key)
        if watcher is not None and watcher.on_chunk is not None:
            watcher.on_chunk(text)

    def closed(self, key: TurnKey, outcome: Outcome) -> None:
        """``key`` ended with ``outcome``."""
        watcher = self._by_key.pop(key, None)
        if watcher is not None and not watcher.done.done():
            watcher.done.set_result(outcome)
