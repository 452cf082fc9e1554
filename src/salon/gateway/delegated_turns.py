"""Wiring delegation into the one turn pipeline.

An inbound delegated task is a ledgered ``task`` turn of the asked agent; its
outcome becomes the final status event. A result whose delegating turn is gone
(a restart, ``!delegate``) becomes a ledgered ``report`` turn of the delegator
in the origin room, and counts as delivered only once that turn has closed.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import cast

import structlog

from salon import responses
from salon.agents.tools import DelegationOutcome
from salon.config.models import SalonConfig
from salon.coordination.a2a_out import A2ADelegationManager
from salon.coordination.delegator import TurnDelegator
from salon.coordination.directory import Directory
from salon.coordination.inbound import InboundDelegations
from salon.coordination.protocol import DelegationRequest
from salon.coordination.records import request_of
from salon.gateway.messages import Handled
from salon.ids import AgentId, RoomId
from salon.matrix.api import MatrixAPI
from salon.matrix.events import InboundEvent
from salon.roster import Roster
from salon.store import Store
from salon.store.delegations import DelegationDirection, DelegationRecord
from salon.store.records import InboxState
from salon.supervisor import Supervisor
from salon.turns.replies import ReplyTo
from salon.turns.runner import TurnRunner
from salon.turns.spec import Outcome, OutcomeState, TurnKind, TurnSpec
from salon.turns.tasks import TurnKey

log = structlog.get_logger("salon.gateway.delegated_turns")

TASK_GRACE_MS = 5000


def _descriptions(config: SalonConfig, roster: Roster) -> dict[str, str]:
    """What each agent a delegation may go to does: ours, peers', remote A2A agents'."""
    remote = {a: r.description or r.label or a for a, r in config.a2a_agents.items()}
    return {**remote, **{m.agent_id: m.description for m in roster}}


def _room_session(agent_id: str, room_id: str) -> str:
    return f"agent:{agent_id}:matrix:{room_id}"


class Coordinator:
    """Delegation for the agents this gateway hosts."""

    def __init__(
        self,
        config: SalonConfig,
        store: Store,
        *,
        roster: Roster,
        agent_apis: Mapping[AgentId, MatrixAPI],
        agent_rooms: Mapping[AgentId, RoomId],
        runner: TurnRunner,
    ) -> None:
        self.store = store
        self.roster = roster
        self.runner = runner
        self._asked: set[TurnKey] = set()  # turns (running here) that delegated
        self.locale = config.locale
        self.directory = Directory(
            roster=roster,
            # The hosted agents' live views, not copies: a reload changes what they show.
            apis=cast("Mapping[str, MatrixAPI]", agent_apis),
            rooms=cast("Mapping[str, RoomId]", agent_rooms),
        )
        # Remote A2A agents (`a2a_agents:`) are delegated to like ours, by an A2A call.
        self.manager = A2ADelegationManager(
            store,
            self.directory,
            can_delegate_to={a: config.delegation_targets(a) for a in config.agents},
            descriptions=_descriptions(config, roster),
            deadline_s=config.delegation.deadline_s,
            locale=config.locale,
        )
        self.manager.report = self.report
        self.inbound = InboundDelegations(
            store,
            self.directory,
            hop_limit=config.delegation.hop_limit,
            submit=self.submit_task,
            peers=config.peers,
        )
        # Sends for turns wait out outages the same way the turns' replies do.
        self.manager.delivery = self.inbound.delivery = runner.delivery
        runner.delegator_for = self.delegator_for
        runner.outcomes.by_kind[TurnKind.TASK] = self.task_outcome
        runner.after_close[TurnKind.REPORT] = self.report_closed
        runner.closed_hooks.append(self.turn_closed)

    def reconfigure(self, config: SalonConfig) -> None:
        """Who may delegate to whom, and what the agents do, from a reloaded config."""
        self.manager.can_delegate_to = {a: config.delegation_targets(a) for a in config.agents}
        self.manager.descriptions = _descriptions(config, self.roster)
        self.manager.reload_remotes(config.a2a_agents)

    # --- the dispatcher's handlers ---------------------------------------------

    async def on_request(self, event: InboundEvent) -> Handled:
        """``com.salon.delegation.request`` from the inbox."""
        return InboxState.DONE, f"delegation {await self.inbound.on_request(event)}"

    async def on_status(self, event: InboundEvent) -> Handled:
        """``com.salon.delegation.status`` from the inbox."""
        await self.manager.on_status(event)
        return InboxState.DONE, "delegation status"

    async def start(self, supervisor: Supervisor) -> None:
        """Recover what a restart interrupted, then enforce deadlines."""
        await self.manager.recover()
        supervisor.spawn("delegation:deadlines", self.manager.run_deadlines)

    # --- turns ------------------------------------------------------------------

    async def delegator_for(self, spec: TurnSpec) -> TurnDelegator | None:
        """The delegator of a turn (None when the agent may delegate to nobody)."""
        if not self.manager.targets(spec.agent_id):
            return None
        parent = None
        if spec.kind is TurnKind.TASK and spec.delegation_id:
            record = await self.store.delegations.get(
                spec.delegation_id, direction=DelegationDirection.IN
            )
            parent = request_of(record) if record is not None else None
        # The turn id makes delegation ids stable: a re-run finds what it asked before.
        delegator = TurnDelegator(
            self.manager,
            spec.agent_id,
            origin_room=spec.room_id,
            origin_event=spec.turn_id,
            parent=parent,
            for_user=spec.for_user,
        )
        delegator.on_ask = functools.partial(self._asked.add, spec.key)
        return delegator

    async def submit_task(self, request: DelegationRequest, room: RoomId) -> None:
        """An accepted request becomes a task turn of the asked agent."""
        text = request.task + (f"\n\n{request.context}" if request.context else "")
        sender = self.roster.get(request.from_)
        await self.runner.submit(
            TurnSpec(
                turn_id=f"task:{request.id}",
                agent_id=AgentId(request.to),
                kind=TurnKind.TASK,
                room_id=room,
                sender=sender.user_id if sender else request.from_,
                # As the delegating gateway set it (a peer's: as that peer asserted it).
                for_user=request.for_user,
                text=text,
                session_key=f"agent:{request.to}:delegation:{request.root}",
                delegation_id=request.id,
                # The delegator gives up at the deadline; its task stops a little later, so
                # the outcome the delegator sees is its own timeout, not a race.
                deadline_ts=request.deadline_ts + TASK_GRACE_MS,
            )
        )

    async def task_outcome(self, spec: TurnSpec, outcome: Outcome) -> None:
        """A task turn ended: answer the delegator with the final status."""
        assert spec.delegation_id is not None
        record = await self.store.delegations.get(
            spec.delegation_id, direction=DelegationDirection.IN
        )
        if record is None:
            log.warning("delegation.task_without_record", id=spec.delegation_id)
            return
        if outcome.state is OutcomeState.REPLIED:
            await self.inbound.answer(request_of(record), result=outcome.text, error=None)
        else:
            error = outcome.error or outcome.notice or outcome.state.value
            await self.inbound.answer(request_of(record), result=None, error=error)

    async def report(self, record: DelegationRecord, outcome: DelegationOutcome) -> None:
        """A result whose delegating turn is gone: a report turn tells the origin room."""
        agent_id = AgentId(record.from_agent)
        if not record.origin_room or agent_id not in self.runner.agents:
            await self.store.delegations.mark_reinjected(record.id)  # nowhere to tell
            return
        prompt = responses.text(
            "delegation_result_prompt", self.locale, to=record.to_agent, result=outcome.text
        )
        origin = record.origin_event
        spec = TurnSpec(
            turn_id=f"report:{record.id}",
            agent_id=agent_id,
            kind=TurnKind.REPORT,
            room_id=RoomId(record.origin_room),
            sender=self.roster.user_id(agent_id),
            for_user=record.for_user,
            text=prompt,
            session_key=_room_session(agent_id, record.origin_room),
            # Reply to the message that started it, when it was a real event.
            reply_to=ReplyTo(origin if origin and origin.startswith("$") else None),
            delegation_id=record.id,
        )
        await self.runner.submit(spec)
        turn = await self.store.turns.get(spec.turn_id, agent_id)
        if turn is not None and not turn.open:
            await self.report_closed(spec, Outcome(OutcomeState.REPLIED))  # closed before

    async def turn_closed(self, spec: TurnSpec, outcome: Outcome) -> None:
        """A turn closed: a result it was owed but never took (its re-run after a crash
        asked differently, or not at all) is reported now, not at some later start.

        An agent that may delegate to nobody asked nothing: no store read for its turns
        (one a turn saved; results of targets since removed go at the next start).
        Nor does a first run that asked nothing: no delegation of the turn exists."""
        asked = spec.key in self._asked
        self._asked.discard(spec.key)
        if not self.manager.targets(spec.agent_id):
            return
        if not asked and not self.runner.is_rerun(spec.key):
            return
        for record in await self.store.delegations.undelivered_from(spec.turn_id, spec.agent_id):
            await self.manager.deliver_late(record)

    async def report_closed(self, spec: TurnSpec, outcome: Outcome) -> None:
        """The report turn closed: only now is the result delivered."""
        if spec.delegation_id is not None:
            await self.store.delegations.mark_reinjected(spec.delegation_id)
