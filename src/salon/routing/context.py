"""What the router knows about one message: plain data, no Matrix API, no store.

The dispatcher builds a :class:`MessageContext` from an inbound event (and
what the store says about the room) and hands it to
:meth:`salon.routing.router.Router.route`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from salon.ids import server_of_user
from salon.roster import Member as AgentInfo  # one who-is-who: routing sees roster members

__all__ = ["AgentInfo", "Binding", "MessageContext"]


@dataclass(frozen=True)
class Binding:
    """The room belongs to an agent: its own room (``agent``) or a ``!new`` chat (``chat``)."""

    agent_id: str
    kind: Literal["agent", "chat"]


@dataclass(frozen=True)
class MessageContext:
    """One inbound message, reduced to what routing needs.

    - ``mentioned_user_ids``: from ``content["m.mentions"]["user_ids"]`` (pills);
    - ``agents_in_room``: ids of our agents joined to the room. Only these can be
      reached by a mention; when it is empty the AI router considers every agent;
    - ``binding``: set when the room is bound to an agent (agent room, ``!new`` chat);
    - ``sender_agent``: the agent id when the sender is an agent (ours or a peer's);
    - ``hop``: how many agent-to-agent hops led to this message (0 from a person);
    - ``selected_agent``: in a ``!new`` chat, the agent the sender has picked since.
    """

    room_id: str
    sender: str
    body: str
    room_aliases: tuple[str, ...] = ()
    thread_root: str | None = None
    formatted_body: str | None = None
    mentioned_user_ids: tuple[str, ...] = ()
    agents_in_room: frozenset[str] = frozenset()
    binding: Binding | None = None
    sender_agent: str | None = None
    platform: str = "matrix"
    hop: int = 0
    selected_agent: str | None = None

    @property
    def server(self) -> str:
        """The sender's server name (the part of the user id after the first ``:``)."""
        return server_of_user(self.sender)
