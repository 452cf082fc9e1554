"""Map mautrix/aiohttp errors into Salon's tree at the transport boundary.

One table, :data:`ERROR_MAP`, names the Salon class for every exception class
mautrix exports and for the aiohttp and standard-library errors that reach us
through it. A library error is mapped by the first class of its MRO found in
the table; ``tests/matrix/test_exceptions.py`` walks the libraries so that a
class added by an upgrade fails the test until it is placed here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from types import MappingProxyType

import aiohttp
from mautrix import errors as mx

from salon import _exceptions as exc

_Salon = type[exc.SalonError]

_MAUTRIX: dict[type[BaseException], _Salon] = {
    # mautrix.errors.base
    mx.MatrixError: exc.MatrixError,
    mx.MatrixConnectionError: exc.MatrixConnectionError,
    mx.MatrixResponseError: exc.MatrixResponseError,
    mx.IntentError: exc.MatrixError,
    # mautrix.errors.crypto: Salon does no end-to-end encryption; never expected.
    mx.CryptoError: exc.MatrixError,
    mx.EncryptionError: exc.MatrixError,
    mx.SessionShareError: exc.MatrixError,
    mx.DeviceValidationError: exc.MatrixError,
    mx.DecryptionError: exc.MatrixError,
    mx.MatchingSessionDecryptionError: exc.MatrixError,
    mx.GroupSessionWithheldError: exc.MatrixError,
    mx.SessionNotFound: exc.MatrixError,
    mx.DuplicateMessageIndex: exc.MatrixError,
    mx.VerificationError: exc.MatrixError,
    mx.DecryptedPayloadError: exc.MatrixError,
    mx.MismatchingRoomError: exc.MatrixError,
    # mautrix.errors.well_known: discovery answered, but unusably.
    mx.WellKnownError: exc.MatrixResponseError,
    mx.WellKnownUnexpectedStatus: exc.MatrixResponseError,
    mx.WellKnownNotJSON: exc.MatrixResponseError,
    mx.WellKnownMissingHomeserver: exc.MatrixResponseError,
    mx.WellKnownNotURL: exc.MatrixResponseError,
    mx.WellKnownUnsupportedScheme: exc.MatrixResponseError,
    mx.WellKnownInvalidVersionsResponse: exc.MatrixResponseError,
    # mautrix.errors.request: the homeserver's error answers, by errcode.
    mx.MatrixRequestError: exc.MatrixRequestError,
    mx.MatrixUnknownRequestError: exc.MatrixRequestError,  # refined by status below
    mx.MatrixStandardRequestError: exc.MatrixRequestError,
    mx.MForbidden: exc.ForbiddenError,
    mx.MAlreadyJoined: exc.ForbiddenError,
    mx.MNotJoined: exc.ForbiddenError,
    mx.MInsufficientPower: exc.ForbiddenError,
    mx.MUserDeactivated: exc.ForbiddenError,
    mx.MatrixInvalidToken: exc.UnknownTokenError,
    mx.MUnknownToken: exc.UnknownTokenError,
    mx.MMissingToken: exc.UnknownTokenError,
    mx.MNotFound: exc.NotFoundError,
    mx.MLimitExceeded: exc.RateLimitedError,
    mx.MUserInUse: exc.UserInUseError,
    mx.MRoomInUse: exc.RoomInUseError,
    mx.MUnknownEndpoint: exc.MatrixRequestError,
    mx.MatrixBadRequest: exc.MatrixRequestError,
    mx.MatrixBadContent: exc.MatrixRequestError,
    mx.MBadJSON: exc.MatrixRequestError,
    mx.MNotJSON: exc.MatrixRequestError,
    mx.MMissingParam: exc.MatrixRequestError,
    mx.MInvalidParam: exc.MatrixRequestError,
    mx.MTooLarge: exc.MatrixRequestError,
    mx.MUnknown: exc.MatrixRequestError,
    mx.MUnrecognized: exc.MatrixRequestError,
    mx.MUnauthorized: exc.MatrixRequestError,
    mx.MInvalidUsername: exc.MatrixRequestError,
    mx.MInvalidRoomState: exc.MatrixRequestError,
    mx.MUnsupportedRoomVersion: exc.MatrixRequestError,
    mx.MIncompatibleRoomVersion: exc.MatrixRequestError,
    mx.MBadState: exc.MatrixRequestError,
    mx.MGuestAccessForbidden: exc.MatrixRequestError,
    mx.MCaptchaNeeded: exc.MatrixRequestError,
    mx.MCaptchaInvalid: exc.MatrixRequestError,
    mx.MExclusive: exc.MatrixRequestError,
}

_WIRE: dict[type[BaseException], _Salon] = {
    # Every other aiohttp.ClientError is the connection failing (reset, DNS,
    # TLS, payload cut off, timeouts): the homeserver could not be reached.
    aiohttp.ClientError: exc.MatrixConnectionError,
    aiohttp.ClientResponseError: exc.MatrixRequestError,
    aiohttp.ContentTypeError: exc.MatrixResponseError,
    aiohttp.TooManyRedirects: exc.MatrixResponseError,
    aiohttp.InvalidURL: exc.MatrixError,  # configuration: retrying cannot help
    TimeoutError: exc.MatrixConnectionError,  # asyncio.TimeoutError is this class
    ValueError: exc.MatrixResponseError,  # a body that is not the JSON expected
}
# Newer aiohttp only (pyproject allows 3.9): bad redirects and non-HTTP URLs.
for _name, _target in (
    ("RedirectClientError", exc.MatrixResponseError),
    ("NonHttpUrlClientError", exc.MatrixError),
):
    if isinstance(_cls := getattr(aiohttp, _name, None), type):
        _WIRE[_cls] = _target

ERROR_MAP: Mapping[type[BaseException], _Salon] = MappingProxyType({**_MAUTRIX, **_WIRE})
"""Library exception class → Salon exception class (looked up along the MRO)."""

# An error answer without an errcode (a proxy, an old server) is judged by status.
_BY_STATUS: dict[int, type[exc.MatrixRequestError]] = {
    401: exc.UnknownTokenError,
    403: exc.ForbiddenError,
    429: exc.RateLimitedError,
}
_CATCH = tuple(ERROR_MAP)


def salon_error_class(error_class: type[BaseException]) -> _Salon | None:
    """The Salon class a library exception class maps to, or None if unmapped."""
    for cls in error_class.__mro__:
        if cls in ERROR_MAP:
            return ERROR_MAP[cls]
    return None


def map_error(error: BaseException, what: str) -> exc.SalonError:
    """The Salon error for a library error raised while doing ``what``."""
    if isinstance(error, exc.SalonError):
        return error
    target = salon_error_class(type(error))
    if target is None:
        return exc.MatrixError(f"{what}: {error!r}")
    if not issubclass(target, exc.MatrixRequestError):
        if target is exc.MatrixConnectionError:
            return target(f"{what}: homeserver unreachable: {type(error).__name__}: {error}")
        if target is exc.MatrixResponseError:
            return target(f"{what}: unexpected response: {error}")
        return target(f"{what}: {error}")
    status = getattr(error, "http_status", None) or getattr(error, "status", 0) or 0
    errcode = getattr(error, "errcode", None)
    message = getattr(error, "message", None) or str(error)
    if target is exc.MatrixRequestError:
        if errcode is None:
            target = _BY_STATUS.get(status, target)
        if "alias" in message.lower() and "already exists" in message:
            # Synapse's answer when a concurrent creator took the alias mid-request.
            target = exc.RoomInUseError
    text = f"{what}: {errcode or status}: {message}"
    if target is exc.RateLimitedError:
        return exc.RateLimitedError(text, retry_after_s=getattr(error, "retry_after_s", None))
    return target(text, http_status=status, errcode=errcode)


@asynccontextmanager
async def mapped(what: str) -> AsyncIterator[None]:
    """Run a block, re-raising library errors as Salon errors."""
    try:
        yield
    except asyncio.CancelledError:
        raise
    except _CATCH as e:
        raise map_error(e, what) from e
