"""Salon's A2A client call against a remote agent built with the official ``a2a-sdk``
server: a message answer, a task answer, a wrong token and a remote that is not there."""

from __future__ import annotations

import socket

import pytest
from tests.a2a_remote import Remote, serving

from salon.coordination.a2a_client import RemoteAgent, RemoteError, call


async def test_message_and_task_answers() -> None:
    async with serving(Remote(token="t0k")) as remote:
        agent = RemoteAgent(remote.url, "t0k")
        assert await call(agent, "sum 2 2", message_id="dlg_1", context_id="root1") == (
            "remote did: sum 2 2"
        )
        remote.as_task = True
        assert await call(agent, "again", message_id="dlg_2", context_id="root1") == (
            "remote did: again"
        )
        assert remote.calls == {"dlg_1": 1, "dlg_2": 1}


async def test_a_wrong_token_or_no_remote_is_a_remote_error() -> None:
    async with serving(Remote(token="right")) as remote:
        with pytest.raises(RemoteError):
            await call(RemoteAgent(remote.url, "wrong"), "x", message_id="m", context_id="c")
        assert remote.refused == 1 and not remote.calls
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        gone = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(RemoteError):
        await call(RemoteAgent(gone), "x", message_id="m", context_id="c")
