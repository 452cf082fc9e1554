"""Appservice mode's identities: users of the appservice's namespace, registered
lazily and acting through the one appservice token (``?user_id=``).

No per-agent login or token: :meth:`AppserviceAuthenticator.login` makes sure the
user exists and hands back a :class:`MatrixAPI` masquerading as it (and, with
``on_login``, as its encryption device: :mod:`salon.matrix.crypto.appservice`).
The users registered are remembered (``RegisteredUsers``, in Salon's store): a
restart registers none of them again.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp
import structlog
from mautrix.api import Method, Path
from mautrix.errors import MatrixStandardRequestError

from salon._exceptions import AuthError
from salon.ids import UserId, localpart_of_user
from salon.matrix.api import MatrixAPI, RequestSettings
from salon.matrix.errors import mapped
from salon.matrix.http import RateLimitedHTTPAPI
from salon.matrix.login import Authenticator, CredentialSource, CredentialStore

log = structlog.get_logger("salon.matrix.as_auth")

# The answers to registering a user that exists already (ours, or the appservice's sender).
_EXISTS = {"M_USER_IN_USE"}


class RegisteredUsers(Protocol):
    """Where the users a registration made are remembered (``store.appservice_users``)."""

    async def registered(self, registration: str) -> set[str]:
        """The user ids registered under ``registration``."""

    async def record(self, registration: str, user_id: str) -> None:
        """Remember that ``user_id`` exists."""


def registration_key(as_token: str) -> str:
    """How a registration is named in the store: its token, hashed. A new registration
    (a new homeserver, say) registers its users again."""
    return hashlib.sha256(as_token.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class AppserviceIdentity:
    """Who the gateway is as an appservice: its token (``as_token``), its ``sender``,
    the user the homeserver made for it (the router), and where the users it
    registered are remembered (``users``; None: in this process only)."""

    as_token: str = field(repr=False)  # never in a log line or a traceback's repr
    sender: UserId
    users: RegisteredUsers | None = field(default=None, compare=False)


class AppserviceAuthenticator(Authenticator):
    """Identities as the appservice's users (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        server_name: str,
        session: aiohttp.ClientSession,
        store: CredentialStore,
        appservice: AppserviceIdentity,
        requests: RequestSettings | None = None,
    ) -> None:
        super().__init__(base_url, server_name, session, store, requests)
        self._as_token = appservice.as_token
        self._sender = sender = appservice.sender
        self._users = appservice.users
        self._key = registration_key(appservice.as_token)
        self._registered: set[UserId] = {sender}  # the homeserver makes the sender itself
        self._loaded = asyncio.Lock()
        self._known = appservice.users is None

    async def login(self, user_id: UserId, source: CredentialSource) -> MatrixAPI:
        """A handle acting as ``user_id``, registering it first if it is not known to
        exist (registered before, by this registration)."""
        if user_id not in self._registered and not self._known:
            async with self._loaded:  # one read of the store for all the identities
                if not self._known and self._users is not None:
                    stored = await self._users.registered(self._key)
                    self._registered |= {UserId(u) for u in stored}
                    self._known = True
        if user_id not in self._registered:
            await self.register(user_id)
        api = self._api(user_id, self._as_token)
        if self.on_login is not None:
            await self.on_login(api)  # its encryption device (appservice extensions)
        return api

    async def register(self, user_id: UserId) -> None:
        """Create the user in the appservice's namespace (one that exists is fine)."""
        http = RateLimitedHTTPAPI(
            self.base_url,
            self._as_token,
            client_session=self._session,
            policy=self._policy,
            timeout=aiohttp.ClientTimeout(total=self.request_timeout_s),
            default_retry_count=0,
        )
        body = {
            "type": "m.login.application_service",
            "username": localpart_of_user(user_id),
            "inhibit_login": True,
        }
        async with mapped(f"register {user_id}"):
            try:
                await http.request(Method.POST, Path.v3.register, body)
                log.info("appservice.registered", user_id=user_id)
            except MatrixStandardRequestError as e:
                if e.errcode not in _EXISTS:
                    raise
        if self._users is not None:
            await self._users.record(self._key, user_id)
        self._registered.add(user_id)

    async def reauth(self, api: MatrixAPI) -> None:
        """There is no other token to fall back on: the registration must be fixed."""
        raise AuthError(
            f"the homeserver refused the appservice token for {api.user_id}: check that "
            "its registration file is loaded and the as_token matches"
        )

    def _api(self, user_id: UserId, token: str) -> MatrixAPI:
        return MatrixAPI(
            self.base_url,
            user_id,
            self._as_token,
            session=self._session,
            requests=self.requests,
            as_user_id=None if user_id == self._sender else user_id,
        )
