"""All MCP servers of the gateway, and which of their tools each agent may use.

Shared servers (``mcp_servers:``) run once; an agent's own servers
(``agents.<id>.mcp_servers``) run separately, keyed ``<agent>/<server>``, with
that agent's configured credentials only. An agent may use what its ``mcp:``
list names (``server`` or ``server.tool``) and, in full, its own servers that
the list does not mention.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Mapping
from typing import Any

import structlog

from salon.agents.mcp_server import McpServer
from salon.agents.toolbox import ToolCall, ToolResult, ToolSpec
from salon.config.mcp import McpServerConfig, mcp_allow_list
from salon.config.models import SalonConfig

_log = structlog.get_logger("salon.agents.mcp")
MAX_NAME = 64  # OpenAI's limit on a function name


def tool_name(server: str, tool: str, taken: set[str]) -> str:
    """``mcp__<server>__<tool>``, sanitised to [A-Za-z0-9_-], at most 64 characters, and
    distinct from every name in ``taken`` (a short hash of the real names otherwise)."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", f"mcp__{server}__{tool}")
    if len(name) > MAX_NAME or name in taken:
        digest = hashlib.sha1(f"{server}\0{tool}".encode()).hexdigest()[:8]
        name = f"{name[: MAX_NAME - 9]}_{digest}"
    return name


class AgentTools:
    """The MCP tools of one agent (a :class:`~salon.agents.toolbox.ToolProvider`)."""

    def __init__(self, servers: Mapping[str, McpServer], allowed: dict[str, set[str] | None]):
        self.servers = servers  # by the server id the agent knows
        self.allowed = allowed
        self._specs: list[ToolSpec] = []
        taken: set[str] = {"delegate"}
        for sid, server in servers.items():
            only = allowed.get(sid)
            for tool in server.tools:
                if only is not None and tool.name not in only:
                    continue
                name = tool_name(sid, tool.name, taken)
                taken.add(name)
                desc = (tool.description or tool.title or "").strip()
                schema = dict(getattr(tool, "input_schema", None) or {})
                self._specs.append(ToolSpec(name, sid, tool.name, desc, schema))

    def specs(self) -> list[ToolSpec]:
        """The tools offered: those the allow-list passes, as the servers last listed them."""
        return list(self._specs)

    async def run(self, call: ToolCall) -> ToolResult:
        """Run a call on its server, if the allow-list passes it (checked again here)."""
        only = self.allowed.get(call.server, set())
        server = self.servers.get(call.server)
        if server is None or (only is not None and call.tool not in only):
            return ToolResult(False, f"[ERROR] tool {call.name!r} is not allowed", "refused")
        return await server.call(call.tool, call.arguments)


class McpHub:
    """Starts, stops and reloads the servers; gives each agent its tools."""

    def __init__(self, config: SalonConfig, env: Mapping[str, str] | None = None) -> None:
        self.env = env
        self.config = config
        self.servers: dict[str, McpServer] = {}
        self._sync(config)

    @staticmethod
    def _configs(config: SalonConfig) -> dict[str, McpServerConfig]:
        found = dict(config.mcp_servers)
        for agent_id, agent in config.agents.items():
            for sid, server in agent.mcp_servers.items():
                found[f"{agent_id}/{sid}"] = server
        return found

    def _sync(self, config: SalonConfig) -> list[McpServer]:
        """Take ``config``'s servers; the servers to stop (gone or changed) are returned."""
        wanted = self._configs(config)
        gone = [s for key, s in self.servers.items() if wanted.get(key) != s.config]
        for server in gone:
            del self.servers[server.server_id]
        for key, server_config in wanted.items():
            if key not in self.servers:
                self.servers[key] = McpServer(key, server_config, self.env)
        self.config = config
        return gone

    async def start(self) -> None:
        """Start the servers configured ``start: startup`` (not waiting for them)."""
        for server in self.servers.values():
            if server.config.start == "startup":
                server.start()

    async def stop(self) -> None:
        """Stop every server (their children with them)."""
        await asyncio.gather(*(s.stop() for s in self.servers.values()))

    async def apply(self, config: SalonConfig) -> None:
        """Hot reload: stop removed or changed servers, start new ``startup`` ones."""
        gone = self._sync(config)
        await asyncio.gather(*(s.stop() for s in gone))
        await self.start()
        _log.info("mcp.reloaded", servers=sorted(self.servers), stopped=len(gone))

    def visible(self, agent_id: str) -> dict[str, McpServer]:
        """The servers an agent may use, by the id it knows them by."""
        if agent_id not in self.config.agents:
            return {}
        allowed = mcp_allow_list(self.config, agent_id)
        own = self.config.agents[agent_id].mcp_servers
        out: dict[str, McpServer] = {}
        for sid in allowed:
            server = self.servers.get(f"{agent_id}/{sid}" if sid in own else sid)
            if server is not None:
                out[sid] = server
        return out

    async def tools_for(self, agent_id: str, wait_s: float = 10) -> AgentTools | None:
        """An agent's tools for a turn; lazy servers start now (waited for up to
        ``wait_s`` the first time, so their tools can be offered)."""
        servers = self.visible(agent_id)
        if not servers:
            return None
        # Never listed yet (lazy, or still starting): wait, so their tools can be offered.
        first = [s for s in servers.values() if not s.tools and s.state != "restarting"]
        if first:
            await asyncio.gather(*(s.wait_ready(wait_s) for s in first))
        return AgentTools(servers, mcp_allow_list(self.config, agent_id))

    def describe(self, agent_id: str) -> list[dict[str, Any]]:
        """What ``salon agent show`` lists: each allowed server, its state and tools."""
        allowed = mcp_allow_list(self.config, agent_id) if agent_id in self.config.agents else {}
        rows = []
        for sid, server in self.visible(agent_id).items():
            only = allowed.get(sid)
            names = [t.name for t in server.tools if only is None or t.name in only]
            rows.append(
                {
                    "server": sid,
                    "state": server.state,
                    "allowed": "*" if only is None else sorted(only),
                    "tools": names,
                }
            )
        return rows

    def status(self) -> list[dict[str, Any]]:
        """Every server's status (``salon status``, the admin API)."""
        return [s.status() for s in self.servers.values()]
