"""`!approve` and `!deny`: answer an agent's approval request, by reply or by its id."""

from __future__ import annotations

from salon.commands.context import Asked, Services
from salon.commands.registry import HelpSection, command


def _ref(asked: Asked) -> tuple[str, bool] | None:
    """The approval asked about: an id given, else the request replied to."""
    given = asked.command.args.split()
    if given:
        return given[0], False
    reply = asked.event.relation.get("m.in_reply_to")
    target = reply.get("event_id") if isinstance(reply, dict) else None
    return (target, True) if isinstance(target, str) else None


async def _answer(s: Services, asked: Asked, *, approve: bool) -> None:
    ref = _ref(asked)
    if s.approvals is None or ref is None:
        await asked.reply(asked.t("approval_usage"))
        return
    code, record = await s.approvals.decide(
        ref[0], approve=approve, by=asked.event.sender, via="command", by_event=ref[1]
    )
    tool = record.tool if record is not None else ""
    if code in ("approved", "denied"):
        await asked.reply(asked.t(f"approval_done_{code}", tool=tool))
    elif code == "decided":
        await asked.reply(asked.t("approval_decided", state=record.state if record else "?"))
    elif code == "not_allowed":
        await asked.reply(asked.t("approval_not_allowed"))
    else:
        await asked.reply(asked.t("approval_not_found", ref=ref[0][:40]))


@command("approve", help="help_approve", args="help_args_approve", section=HelpSection.ROUTING)
async def approve(s: Services, asked: Asked) -> None:
    await _answer(s, asked, approve=True)


@command("deny", help="help_deny", args="help_args_deny", section=HelpSection.ROUTING)
async def deny(s: Services, asked: Asked) -> None:
    await _answer(s, asked, approve=False)
