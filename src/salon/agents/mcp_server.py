"""One MCP server connection, kept alive by its own task (official ``mcp`` SDK, 2.x).

The SDK's client is an async context manager bound to the task that entered
it, so a supervisor task holds it open; calls from turns use the session in
between. A crash (the process died, the connection broke, a ping failed) ends
the connection; the supervisor reconnects after a backoff that doubles up to
``restart_backoff_max_s``, and meanwhile calls get an "unavailable" result.

stdio children: a process group of their own (the SDK starts a new session,
and kills the group on stop), an environment of only what the config gives,
and a watchdog (:mod:`salon.agents.mcp_watchdog`: PR_SET_PDEATHSIG) so they die
with the gateway even on kill -9; servers also see their stdin close then.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import structlog

from salon.agents.toolbox import ToolResult
from salon.config.mcp import McpServerConfig
from salon.metrics import MCP_SERVER_RESTARTS

_log = structlog.get_logger("salon.agents.mcp")


def child_params(config: McpServerConfig, env: Mapping[str, str]) -> Any:
    """The SDK's stdio parameters: the command behind the watchdog, only the configured env."""
    from mcp.client.stdio import StdioServerParameters

    child_env = dict(config.env)
    for var, source in config.secrets_env.items():
        value = env.get(source)
        if value is not None:
            child_env[var] = value
    watchdog = [sys.executable, "-m", "salon.agents.mcp_watchdog", str(os.getpid())]
    command = [*watchdog, *config.argv(sys.executable)]
    return StdioServerParameters(
        command=command[0], args=command[1:], env=child_env, cwd=config.cwd
    )


def http_target(config: McpServerConfig, env: Mapping[str, str]) -> Any:
    """The SDK's streamable HTTP transport with the configured (and secret) headers."""
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    assert config.url is not None
    headers = dict(config.headers)
    for header, source in config.headers_env.items():
        if env.get(source):
            headers[header] = env[source]
    if config.token_env and env.get(config.token_env):
        headers["Authorization"] = f"Bearer {env[config.token_env]}"
    url = config.url

    @contextlib.asynccontextmanager
    async def transport() -> AsyncIterator[Any]:
        # Our own HTTP client (for the headers), closed with the connection.
        async with (
            httpx2.AsyncClient(headers=headers, timeout=config.call_timeout_s) as client,
            streamable_http_client(url, http_client=client) as streams,
        ):
            yield streams

    return transport()


class McpServer:
    """A configured server: its state, its tools, its calls."""

    def __init__(
        self, server_id: str, config: McpServerConfig, env: Mapping[str, str] | None = None
    ) -> None:
        self.server_id = server_id
        self.config = config
        self.env = os.environ if env is None else env
        self.state = "stopped"  # starting, ready, restarting, stopped
        self.last_error: str | None = None
        self.restarts = 0
        self.tools: list[Any] = []  # the SDK's Tool objects, as last listed
        self._client: Any = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._broken = asyncio.Event()
        self._stopping = False
        self._stop = asyncio.Event()  # ends a backoff wait at once

    def status(self) -> dict[str, Any]:
        """What ``salon status`` and the admin API show of the server."""
        return {
            "server": self.server_id,
            "transport": self.config.transport,
            "state": self.state,
            "tools": [t.name for t in self.tools],
            "restarts": self.restarts,
            "last_error": self.last_error,
        }

    def start(self) -> None:
        """Start the supervisor (idempotent)."""
        if self._task is None or self._task.done():
            self._stopping = False
            self._stop.clear()
            self.state = "starting"
            self._task = asyncio.create_task(self._supervise(), name=f"mcp:{self.server_id}")

    async def wait_ready(self, timeout: float) -> bool:
        """Start if need be; whether the server is ready within ``timeout`` seconds."""
        self.start()
        if self.state == "restarting":
            return False  # backing off: the tools are unavailable meanwhile
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout)
        return self.state == "ready"

    async def stop(self) -> None:
        """Close the connection (the SDK stops the child and its group) and the task."""
        self._stopping = True
        self._stop.set()
        self._broken.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(task, 10)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        self.state = "stopped"

    def _connect(self) -> Any:
        from mcp import Client

        target = (
            child_params(self.config, self.env)
            if self.config.url is None
            else http_target(self.config, self.env)
        )
        return Client(target, read_timeout_seconds=self.config.call_timeout_s)

    async def _supervise(self) -> None:
        delay = self.config.restart_backoff_s
        while not self._stopping:
            began = time.monotonic()
            try:
                async with self._connect() as client:
                    listed = await client.list_tools()
                    self.tools = list(listed.tools)
                    self._client = client
                    self.state = "ready"
                    self.last_error = None
                    self._broken.clear()
                    self._ready.set()
                    _log.info("mcp.ready", server=self.server_id, tools=len(self.tools))
                    await self._watch(client)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the SDK raises exception groups, too
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            finally:
                self._client = None
                self._ready.clear()
                if self.state == "ready":
                    self.state = "restarting"  # calls get "unavailable" from now on
            if self._stopping:
                break
            if time.monotonic() - began > 4 * self.config.restart_backoff_max_s:
                delay = self.config.restart_backoff_s  # it ran well for a while
            self.state = "restarting"
            self.restarts += 1
            MCP_SERVER_RESTARTS.labels(server=self.server_id).inc()
            _log.warning(
                "mcp.restarting", server=self.server_id, error=self.last_error, wait_s=delay
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            delay = min(delay * 2, self.config.restart_backoff_max_s)
            self.state = "starting"

    async def _watch(self, client: Any) -> None:
        """Until broken or stopped: check now and then (a dead child shows up here)."""
        while not self._broken.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._broken.wait(), self.config.ping_s)
            if self._broken.is_set():
                break
            # A listing as the health check (ping is gone from the 2026-07-28 protocol).
            listed = await asyncio.wait_for(
                client.list_tools(cache_mode="bypass"), min(self.config.call_timeout_s, 10)
            )
            self.tools = list(listed.tools)
        if not self._stopping:
            raise ConnectionError(self.last_error or "the connection broke")

    async def call(self, tool: str, arguments: Mapping[str, Any]) -> ToolResult:
        """Run one tool; every failure is a result the model can read."""
        timeout = self.config.call_timeout_s
        if not await self.wait_ready(timeout):
            why = f" ({self.last_error})" if self.last_error else ""
            return ToolResult(
                False,
                f"[UNAVAILABLE] MCP server {self.server_id!r} is {self.state}{why}; "
                "its tools are unavailable for now, try again later",
                "unavailable",
            )
        client = self._client
        try:
            result = await asyncio.wait_for(
                client.call_tool(tool, dict(arguments), read_timeout_seconds=timeout), timeout
            )
        except TimeoutError:
            return ToolResult(False, f"[TIMEOUT] {tool} gave no result in {timeout:g} s", "timeout")
        except Exception as exc:
            if _is_protocol_error(exc):
                return ToolResult(False, f"[ERROR] {tool}: {exc}", "error")
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            self._broken.set()  # the supervisor reconnects
            return ToolResult(
                False,
                f"[UNAVAILABLE] MCP server {self.server_id!r} failed during the call "
                f"({self.last_error}); it is being restarted",
                "unavailable",
            )
        return self._shaped(result)

    def _shaped(self, result: Any) -> ToolResult:
        parts: list[str] = []
        for block in result.content:
            text = getattr(block, "text", None)
            parts.append(text if isinstance(text, str) else f"[{getattr(block, 'type', '?')}]")
        if not parts and result.structured_content is not None:
            import json

            parts.append(json.dumps(result.structured_content, ensure_ascii=False))
        text = "\n".join(parts)
        cap = self.config.max_result_chars
        if len(text) > cap:
            text = text[:cap] + f"\n[cut: the result had {len(text)} characters, {cap} shown]"
        if result.is_error:
            return ToolResult(False, f"[ERROR] {text}", "error")
        return ToolResult(True, text, "ok")


def _is_protocol_error(exc: Exception) -> bool:
    """An error the server answered with (bad arguments, unknown tool): not a crash."""
    from mcp.shared.exceptions import MCPError

    return isinstance(exc, MCPError) and "closed" not in str(exc).lower()
