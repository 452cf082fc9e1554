"""Shared-secret registration and password login, against any homeserver.

A gateway that holds a homeserver's ``registration_shared_secret`` can create its
agents' accounts itself (Synapse's admin registration API) and, because each
password is derived from that secret (:func:`derive_password`), any other gateway
holding the same secret can later log in to an identity the first one registered.

Every aiohttp failure is mapped to Salon's exceptions here, so callers only catch
:class:`~salon._exceptions.MatrixError` and its subclasses.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from salon._exceptions import (
    AuthError,
    ForbiddenError,
    MatrixConnectionError,
    MatrixRequestError,
    NotFoundError,
    RateLimitedError,
    UnknownTokenError,
    UserInUseError,
)

__all__ = [
    "Credentials",
    "derive_password",
    "login_with_password",
    "register_or_login",
    "register_with_shared_secret",
]

_REGISTER_PATH = "/_synapse/admin/v1/register"
_LOGIN_PATH = "/_matrix/client/v3/login"
_REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30)
_RATE_LIMIT_ATTEMPTS = 3
_RATE_LIMIT_MAX_WAIT_S = 10.0


@dataclass(frozen=True)
class Credentials:
    """A logged-in Matrix device."""

    user_id: str
    access_token: str = field(repr=False)
    device_id: str


def derive_password(shared_secret: str, user_id: str) -> str:
    """The password Salon gives ``user_id``: hex HMAC-SHA256 keyed by the shared secret.

    Deterministic, so any gateway holding the secret can log in to an identity
    registered earlier by another gateway.
    """
    mac = hmac.new(shared_secret.encode(), b"salon-password:" + user_id.encode(), hashlib.sha256)
    return mac.hexdigest()


async def register_with_shared_secret(
    session: aiohttp.ClientSession,
    base_url: str,
    shared_secret: str,
    localpart: str,
    password: str,
    *,
    admin: bool = False,
    displayname: str | None = None,
) -> Credentials:
    """Register ``localpart`` through Synapse's shared-secret admin API and log it in.

    Fetches a one-time nonce from ``GET /_synapse/admin/v1/register`` and posts the
    registration with ``mac = HMAC-SHA1(secret, nonce\\0user\\0password\\0admin|notadmin)``.

    Raises:
        UserInUseError: the user exists already.
        ForbiddenError: the homeserver refused the MAC (wrong shared secret).
        MatrixRequestError: any other error answer (e.g. shared-secret
            registration disabled, invalid localpart).
        MatrixConnectionError: the homeserver could not be reached.
    """
    url = _url(base_url, _REGISTER_PATH)

    async def attempt() -> Credentials:
        nonce_body = await _request(session, "GET", url)
        nonce = nonce_body.get("nonce")
        if not isinstance(nonce, str):
            raise MatrixRequestError(f"GET {url} answered without a nonce", http_status=200)
        mac = hmac.new(shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(nonce.encode())
        mac.update(b"\x00")
        mac.update(localpart.encode())
        mac.update(b"\x00")
        mac.update(password.encode())
        mac.update(b"\x00")
        mac.update(b"admin" if admin else b"notadmin")
        body: dict[str, Any] = {
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        if displayname is not None:
            body["displayname"] = displayname
        return _credentials(await _request(session, "POST", url, body), url)

    return await _retry_rate_limited(attempt)


async def login_with_password(
    session: aiohttp.ClientSession,
    base_url: str,
    user_id: str,
    password: str,
    *,
    device_id: str | None = None,
    device_name: str = "Salon",
) -> Credentials:
    """Log ``user_id`` in with ``m.login.password``; a new device unless ``device_id``.

    Raises:
        ForbiddenError: wrong password or unknown user (HTTP 403).
        RateLimitedError: still rate limited after a few bounded retries.
        MatrixRequestError: any other error answer.
        MatrixConnectionError: the homeserver could not be reached.
    """
    url = _url(base_url, _LOGIN_PATH)
    body: dict[str, Any] = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user_id},
        "password": password,
        "initial_device_display_name": device_name,
    }
    if device_id is not None:
        body["device_id"] = device_id

    async def attempt() -> Credentials:
        return _credentials(await _request(session, "POST", url, body), url)

    return await _retry_rate_limited(attempt)


async def register_or_login(
    session: aiohttp.ClientSession,
    base_url: str,
    shared_secret: str,
    localpart: str,
    server_name: str,
    *,
    displayname: str | None = None,
    admin: bool = False,
) -> Credentials:
    """Credentials for ``@localpart:server_name``, registering it on first use.

    The password is :func:`derive_password` of the user id, so this works no
    matter which gateway registered the account. Each call creates a new device.
    The localpart is lowercased (Synapse stores it lowercased).

    Raises:
        AuthError: the account exists but does not accept the derived password
            (it was registered by something else, or with another secret).
        MatrixRequestError: the homeserver refused otherwise.
        MatrixConnectionError: the homeserver could not be reached.
    """
    localpart = localpart.lower()
    user_id = f"@{localpart}:{server_name}"
    password = derive_password(shared_secret, user_id)
    try:
        return await register_with_shared_secret(
            session,
            base_url,
            shared_secret,
            localpart,
            password,
            admin=admin,
            displayname=displayname,
        )
    except UserInUseError:
        pass
    try:
        return await login_with_password(session, base_url, user_id, password)
    except ForbiddenError as exc:
        raise AuthError(
            f"{user_id} exists but refuses the password derived from the shared secret; "
            "it was registered outside Salon or with another shared secret"
        ) from exc


# --- plumbing -------------------------------------------------------------------


def _url(base_url: str, path: str) -> str:
    return base_url.rstrip("/") + path


async def _request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One JSON request; error answers and transport failures become Salon errors."""
    try:
        async with session.request(method, url, json=body, timeout=_REQUEST_TIMEOUT) as resp:
            status = resp.status
            text = (await resp.read()).decode("utf-8", errors="replace")
            retry_after_header = resp.headers.get("Retry-After")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise MatrixConnectionError(
            f"{method} {url} failed: {type(exc).__name__}: {exc}".rstrip(": ")
        ) from exc
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        data = None
    if status >= 400:
        raise _error_for(method, url, status, data, text, retry_after_header)
    if not isinstance(data, dict):
        raise MatrixRequestError(
            f"{method} {url} answered {status} without a JSON object: {text[:200]!r}",
            http_status=status,
        )
    return data


def _error_for(
    method: str,
    url: str,
    status: int,
    data: Any,
    text: str,
    retry_after_header: str | None,
) -> MatrixRequestError:
    errcode: str | None = None
    error = text[:200]
    if isinstance(data, dict):
        errcode = data.get("errcode") if isinstance(data.get("errcode"), str) else None
        error = str(data.get("error", error))
    code = f" {errcode}" if errcode else ""
    message = f"{method} {url} answered {status}{code}: {error}"
    if status == 429 or errcode == "M_LIMIT_EXCEEDED":
        return RateLimitedError(message, retry_after_s=_retry_after(data, retry_after_header))
    by_errcode: dict[str, type[MatrixRequestError]] = {
        "M_USER_IN_USE": UserInUseError,
        "M_FORBIDDEN": ForbiddenError,
        "M_NOT_FOUND": NotFoundError,
        "M_UNKNOWN_TOKEN": UnknownTokenError,
    }
    cls = by_errcode.get(errcode or "")
    if cls is None:
        cls = {403: ForbiddenError, 401: UnknownTokenError}.get(status, MatrixRequestError)
        if status == 401 and errcode not in (None, "M_UNKNOWN_TOKEN", "M_MISSING_TOKEN"):
            cls = MatrixRequestError
    return cls(message, http_status=status, errcode=errcode)


def _retry_after(data: Any, header: str | None) -> float | None:
    if isinstance(data, dict) and isinstance(data.get("retry_after_ms"), int | float):
        return float(data["retry_after_ms"]) / 1000
    if header is not None:
        try:
            return float(header)
        except ValueError:
            return None
    return None


def _credentials(data: dict[str, Any], url: str) -> Credentials:
    try:
        return Credentials(
            user_id=str(data["user_id"]),
            access_token=str(data["access_token"]),
            device_id=str(data["device_id"]),
        )
    except KeyError as exc:
        raise MatrixRequestError(
            f"{url} answered without {exc.args[0]!r}; cannot use the account",
            http_status=200,
        ) from exc


async def _retry_rate_limited(attempt: Callable[[], Awaitable[Credentials]]) -> Credentials:
    """Run ``attempt()`` again after short 429s; give up on long or repeated ones."""
    for tries in range(1, _RATE_LIMIT_ATTEMPTS + 1):
        try:
            return await attempt()
        except RateLimitedError as exc:
            wait = exc.retry_after_s if exc.retry_after_s is not None else 1.0
            if tries == _RATE_LIMIT_ATTEMPTS or wait > _RATE_LIMIT_MAX_WAIT_S:
                raise
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")
