"""Invitations are joined here, by a retrying task, never inside a sync loop.

The sync loop only records an invitation (one quick durable write), so its token
always advances. :meth:`InviteJoiner.run` joins what is pending: an unreachable
or overloaded homeserver is retried with backoff, per invitation, so one bad room
does not hold up the others; a refusal by the homeserver (403, 404…) is stored
with the reason. An invitation from a sender who may not use the agents is declined
(the invited identity rejects it, so it does not linger) and stored as refused,
reason ``unauthorised``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping

import structlog

from salon._exceptions import MatrixError, UnknownTokenError, is_transient
from salon.ids import RoomId, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.events import Invite
from salon.metrics import EVENTS_DROPPED, INVITES
from salon.store import Store
from salon.store.invites import InviteRecord, InviteState
from salon.store.records import now_ms
from salon.supervisor import Backoff, LoopHandle

log = structlog.get_logger("salon.gateway.invites")


class InviteJoiner:
    """Joins the rooms Salon's identities are invited to, outside the sync loops."""

    def __init__(
        self,
        store: Store,
        apis: Mapping[UserId, MatrixAPI],
        *,
        allowed: Callable[[UserId], bool],
        on_joined: Callable[[RoomId], None] | None = None,
        backoff: Backoff | None = None,
        visiting: Callable[[Invite], bool] | None = None,
    ) -> None:
        self._store = store
        self._apis = apis
        self._allowed = allowed
        self._on_joined = on_joined
        self._backoff = backoff or Backoff(initial_s=2.0, max_s=300.0)
        self._wake = asyncio.Event()
        self._visiting = visiting
        # Whether an identity is known to be in a room already (appservice mode: what
        # the listener heard): its invitation is then closed without a join. (After a
        # cold start, a hundred agents' lobby invitations, joined by the start itself,
        # were joined again, one by one in the homeserver, ahead of the replies.)
        self.already_in: Callable[[UserId, RoomId], bool] | None = None

    async def record(self, invite: Invite) -> None:
        """Remember the invitation durably and wake the joiner (called from sync). A
        visitor's invitation (``visiting``) is left as it is: the homeserver keeps it,
        and the agent joins when it needs the room."""
        if self._visiting is not None and self._visiting(invite):
            INVITES.labels(outcome="visitor").inc()
            log.debug("invite.visitor", user=invite.invited, room_id=invite.room_id)
            return
        await self._store.invites.record(invite.invited, invite.room_id, invite.sender)
        log.debug("invite.recorded", user=invite.invited, room_id=invite.room_id)
        self._wake.set()

    def wake(self) -> None:
        """Look for due invitations now (another process may have recorded one)."""
        self._wake.set()

    async def run(self, handle: LoopHandle) -> None:
        """Join pending invitations until cancelled (for ``Supervisor.spawn``; with
        several processes on one store, the leader's only: see the cluster)."""
        while True:
            self._wake.clear()  # before reading, so a record() meanwhile is not missed
            due = await self._store.invites.due(now_ms())
            results = await asyncio.gather(*(self._attempt(i) for i in due), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result  # a store failure: the supervisor restarts the loop
            handle.healthy()
            next_at = await self._store.invites.next_due()
            wait = None if next_at is None else max(0.0, (next_at - now_ms()) / 1000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _attempt(self, invite: InviteRecord) -> None:
        user, room_id = UserId(invite.user_id), RoomId(invite.room_id)
        where = {"user": user, "room_id": room_id, "sender": invite.sender}
        api = self._apis.get(user)
        if api is None:
            await self._close(invite, InviteState.FAILED, "not an identity of this gateway")
            log.warning("invite.failed", **where, reason="unknown identity")
            return
        if not self._allowed(UserId(invite.sender)):
            await self._decline(api, invite, where)
            return
        if self.already_in is not None and self.already_in(user, room_id):
            await self._close(invite, InviteState.JOINED, "already joined")
            log.debug("invite.already_joined", **where)
            return
        try:
            await api.join(room_id)
        except MatrixError as e:
            if not _worth_retrying(e):
                await self._close(invite, InviteState.FAILED, str(e))
                log.warning("invite.failed", **where, error=str(e))
                return
            await self._retry(invite, e, where)
            return
        await self._close(invite, InviteState.JOINED, "joined")
        if self._on_joined is not None:
            self._on_joined(room_id)
        log.info("invite.joined", **where)

    async def _decline(self, api: MatrixAPI, invite: InviteRecord, where: dict[str, str]) -> None:
        """Reject an invitation from someone who may not use the agents (leaving an
        invited room rejects the invitation)."""
        try:
            await api.leave(RoomId(invite.room_id))
        except MatrixError as e:
            if _worth_retrying(e):
                await self._retry(invite, e, where)
                return
            # Withdrawn meanwhile, or the room is gone: nothing is left to reject.
            log.info("invite.reject_failed", **where, error=str(e))
        EVENTS_DROPPED.labels(reason="invite_unauthorised").inc()
        await self._close(invite, InviteState.REFUSED, "unauthorised")
        log.info("invite.refused", **where, reason="unauthorised")

    async def _retry(self, invite: InviteRecord, error: MatrixError, where: dict[str, str]) -> None:
        delay = self._backoff.delay(invite.attempts + 1)
        next_at = now_ms() + int(delay * 1000)
        await self._store.invites.retry_at(invite.user_id, invite.room_id, next_at, str(error))
        INVITES.labels(outcome="retry").inc()
        log.warning("invite.retry", **where, error=str(error), retry_in_s=round(delay, 1))

    async def _close(self, invite: InviteRecord, state: InviteState, reason: str) -> None:
        await self._store.invites.close(invite.user_id, invite.room_id, state, reason)
        INVITES.labels(outcome=state.value).inc()


def _worth_retrying(error: MatrixError) -> bool:
    # A lost token is renewed by the identity's sync loop: worth another try.
    return is_transient(error) or isinstance(error, UnknownTokenError)
