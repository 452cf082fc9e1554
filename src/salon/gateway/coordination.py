"""Wiring delegation into the gateway: who is who, running tasks, reporting results."""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from salon import responses
from salon._exceptions import SalonError
from salon.agents.backend import TurnRequest
from salon.agents.context import delegator_context
from salon.agents.runtime import AgentRuntime
from salon.agents.tools import DelegationOutcome
from salon.config.models import SalonConfig
from salon.coordination.delegation import DelegationManager, Directory, TurnDelegator
from salon.coordination.inbound import InboundDelegations
from salon.coordination.protocol import DelegationRequest
from salon.gateway.stream import ReplyStream, StreamLimits
from salon.gateway.turns import session_key
from salon.ids import AgentId, EventId, RoomId, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.events import InboundEvent
from salon.store import Store
from salon.store.delegations import DelegationRecord
from salon.store.records import now_ms
from salon.supervisor import Supervisor

log = structlog.get_logger("salon.gateway.coordination")


class Coordinator:
    """Delegation for the agents this gateway hosts."""

    def __init__(
        self,
        config: SalonConfig,
        store: Store,
        *,
        server_name: str,
        agent_apis: Mapping[AgentId, MatrixAPI],
        agent_users: Mapping[AgentId, UserId],
        agent_rooms: Mapping[AgentId, RoomId],
        runtimes: Mapping[AgentId, AgentRuntime],
        limits: StreamLimits,
    ) -> None:
        users: dict[str, UserId] = {str(a): u for a, u in agent_users.items()}
        users.update({p: config.peer_user_id(p, server_name) for p in config.peers})
        pattern = config.naming.agent_room_alias
        self.directory = Directory(
            server_name=server_name,
            users=users,
            room_alias=lambda agent: pattern.replace("{id}", agent),
            apis={str(a): api for a, api in agent_apis.items()},
            rooms={str(a): room for a, room in agent_rooms.items()},
        )
        self.locale = config.locale
        self.runtimes = runtimes
        self.limits = limits
        self.manager = DelegationManager(
            store,
            self.directory,
            can_delegate_to={a: config.delegation_targets(a) for a in config.agents},
            descriptions={a: agent.description for a, agent in config.agents.items()},
            deadline_s=config.delegation.deadline_s,
            locale=config.locale,
        )
        self.manager.report = self.report
        self.inbound = InboundDelegations(
            store, self.directory, hop_limit=config.delegation.hop_limit, run_task=self.run_task
        )

    def delegator_for(self, agent_id: AgentId, event: InboundEvent) -> TurnDelegator | None:
        """The delegator of a turn answering ``event``."""
        if not self.manager.targets(agent_id):
            return None
        return TurnDelegator(
            self.manager, agent_id, origin_room=event.room_id, origin_event=event.event_id
        )

    async def start(self, supervisor: Supervisor) -> None:
        """Recover what a restart interrupted, then enforce deadlines."""
        await self.manager.recover()
        await self.inbound.resume()
        supervisor.spawn("delegation:deadlines", self.manager.run_deadlines)

    async def stop(self) -> None:
        """Cancel running tasks (they resume on the next start)."""
        await self.inbound.stop()

    async def run_task(self, agent_id: str, request: DelegationRequest, room: RoomId) -> str:
        """Run a delegated task as ``agent_id``; returns the result text."""
        runtime = self.runtimes[AgentId(agent_id)]
        text = request.task + (f"\n\n{request.context}" if request.context else "")
        bare = TurnRequest(
            agent_id=AgentId(agent_id),
            sender=self.directory.users.get(request.from_, request.from_),
            text=text,
            session_key=f"agent:{agent_id}:delegation:{request.root}",
            chat_id="",
        )
        prepared = await runtime.prepare(bare)
        delegator = TurnDelegator(
            self.manager, agent_id, origin_room=room, origin_event=None, parent=request
        )
        with delegator_context(delegator):
            result = "".join([chunk async for chunk in runtime.stream(prepared)])
        await runtime.record(prepared, request.id, result)
        return result

    async def report(self, record: DelegationRecord, outcome: DelegationOutcome) -> None:
        """A result whose turn is gone: into the delegator's session, then a new turn that
        tells the origin room."""
        agent_id = AgentId(record.from_agent)
        if not record.origin_room or agent_id not in self.runtimes:
            return
        runtime, api = self.runtimes[agent_id], self.directory.apis[agent_id]
        prompt = responses.text(
            "delegation_result_prompt", self.locale, to=record.to_agent, result=outcome.text
        )
        event = InboundEvent(
            event_id=EventId(record.origin_event or f"${record.id}"),
            room_id=RoomId(record.origin_room),
            sender=api.user_id,
            type="m.room.message",
            content={"msgtype": "m.text", "body": prompt},
            origin_ts=now_ms(),
            received_by=api.user_id,
        )
        bare = TurnRequest(
            agent_id=agent_id,
            sender=api.user_id,
            text=prompt,
            session_key=session_key(event, agent_id),
            chat_id="",
        )
        reply = ReplyStream(api, event, agent_id, self.limits, txn_key=f"dlg:{record.id}")
        try:
            prepared = await runtime.prepare(bare)
            with delegator_context(self.delegator_for(agent_id, event)):
                text = await reply.run(runtime.stream(prepared))
            await reply.finish(text)
            await runtime.record(prepared, f"dlg:{record.id}", text)
        except SalonError as e:
            log.warning("delegation.report_failed", id=record.id, error=str(e))
            await reply.finish(f"{record.to_agent}: {outcome.text}", notice=True)
