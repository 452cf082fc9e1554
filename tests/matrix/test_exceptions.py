"""Every library exception maps onto Salon's tree, and which ones are transient.

In the spirit of httpx's ``tests/test_exceptions.py``: the test walks
``mautrix.errors`` and aiohttp's ``ClientError`` family, so a class a library
upgrade adds fails here until someone decides where it belongs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import aiohttp
import mautrix.errors as mx
import pytest

from salon import _exceptions as exc
from salon._exceptions import is_transient
from salon.matrix.errors import ERROR_MAP, map_error, mapped, salon_error_class

EXPECTED_MAUTRIX: dict[str, type[exc.SalonError]] = {
    "MatrixError": exc.MatrixError,
    "MatrixConnectionError": exc.MatrixConnectionError,
    "MatrixResponseError": exc.MatrixResponseError,
    "IntentError": exc.MatrixError,
    **dict.fromkeys(
        [
            "CryptoError",
            "EncryptionError",
            "SessionShareError",
            "DeviceValidationError",
            "DecryptionError",
            "MatchingSessionDecryptionError",
            "GroupSessionWithheldError",
            "SessionNotFound",
            "DuplicateMessageIndex",
            "VerificationError",
            "DecryptedPayloadError",
            "MismatchingRoomError",
        ],
        exc.MatrixError,
    ),
    **dict.fromkeys(
        [
            "WellKnownError",
            "WellKnownUnexpectedStatus",
            "WellKnownNotJSON",
            "WellKnownMissingHomeserver",
            "WellKnownNotURL",
            "WellKnownUnsupportedScheme",
            "WellKnownInvalidVersionsResponse",
        ],
        exc.MatrixResponseError,
    ),
    **dict.fromkeys(
        ["MForbidden", "MAlreadyJoined", "MNotJoined", "MInsufficientPower", "MUserDeactivated"],
        exc.ForbiddenError,
    ),
    **dict.fromkeys(
        ["MatrixInvalidToken", "MUnknownToken", "MMissingToken"], exc.UnknownTokenError
    ),
    "MNotFound": exc.NotFoundError,
    "MLimitExceeded": exc.RateLimitedError,
    "MUserInUse": exc.UserInUseError,
    "MRoomInUse": exc.RoomInUseError,
    **dict.fromkeys(
        [
            "MatrixRequestError",
            "MatrixUnknownRequestError",
            "MatrixStandardRequestError",
            "MUnknownEndpoint",
            "MatrixBadRequest",
            "MatrixBadContent",
            "MBadJSON",
            "MNotJSON",
            "MMissingParam",
            "MInvalidParam",
            "MTooLarge",
            "MUnknown",
            "MUnrecognized",
            "MUnauthorized",
            "MInvalidUsername",
            "MInvalidRoomState",
            "MUnsupportedRoomVersion",
            "MIncompatibleRoomVersion",
            "MBadState",
            "MGuestAccessForbidden",
            "MCaptchaNeeded",
            "MCaptchaInvalid",
            "MExclusive",
        ],
        exc.MatrixRequestError,
    ),
}

_CONNECTION = [
    "ClientError",
    "ClientConnectionError",
    "ClientConnectionResetError",
    "ClientOSError",
    "ClientConnectorError",
    "ClientConnectorDNSError",
    "ClientProxyConnectionError",
    "UnixClientConnectorError",
    "ClientSSLError",
    "ClientConnectorSSLError",
    "ClientConnectorCertificateError",
    "ServerConnectionError",
    "ServerDisconnectedError",
    "ServerTimeoutError",
    "ConnectionTimeoutError",
    "SocketTimeoutError",
    "ServerFingerprintMismatch",
    "ClientPayloadError",
    "UploadAbortedError",
]
EXPECTED_AIOHTTP: dict[str, type[exc.SalonError]] = {
    **dict.fromkeys(_CONNECTION, exc.MatrixConnectionError),
    "ClientResponseError": exc.MatrixRequestError,
    "ClientHttpProxyError": exc.MatrixRequestError,
    "WSServerHandshakeError": exc.MatrixRequestError,
    "ContentTypeError": exc.MatrixResponseError,
    "TooManyRedirects": exc.MatrixResponseError,
    "RedirectClientError": exc.MatrixResponseError,
    "NonHttpUrlRedirectClientError": exc.MatrixError,
    "NonHttpUrlClientError": exc.MatrixError,
    "InvalidURL": exc.MatrixError,
    "InvalidUrlClientError": exc.MatrixError,
    "InvalidUrlRedirectClientError": exc.MatrixError,
}


def _mautrix_classes() -> Iterator[type[BaseException]]:
    for value in vars(mx).values():
        if isinstance(value, type) and issubclass(value, BaseException):
            yield value


def _subclasses(cls: type[BaseException]) -> Iterator[type[BaseException]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _aiohttp_classes() -> set[type[BaseException]]:
    return {aiohttp.ClientError} | {
        c for c in _subclasses(aiohttp.ClientError) if c.__module__.startswith("aiohttp.")
    }


def test_every_mautrix_error_class_is_in_the_table() -> None:
    classes = list(_mautrix_classes())
    assert len(classes) > 50  # the walk found the module's classes
    unexpected = {c.__name__ for c in classes} - set(EXPECTED_MAUTRIX)
    assert not unexpected, f"mautrix classes nobody decided about: {sorted(unexpected)}"
    # Listed explicitly, not caught by a base class by accident.
    missing = [c.__name__ for c in classes if c not in ERROR_MAP]
    assert not missing, f"mautrix classes missing from ERROR_MAP: {missing}"


@pytest.mark.parametrize("cls", list(_mautrix_classes()), ids=lambda c: c.__name__)
def test_mautrix_class_maps_to_the_expected_salon_class(cls: type[BaseException]) -> None:
    assert salon_error_class(cls) is EXPECTED_MAUTRIX[cls.__name__]


def test_every_aiohttp_client_error_is_decided() -> None:
    unexpected = {c.__name__ for c in _aiohttp_classes()} - set(EXPECTED_AIOHTTP)
    assert not unexpected, f"aiohttp classes nobody decided about: {sorted(unexpected)}"


@pytest.mark.parametrize(
    "cls", sorted(_aiohttp_classes(), key=lambda c: c.__name__), ids=lambda c: c.__name__
)
def test_aiohttp_class_maps_to_the_expected_salon_class(cls: type[BaseException]) -> None:
    assert salon_error_class(cls) is EXPECTED_AIOHTTP[cls.__name__]


def test_stdlib_errors_that_reach_the_transport() -> None:
    assert salon_error_class(asyncio.TimeoutError) is exc.MatrixConnectionError
    assert salon_error_class(json.JSONDecodeError) is exc.MatrixResponseError
    assert salon_error_class(KeyError) is None


# --- instances: the fields carried over, and refinement by status ------------------


def test_standard_error_keeps_status_and_errcode() -> None:
    mapped_error = map_error(mx.MUnknownToken(401, "Invalid access token"), "sync")
    assert type(mapped_error) is exc.UnknownTokenError
    assert isinstance(mapped_error, exc.UnknownTokenError)
    assert (mapped_error.http_status, mapped_error.errcode) == (401, "M_UNKNOWN_TOKEN")
    assert str(mapped_error) == "sync: M_UNKNOWN_TOKEN: Invalid access token"


@pytest.mark.parametrize(
    ("status", "errcode", "expected"),
    [
        (401, None, exc.UnknownTokenError),
        (403, None, exc.ForbiddenError),
        (429, None, exc.RateLimitedError),
        (502, None, exc.MatrixRequestError),
        (403, "M_SOMETHING_NEW", exc.MatrixRequestError),  # an errcode says more than a status
    ],
)
def test_unknown_error_answers_are_judged_by_status(
    status: int, errcode: str | None, expected: type[exc.SalonError]
) -> None:
    error = mx.MatrixUnknownRequestError(status, "<html>nope</html>", errcode, None)
    mapped_error = map_error(error, "send")
    assert type(mapped_error) is expected
    assert isinstance(mapped_error, exc.MatrixRequestError)
    assert mapped_error.http_status == status


def test_alias_taken_mid_request_is_room_in_use() -> None:
    error = mx.MUnknown(400, "Room alias #x:localhost already exists")
    assert type(map_error(error, "create room")) is exc.RoomInUseError


def test_client_response_error_keeps_its_status() -> None:
    error = aiohttp.ClientResponseError(None, (), status=503, message="Service Unavailable")  # type: ignore[arg-type]
    mapped_error = map_error(error, "login")
    assert type(mapped_error) is exc.MatrixRequestError
    assert isinstance(mapped_error, exc.MatrixRequestError)
    assert mapped_error.http_status == 503
    assert is_transient(mapped_error)


def test_connection_errors_and_salon_errors() -> None:
    refused = aiohttp.ClientConnectionError("Connection refused")
    assert type(map_error(refused, "sync")) is exc.MatrixConnectionError
    assert "sync: homeserver unreachable" in str(map_error(refused, "sync"))
    assert type(map_error(mx.MatrixConnectionError("x"), "sync")) is exc.MatrixConnectionError
    own = exc.NotFoundError("gone", http_status=404)
    assert map_error(own, "sync") is own
    assert type(map_error(RuntimeError("odd"), "sync")) is exc.MatrixError


async def test_mapped_reraises_with_the_library_error_as_cause() -> None:
    original = mx.MForbidden(403, "You are not invited")
    with pytest.raises(exc.ForbiddenError) as info:
        async with mapped("join"):
            raise original
    assert info.value.__cause__ is original
    with pytest.raises(asyncio.CancelledError):
        async with mapped("join"):
            raise asyncio.CancelledError


# --- is_transient -------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        exc.MatrixConnectionError("down"),
        exc.RateLimitedError("slow down", retry_after_s=3),
        exc.MatrixRequestError("bad gateway", http_status=502),
        exc.MatrixRequestError("unavailable", http_status=503),
        exc.MatrixRequestError("internal", http_status=500),
        exc.MatrixRequestError("request timeout", http_status=408),
        exc.MatrixRequestError("too many", http_status=429),
        exc.StoreError("database is locked"),
    ],
    ids=repr,
)
def test_transient(error: BaseException) -> None:
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        exc.ForbiddenError("no", http_status=403, errcode="M_FORBIDDEN"),
        exc.NotFoundError("gone", http_status=404),
        exc.UnknownTokenError("token", http_status=401),
        exc.UserInUseError("taken", http_status=400),
        exc.RoomInUseError("taken", http_status=400),
        exc.MatrixRequestError("bad json", http_status=400),
        exc.MatrixResponseError("not JSON"),
        exc.MatrixError("odd"),
        exc.AuthError("no credentials"),
        exc.ConfigError("bad yaml"),
        exc.BackendError("model failed"),
        ValueError("library error, unmapped"),
        aiohttp.ClientConnectionError("unmapped library error"),
    ],
    ids=repr,
)
def test_not_transient(error: BaseException) -> None:
    assert not is_transient(error)


@pytest.mark.parametrize(
    ("library_error", "transient"),
    [
        (mx.MatrixConnectionError("refused"), True),
        (mx.MLimitExceeded(429, "slow"), True),
        (mx.MatrixUnknownRequestError(504, "gateway timeout"), True),
        (mx.MForbidden(403, "no"), False),
        (mx.MNotFound(404, "no"), False),
        (TimeoutError(), True),
    ],
    ids=repr,
)
def test_transient_after_mapping(library_error: BaseException, transient: bool) -> None:
    assert is_transient(map_error(library_error, "send")) is transient
