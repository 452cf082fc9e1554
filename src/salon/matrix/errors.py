"""Map mautrix/aiohttp errors into Salon's tree at the transport boundary."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from mautrix import errors as mx

from salon import _exceptions as exc

_BY_ERRCODE: dict[str, type[exc.MatrixRequestError]] = {
    "M_ROOM_IN_USE": exc.RoomInUseError,
    "M_FORBIDDEN": exc.ForbiddenError,
    "M_NOT_FOUND": exc.NotFoundError,
    "M_UNKNOWN_TOKEN": exc.UnknownTokenError,
    "M_MISSING_TOKEN": exc.UnknownTokenError,
    "M_USER_IN_USE": exc.UserInUseError,
}


def map_error(error: BaseException, what: str) -> exc.SalonError:
    """The Salon error for a library error raised while doing ``what``."""
    if isinstance(error, exc.SalonError):
        return error
    if isinstance(error, mx.MatrixRequestError):
        errcode = getattr(error, "errcode", None)
        status = getattr(error, "http_status", 0)
        message = getattr(error, "message", None) or str(error)
        cls = _BY_ERRCODE.get(errcode or "", exc.MatrixRequestError)
        if "alias" in message.lower() and "already exists" in message:
            # Synapse's answer when a concurrent creator took the alias mid-request.
            cls = exc.RoomInUseError
        return cls(f"{what}: {errcode or status}: {message}", http_status=status, errcode=errcode)
    if isinstance(error, mx.MatrixConnectionError | aiohttp.ClientError | asyncio.TimeoutError):
        return exc.MatrixConnectionError(f"{what}: homeserver unreachable: {error}")
    if isinstance(error, mx.MatrixResponseError | ValueError):
        return exc.MatrixError(f"{what}: unexpected response: {error}")
    return exc.MatrixError(f"{what}: {error!r}")


@asynccontextmanager
async def mapped(what: str) -> AsyncIterator[None]:
    """Run a block, re-raising library errors as Salon errors."""
    try:
        yield
    except asyncio.CancelledError:
        raise
    except (TimeoutError, mx.MatrixError, aiohttp.ClientError, ValueError) as e:
        raise map_error(e, what) from e
