"""One call to a remote A2A (Agent2Agent) agent with the official ``a2a-sdk`` client:
resolve its card, send the task as a message, and wait for the answer (a message,
or a task polled until it ends).

``a2a-sdk`` is an optional dependency (``pip install 'salon[a2a]'``): it is
imported when a call is made, and its absence is a clear failure of that call.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from salon._exceptions import ConfigError
from salon.config.agents import A2AAgentConfig

# How often a task the remote keeps working on is asked about.
POLL_S = 1.0


class RemoteError(Exception):
    """The remote agent failed, refused, or could not be reached."""


@dataclass(frozen=True)
class RemoteAgent:
    """Where a remote A2A agent is, and the bearer token it wants (if any)."""

    url: str
    token: str | None = field(default=None, repr=False)


def remote_agents(
    configured: Mapping[str, A2AAgentConfig], given: Mapping[str, str]
) -> dict[str, RemoteAgent]:
    """The remote agents of ``a2a_agents``, their tokens read from ``given`` or the
    environment.

    Raises:
        ConfigError: a ``token_env`` names a variable that is not set.
    """
    found = {}
    for agent_id, entry in configured.items():
        token = None
        if entry.token_env:
            token = given.get(entry.token_env) or os.environ.get(entry.token_env)
            if not token:
                key = f"a2a_agents.{agent_id}.token_env"
                raise ConfigError(
                    f"{key}: environment variable {entry.token_env} is not set", path=key
                )
        found[agent_id] = RemoteAgent(entry.url.rstrip("/"), token)
    return found


def _text(parts: Any) -> str:
    return "\n".join(p.text for p in parts if p.text)


async def _until_done(client: Any, task: Any) -> Any:
    """The task once it has ended (asked about every ``POLL_S``)."""
    from a2a.types import GetTaskRequest, TaskState

    working = {
        TaskState.TASK_STATE_SUBMITTED,
        TaskState.TASK_STATE_WORKING,
        TaskState.TASK_STATE_UNSPECIFIED,
    }
    while task.status.state in working:
        await asyncio.sleep(POLL_S)
        task = await client.get_task(GetTaskRequest(id=task.id))
    return task


def _task_answer(task: Any) -> str:
    from a2a.types import TaskState

    said = _text(task.status.message.parts) if task.status.HasField("message") else ""
    if task.status.state != TaskState.TASK_STATE_COMPLETED:
        state = TaskState.Name(task.status.state).removeprefix("TASK_STATE_").lower()
        raise RemoteError(f"{state}: {said}" if said else state)
    return "\n".join(_text(a.parts) for a in task.artifacts) or said


async def call(remote: RemoteAgent, text: str, *, message_id: str, context_id: str) -> str:
    """Send ``text`` to ``remote`` and return its answer's text.

    ``message_id`` is the delegation's id: asking again after a crash sends the same
    message, which a remote that deduplicates answers once.

    Raises:
        RemoteError: the remote failed, refused, or could not be reached.
    """
    try:
        import httpx
        from a2a.client import A2AClientError, ClientConfig, ClientFactory
        from a2a.helpers.proto_helpers import new_text_message
        from a2a.types import Role, SendMessageRequest
    except ImportError as e:
        raise RemoteError("the a2a-sdk package is not installed (pip install 'salon[a2a]')") from e
    headers = {"Authorization": f"Bearer {remote.token}"} if remote.token else {}
    # No read timeout: the delegation's deadline bounds the whole call.
    timeout = httpx.Timeout(None, connect=10.0)
    try:
        async with httpx.AsyncClient(headers=headers, timeout=timeout) as http:
            factory = ClientFactory(ClientConfig(streaming=False, httpx_client=http))
            client = await factory.create_from_url(remote.url)
            message = new_text_message(text, context_id=context_id, role=Role.ROLE_USER)
            message.message_id = message_id
            async for event in client.send_message(SendMessageRequest(message=message)):
                if event.HasField("message"):
                    return _text(event.message.parts)
                if event.HasField("task"):
                    return _task_answer(await _until_done(client, event.task))
    except (A2AClientError, httpx.HTTPError, ValueError) as e:
        raise RemoteError(f"{type(e).__name__}: {e}") from e
    raise RemoteError("the remote agent sent no answer")
