"""Shared-secret registration and password login, against any homeserver.

A gateway that holds a homeserver's ``registration_shared_secret`` can create its
agents' accounts itself (Synapse's admin registration API) and, because each
password is derived from that secret (:func:`derive_password`), any other gateway
holding the same secret can later log in to an identity the first one registered.

Requests go through the same token-less :class:`RateLimitedHTTPAPI` (and 429
policy) as every other homeserver call, and errors are mapped by the one table
in :mod:`salon.matrix.errors`, so callers only catch
:class:`~salon._exceptions.MatrixError` and its subclasses.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from mautrix.api import Method

from salon._exceptions import AuthError, ForbiddenError, MatrixResponseError, UserInUseError
from salon.matrix.errors import mapped
from salon.matrix.http import RateLimitedHTTPAPI
from salon.matrix.ratelimit import RetryPolicy

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
    policy: RetryPolicy | None = None,
) -> Credentials:
    """Register ``localpart`` through Synapse's shared-secret admin API and log it in.

    Fetches a one-time nonce from ``GET /_synapse/admin/v1/register`` and posts the
    registration with ``mac = HMAC-SHA1(secret, nonce\\0user\\0password\\0admin|notadmin)``.
    A 429 is waited out per ``policy`` (default :class:`RetryPolicy`) with the same
    nonce: Synapse never rate-limits this endpoint, so a 429 comes from a proxy in
    front of it, and the nonce was not spent.

    Raises:
        UserInUseError: the user exists already.
        ForbiddenError: the homeserver refused the MAC (wrong shared secret).
        RateLimitedError: still rate limited after the policy's retries.
        MatrixRequestError: any other error answer (e.g. shared-secret
            registration disabled, invalid localpart).
        MatrixConnectionError: the homeserver could not be reached.
    """
    http = _http(session, base_url, policy)
    nonce_body = await _call(http, "registration nonce", Method.GET, _REGISTER_PATH)
    nonce = nonce_body.get("nonce")
    if not isinstance(nonce, str):
        raise MatrixResponseError(f"GET {_REGISTER_PATH} answered without a nonce")
    mac = hmac.new(shared_secret.encode(), digestmod=hashlib.sha1)
    for part in (nonce, localpart, password):
        mac.update(part.encode())
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
    return _credentials(await _call(http, "register", Method.POST, _REGISTER_PATH, body))


async def login_with_password(
    session: aiohttp.ClientSession,
    base_url: str,
    user_id: str,
    password: str,
    *,
    device_id: str | None = None,
    device_name: str = "Salon",
    policy: RetryPolicy | None = None,
) -> Credentials:
    """Log ``user_id`` in with ``m.login.password``; a new device unless ``device_id``.

    With ``device_id`` the login continues that device (Synapse recreates it if it
    was deleted), so transaction ids sent before stay deduplicated.

    Raises:
        ForbiddenError: wrong password or unknown user (HTTP 403).
        RateLimitedError: still rate limited after the policy's retries.
        MatrixRequestError: any other error answer.
        MatrixConnectionError: the homeserver could not be reached.
    """
    body: dict[str, Any] = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user_id},
        "password": password,
        "initial_device_display_name": device_name,
    }
    if device_id:
        body["device_id"] = device_id
    http = _http(session, base_url, policy)
    return _credentials(await _call(http, "login", Method.POST, _LOGIN_PATH, body))


async def register_or_login(
    session: aiohttp.ClientSession,
    base_url: str,
    shared_secret: str,
    localpart: str,
    server_name: str,
    *,
    displayname: str | None = None,
    admin: bool = False,
    device_id: str | None = None,
    policy: RetryPolicy | None = None,
) -> Credentials:
    """Credentials for ``@localpart:server_name``, registering it on first use.

    The password is :func:`derive_password` of the user id, so this works no
    matter which gateway registered the account. An existing account is logged
    in to ``device_id`` when given (keep it across re-logins: the homeserver
    scopes transaction-id dedupe per device), else to a new device. The
    localpart is lowercased (Synapse stores it lowercased).

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
            policy=policy,
        )
    except UserInUseError:
        pass
    try:
        return await login_with_password(
            session, base_url, user_id, password, device_id=device_id, policy=policy
        )
    except ForbiddenError as exc:
        raise AuthError(
            f"{user_id} exists but refuses the password derived from the shared secret; "
            "it was registered outside Salon or with another shared secret"
        ) from exc


def _http(
    session: aiohttp.ClientSession, base_url: str, policy: RetryPolicy | None
) -> RateLimitedHTTPAPI:
    # Token-less; mautrix's own retries are off (our supervisors retry on their terms).
    return RateLimitedHTTPAPI(
        base_url,
        "",
        client_session=session,
        policy=policy,
        timeout=_REQUEST_TIMEOUT,
        default_retry_count=0,
    )


async def _call(
    http: RateLimitedHTTPAPI,
    what: str,
    method: Method,
    path: str,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    # sensitive: mautrix's request log must not carry passwords or MACs (mautrix
    # cannot take the flag without a body).
    async with mapped(what):
        data = await http.request(method, path, body, sensitive=body is not None)
    if not isinstance(data, dict):
        raise MatrixResponseError(f"{what}: {method} {path} answered without a JSON object")
    return data


def _credentials(data: dict[str, Any]) -> Credentials:
    try:
        return Credentials(
            user_id=str(data["user_id"]),
            access_token=str(data["access_token"]),
            device_id=str(data["device_id"]),
        )
    except KeyError as exc:
        raise MatrixResponseError(
            f"the homeserver answered without {exc.args[0]!r}; cannot use the account"
        ) from exc
