"""MCP tool servers: ``mcp_servers:`` (top level and per agent) and the ``mcp:`` allow-list.

A server is a local process spoken to over stdio (``command``) or a remote one
over streamable HTTP (``url``). Secrets come from the gateway's environment by
name (``*_env`` keys), never from the file; a stdio child gets only the
variables its config names (plus the SDK's non-secret basics such as PATH).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, model_validator

from salon.config.base import ConfigModel, HttpUrl, Loc, PositiveFloat

if TYPE_CHECKING:
    from salon.config.models import SalonConfig

MCP_SERVER_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

EnvName = Annotated[str, Field(pattern=_ENV_NAME_RE.pattern)]
EntryModule = Annotated[str, Field(pattern=r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")]


class McpServerConfig(ConfigModel):
    """One MCP server: ``command`` (stdio) or ``url`` (streamable HTTP), not both."""

    command: Annotated[list[str], Field(min_length=1)] | None = None
    # Or a Python module run by the gateway's own interpreter (`python -m <module>`).
    module: EntryModule | None = None
    args: list[str] = Field(default_factory=list)  # after `module`
    env: dict[EnvName, str] = Field(default_factory=dict)
    # Child variable -> the gateway's variable holding its (secret) value.
    secrets_env: dict[EnvName, EnvName] = Field(default_factory=dict)
    cwd: str | None = None
    url: HttpUrl | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    # Header -> the gateway's variable holding its (secret) value.
    headers_env: dict[str, EnvName] = Field(default_factory=dict)
    # The gateway's variable holding a bearer token (sent as Authorization).
    token_env: EnvName | None = None
    start: Literal["lazy", "startup"] = "lazy"
    call_timeout_s: PositiveFloat = 60
    # A result longer than this is cut (the model is told so).
    max_result_chars: Annotated[int, Field(ge=100)] = 20_000
    # How often a running server is pinged, to find a crash before a call does.
    ping_s: PositiveFloat = 15
    restart_backoff_s: PositiveFloat = 1
    restart_backoff_max_s: PositiveFloat = 60
    description: str = ""

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerConfig:
        given = [k for k in ("command", "module", "url") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give either command: [..] or module: (stdio) or url: (streamable HTTP)"
            )
        if self.url is None and (self.headers or self.headers_env or self.token_env):
            raise ValueError("headers, headers_env and token_env are for url: servers")
        if self.args and self.module is None:
            raise ValueError("args: goes with module: (put a command's arguments in command:)")
        if self.url is not None and (self.env or self.secrets_env or self.cwd):
            raise ValueError("env, secrets_env and cwd are for command: servers")
        return self

    @property
    def transport(self) -> str:
        """``stdio`` or ``http``."""
        return "http" if self.url is not None else "stdio"

    def argv(self, python: str) -> list[str]:
        """The stdio command line (``python``: the interpreter that runs ``module``)."""
        if self.module is not None:
            return [python, "-m", self.module, *self.args]
        return list(self.command or [])


def mcp_problems(config: SalonConfig) -> list[tuple[Loc, str]]:
    """Server ids that are not ids, agents' private servers shadowing shared ones, and
    ``mcp:`` entries naming no server the agent can see."""
    problems: list[tuple[Loc, str]] = []
    for sid in config.mcp_servers:
        if not MCP_SERVER_ID_RE.match(sid):
            problems.append((("mcp_servers", sid), "server ids use 1-32 of a-z, 0-9, '_', '-'"))
    for agent_id, agent in config.agents.items():
        loc: Loc = ("agents", agent_id)
        for sid in agent.mcp_servers:
            if not MCP_SERVER_ID_RE.match(sid):
                msg = "server ids use 1-32 of a-z, 0-9, '_', '-'"
                problems.append(((*loc, "mcp_servers", sid), msg))
            elif sid in config.mcp_servers:
                msg = f"{sid!r} is also a shared server under mcp_servers; rename one"
                problems.append(((*loc, "mcp_servers", sid), msg))
        visible = sorted({*config.mcp_servers, *agent.mcp_servers})
        for i, entry in enumerate(agent.mcp):
            server, _, tool = entry.partition(".")
            if server not in visible:
                known = ", ".join(visible) or "none"
                msg = f"unknown MCP server {server!r} (known: {known})"
                problems.append(((*loc, "mcp", i), msg))
            elif "." in entry and not tool:
                problems.append(((*loc, "mcp", i), "use 'server' or 'server.tool'"))
    return problems


def mcp_allow_list(config: SalonConfig, agent_id: str) -> dict[str, set[str] | None]:
    """Server id -> the tools an agent may use of it (None: all): its ``mcp:`` list, and
    in full its own servers that the list does not mention."""
    agent = config.agents[agent_id]
    allowed: dict[str, set[str] | None] = {}
    for entry in agent.mcp:
        server, _, tool = entry.partition(".")
        if not tool:
            allowed[server] = None
        else:
            named = allowed.setdefault(server, set())
            if named is not None:
                named.add(tool)
    for server in agent.mcp_servers:
        allowed.setdefault(server, None)
    return allowed
