"""Outgoing replies: content shapes and crash-safe transaction ids."""

from __future__ import annotations

from typing import Any

from salon.matrix.events import InboundEvent
from salon.matrix.txn import txn_id

__all__ = ["TURN_KEY", "hop_of", "reply_content", "txn_id"]

TURN_KEY = "com.salon.turn"


def hop_of(event: InboundEvent) -> int:
    """How many agent-to-agent hops led to ``event`` (0 for a person's message)."""
    turn = event.content.get(TURN_KEY)
    hop = turn.get("hop") if isinstance(turn, dict) else None
    return hop if isinstance(hop, int) and not isinstance(hop, bool) and hop >= 0 else 0


def reply_content(
    event: InboundEvent, agent_id: str, body: str, *, notice: bool = False, final: bool = True
) -> dict[str, Any]:
    """A message answering ``event``: a reply to it, inside its thread if it was in one."""
    relates: dict[str, Any] = {"m.in_reply_to": {"event_id": event.event_id}}
    root = event.thread_root
    if root:
        relates = {
            "rel_type": "m.thread",
            "event_id": root,
            "is_falling_back": False,
            "m.in_reply_to": {"event_id": event.event_id},
        }
    return {
        "msgtype": "m.notice" if notice else "m.text",
        "body": body,
        "m.relates_to": relates,
        # Lets clients (the CLI, tests, other gateways) match a reply to its turn.
        TURN_KEY: {
            "event_id": event.event_id,
            "agent": agent_id,
            "final": final,
            "hop": hop_of(event) + 1,
        },
    }
