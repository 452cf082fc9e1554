"""What each `!` command does. The router user answers, in the room it was asked in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from salon import responses
from salon._exceptions import is_transient
from salon.agents.history import estimate_tokens
from salon.commands.chats import Chats
from salon.commands.parser import (
    AgentChoice,
    ChoiceError,
    Command,
    parse_agent_choice,
    parse_index,
    parse_name,
)
from salon.coordination.delegation import DelegationManager
from salon.ids import AgentId
from salon.matrix.api import MatrixAPI
from salon.matrix.events import InboundEvent
from salon.routing.context import AgentInfo
from salon.store import Store
from salon.store.records import RoomKind, RoomRecord
from salon.store.users import UserRecord

log = structlog.get_logger("salon.commands")

Reply = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class Asked:
    """One command as asked: who, where, in which language."""

    event: InboundEvent
    command: Command
    user: UserRecord
    room: RoomRecord | None
    locale: str
    reply: Reply

    def t(self, key: str, **values: Any) -> str:
        """A catalogue text in the asker's language."""
        return responses.text(key, self.locale, **values)


class CommandHandlers:
    """The command table. State that must survive a restart goes to the store."""

    def __init__(
        self,
        store: Store,
        *,
        agents: Sequence[AgentInfo],
        agent_apis: Mapping[AgentId, MatrixAPI],
        models: Mapping[str, str],
        chats: Chats,
        stop_in_room: Callable[[str], int],
        session_key: Callable[[InboundEvent, str], str],
        delegations: DelegationManager | None = None,
        salon_users: Collection[str] = (),
    ) -> None:
        self.store = store
        self.agents = agents  # a live view where the gateway reloads (see the registry)
        self.agent_apis = agent_apis
        self.models = models
        self.chats = chats
        self.stop_in_room = stop_in_room
        self.session_key = session_key
        self.delegations = delegations
        # Senders whose messages `!why` does not explain: agents' replies are routed too.
        # ``salon_users`` adds users of other gateways (peers) to ours.
        self.salon_users = frozenset(
            {a.user_id for a in agents} | {chats.router.user_id} | set(salon_users)
        )
        # `!load` waits for a number; deliberately in memory: a restart drops the choice.
        self.pending_loads: dict[tuple[str, str], list[Any]] = {}

    @property
    def by_id(self) -> dict[str, AgentInfo]:
        return {a.agent_id: a for a in self.agents}

    async def handle(self, asked: Asked) -> None:
        """Run one command and answer it."""
        name = asked.command.name
        handler = getattr(self, f"_{name.value}", None) if name else None
        if handler is None:
            await asked.reply(asked.t("unknown_command", command=asked.command.raw_name))
            return
        await handler(asked)

    async def answer_pending(self, asked_event: InboundEvent, reply: Reply, locale: str) -> bool:
        """Treat a bare number as the answer to a pending `!load`; True if it was one."""
        key = (asked_event.sender, asked_event.room_id)
        snapshots = self.pending_loads.get(key)
        if not snapshots:
            return False
        index = parse_index(asked_event.body, len(snapshots))
        if index is None:
            return False
        del self.pending_loads[key]
        snapshot, agent_id = snapshots[index - 1]
        session = self.session_key(asked_event, agent_id)
        await self.store.sessions.replace(session, agent_id, list(snapshot.messages))
        await reply(
            responses.text("loaded", locale, name=snapshot.name, messages=len(snapshot.messages))
        )
        return True

    # --- the commands ---------------------------------------------------------

    async def _help(self, asked: Asked) -> None:
        await asked.reply(asked.t("help_text"))

    async def _agent(self, asked: Asked) -> None:
        args = asked.command.args
        if not args:
            lines = [asked.t("agent_list_header")]
            for n, agent in enumerate(self.agents, start=1):
                selected = agent.agent_id == asked.user.selected_agent
                lines.append(
                    asked.t(
                        "agent_list_item",
                        n=n,
                        label=agent.label,
                        agent_id=agent.agent_id,
                        description=agent.description,
                        marker=asked.t("agent_selected_marker") if selected else "",
                    )
                )
            await asked.reply("\n".join(lines))
            return
        choice = parse_agent_choice(args, [a.agent_id for a in self.agents])
        if isinstance(choice, ChoiceError):
            await asked.reply(self._choice_error(asked, choice, args))
            return
        agent = self._chosen(choice)
        await self.store.users.select_agent(asked.event.sender, agent.agent_id)
        if asked.room is None:
            # An unbound room: it now belongs to this agent, who is invited to it.
            await self.store.rooms.upsert(
                asked.event.room_id, RoomKind.BOUND, agent_id=agent.agent_id
            )
            await self.chats.router.invite(asked.event.room_id, agent.user_id)
            await asked.reply(asked.t("agent_selected_and_bound", label=agent.label))
        else:
            await asked.reply(asked.t("agent_selected", label=agent.label))

    async def _new(self, asked: Asked) -> None:
        agent = self.by_id.get(asked.user.selected_agent or "")
        if agent is None:
            await asked.reply(asked.t("new_needs_agent"))
            return
        name = parse_name(asked.command.args)
        try:
            chat = await self.chats.create(
                asked.event.sender,
                agent.agent_id,
                self.agent_apis[agent.agent_id],
                name,
                asked.locale,
                command_event=asked.event.event_id,
            )
        except Exception as e:
            if is_transient(e):
                # Homeserver or store away: the inbox retries the command once it is back
                # (the reply would not get through now; `!new` is idempotent per event).
                raise
            log.warning("command.new_failed", error=str(e))  # say what failed, not silence
            await asked.reply(asked.t("new_failed", error=type(e).__name__))
            return
        await asked.reply(asked.t("new_created", name=chat.name, link=chat.link, label=agent.label))

    async def _chats(self, asked: Asked) -> None:
        chats = await self.store.rooms.chats_of(asked.event.sender)
        if not chats:
            await asked.reply(asked.t("chats_empty"))
            return
        lines = [asked.t("chats_header")]
        for chat in chats:
            agent = self.by_id.get(chat.agent_id or "")
            lines.append(
                asked.t(
                    "chats_item",
                    name=chat.name or chat.room_id,
                    label=agent.label if agent else chat.agent_id,
                    link=f"https://matrix.to/#/{chat.room_id}",
                )
            )
        await asked.reply("\n".join(lines))

    def _own_chat(self, asked: Asked) -> RoomRecord | None:
        room = asked.room
        if room and room.kind is RoomKind.CHAT and room.owner == asked.event.sender:
            return room
        return None

    async def _rename(self, asked: Asked) -> None:
        room = self._own_chat(asked)
        if room is None:
            await asked.reply(asked.t("rename_not_chat"))
            return
        name = parse_name(asked.command.args)
        if not name:
            await asked.reply(asked.t("rename_needs_name"))
            return
        await self.chats.rename(
            room.room_id, name, self.agent_apis.get(AgentId(room.agent_id or ""))
        )
        await asked.reply(asked.t("renamed", name=name))

    async def _archive(self, asked: Asked) -> None:
        room = self._own_chat(asked)
        if room is None:
            await asked.reply(asked.t("archive_not_chat"))
            return
        await asked.reply(asked.t("archived", name=room.name or room.room_id))
        await self.chats.archive(room.room_id, self.agent_apis.get(AgentId(room.agent_id or "")))

    async def _room_agent(self, asked: Asked) -> AgentInfo | None:
        """The agent a session command is about: the room's, else the person's selection.

        Says so (and returns None) when there is none.
        """
        bound = asked.room.agent_id if asked.room and asked.room.agent_id else None
        agent = self.by_id.get(bound or asked.user.selected_agent or "")
        if agent is None:
            await asked.reply(asked.t("context_no_agent"))
        return agent

    async def _context(self, asked: Asked) -> None:
        agent = await self._room_agent(asked)
        if agent is None:
            return
        key = self.session_key(asked.event, agent.agent_id)
        messages = await self.store.sessions.messages(key, agent.agent_id, limit=100_000)
        tokens = sum(estimate_tokens(m.content) for m in messages)
        model = self.models.get(agent.agent_id, "?")
        await asked.reply(
            asked.t(
                "context_info",
                label=agent.label,
                model=model,
                messages=len(messages),
                tokens=tokens,
            )
        )

    async def _save(self, asked: Asked) -> None:
        agent = await self._room_agent(asked)
        if agent is None:
            return
        key = self.session_key(asked.event, agent.agent_id)
        messages = await self.store.sessions.messages(key, agent.agent_id, limit=100_000)
        existing = await self.store.saved.list(asked.event.sender, agent.agent_id)
        name = parse_name(asked.command.args) or f"#{len(existing) + 1}"
        await self.store.saved.save(asked.event.sender, agent.agent_id, name, messages)
        await asked.reply(asked.t("saved", name=name))

    async def _load(self, asked: Asked) -> None:
        agent = await self._room_agent(asked)
        if agent is None:
            return
        snapshots = await self.store.saved.list(asked.event.sender, agent.agent_id)
        if not snapshots:
            await asked.reply(asked.t("load_empty"))
            return
        lines = [asked.t("load_list_header")]
        for n, snap in enumerate(snapshots, start=1):
            lines.append(
                asked.t("load_list_item", n=n, name=snap.name, messages=len(snap.messages))
            )
        lines.append(asked.t("load_prompt", max=len(snapshots)))
        self.pending_loads[(asked.event.sender, asked.event.room_id)] = [
            (snap, agent.agent_id) for snap in snapshots
        ]
        await asked.reply("\n".join(lines))

    async def _reset(self, asked: Asked) -> None:
        agent = await self._room_agent(asked)
        if agent is None:
            return
        await self.store.sessions.clear(self.session_key(asked.event, agent.agent_id))
        await asked.reply(asked.t("reset_done", label=agent.label))

    async def _stop(self, asked: Asked) -> None:
        count = self.stop_in_room(asked.event.room_id)
        await asked.reply(asked.t("stop_done", count=count) if count else asked.t("stop_nothing"))

    async def _why(self, asked: Asked) -> None:
        rel = asked.event.relation.get("m.in_reply_to")
        target = rel.get("event_id") if isinstance(rel, dict) else None
        if isinstance(target, str):
            # A reply of an agent was routed too (to nobody): explain what it answered.
            turn = await self.store.turns.by_reply(target)
            decision = await self.store.decisions.get(turn.event_id if turn else target)
        else:
            decision = await self.store.decisions.last_in_room(
                asked.event.room_id, excluding=self.salon_users
            )
        if decision is None:
            await asked.reply(asked.t("why_unknown"))
            return
        reason = asked.t(f"route_reason_{decision.reason}")
        if not decision.agents:
            await asked.reply(asked.t("why_nobody", reason=reason))
            return
        labels = ", ".join(self.by_id[a].label if a in self.by_id else a for a in decision.agents)
        await asked.reply(
            asked.t("why_decision", label=labels, reason=reason, detail=decision.detail or "—")
        )

    async def _delegate(self, asked: Asked) -> None:
        room = asked.room
        agent_id, _, task = asked.command.args.partition(" ")
        agent_id = agent_id.lstrip("@").lower()
        if (
            self.delegations is None
            or room is None
            or room.kind is not RoomKind.AGENT
            or not room.agent_id
            or not agent_id
            or not task.strip()
        ):
            await asked.reply(asked.t("delegate_usage"))
            return
        # The room's agent delegates; its report turn answers this command when done.
        outcome = await self.delegations.delegate(
            room.agent_id,
            agent_id,
            task.strip(),
            origin_room=asked.event.room_id,
            origin_event=asked.event.event_id,
            wait=False,
        )
        if not outcome.ok:
            await asked.reply(outcome.text)

    async def _lang(self, asked: Asked) -> None:
        locale = asked.command.args.strip().lower()
        if locale not in responses.CATALOGUE:
            await asked.reply(asked.t("lang_unknown", locale=locale[:10]))
            return
        await self.store.users.set_locale(asked.event.sender, locale)
        await asked.reply(responses.text("lang_set", locale, locale=locale))

    # --- helpers ----------------------------------------------------------------

    def _chosen(self, choice: AgentChoice) -> AgentInfo:
        if choice.index is not None:
            return self.agents[choice.index - 1]
        return self.by_id[str(choice.agent_id)]

    def _choice_error(self, asked: Asked, error: ChoiceError, args: str) -> str:
        if error is ChoiceError.OUT_OF_RANGE:
            return asked.t("agent_choice_out_of_range", max=len(self.agents))
        if error is ChoiceError.EMPTY:
            return asked.t("agent_choice_empty")
        return asked.t("agent_choice_unknown", choice=args[:40])
