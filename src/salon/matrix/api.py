"""Typed Matrix operations for one identity, on mautrix's endpoint layer.

Returns plain ids and dicts; raises only Salon errors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from mautrix.api import Method, Path
from mautrix.types import DeviceID, UserID
from multidict import MultiDict

from salon._exceptions import ForbiddenError, MatrixError, NotFoundError
from salon.ids import EventId, RoomAlias, RoomId, UserId
from salon.matrix.errors import mapped
from salon.matrix.http import RateLimitedHTTPAPI
from salon.matrix.ratelimit import RetryPolicy
from salon.matrix.reachability import Reachability

JSON = dict[str, Any]

# Every request is bounded (aiohttp's own default is 300 s): a homeserver that takes
# the connection and never answers fails the call as unreachable instead.
REQUEST_TIMEOUT_S = 30.0
# For sessions opened only to make such requests (CLI): a bound on anything else.
SESSION_TIMEOUT = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)


@dataclass(frozen=True)
class RequestSettings:
    """How requests to one homeserver behave, the same for each of its identities:
    rate-limit retries, the bound on each request (a /sync long-poll: its own timeout
    plus this much), and the homeserver's shared :class:`Reachability`, which hears of
    each outage and each answer (waiters wake when it is back)."""

    policy: RetryPolicy | None = None
    request_timeout_s: float = REQUEST_TIMEOUT_S
    reachability: Reachability | None = None


class RoomEncryptor(Protocol):
    """What end-to-end encryption an identity's sends go through (see
    :mod:`salon.matrix.crypto`)."""

    async def encrypt(self, room_id: RoomId, event_type: str, content: JSON) -> tuple[str, JSON]:
        """(type, content) to send: ``m.room.encrypted`` in an encrypted room, else as is."""


class MatrixAPI:
    """The client-server API as one Matrix user.

    ``requests``: see :class:`RequestSettings`; ``as_user_id`` (appservice mode:
    ``access_token`` is the appservice's) masquerades every request as that user.
    """

    reachability: Reachability | None = None
    request_timeout_s: float = REQUEST_TIMEOUT_S
    # Set once the identity has a device with keys: every room event it sends goes
    # through send_event, and so is encrypted there when the room is encrypted.
    crypto: RoomEncryptor | None = None

    def __init__(
        self,
        base_url: str,
        user_id: UserId,
        access_token: str,
        *,
        session: aiohttp.ClientSession,
        requests: RequestSettings | None = None,
        as_user_id: UserId | None = None,
    ) -> None:
        requests = requests or RequestSettings()
        self.user_id = user_id
        self.base_url = base_url
        self.request_timeout_s = requests.request_timeout_s
        self.reachability = requests.reachability
        # No mautrix-level retries (4 s, 8 s…): supervised loops and the turn runner
        # retry on their own terms, and shutdown must not hang on a dead server.
        self._http = RateLimitedHTTPAPI(
            base_url,
            access_token,
            client_session=session,
            policy=requests.policy,
            timeout=aiohttp.ClientTimeout(total=requests.request_timeout_s),
            default_retry_count=0,
            # Appservice mode: the appservice's token, acting as this user (?user_id=).
            as_user_id=as_user_id,
        )

    @property
    def access_token(self) -> str:
        """The token requests are made with."""
        return str(self._http.token)

    def raw_request_parts(self) -> tuple[aiohttp.ClientSession, str, dict[str, str], JSON]:
        """Session, base URL, headers and query of a request made outside mautrix
        (a media download streamed to disk) as this user."""
        headers = {"Authorization": f"Bearer {self.access_token}"}
        as_user = self._http.as_user_id
        return self._http.session, self.base_url, headers, {"user_id": as_user} if as_user else {}

    def set_access_token(self, token: str) -> None:
        """Swap in a new token after a re-login; everyone holding this object follows."""
        self._http.token = token

    async def _request(
        self,
        what: str,
        method: Method,
        path: Any,
        content: Any = None,
        query: Mapping[str, Any] | MultiDict[str] | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> Any:
        try:
            async with mapped(what):
                result = await self._http.request(
                    method, path, content, query_params=query, timeout=timeout
                )
        except MatrixError as e:
            if self.reachability is not None:
                self.reachability.failed(e)
            raise
        if self.reachability is not None:
            self.reachability.answered()
        return result

    async def _call(
        self,
        what: str,
        method: Method,
        path: Any,
        content: Any = None,
        query: Mapping[str, Any] | MultiDict[str] | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> JSON:
        result = await self._request(what, method, path, content, query, timeout)
        return result if isinstance(result, dict) else {}

    async def whoami(self) -> UserId:
        """Who the token belongs to (checks that it works)."""
        data = await self._call("whoami", Method.GET, Path.v3.account.whoami)
        return UserId(data["user_id"])

    async def set_displayname(self, name: str) -> None:
        """Set the profile display name if it differs (each change touches every room)."""
        path = Path.v3.profile[self.user_id].displayname
        try:
            current = (await self._call("get displayname", Method.GET, path)).get("displayname")
        except NotFoundError:
            current = None
        if current != name:
            await self._call("set displayname", Method.PUT, path, {"displayname": name})

    async def create_filter(self, definition: JSON) -> str:
        """Upload a sync filter; returns its id."""
        data = await self._call(
            "create filter", Method.POST, Path.v3.user[self.user_id].filter, definition
        )
        return str(data["filter_id"])

    async def sync(
        self, since: str | None, *, timeout_ms: int, filter_id: str | None = None
    ) -> JSON:
        """One /sync request (long-polls up to ``timeout_ms``)."""
        query: dict[str, Any] = {"timeout": str(timeout_ms)}
        if since:
            query["since"] = since
        if filter_id:
            query["filter"] = filter_id
        # The server holds the request up to timeout_ms by design: bound the silence
        # beyond that, not the whole (possibly large) answer.
        bound = aiohttp.ClientTimeout(
            total=None,
            sock_connect=self.request_timeout_s,
            sock_read=timeout_ms / 1000 + self.request_timeout_s,
        )
        return await self._call("sync", Method.GET, Path.v3.sync, query=query, timeout=bound)

    async def send_event(
        self, room_id: RoomId, event_type: str, content: JSON, *, txn_id: str
    ) -> EventId:
        """Send a room event, encrypted in an encrypted room (when the identity has a
        device). The same ``txn_id`` twice yields one event (homeserver dedup)."""
        if self.crypto is not None and event_type != "m.room.encrypted":
            event_type, content = await self.crypto.encrypt(room_id, event_type, content)
        path = Path.v3.rooms[room_id].send[event_type][txn_id]
        data = await self._call(f"send {event_type}", Method.PUT, path, content)
        return EventId(data["event_id"])

    async def send_state(
        self, room_id: RoomId, event_type: str, content: JSON, state_key: str = ""
    ) -> EventId:
        """Set a state event."""
        path = Path.v3.rooms[room_id].state[event_type][state_key]
        data = await self._call(f"send state {event_type}", Method.PUT, path, content)
        return EventId(data["event_id"])

    async def get_state_event(
        self, room_id: RoomId, event_type: str, state_key: str = ""
    ) -> JSON | None:
        """The content of one state event, or None if it is not set."""
        path = Path.v3.rooms[room_id].state[event_type][state_key]
        try:
            return await self._call(f"get state {event_type}", Method.GET, path)
        except NotFoundError:
            return None

    async def get_state(self, room_id: RoomId) -> list[JSON]:
        """The full current state of a room."""
        result = await self._request("get state", Method.GET, Path.v3.rooms[room_id].state)
        return [e for e in result if isinstance(e, dict)] if isinstance(result, list) else []

    async def create_room(
        self,
        *,
        alias_localpart: str | None = None,
        name: str | None = None,
        topic: str | None = None,
        invite: Sequence[UserId] = (),
        initial_state: Sequence[JSON] = (),
        creation_content: JSON | None = None,
        power_level_override: JSON | None = None,
        preset: str = "private_chat",
    ) -> RoomId:
        """Create a room. Raises RoomInUseError when the alias is taken."""
        body: JSON = {"preset": preset, "invite": list(invite)}
        if alias_localpart:
            body["room_alias_name"] = alias_localpart
        if name:
            body["name"] = name
        if topic:
            body["topic"] = topic
        if initial_state:
            body["initial_state"] = list(initial_state)
        if creation_content:
            body["creation_content"] = creation_content
        if power_level_override:
            body["power_level_content_override"] = power_level_override
        data = await self._call("create room", Method.POST, Path.v3.createRoom, body)
        return RoomId(data["room_id"])

    async def resolve_alias(self, alias: RoomAlias) -> tuple[RoomId, list[str]]:
        """Room id and candidate servers for an alias (the whole alias is percent-encoded)."""
        data = await self._call("resolve alias", Method.GET, Path.v3.directory.room[alias])
        return RoomId(data["room_id"]), list(data.get("servers") or [])

    async def join(self, room: RoomId | RoomAlias, via: Sequence[str] = ()) -> RoomId:
        """Join a room by id or alias."""
        # A repeated query parameter: a plain dict cannot carry it.
        query = MultiDict([("server_name", server) for server in via]) if via else None
        data = await self._call("join", Method.POST, Path.v3.join[room], {}, query)
        return RoomId(data["room_id"])

    async def leave(self, room_id: RoomId) -> None:
        """Leave a room."""
        await self._call("leave", Method.POST, Path.v3.rooms[room_id].leave, {})

    async def invite(self, room_id: RoomId, user_id: UserId) -> None:
        """Invite a user; already joined or invited is fine."""
        try:
            await self._call(
                "invite", Method.POST, Path.v3.rooms[room_id].invite, {"user_id": user_id}
            )
        except ForbiddenError as e:
            if "already in the room" not in str(e):
                raise

    async def joined_rooms(self) -> list[RoomId]:
        """Rooms this user is joined to."""
        data = await self._call("joined rooms", Method.GET, Path.v3.joined_rooms)
        return [RoomId(r) for r in data.get("joined_rooms", [])]

    async def joined_members(self, room_id: RoomId) -> list[UserId]:
        """Users joined to a room."""
        data = await self._call("joined members", Method.GET, Path.v3.rooms[room_id].joined_members)
        return [UserId(u) for u in (data.get("joined") or {})]

    async def memberships(self, room_id: RoomId) -> dict[UserId, str]:
        """Each member's membership in a room (join, invite, leave, ban…)."""
        data = await self._call("members", Method.GET, Path.v3.rooms[room_id].members)
        return {
            UserId(e["state_key"]): str((e.get("content") or {}).get("membership"))
            for e in data.get("chunk") or []
            if isinstance(e, dict) and isinstance(e.get("state_key"), str)
        }

    async def messages(
        self, room_id: RoomId, *, limit: int = 20, direction: str = "b", since: str | None = None
    ) -> JSON:
        """A page of room history (``chunk``, ``end``)."""
        query: dict[str, Any] = {"dir": direction, "limit": str(limit)}
        if since:
            query["from"] = since
        return await self._call(
            "messages", Method.GET, Path.v3.rooms[room_id].messages, query=query
        )

    async def mute_notifications(self) -> None:
        """Enable the master push rule: this user is never notified. (The homeserver still
        evaluates every member's push rules for each message; for a bot that nobody reads
        a notification of, the master rule ends that work at its first step.)"""
        path = Path.v3.pushrules["global"]["override"][".m.rule.master"].enabled
        await self._call("mute notifications", Method.PUT, path, {"enabled": True})

    async def set_typing(self, room_id: RoomId, typing: bool, timeout_ms: int = 30000) -> None:
        """Show or clear the typing notice."""
        body: JSON = {"typing": typing}
        if typing:
            body["timeout"] = timeout_ms
        await self._call("typing", Method.PUT, Path.v3.rooms[room_id].typing[self.user_id], body)

    async def device_id(self) -> str | None:
        """The device the token belongs to (None for an appservice's own token)."""
        if self._http.as_device_id:
            # Masquerading as a device (appservice mode): the homeserver would only
            # answer the device named in the request; a warm start of a thousand
            # agents spares a thousand requests.
            return str(self._http.as_device_id)
        data = await self._call("whoami", Method.GET, Path.v3.account.whoami)
        device = data.get("device_id")
        return device if isinstance(device, str) else None

    def act_as_device(self, device_id: str) -> None:
        """Appservice mode: make every request as this user's ``device_id``
        (MSC3202 device masquerading, ``?device_id=``)."""
        self._http.as_device_id = DeviceID(device_id)
        # Named even for the appservice's own user: Synapse (1.163) answers 500 to a
        # device without a user_id beside it.
        self._http.as_user_id = UserID(self.user_id)

    async def has_device(self, device_id: str) -> bool:
        """Whether the user has this device."""
        try:
            await self._call("get device", Method.GET, Path.v3.devices[device_id])
        except NotFoundError:
            return False
        return True

    async def create_device(self, device_id: str, display_name: str) -> None:
        """Appservice mode: make (or keep) one of the user's devices (MSC4190)."""
        body = {"display_name": display_name}
        await self._call("create device", Method.PUT, Path.v3.devices[device_id], body)

    async def login_device(self, device_id: str, display_name: str) -> None:
        """Appservice mode without MSC4190: make the device by logging in with the
        appservice token (``m.login.application_service``); the new token is not kept,
        requests go on with the appservice's, as that device."""
        body = {
            "type": "m.login.application_service",
            "identifier": {"type": "m.id.user", "user": self.user_id},
            "device_id": device_id,
            "initial_device_display_name": display_name,
        }
        await self._call("appservice login", Method.POST, Path.v3.login, body)

    async def ping_appservice(self, appservice_id: str) -> None:
        """Appservice mode: ask the homeserver to call our listener now (spec v1.7
        ``/appservice/{id}/ping``); Synapse then resends what it held back at once."""
        path = Path.v1.appservice[appservice_id].ping
        await self._call("appservice ping", Method.POST, path, {})

    async def upload_keys(self, body: JSON) -> dict[str, int]:
        """Publish device and one-time keys; returns the one-time keys held, by algorithm."""
        data = await self._call("upload keys", Method.POST, Path.v3.keys.upload, body)
        counts = data.get("one_time_key_counts")
        return {str(k): int(v) for k, v in counts.items()} if isinstance(counts, dict) else {}

    async def query_keys(self, users: Sequence[str]) -> JSON:
        """The device keys of ``users`` (``device_keys``: user → device → keys)."""
        body: JSON = {"device_keys": {u: [] for u in users}}
        return await self._call("query keys", Method.POST, Path.v3.keys.query, body)

    async def claim_keys(self, devices: Mapping[str, Sequence[str]]) -> JSON:
        """Claim one signed one-time key of each of ``devices`` (user → device ids)."""
        wanted = {u: {d: "signed_curve25519" for d in ds} for u, ds in devices.items()}
        body = {"one_time_keys": wanted}
        return await self._call("claim keys", Method.POST, Path.v3.keys.claim, body)

    async def send_to_device(self, event_type: str, messages: JSON, *, txn_id: str) -> None:
        """Send to-device events (``messages``: user → device → content)."""
        path = Path.v3.sendToDevice[event_type][txn_id]
        await self._call(f"send to-device {event_type}", Method.PUT, path, {"messages": messages})

    async def upload_signing_keys(self, body: JSON) -> None:
        """Publish cross-signing keys (``master_key``, ``self_signing_key``, …). The
        first upload needs no interactive auth (MSC3967); a replacement does."""
        path = Path.v3.keys.device_signing.upload
        await self._call("upload signing keys", Method.POST, path, body)

    async def upload_signatures(self, signed: JSON) -> JSON:
        """Publish signatures of keys (user → key id → signed object); the answer's
        ``failures`` says which were refused."""
        return await self._call(
            "upload signatures", Method.POST, Path.v3.keys.signatures.upload, signed
        )
