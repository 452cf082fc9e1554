"""Appservice transactions → Salon's inbound events and invitations.

A transaction carries each event once, for the appservice as a whole, not per
identity. Each event is attributed to one of our users in its room (the router
first), known from the membership events the transactions carry and from each
identity's joined rooms at start: that user is the one who later reads the room
(members, aliases) on the event's behalf.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from salon.ids import RoomId, UserId
from salon.matrix.events import InboundEvent, Invite, parse_event

_GONE = {"leave", "ban"}


@dataclass
class Members:
    """Which of our users are joined to each room (as far as this process has heard).

    What a transaction's membership events change is staged (copies of the rooms it
    touches) and takes effect at :meth:`commit`, once its events are admitted: a
    transaction that failed, and that the homeserver sends again, is read against the
    same memberships the second time."""

    router: UserId
    ours: Callable[[str], bool]
    rooms: dict[str, set[UserId]] = field(default_factory=dict)
    staged: dict[str, set[UserId]] = field(default_factory=dict)

    def seed(self, user_id: UserId, rooms: Iterable[str]) -> None:
        """Record an identity's joined rooms (asked at start)."""
        for room_id in rooms:
            self.rooms.setdefault(room_id, set()).add(user_id)
            if room_id in self.staged:
                self.staged[room_id].add(user_id)

    def reset(self, user_id: UserId, rooms: Iterable[str]) -> None:
        """An identity's joined rooms as the homeserver says now (asked again after a
        warm start that took them from the store): rooms it left are forgotten."""
        keep = set(rooms)
        for table in (self.rooms, self.staged):
            for room_id, users in table.items():
                if room_id not in keep:
                    users.discard(user_id)
        self.seed(user_id, keep)

    def by_user(self) -> dict[UserId, set[str]]:
        """Each identity's joined rooms, as far as this process has heard."""
        out: dict[UserId, set[str]] = {}
        for room_id, users in self.rooms.items():
            for user in users:
                out.setdefault(user, set()).add(room_id)
        return out

    def commit(self) -> None:
        """The staged changes take effect (their transaction was admitted)."""
        self.rooms.update(self.staged)
        self.staged.clear()

    def discard(self) -> None:
        """Forget the staged changes (their transaction was not admitted)."""
        self.staged.clear()

    def _joined(self, room_id: str) -> set[UserId]:
        if room_id in self.staged:
            return self.staged[room_id]
        return self.rooms.get(room_id) or set()

    def _staging(self, room_id: str) -> set[UserId]:
        if room_id not in self.staged:
            self.staged[room_id] = set(self.rooms.get(room_id) or ())
        return self.staged[room_id]

    def heard(self, raw: Mapping[str, Any]) -> Invite | None:
        """Follow one membership event of ours; an invitation of ours is returned."""
        target, content = raw.get("state_key"), raw.get("content")
        room_id, sender = raw.get("room_id"), raw.get("sender")
        if raw.get("type") != "m.room.member" or not isinstance(target, str):
            return None
        if not (self.ours(target) and isinstance(room_id, str) and isinstance(content, dict)):
            return None
        membership = content.get("membership")
        if membership == "join":
            self._staging(room_id).add(UserId(target))
        elif membership in _GONE:
            self._staging(room_id).discard(UserId(target))
        elif membership == "invite" and isinstance(sender, str):
            if UserId(target) in self._joined(room_id):
                # Nobody can invite a member: this invitation is older than what we
                # know (a transaction parked at start, read against the joined rooms
                # asked since). Joining again would only add a member event.
                return None
            return Invite(RoomId(room_id), UserId(sender), UserId(target))
        return None

    def joined(self, user_id: UserId, room_id: RoomId) -> bool:
        """Whether ``user_id`` is in ``room_id``, as far as this process has heard."""
        return user_id in self._joined(room_id)

    def reader(self, room_id: str) -> UserId:
        """The identity an event of ``room_id`` is received by."""
        joined = self._joined(room_id)
        if self.router in joined or not joined:
            return self.router
        return min(joined)


@dataclass(frozen=True)
class Transaction:
    """One transaction's events in order, in runs of one reader each, and its invitations."""

    batches: list[tuple[UserId, list[InboundEvent]]]
    invites: list[Invite]


def split(raw_events: Sequence[object], members: Members) -> Transaction:
    """The transaction's events in order, in runs by the identity that receives them
    (the inbox keeps a room's events in the order admitted)."""
    batches: list[tuple[UserId, list[InboundEvent]]] = []
    invites: list[Invite] = []
    for raw in raw_events:
        if not isinstance(raw, dict) or not isinstance(raw.get("room_id"), str):
            continue
        invite = members.heard(raw)
        if invite is not None:
            invites.append(invite)
        reader = members.reader(raw["room_id"])
        event = parse_event(raw, raw["room_id"], reader)
        if event is None:
            continue
        if batches and batches[-1][0] == reader:
            batches[-1][1].append(event)
        else:
            batches.append((reader, [event]))
    return Transaction(batches, invites)
