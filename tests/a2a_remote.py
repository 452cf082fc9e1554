"""A remote A2A agent built with the official ``a2a-sdk`` server (Starlette on uvicorn,
in the test's event loop, on a free port): what Salon's agents delegate to in tests.

It answers ``remote did: <text>`` (as one message, or as a task with an artifact),
counts the calls it got by message id, and wants ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from a2a.helpers.proto_helpers import new_task_from_user_message, new_text_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill
from starlette.applications import Starlette
from starlette.responses import JSONResponse


@dataclass
class Remote:
    """The remote agent's behaviour and what it saw."""

    token: str
    as_task: bool = False  # answer with a task and an artifact instead of a message
    delay_s: float = 0.0
    calls: Counter[str] = field(default_factory=Counter)  # message id → times asked
    texts: list[str] = field(default_factory=list)
    refused: int = 0  # calls without the right token
    url: str = ""


class _Executor(AgentExecutor):
    def __init__(self, remote: Remote) -> None:
        self.remote = remote

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.message is not None
        self.remote.calls[context.message.message_id] += 1
        text = context.get_user_input()
        self.remote.texts.append(text)
        await asyncio.sleep(self.remote.delay_s)
        answer = f"remote did: {text}"
        if not self.remote.as_task:
            await event_queue.enqueue_event(new_text_message(answer, context_id=context.context_id))
            return
        task = context.current_task or new_task_from_user_message(context.message)
        await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.add_artifact([new_text_message(answer).parts[0]], name="answer")
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


def _card(url: str) -> AgentCard:
    return AgentCard(
        name="Remote",
        description="Does what it is asked, remotely",
        version="1.0",
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0")
        ],
        capabilities=AgentCapabilities(streaming=False),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="do", name="Do", description="does it", tags=["test"])],
    )


@asynccontextmanager
async def serving(remote: Remote) -> AsyncIterator[Remote]:
    """Serve ``remote`` on a free port of 127.0.0.1 (its base URL in ``remote.url``)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    remote.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    card = _card(remote.url)
    handler = DefaultRequestHandler(_Executor(remote), InMemoryTaskStore(), card)
    app = Starlette(routes=[*create_agent_card_routes(card), *create_jsonrpc_routes(handler, "/")])

    async def bearer(scope: Any, receive: Any, send: Any) -> None:
        """The app behind a bearer token check."""
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            if headers.get(b"authorization") != f"Bearer {remote.token}".encode():
                remote.refused += 1
                await JSONResponse({"error": "unauthorized"}, status_code=401)(scope, receive, send)
                return
        await app(scope, receive, send)

    server = uvicorn.Server(uvicorn.Config(bearer, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.02)
        if task.done():
            task.result()
    try:
        yield remote
    finally:
        server.should_exit = True
        await task
        sock.close()
