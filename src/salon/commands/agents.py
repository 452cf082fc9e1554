"""Commands about agents: `!agent` picks one, `!why` explains routing, `!delegate`
has a room's agent hand a task on."""

from __future__ import annotations

from salon.commands.context import Asked, Services
from salon.commands.parser import ChoiceError, parse_agent_choice
from salon.commands.registry import HelpSection, Usage, command
from salon.store.records import RoomKind


@command(
    "agent",
    help="help_agent_list",
    also=[Usage("help_agent_choose", "help_args_agent")],
    section=HelpSection.AGENTS,
)
async def choose_agent(s: Services, asked: Asked) -> None:
    args = asked.command.args
    if not args:
        lines = [asked.t("agent_list_header")]
        for n, agent in enumerate(s.agents, start=1):
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
    choice = parse_agent_choice(args, [a.agent_id for a in s.agents])
    if isinstance(choice, ChoiceError):
        await asked.reply(s.choice_error(asked, choice, args))
        return
    agent = s.chosen(choice)
    await s.store.users.select_agent(asked.event.sender, agent.agent_id)
    if asked.room is None:
        # An unbound room: it now belongs to this agent, who is invited to it.
        await s.store.rooms.upsert(asked.event.room_id, RoomKind.BOUND, agent_id=agent.agent_id)
        await s.chats.router.invite(asked.event.room_id, agent.user_id)
        await asked.reply(asked.t("agent_selected_and_bound", label=agent.label))
    else:
        await asked.reply(asked.t("agent_selected", label=agent.label))


@command("why", help="help_why", section=HelpSection.ROUTING)
async def explain_routing(s: Services, asked: Asked) -> None:
    rel = asked.event.relation.get("m.in_reply_to")
    target = rel.get("event_id") if isinstance(rel, dict) else None
    if isinstance(target, str):
        # A reply of an agent was routed too (to nobody): explain what it answered.
        turn = await s.store.turns.by_reply(target)
        decision = await s.store.decisions.get(turn.event_id if turn else target)
    else:
        decision = await s.store.decisions.last_in_room(
            asked.event.room_id, excluding=s.salon_users
        )
    if decision is None:
        await asked.reply(asked.t("why_unknown"))
        return
    reason = asked.t(f"route_reason_{decision.reason}")
    if not decision.agents:
        await asked.reply(asked.t("why_nobody", reason=reason))
        return
    labels = ", ".join(s.by_id[a].label if a in s.by_id else a for a in decision.agents)
    await asked.reply(
        asked.t("why_decision", label=labels, reason=reason, detail=decision.detail or "—")
    )


@command("delegate", help="help_delegate", args="help_args_delegate", section=HelpSection.ROUTING)
async def delegate(s: Services, asked: Asked) -> None:
    room = asked.room
    agent_id, _, task = asked.command.args.partition(" ")
    agent_id = agent_id.lstrip("@").lower()
    if (
        s.delegations is None
        or room is None
        or room.kind is not RoomKind.AGENT
        or not room.agent_id
        or not agent_id
        or not task.strip()
    ):
        await asked.reply(asked.t("delegate_usage"))
        return
    # The room's agent delegates; its report turn answers this command when done.
    outcome = await s.delegations.delegate(
        room.agent_id,
        agent_id,
        task.strip(),
        origin_room=asked.event.room_id,
        origin_event=asked.event.event_id,
        wait=False,
        # Done for whoever typed the command (commands are only people's).
        for_user=asked.event.sender,
    )
    if not outcome.ok:
        await asked.reply(outcome.text)
