"""Commands about the session with a room's agent: its size, snapshots, reset, stop."""

from __future__ import annotations

from salon import responses
from salon.agents.history import estimate_tokens
from salon.commands.context import Asked, Reply, Services
from salon.commands.parser import parse_index, parse_name
from salon.commands.registry import HelpSection, command
from salon.matrix.events import InboundEvent
from salon.routing.context import AgentInfo
from salon.store.sessions import StoredMessage

_ALL = 100_000  # messages read for a whole session


async def _session(s: Services, asked: Asked, agent: AgentInfo) -> list[StoredMessage]:
    """The whole session of ``agent`` that the command was asked in."""
    key = s.session_key(asked.event, agent.agent_id)
    return await s.store.sessions.messages(key, agent.agent_id, limit=_ALL)


@command("context", help="help_context", section=HelpSection.SESSIONS)
async def show_context(s: Services, asked: Asked) -> None:
    agent = await s.room_agent(asked)
    if agent is None:
        return
    messages = await _session(s, asked, agent)
    tokens = sum(estimate_tokens(m.content) for m in messages)
    model = s.models.get(agent.agent_id, "?")
    await asked.reply(
        asked.t(
            "context_info",
            label=agent.label,
            model=model,
            messages=len(messages),
            tokens=tokens,
        )
    )


@command("save", help="help_save", args="help_args_name_optional", section=HelpSection.SESSIONS)
async def save_session(s: Services, asked: Asked) -> None:
    agent = await s.room_agent(asked)
    if agent is None:
        return
    messages = await _session(s, asked, agent)
    existing = await s.store.saved.list(asked.event.sender, agent.agent_id)
    name = parse_name(asked.command.args) or f"#{len(existing) + 1}"
    await s.store.saved.save(asked.event.sender, agent.agent_id, name, messages)
    await asked.reply(asked.t("saved", name=name))


@command("load", help="help_load", section=HelpSection.SESSIONS)
async def load_session(s: Services, asked: Asked) -> None:
    agent = await s.room_agent(asked)
    if agent is None:
        return
    snapshots = await s.store.saved.list(asked.event.sender, agent.agent_id)
    if not snapshots:
        await asked.reply(asked.t("load_empty"))
        return
    lines = [asked.t("load_list_header")]
    for n, snap in enumerate(snapshots, start=1):
        lines.append(asked.t("load_list_item", n=n, name=snap.name, messages=len(snap.messages)))
    lines.append(asked.t("load_prompt", max=len(snapshots)))
    s.pending_loads[(asked.event.sender, asked.event.room_id)] = [
        (snap, agent.agent_id) for snap in snapshots
    ]
    await asked.reply("\n".join(lines))


async def answer_load(s: Services, event: InboundEvent, reply: Reply, locale: str) -> bool:
    """Treat a bare number as the answer to a pending `!load`; True if it was one."""
    key = (event.sender, event.room_id)
    snapshots = s.pending_loads.get(key)
    if not snapshots:
        return False
    index = parse_index(event.body, len(snapshots))
    if index is None:
        return False
    del s.pending_loads[key]
    snapshot, agent_id = snapshots[index - 1]
    session = s.session_key(event, agent_id)
    await s.store.sessions.replace(session, agent_id, list(snapshot.messages))
    await reply(
        responses.text("loaded", locale, name=snapshot.name, messages=len(snapshot.messages))
    )
    return True


@command("reset", help="help_reset", section=HelpSection.SESSIONS)
async def reset_session(s: Services, asked: Asked) -> None:
    agent = await s.room_agent(asked)
    if agent is None:
        return
    await s.store.sessions.clear(s.session_key(asked.event, agent.agent_id))
    await asked.reply(asked.t("reset_done", label=agent.label))


@command("stop", help="help_stop", section=HelpSection.SESSIONS)
async def stop_answers(s: Services, asked: Asked) -> None:
    count = s.stop_in_room(asked.event.room_id)
    await asked.reply(asked.t("stop_done", count=count) if count else asked.t("stop_nothing"))
