"""Joining a room one may not be invited to (any more): ask someone inside first."""

from __future__ import annotations

from collections.abc import Sequence

from salon._exceptions import ForbiddenError
from salon.ids import RoomId
from salon.matrix.api import MatrixAPI


async def join_or_be_invited(
    api: MatrixAPI, room_id: RoomId, inviter: MatrixAPI | None, via: Sequence[str] = ()
) -> RoomId:
    """``api`` joins ``room_id``; refused (never invited, or left since), ``inviter`` (a
    member with the power to invite) invites it and it joins. Without an inviter the
    refusal is raised."""
    try:
        return await api.join(room_id, via)
    except ForbiddenError:
        if inviter is None:
            raise
        await inviter.invite(room_id, api.user_id)
        return await api.join(room_id, via)
