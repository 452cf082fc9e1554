"""A warm start takes what the store knows of the homeserver, and checks it after.

At each start every agent was asked its joined rooms (twice: once for its rooms,
once for the listener), the members of its room, and its Space links: four to six
requests an agent, 19 s for a thousand agents before the first one could answer.
In appservice mode the gateway keeps what it learnt (each identity's joined
rooms, as the transactions' membership events kept them current; the Space, the
lobby, the people invited, the rooms linked) under one ``kv`` key, written when a
start has checked everything and at stop. The next start with the same Space,
lobby and people takes an agent as it was when its room and the lobby are among
its kept rooms, and asks nothing about it.

What changed while the gateway was down is found after it is ready: each identity
is asked its joined rooms again in the background, behind the replies
(:class:`~salon.pacing.Backstage`), and an agent no longer in its room or the lobby
goes through the cold path again (joined back, people invited, linked), counted in
``salon_warm_start_drift_total``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from salon._exceptions import MatrixError
from salon.ids import AgentId, RoomId, UserId
from salon.matrix.api import MatrixAPI
from salon.metrics import WARM_DRIFT

log = structlog.get_logger("salon.gateway.warm")


class Values(Protocol):
    """Where the facts are kept (``store.kv``)."""

    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str) -> None: ...


def facts_key(router: UserId) -> str:
    """The ``kv`` key of a deployment's warm-start facts (one per router)."""
    return f"warm:{router}"


@dataclass
class WarmFacts:
    """What a start found: the Space and lobby, the people and peers invited into
    the agent rooms, the rooms linked into the Space, each identity's joined rooms."""

    space_id: str | None
    lobby_id: str
    invitees: list[str]
    linked: set[str] = field(default_factory=set)
    joined: dict[str, set[str]] = field(default_factory=dict)
    # Written at a clean stop: a run killed leaves them unclean, not trusted (the
    # rooms joined while it ran are not in them).
    clean: bool = False

    def trusts(self, lobby_id: str, invitees: Sequence[str]) -> bool:
        """Whether these facts are of the same deployment as this start's."""
        return self.lobby_id == lobby_id and self.invitees == sorted(invitees)

    def rooms_of(self, user_id: str) -> set[RoomId] | None:
        """An identity's kept joined rooms (None: not kept)."""
        rooms = self.joined.get(user_id)
        return None if rooms is None else {RoomId(r) for r in rooms}

    def dump(self) -> str:
        """As kept in the store (JSON)."""
        return json.dumps(
            {
                "space_id": self.space_id,
                "lobby_id": self.lobby_id,
                "invitees": self.invitees,
                "linked": sorted(self.linked),
                "joined": {u: sorted(r) for u, r in self.joined.items()},
                "clean": self.clean,
            }
        )


async def load_facts(values: Values, router: UserId) -> WarmFacts | None:
    """The kept facts; None when there are none (or they do not read)."""
    raw = await values.get(facts_key(router))
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        return WarmFacts(
            space_id=data["space_id"],
            lobby_id=data["lobby_id"],
            invitees=list(data["invitees"]),
            linked=set(data["linked"]),
            joined={u: set(r) for u, r in data["joined"].items()},
            clean=data.get("clean") is True,
        )
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        log.warning("warm.facts_unreadable", error=str(e))
        return None


async def save_facts(values: Values, router: UserId, facts: WarmFacts) -> None:
    """Keep the facts for the next start."""
    await values.set(facts_key(router), facts.dump())


Relearn = Callable[[MatrixAPI], Awaitable[set[RoomId]]]
Repair = Callable[[AgentId, set[RoomId]], Awaitable[RoomId | None]]
"""The cold path for one agent: its room (None: it could not be repaired)."""


@dataclass(frozen=True)
class Unchecked:
    """The agents a warm start took from the store: their rooms and the lobby."""

    agents: Mapping[AgentId, RoomId]
    lobby_id: RoomId
    # Told when an agent's repaired room is another one (its old room was removed).
    moved: Callable[[AgentId, RoomId], None] | None = None


async def check_after_start(
    identities: Iterable[tuple[AgentId | None, MatrixAPI]],
    unchecked: Unchecked,
    relearn: Relearn,
    repair: Repair,
    door: Callable[[], Awaitable[None]] | None = None,
) -> int:
    """Ask each identity its joined rooms again (``relearn``, through ``door``); an
    agent taken from the store that is no longer in its room or the lobby is repaired.
    Returns the agents repaired. An identity that cannot be asked is skipped (the
    next start asks it again: the facts are only written when all were asked)."""
    repaired = 0
    for agent_id, api in identities:
        if door is not None:
            await door()
        try:
            rooms = await relearn(api)
        except MatrixError as e:
            log.warning("warm.check_failed", user=api.user_id, error=str(e))
            raise
        if agent_id is None or (room_id := unchecked.agents.get(agent_id)) is None:
            continue
        missing = [r for r in (room_id, unchecked.lobby_id) if r not in rooms]
        if not missing:
            continue
        kind = "own_room" if room_id in missing else "lobby"
        WARM_DRIFT.labels(kind=kind).inc()
        log.warning("warm.drift", agent=agent_id, missing=missing)
        new_room = await repair(agent_id, rooms)
        if new_room is None:
            continue
        repaired += 1
        if new_room != room_id and unchecked.moved is not None:
            log.warning("warm.room_moved", agent=agent_id, old=room_id, room_id=new_room)
            unchecked.moved(agent_id, new_room)
    return repaired
