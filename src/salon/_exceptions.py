"""Salon's one exception tree.

Library errors (aiohttp, mautrix, openai) are mapped into these at the layer
boundary that calls the library, so callers above only ever catch Salon's own:

    SalonError
    ├── ConfigError               bad salon.yaml: names file, key path, line
    ├── StoreError                the durable store failed (I/O, migration)
    ├── MatrixError               anything the homeserver or the wire did
    │   ├── MatrixConnectionError     homeserver unreachable (or timed out)
    │   ├── MatrixResponseError       an answer that is not what the spec says
    │   ├── MatrixRequestError        homeserver answered with an error status
    │   │   ├── RateLimitedError          429 still after the retry bound
    │   │   ├── RoomInUseError            alias taken (M_ROOM_IN_USE)
    │   │   ├── ForbiddenError            M_FORBIDDEN
    │   │   ├── NotFoundError             M_NOT_FOUND
    │   │   ├── UnknownTokenError         M_UNKNOWN_TOKEN
    │   │   └── UserInUseError            M_USER_IN_USE on registration
    │   └── AuthError                 no way to log an identity in
    ├── BackendError              an agent backend failed a turn
    └── DevServerError            the embedded homeserver would not start

:func:`is_transient` tells "wait and retry the same thing" from "give up". The
mapping of mautrix and aiohttp classes onto this tree is one table, in
:mod:`salon.matrix.errors`.
"""

from __future__ import annotations


class SalonError(Exception):
    """Base of every error Salon raises on purpose."""


class ConfigError(SalonError):
    """The configuration is invalid. The message names the file and key path."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class StoreError(SalonError):
    """The durable store failed. ``transient``: the database was busy, locked, out of
    space or failed I/O (a later try may work); False for a bug (a constraint, bad SQL)."""

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


class MatrixError(SalonError):
    """Anything that went wrong talking to the homeserver."""


class MatrixConnectionError(MatrixError):
    """The homeserver could not be reached."""


class MatrixResponseError(MatrixError):
    """The homeserver answered, but not as the spec says (not JSON, a field missing)."""


class MatrixRequestError(MatrixError):
    """The homeserver answered with an error status."""

    def __init__(self, message: str, *, http_status: int = 0, errcode: str | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.errcode = errcode


class RateLimitedError(MatrixRequestError):
    """Still rate limited after the retry policy's bound."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message, http_status=429, errcode="M_LIMIT_EXCEEDED")
        self.retry_after_s = retry_after_s


class RoomInUseError(MatrixRequestError):
    """A room alias is already taken (usually: another starter won the race)."""


class ForbiddenError(MatrixRequestError):
    """The homeserver refused the action (M_FORBIDDEN)."""


class NotFoundError(MatrixRequestError):
    """The thing asked for does not exist (M_NOT_FOUND)."""


class UnknownTokenError(MatrixRequestError):
    """The access token is not (or no longer) valid."""


class UserInUseError(MatrixRequestError):
    """Registration of a user id that exists already."""


class AuthError(MatrixError):
    """An identity has no usable credentials."""


class BackendError(SalonError):
    """An agent backend failed to produce a reply."""


class DevServerError(SalonError):
    """The embedded homeserver could not be set up or started."""


_TRANSIENT_STATUSES = frozenset({408, 429})


def is_transient(error: BaseException) -> bool:
    """True when waiting and retrying the same thing may succeed.

    The homeserver was unreachable, overloaded (5xx), timed out (408) or still
    rate limiting (429), or the store failed (locked, disk full): a later try of
    the same request can work. Anything else fails the same way again.
    """
    if isinstance(error, StoreError):
        return error.transient
    if isinstance(error, MatrixConnectionError | RateLimitedError):
        return True
    if isinstance(error, MatrixRequestError):
        return error.http_status >= 500 or error.http_status in _TRANSIENT_STATUSES
    return False
