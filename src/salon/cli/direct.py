"""The CLI's direct path: each command's data, fetched without the gateway's help.

`who`, `send`, `read` and `delegate` act as the operator on the homeserver
(``operator.json``); `status` reads the store file. Each function returns plain
data and renders nothing, so another source (the gateway's HTTP API) can stand
in for it with the same return types.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from salon.cli import operator as ops
from salon.cli.operator_file import OperatorFile
from salon.cli.status import StatusReport, read_status, read_store_status


def who(data_dir: Path) -> ops.WhoResult:
    """Every agent with its room and heartbeat."""
    op = OperatorFile.load(data_dir)
    result: ops.WhoResult = asyncio.run(ops.with_operator(op, lambda c: c.who()))
    return result


def send(data_dir: Path, text: str, *, to: str | None, wait_s: float | None) -> ops.Reply | None:
    """Post ``text`` to agent ``to``'s room (or the lobby); with ``wait_s``, its reply.

    Raises:
        ReplyTimeout: no reply within ``wait_s``.
    """
    op = OperatorFile.load(data_dir)

    async def action(client: ops.OperatorClient) -> ops.Reply | None:
        alias = client.agent_alias(to) if to else op.lobby_alias
        _event_id, reply = await client.send(alias, text, wait_s=wait_s)
        return reply

    result: ops.Reply | None = asyncio.run(ops.with_operator(op, action))
    return result


def read(data_dir: Path, room: str, n: int) -> list[ops.Message]:
    """The last ``n`` messages of an agent's room (or ``lobby``), oldest first."""
    op = OperatorFile.load(data_dir)

    async def action(client: ops.OperatorClient) -> list[ops.Message]:
        alias = op.lobby_alias if room == "lobby" else client.agent_alias(room)
        return await client.read(alias, n)

    result: list[ops.Message] = asyncio.run(ops.with_operator(op, action))
    return result


def delegate(data_dir: Path, task: str, *, frm: str, to: str, wait_s: float) -> ops.Reply | None:
    """Have agent ``frm`` delegate ``task`` to agent ``to``; ``frm``'s answer.

    Raises:
        ReplyTimeout: no answer within ``wait_s``.
    """
    op = OperatorFile.load(data_dir)

    async def action(client: ops.OperatorClient) -> ops.Reply | None:
        alias = client.agent_alias(frm)
        client.agent_alias(to)  # a clear error for an unknown target, before sending
        _event_id, reply = await client.send(alias, f"!delegate {to} {task}", wait_s=wait_s)
        return reply

    result: ops.Reply | None = asyncio.run(ops.with_operator(op, action))
    return result


def status(db_path: Path) -> StatusReport:
    """Open delegations, turns in flight and the gateway's loops, from the store file."""
    return read_status(db_path)


def status_at(url: str) -> StatusReport:
    """The same, from a PostgreSQL store (``store.url``)."""
    return asyncio.run(read_store_status(url))
