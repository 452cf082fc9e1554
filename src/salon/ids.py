"""Typed identifiers. Room ids are opaque: never parse a server out of one."""

from __future__ import annotations

from typing import NewType

AgentId = NewType("AgentId", str)
UserId = NewType("UserId", str)
RoomId = NewType("RoomId", str)
RoomAlias = NewType("RoomAlias", str)
EventId = NewType("EventId", str)


def server_of_user(user_id: UserId | str) -> str:
    """The server name part of a user id (``@local:server`` → ``server``)."""
    _, _, server = user_id.partition(":")
    return server


def localpart_of_user(user_id: UserId | str) -> str:
    """The localpart of a user id (``@local:server`` → ``local``)."""
    return user_id[1:].partition(":")[0]
