"""What the admin routes look up: roster members, rooms, and Matrix failures as errors.

Matrix failures become catalogue errors (``homeserver_unavailable``,
``room_not_found``…); an unknown agent is ``agent_not_found`` naming the known ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from salon._exceptions import (
    ForbiddenError,
    MatrixConnectionError,
    MatrixError,
    NotFoundError,
)
from salon.api.context import ApiContext
from salon.api.server import ApiError
from salon.ids import RoomAlias, RoomId
from salon.roster import Member

LOBBY = "lobby"


@contextlib.contextmanager
def matrix_errors(room: str) -> Iterator[None]:
    """Map Matrix failures while working on ``room`` to catalogue errors."""
    try:
        yield
    except MatrixConnectionError as e:
        raise ApiError("homeserver_unavailable", detail=str(e)) from e
    except NotFoundError:
        raise ApiError("room_not_found", room=room) from None
    except ForbiddenError as e:
        raise ApiError("room_forbidden", room=room, detail=str(e)) from e
    except MatrixError as e:
        raise ApiError("matrix_error", detail=str(e)) from e


def _known(ctx: ApiContext, *extra: str) -> str:
    return ", ".join([*(m.agent_id for m in ctx.roster), *extra]) or "none"


def member_or_404(ctx: ApiContext, agent_id: str) -> Member:
    """The roster member ``agent_id`` (404 ``agent_not_found`` naming the known ones)."""
    member = ctx.roster.get(agent_id)
    if member is None:
        raise ApiError("agent_not_found", agent=agent_id, known=_known(ctx))
    return member


def hosted_or_404(ctx: ApiContext, agent_id: str) -> Member:
    """An agent this gateway runs (a peer's agent is not one)."""
    member = ctx.roster.get(agent_id)
    if member is None or not member.hosted or agent_id not in ctx.agent_rooms:
        known = ", ".join(a for a in ctx.agent_rooms) or "none"
        raise ApiError("agent_not_found", agent=agent_id, known=known)
    return member


async def resolve_room(ctx: ApiContext, ref: str) -> RoomId:
    """A room from ``lobby``, an agent id, a room alias or a room id."""
    if ref == LOBBY:
        return RoomId(ctx.lobby_id)
    if ref in ctx.agent_rooms:
        return RoomId(ctx.agent_rooms[ref])
    member = ctx.roster.get(ref)
    alias = member.room_alias if member is not None else ref
    if alias.startswith("#"):
        with matrix_errors(ref):
            room_id, _ = await ctx.router_api.resolve_alias(RoomAlias(alias))
        return room_id
    if ref.startswith("!"):
        return RoomId(ref)
    raise ApiError("room_not_found", room=ref)
