"""An in-memory homeserver and a fake :class:`~salon.matrix.api.MatrixAPI`, for unit tests
of the logic above that boundary (dispatcher, turn runner, delegation, commands)::

    hs = FakeHomeserver()
    router, alice = hs.api("@salon:localhost"), hs.api("@alice:localhost")
    room = await router.create_room(invite=["@alice:localhost"])
    await alice.join(room)
    await alice.send_event(room, "m.room.message", {"body": "hi"}, txn_id="t1")
    assert hs.messages_in(room)[0]["content"]["body"] == "hi"

``FakeHomeserver``: ``rooms`` (id → :class:`FakeRoom` with ``state``, ``timeline``,
``members``), ``aliases``, ``displaynames``, ``typing`` (room → users typing);
``down = True`` makes every call of every identity raise ``MatrixConnectionError``;
``clock`` gives ``origin_server_ts`` in ms; ``messages_in(room)``: its messages, oldest first.

``FakeMatrixAPI(user_id, homeserver=None, device_id="FAKEDEVICE")`` behaves like the
homeserver where Salon relies on it: ``send_event`` dedupes per (device, room, type, txn
id), so the same txn id gives the same event id and no second event, while another
``device_id`` (a re-login) does not share them, as on Synapse. Sending to, reading or
inviting into a room one is not in, or joining a private room uninvited, raises
``ForbiddenError``; an unknown alias ``NotFoundError``; a taken alias ``RoomInUseError``.
``messages`` pages newest first (``direction="b"``): ``chunk``, and ``end`` unless it is
the last page. ``sync`` is not faked: sync is tested against a real Synapse.

Test controls: ``calls`` lists every call as ``(method, args)`` (args by parameter name,
recorded before any failure); ``calls_to(method)`` filters it.
``fail(method, error, times=1, after_effect=False)`` makes the next ``times`` calls of
``method`` raise ``error``; with ``after_effect`` the call takes effect first (the
homeserver did it and the answer was lost: a crash or a timeout right after the request).
"""

from __future__ import annotations

import copy
import functools
import inspect
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, TypeVar

from salon._exceptions import ForbiddenError, MatrixConnectionError, NotFoundError, RoomInUseError
from salon.ids import EventId, RoomAlias, RoomId, UserId, server_of_user
from salon.matrix.api import MatrixAPI

JSON = dict[str, Any]
Call = tuple[str, dict[str, Any]]
P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class FakeRoom:
    """One room: its timeline (state events included, as on a real server)."""

    room_id: RoomId
    join_rule: str = "invite"
    state: dict[tuple[str, str], JSON] = field(default_factory=dict)
    timeline: list[tuple[int, JSON]] = field(default_factory=list)  # (stream position, event)
    members: dict[str, str] = field(default_factory=dict)  # user id → join | invite | leave

    def joined(self) -> list[UserId]:
        return [UserId(u) for u, m in self.members.items() if m == "join"]


class FakeHomeserver:
    """The shared state every :class:`FakeMatrixAPI` of one test talks to."""

    def __init__(self, server_name: str = "localhost") -> None:
        self.server_name = server_name
        self.rooms: dict[RoomId, FakeRoom] = {}
        self.aliases: dict[str, RoomId] = {}
        self.displaynames: dict[str, str] = {}
        self.typing: dict[RoomId, set[str]] = {}
        self.down = False
        self.clock: Callable[[], int] = lambda: int(time.time() * 1000)
        self._txns: dict[tuple[str, ...], EventId] = {}
        self._ids = itertools.count(1)
        self._position = 0

    def api(self, user_id: str, device_id: str = "FAKEDEVICE") -> FakeMatrixAPI:
        """A client of this homeserver acting as ``user_id``."""
        return FakeMatrixAPI(user_id, self, device_id=device_id)

    def room(self, room_id: str) -> FakeRoom:
        """A room that must exist (NotFoundError otherwise)."""
        try:
            return self.rooms[RoomId(room_id)]
        except KeyError:
            raise _not_found(f"unknown room {room_id}") from None

    def messages_in(self, room_id: str) -> list[JSON]:
        """The room's ``m.room.message`` events, oldest first."""
        return [e for _, e in self.room(room_id).timeline if e["type"] == "m.room.message"]

    def append(
        self, room: FakeRoom, sender: str, etype: str, content: JSON, state_key: str | None = None
    ) -> EventId:
        """Add an event to a room's timeline (and its state, for a state event)."""
        self._position += 1
        event: JSON = {
            "event_id": f"$fake{next(self._ids)}",
            "room_id": room.room_id,
            "sender": sender,
            "type": etype,
            "content": copy.deepcopy(content),
            "origin_server_ts": self.clock(),
        }
        if state_key is not None:
            event["state_key"] = state_key
            room.state[(etype, state_key)] = event
            if etype == "m.room.member":
                room.members[state_key] = str(content.get("membership"))
            elif etype == "m.room.join_rules":
                room.join_rule = str(content.get("join_rule", room.join_rule))
        room.timeline.append((self._position, event))
        return EventId(event["event_id"])


def _recorded(
    method: Callable[Concatenate[FakeMatrixAPI, P], Awaitable[R]],
) -> Callable[Concatenate[FakeMatrixAPI, P], Awaitable[R]]:
    """Record a call by parameter name and apply injected failures around it."""
    signature = inspect.signature(method)

    @functools.wraps(method)
    async def recorded(self: FakeMatrixAPI, *args: P.args, **kwargs: P.kwargs) -> R:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments = {k: v for k, v in bound.arguments.items() if k != "self"}
        after = self._enter(method.__name__, arguments)
        result = await method(self, *args, **kwargs)
        if after is not None:
            raise after
        return result

    return recorded


class FakeMatrixAPI(MatrixAPI):
    """``MatrixAPI`` as one identity on a :class:`FakeHomeserver` (see the module doc)."""

    def __init__(
        self,
        user_id: str,
        homeserver: FakeHomeserver | None = None,
        *,
        device_id: str = "FAKEDEVICE",
    ) -> None:
        # No super().__init__: there is no HTTP session behind the fake.
        self.user_id = UserId(user_id)
        self.base_url = "http://fake.invalid"
        self.homeserver = homeserver or FakeHomeserver(server_of_user(user_id))
        self.device_id = device_id
        self.calls: list[Call] = []
        self._token = f"token-{user_id}"
        self._failures: dict[str, list[tuple[BaseException, bool]]] = {}

    # --- test controls -----------------------------------------------------------

    def fail(
        self, method: str, error: BaseException, times: int = 1, *, after_effect: bool = False
    ) -> None:
        """Make the next ``times`` calls of ``method`` raise ``error``."""
        self._failures.setdefault(method, []).extend([(error, after_effect)] * times)

    def calls_to(self, method: str) -> list[dict[str, Any]]:
        """The arguments of every call of ``method``, in order."""
        return [args for name, args in self.calls if name == method]

    def _enter(self, method: str, args: dict[str, Any]) -> BaseException | None:
        """Record the call; raise an injected failure now, or return one due after the effect."""
        self.calls.append((method, args))
        if self.homeserver.down:
            raise MatrixConnectionError(f"{method}: homeserver unreachable (fake down)")
        queue = self._failures.get(method)
        if not queue:
            return None
        error, after_effect = queue.pop(0)
        if not after_effect:
            raise error
        return error

    def _joined_room(self, room_id: str) -> FakeRoom:
        room = self.homeserver.room(room_id)
        if room.members.get(self.user_id) != "join":
            raise _forbidden(f"{self.user_id} is not in room {room_id}")
        return room

    # --- MatrixAPI -------------------------------------------------------------------

    @property
    def access_token(self) -> str:
        return self._token

    def set_access_token(self, token: str) -> None:
        self._token = token

    @_recorded
    async def whoami(self) -> UserId:
        return self.user_id

    @_recorded
    async def set_displayname(self, name: str) -> None:
        self.homeserver.displaynames[self.user_id] = name

    @_recorded
    async def send_event(
        self, room_id: RoomId, event_type: str, content: JSON, *, txn_id: str
    ) -> EventId:
        key = (self.user_id, self.device_id, room_id, event_type, txn_id)
        event_id = self.homeserver._txns.get(key)
        if event_id is None:
            room = self._joined_room(room_id)
            event_id = self.homeserver.append(room, self.user_id, event_type, content)
            self.homeserver._txns[key] = event_id
        return event_id

    @_recorded
    async def send_state(
        self, room_id: RoomId, event_type: str, content: JSON, state_key: str = ""
    ) -> EventId:
        room = self._joined_room(room_id)
        current = room.state.get((event_type, state_key))
        if current is not None and current["content"] == content:
            event_id = EventId(current["event_id"])  # Synapse, too, keeps an identical state
        else:
            event_id = self.homeserver.append(room, self.user_id, event_type, content, state_key)
        return event_id

    @_recorded
    async def get_state_event(
        self, room_id: RoomId, event_type: str, state_key: str = ""
    ) -> JSON | None:
        event = self._joined_room(room_id).state.get((event_type, state_key))
        return None if event is None else copy.deepcopy(event["content"])

    @_recorded
    async def get_state(self, room_id: RoomId) -> list[JSON]:
        return copy.deepcopy(list(self._joined_room(room_id).state.values()))

    @_recorded
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
        hs = self.homeserver
        server = server_of_user(self.user_id)
        alias = f"#{alias_localpart}:{server}" if alias_localpart else None
        if alias and alias in hs.aliases:
            raise RoomInUseError(f"alias {alias} in use", http_status=400, errcode="M_ROOM_IN_USE")
        room_id = RoomId(f"!fake{next(hs._ids)}:{server}")
        room = hs.rooms[room_id] = FakeRoom(room_id)
        create = {"creator": self.user_id, **(creation_content or {})}
        hs.append(room, self.user_id, "m.room.create", create, "")
        hs.append(room, self.user_id, "m.room.member", {"membership": "join"}, self.user_id)
        levels = {"users": {self.user_id: 100}, **(power_level_override or {})}
        hs.append(room, self.user_id, "m.room.power_levels", levels, "")
        join_rule = "public" if preset == "public_chat" else "invite"
        hs.append(room, self.user_id, "m.room.join_rules", {"join_rule": join_rule}, "")
        for event in initial_state:
            content = event.get("content") or {}
            hs.append(room, self.user_id, event["type"], content, event.get("state_key", ""))
        if name:
            hs.append(room, self.user_id, "m.room.name", {"name": name}, "")
        if topic:
            hs.append(room, self.user_id, "m.room.topic", {"topic": topic}, "")
        if alias:
            hs.aliases[alias] = room_id
            hs.append(room, self.user_id, "m.room.canonical_alias", {"alias": alias}, "")
        for user in invite:
            hs.append(room, self.user_id, "m.room.member", {"membership": "invite"}, user)
        return room_id

    @_recorded
    async def resolve_alias(self, alias: RoomAlias) -> tuple[RoomId, list[str]]:
        room_id = self.homeserver.aliases.get(alias)
        if room_id is None:
            raise _not_found(f"unknown alias {alias}")
        return room_id, [server_of_user(alias)]

    @_recorded
    async def join(self, room: RoomId | RoomAlias, via: Sequence[str] = ()) -> RoomId:
        hs = self.homeserver
        room_id = hs.aliases.get(room) if room.startswith("#") else RoomId(room)
        if room_id is None:
            raise _not_found(f"unknown alias {room}")
        target = hs.room(room_id)
        membership = target.members.get(self.user_id)
        if membership != "join":
            if membership != "invite" and target.join_rule != "public":
                raise _forbidden(f"{self.user_id} is not invited to {room_id}")
            hs.append(target, self.user_id, "m.room.member", {"membership": "join"}, self.user_id)
        return room_id

    @_recorded
    async def leave(self, room_id: RoomId) -> None:
        room = self.homeserver.room(room_id)
        if room.members.get(self.user_id) in ("join", "invite"):
            self.homeserver.append(
                room, self.user_id, "m.room.member", {"membership": "leave"}, self.user_id
            )

    @_recorded
    async def invite(self, room_id: RoomId, user_id: UserId) -> None:
        room = self._joined_room(room_id)
        if room.members.get(user_id) not in ("join", "invite"):  # already there is fine
            self.homeserver.append(
                room, self.user_id, "m.room.member", {"membership": "invite"}, user_id
            )

    @_recorded
    async def joined_rooms(self) -> list[RoomId]:
        return [r.room_id for r in self.homeserver.rooms.values() if self.user_id in r.joined()]

    @_recorded
    async def joined_members(self, room_id: RoomId) -> list[UserId]:
        return self._joined_room(room_id).joined()

    @_recorded
    async def memberships(self, room_id: RoomId) -> dict[UserId, str]:
        return {UserId(u): m for u, m in self._joined_room(room_id).members.items()}

    @_recorded
    async def messages(
        self, room_id: RoomId, *, limit: int = 20, direction: str = "b", since: str | None = None
    ) -> JSON:
        timeline = self._joined_room(room_id).timeline
        # Tokens are stream positions: "s<N>" sits after event N; backwards reads N and older.
        if direction == "b":
            start = _position(since) if since else self.homeserver._position
            older = [(p, e) for p, e in reversed(timeline) if p <= start]
        else:
            start = _position(since) if since else 0
            older = [(p, e) for p, e in timeline if p > start]
        page = older[:limit]
        result: JSON = {"chunk": copy.deepcopy([e for _, e in page])}
        if len(older) > limit:
            last = page[-1][0]
            result["end"] = f"s{last - 1}" if direction == "b" else f"s{last}"
        return result

    @_recorded
    async def mute_notifications(self) -> None:
        self.muted = True

    @_recorded
    async def set_typing(self, room_id: RoomId, typing: bool, timeout_ms: int = 30000) -> None:
        users = self.homeserver.typing.setdefault(room_id, set())
        if typing:
            users.add(self.user_id)
        else:
            users.discard(self.user_id)


def _position(token: str) -> int:
    return int(token.lstrip("s") or 0)


def _forbidden(message: str) -> ForbiddenError:
    return ForbiddenError(message, http_status=403, errcode="M_FORBIDDEN")


def _not_found(message: str) -> NotFoundError:
    return NotFoundError(message, http_status=404, errcode="M_NOT_FOUND")
