"""Getting a working access token for each identity, and keeping it working."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import structlog

from salon._exceptions import AuthError, UnknownTokenError
from salon.ids import UserId, localpart_of_user
from salon.matrix.api import MatrixAPI, RequestSettings
from salon.matrix.registration import Credentials, login_with_password, register_or_login

log = structlog.get_logger("salon.matrix.login")


@dataclass(frozen=True)
class CredentialSource:
    """Where a fresh token for an identity can come from, tried in this order."""

    access_token: str | None = None
    device_id: str | None = None
    password: str | None = None
    shared_secret: str | None = None


class CredentialStore(Protocol):
    """Where working tokens are remembered across restarts."""

    async def load_credentials(self, user_id: str) -> tuple[str | None, str | None]:
        """(device id, access token) last saved for the user."""

    async def save_credentials(self, user_id: str, device_id: str, access_token: str) -> None:
        """Remember a working token."""


class Authenticator:
    """Turns identities into authenticated :class:`MatrixAPI` handles, all sharing
    one request bound and one :class:`Reachability` of the homeserver.
    ``on_login`` (the identity's encryption device, in either mode) runs on each
    handle ``login`` returns."""

    on_login: Callable[[MatrixAPI], Awaitable[object]] | None = None

    def __init__(
        self,
        base_url: str,
        server_name: str,
        session: aiohttp.ClientSession,
        store: CredentialStore,
        requests: RequestSettings | None = None,
    ) -> None:
        requests = requests or RequestSettings()
        self.base_url = base_url
        self.requests = requests
        self.request_timeout_s = requests.request_timeout_s
        self.reachability = requests.reachability
        self.server_name = server_name
        self._session = session
        self._store = store
        self._policy = requests.policy
        self._sources: dict[UserId, CredentialSource] = {}

    async def login(self, user_id: UserId, source: CredentialSource) -> MatrixAPI:
        """An API handle for ``user_id``, reusing a stored token while it still works."""
        self._sources[user_id] = source
        api = await self._stored(user_id)
        if api is None:
            creds = await self._fresh(user_id, source)
            api = self._api(user_id, creds.access_token)
        if self.on_login is not None:
            await self.on_login(api)
        return api

    async def _stored(self, user_id: UserId) -> MatrixAPI | None:
        _, token = await self._store.load_credentials(user_id)
        if token:
            api = self._api(user_id, token)
            try:
                if await api.whoami() == user_id:
                    return api
            except UnknownTokenError:
                log.info("login.token_expired", user_id=user_id)
        return None

    async def reauth(self, api: MatrixAPI) -> None:
        """Replace a token the homeserver stopped accepting (the handle is updated in place).

        The new token is for the same device id as the old one, so a send retried
        with the same transaction id is still deduplicated by the homeserver.
        """
        source = self._sources.get(api.user_id)
        if source is None:
            raise AuthError(f"no credentials known for {api.user_id}")
        try:
            if await api.whoami() == api.user_id:
                return
        except UnknownTokenError:
            pass
        creds = await self._fresh(api.user_id, source, skip_token=api.access_token)
        api.set_access_token(creds.access_token)
        log.info("login.reauthenticated", user_id=api.user_id)

    async def _fresh(
        self, user_id: UserId, source: CredentialSource, skip_token: str | None = None
    ) -> Credentials:
        creds: Credentials | None = None
        # Log in to the same device as before: Synapse scopes transaction-id dedupe
        # per device, so a new device would post a resent reply a second time.
        stored_device, _ = await self._store.load_credentials(user_id)
        device_id = source.device_id or stored_device or None
        if source.access_token and source.access_token != skip_token:
            creds = Credentials(user_id, source.access_token, source.device_id or "")
        elif source.password:
            creds = await login_with_password(
                self._session,
                self.base_url,
                user_id,
                source.password,
                device_id=device_id,
                policy=self._policy,
            )
        elif source.shared_secret:
            creds = await register_or_login(
                self._session,
                self.base_url,
                source.shared_secret,
                localpart_of_user(user_id),
                self.server_name,
                device_id=device_id,
                policy=self._policy,
            )
        if creds is None:
            raise AuthError(
                f"no way to log in {user_id}: give a registration shared secret, "
                "or an access token or password for it"
            )
        if device_id and creds.device_id and creds.device_id != device_id:
            log.warning("login.device_changed", user_id=user_id, old=device_id, new=creds.device_id)
        await self._store.save_credentials(user_id, creds.device_id, creds.access_token)
        return creds

    def _api(self, user_id: UserId, token: str) -> MatrixAPI:
        return MatrixAPI(
            self.base_url,
            user_id,
            token,
            session=self._session,
            requests=self.requests,
        )
