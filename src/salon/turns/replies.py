"""Outgoing replies: content shapes and crash-safe transaction ids."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from salon.matrix.events import InboundEvent
from salon.matrix.txn import txn_id

__all__ = ["TURN_KEY", "ReplyTo", "hop_of", "reply_content", "txn_id"]

TURN_KEY = "com.salon.turn"


def hop_of(event: InboundEvent) -> int:
    """How many agent-to-agent hops led to ``event`` (0 for a person's message)."""
    turn = event.content.get(TURN_KEY)
    hop = turn.get("hop") if isinstance(turn, dict) else None
    return hop if isinstance(hop, int) and not isinstance(hop, bool) and hop >= 0 else 0


@dataclass(frozen=True)
class ReplyTo:
    """What a reply answers: an event (or nothing, for a report with no origin event),
    the thread it is in, and how many agent hops led to it."""

    event_id: str | None = None
    thread_root: str | None = None
    hop: int = 0

    @classmethod
    def event(cls, event: InboundEvent) -> ReplyTo:
        """A reply to ``event``, in its thread if it has one."""
        return cls(event.event_id, event.thread_root, hop_of(event))


def reply_content(
    to: ReplyTo,
    agent_id: str,
    body: str,
    *,
    notice: bool = False,
    final: bool = True,
    turn: str | None = None,
) -> dict[str, Any]:
    """A message answering ``to``: a reply to it, inside its thread if it was in one."""
    relates: dict[str, Any] = {}
    if to.event_id:
        relates = {"m.in_reply_to": {"event_id": to.event_id}}
    if to.thread_root:
        relates = {"rel_type": "m.thread", "event_id": to.thread_root, **relates}
        relates["is_falling_back"] = False
    content: dict[str, Any] = {"msgtype": "m.notice" if notice else "m.text", "body": body}
    if relates:
        content["m.relates_to"] = relates
    # Lets clients (the CLI, tests, other gateways) match a reply to its turn.
    content[TURN_KEY] = {
        "event_id": to.event_id,
        "agent": agent_id,
        "final": final,
        "hop": to.hop + 1,
    }
    if turn is not None:
        # Makes each turn's events differ: the homeserver derives an event's id from its
        # content, so two identical replies sent in the same instant (two runs of one
        # cron job, say) would otherwise become one event.
        content[TURN_KEY]["turn"] = turn
    return content
