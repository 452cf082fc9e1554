"""Appservice mode's identities: users of the appservice's namespace, registered
lazily and acting through the one appservice token (``?user_id=``).

No per-agent login or token: :meth:`AppserviceAuthenticator.login` makes sure the
user exists and hands back a :class:`MatrixAPI` masquerading as it (and, with
``on_login``, as its encryption device: :mod:`salon.matrix.crypto.appservice`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class AppserviceIdentity:
    """Who the gateway is as an appservice: its token (``as_token``), and its
    ``sender``, the user the homeserver made for it (the router)."""

    as_token: str = field(repr=False)  # never in a log line or a traceback's repr
    sender: UserId


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
        self._registered: set[UserId] = {sender}  # the homeserver makes the sender itself

    async def login(self, user_id: UserId, source: CredentialSource) -> MatrixAPI:
        """A handle acting as ``user_id``, registering it first if need be."""
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
