"""A person's OK in the room before an agent's tool call runs.

The turn runner asks :meth:`ApprovalDesk.approver_for` for each turn's
:class:`~salon.agents.approval.Approver`. A call that matches the agent's
``approve:`` patterns becomes an ``approvals`` row (its id derived from the turn
and the call, so a re-run after a crash finds the same row and reuses a decision
already made), and the agent posts a request in the turn's room. The turn waits,
its slots lent back, until someone allowed answers — a ✅ or ❌ reaction on the
request, ``!approve`` / ``!deny``, or the admin API — or the timeout refuses it.
Who is allowed: the person the turn works for (its ``for_user``) or an admin.
Anyone else's answer changes nothing; it is logged and kept on the row.

Reactions: ✅ ✔️ ☑️ 👍 approve, ❌ ✖️ 👎 🚫 deny (variation selectors and skin tones
are ignored); any other key is no answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from salon import responses
from salon._exceptions import MatrixError
from salon.agents.approval import Approved, Decision, Denied, ToolCall, needs_approval
from salon.agents.context import waiting_on_others
from salon.config.models import SalonConfig
from salon.ids import AgentId, RoomId
from salon.matrix.api import MatrixAPI
from salon.matrix.delivery import Delivery
from salon.matrix.events import InboundEvent
from salon.matrix.txn import txn_id
from salon.metrics import APPROVALS
from salon.store import Store
from salon.store.approvals import ApprovalRecord, ApprovalState
from salon.store.records import now_ms
from salon.turns.replies import TURN_KEY, ReplyTo, reply_content
from salon.turns.spec import TurnSpec
from salon.turns.voices import GATEWAY_MARK

log = structlog.get_logger("salon.gateway.approvals")

APPROVE_KEYS = frozenset({"✅", "✔", "☑", "👍"})
DENY_KEYS = frozenset({"❌", "✖", "👎", "🚫"})
_MODIFIERS = re.compile("[\ufe0e\ufe0f\U0001f3fb-\U0001f3ff]")
POLL_S = 5.0  # a decision made by another process (or the API) is seen this late at worst


def reaction_verdict(key: object) -> bool | None:
    """True for an approving reaction key, False for a refusing one, else None."""
    if not isinstance(key, str):
        return None
    bare = _MODIFIERS.sub("", key)
    return True if bare in APPROVE_KEYS else False if bare in DENY_KEYS else None


def approval_id(spec: TurnSpec, call: ToolCall, ordinal: int) -> str:
    """Stable across re-runs of the turn: the turn, the call and which such call it is."""
    args = json.dumps(call.arguments, sort_keys=True, ensure_ascii=False, default=str)
    raw = f"{spec.turn_id}\x00{spec.agent_id}\x00{call.tool}\x00{args}\x00{ordinal}"
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def shorten(arguments: Mapping[str, Any], *, each: int = 80, total: int = 300) -> str:
    """``key=value, …`` with long values cut, for the request message."""
    parts = []
    for key, value in arguments.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        text = " ".join(str(text).split())
        parts.append(f"{key}={text[: each - 1] + '…' if len(text) > each else text}")
    joined = ", ".join(parts)
    return joined[: total - 1] + "…" if len(joined) > total else joined


def decision_of(record: ApprovalRecord) -> Decision:
    """The decision a decided row stands for."""
    if record.state is ApprovalState.APPROVED:
        return Approved(record.decided_by)
    return Denied(record.reason or record.state.value)


class ApprovalDesk:
    """Asks for, waits for and takes the approvals of this gateway's agents."""

    def __init__(
        self,
        store: Store,
        apis: Mapping[AgentId, MatrixAPI],
        config: Callable[[], SalonConfig],
        is_admin: Callable[[str], bool],
        delivery: Delivery | None = None,
    ) -> None:
        self.store = store
        self.apis = apis  # the hosted agents' live view
        self.config = config  # the running config's (a reload changes the patterns)
        self.is_admin = is_admin
        self.delivery = delivery or Delivery()
        self._waiters: dict[str, asyncio.Event] = {}

    # --- the turn's side -------------------------------------------------------

    def approver_for(self, spec: TurnSpec) -> TurnApprover | None:
        """The approver of a turn; None when none of its agent's calls need an OK."""
        patterns = self.config().approval_patterns(spec.agent_id)
        return TurnApprover(self, spec, patterns) if patterns else None

    async def request(self, spec: TurnSpec, call: ToolCall, ordinal: int) -> Decision:
        """Ask in the room (once, whatever the re-runs) and wait for the decision."""
        aid = approval_id(spec, call, ordinal)
        record = await self.store.approvals.get(aid)
        if record is None:
            if not spec.room_id:
                APPROVALS.labels(outcome="denied").inc()
                return Denied("it needs a person's approval, and this turn has no room to ask in")
            timeout_ms = int(self.config().approval.timeout_s * 1000)
            record = await self.store.approvals.create(
                ApprovalRecord(
                    id=aid,
                    turn_id=spec.turn_id,
                    agent_id=spec.agent_id,
                    tool=call.tool,
                    arguments=dict(call.arguments),
                    room_id=spec.room_id,
                    for_user=spec.for_user,
                    state=ApprovalState.PENDING,
                    created_at=now_ms(),
                    deadline_at=now_ms() + timeout_ms,
                )
            )
            APPROVALS.labels(outcome="requested").inc()
            log.info("approval.requested", id=aid, turn=spec.turn_id, tool=call.tool)
        if record.pending and record.request_event_id is None:
            try:
                event_id = await self.delivery.send(
                    self.apis[AgentId(record.agent_id)],
                    RoomId(record.room_id),
                    "m.room.message",
                    self._content(record, spec.reply_to),
                    txn_id=txn_id(aid, record.agent_id, "approval"),
                )
            except MatrixError as e:  # permanent (outages are waited out): nobody can answer
                log.warning("approval.unasked", id=aid, error=str(e))
                await self._close(record, f"the request could not be posted ({e})")
                return await self._wait(aid)
            await self.store.approvals.set_request(aid, event_id)
        return await self._wait(aid)

    async def _wait(self, aid: str) -> Decision:
        woken = self._waiters.setdefault(aid, asyncio.Event())
        try:
            async with waiting_on_others():  # nobody's turn waits behind a person's answer
                while True:
                    record = await self.store.approvals.get(aid)
                    if record is None:
                        return Denied("the approval request is gone")
                    if not record.pending:
                        return decision_of(record)
                    left_s = (record.deadline_at - now_ms()) / 1000
                    if left_s <= 0:
                        await self._time_out(record)
                        continue
                    woken.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(woken.wait(), min(left_s, POLL_S))
        finally:
            self._waiters.pop(aid, None)

    async def _time_out(self, record: ApprovalRecord) -> None:
        seconds = round((record.deadline_at - record.created_at) / 1000)
        await self._close(record, f"nobody approved it within {seconds} s")

    async def _close(self, record: ApprovalRecord, reason: str) -> None:
        """Refuse it for want of an answer (``timeout``)."""
        state = ApprovalState.TIMEOUT
        if await self.store.approvals.decide(record.id, state, by=None, reason=reason):
            await self._decided(record.id)

    # --- the people's side -------------------------------------------------------

    async def on_reaction(self, event: InboundEvent) -> str | None:
        """An answer by reaction; None when the event is no answer to a request."""
        rel = event.relation
        verdict = reaction_verdict(rel.get("key"))
        target = rel.get("event_id")
        if rel.get("rel_type") != "m.annotation" or verdict is None or not isinstance(target, str):
            return None
        record = await self.store.approvals.by_request(target)
        if record is None:
            return None
        code, _ = await self.decide(record.id, approve=verdict, by=event.sender, via="reaction")
        return code

    async def decide(
        self, ref: str, *, approve: bool, by: str, via: str, by_event: bool = False
    ) -> tuple[str, ApprovalRecord | None]:
        """Decide the approval ``ref`` (its id, or its request's event id with
        ``by_event``) as ``by``; ``via`` is how (reaction, command, api: the API's
        token is an admin's). Returns what happened — approved, denied, not_found,
        not_allowed, decided (already) — and the row as it is now."""
        approvals = self.store.approvals
        record = await (approvals.by_request(ref) if by_event else approvals.get(ref))
        if record is None:
            return "not_found", None
        if not record.pending:
            return "decided", record
        turn = await self.store.turns.get(record.turn_id, record.agent_id)
        if turn is None or not turn.open:
            # Stopped or given up while it waited: no run will make the call any more.
            await self._close(record, "the turn ended before anyone answered")
            return "decided", await approvals.get(record.id)
        if via != "api" and by != record.for_user and not self.is_admin(by):
            why = "not the person the turn works for, nor an admin"
            log.info("approval.ignored", id=record.id, by=by, via=via, why=why)
            APPROVALS.labels(outcome="ignored").inc()
            await approvals.note_ignored(record.id, by, f"{via}: {why}")
            return "not_allowed", await approvals.get(record.id)
        state = ApprovalState.APPROVED if approve else ApprovalState.DENIED
        reason = f"{state.value} by {by}"
        if not await approvals.decide(record.id, state, by=by, reason=reason):
            return "decided", await approvals.get(record.id)
        await self._decided(record.id)
        return state.value, await approvals.get(record.id)

    async def _decided(self, aid: str) -> None:
        """Count it, show it on the request message, and wake the waiting turn."""
        record = await self.store.approvals.get(aid)
        if record is None:
            return
        APPROVALS.labels(outcome=record.state.value).inc()
        log.info("approval.decided", id=aid, state=record.state.value, by=record.decided_by)
        woken = self._waiters.get(aid)
        if woken is not None:
            woken.set()
        api = self.apis.get(AgentId(record.agent_id))
        if record.request_event_id is None or api is None:
            return
        new = self._content(record, ReplyTo())
        content = {
            "msgtype": new["msgtype"],
            "body": f"* {new['body']}",
            "m.new_content": new,
            "m.relates_to": {"rel_type": "m.replace", "event_id": record.request_event_id},
        }
        # Best effort: the decision stands (and the turn goes on) if the edit fails.
        await self.delivery.try_send(
            api,
            RoomId(record.room_id),
            "m.room.message",
            content,
            txn_id=txn_id(aid, record.agent_id, f"outcome:{record.state.value}"),
        )

    def _content(self, record: ApprovalRecord, reply_to: ReplyTo) -> dict[str, Any]:
        locale = self.config().locale
        who = record.for_user or responses.text("approval_who_admin", locale)
        body = responses.text(
            "approval_request",
            locale,
            agent=record.agent_id,
            tool=record.tool,
            arguments=shorten(record.arguments),
            who=who,
            id=record.id,
            minutes=max(1, round((record.deadline_at - record.created_at) / 60000)),
        )
        if not record.pending:
            body += "\n" + responses.text(
                f"approval_outcome_{record.state.value}", locale, by=record.decided_by or ""
            )
        # Not the answer: clients waiting for the final reply keep waiting.
        content = reply_content(reply_to, record.agent_id, body, notice=True, final=False)
        content[TURN_KEY][GATEWAY_MARK] = True  # not an agent's answer: never routed
        content[TURN_KEY]["approval"] = record.id
        return content


class TurnApprover:
    """The :class:`~salon.agents.approval.Approver` of one turn."""

    def __init__(self, desk: ApprovalDesk, spec: TurnSpec, patterns: list[str]) -> None:
        self.desk = desk
        self.spec = spec
        self.patterns = patterns
        self._seen: dict[str, int] = {}  # how many such calls this run made (ids by order)

    async def approve(self, call: ToolCall) -> Decision:
        """Approved at once unless the call matches the agent's ``approve:`` patterns."""
        if not needs_approval(self.patterns, call.tool):
            return Approved()
        key = f"{call.tool}\x00{json.dumps(call.arguments, sort_keys=True, default=str)}"
        ordinal = self._seen.get(key, 0)
        self._seen[key] = ordinal + 1
        return await self.desk.request(self.spec, call, ordinal)
