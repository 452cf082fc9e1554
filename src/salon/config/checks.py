"""Checks across sections of ``salon.yaml``: ids, references and name clashes.

Each check returns ``(key path, message)`` problems instead of raising, so
one load reports all of them; :class:`~salon.config.models.SalonConfig` raises
them together as :class:`ConfigProblems`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from salon.config.backends import TeamBackend
from salon.config.base import AGENT_ID_HINT, AGENT_ID_RE, Loc
from salon.ids import localpart_of_user

if TYPE_CHECKING:
    from salon.config.models import SalonConfig

Problems = list[tuple[Loc, str]]


def teams_as_agents(data: Any) -> Any:
    """Raw config data with every team added under ``agents:`` (a team backend)."""
    # A team is an agent whose backend is the team: its own user, room, routing.
    if not isinstance(data, dict) or not isinstance(data.get("teams"), dict):
        return data
    agents = dict(data.get("agents") or {})
    for team_id, team in data["teams"].items():
        if not isinstance(team, dict) or team_id in agents:
            continue  # the models' own validation reports the problem
        members = team.get("agents") or []
        lead = team.get("lead") or (members[0] if members else "")
        agents[team_id] = {
            "label": team.get("label"),
            "description": team.get("description", ""),
            "backend": {
                "type": "team",
                "mode": team.get("mode", "coordinate"),
                "lead": lead,
                "members": members,
            },
            "can_delegate_to": list(dict.fromkeys([*members, lead])),
        }
    return {**data, "agents": agents}


def id_problems(config: SalonConfig) -> Problems:
    """Missing agents and malformed agent or peer ids (names are derived from them)."""
    problems: Problems = []
    if not config.agents:
        problems.append((("agents",), "at least one agent is required"))
    sections = (("agents", config.agents), ("peers", config.peers))
    for section, ids in (*sections, ("a2a_agents", config.a2a_agents)):
        for agent_id in ids:
            if not AGENT_ID_RE.match(agent_id):
                problems.append(
                    ((section, agent_id), f"invalid agent id {agent_id!r}: {AGENT_ID_HINT}")
                )
    return problems


def reference_problems(config: SalonConfig) -> Problems:
    """Agent ids named elsewhere that do not exist, and teams that are not well formed."""
    problems: Problems = []
    known = ", ".join(sorted(config.agents))

    def check_ref(loc: Loc, name: str) -> None:
        if name not in config.agents:
            problems.append((loc, f"unknown agent {name!r} (known: {known})"))

    if config.default_agent is not None:
        check_ref(("default_agent",), config.default_agent)
    for i, rule in enumerate(config.routes):
        check_ref(("routes", i, "agent"), rule.agent)
    for team_id in config.teams:
        if not isinstance(config.agents[team_id].backend, TeamBackend):
            problems.append((("teams", team_id), "a team cannot share an agent's id"))
    for agent_id, agent in config.agents.items():
        loc: Loc = ("agents", agent_id)
        if isinstance(agent.backend, TeamBackend):
            for member in [*agent.backend.members, agent.backend.lead]:
                if member not in config.agents or member == agent_id:
                    where = ("teams", agent_id) if agent_id in config.teams else loc
                    problems.append((where, f"team member {member!r} is not an agent"))
        if agent_id in config.teams and isinstance(agent.backend, TeamBackend):
            # A team's `can_delegate_to` is derived from its members, checked just above:
            # an unknown member is reported once, under `teams.<id>`.
            continue
        for i, target in enumerate(agent.can_delegate_to or []):
            if target in config.peers or target in config.a2a_agents:
                continue
            check_ref((*loc, "can_delegate_to", i), target)
            if target == agent_id:
                msg = "an agent cannot delegate to itself"
                problems.append(((*loc, "can_delegate_to", i), msg))
    return problems


def name_problems(config: SalonConfig) -> Problems:
    """Localparts and room aliases that two things would share."""
    problems: Problems = []
    router_id = config.router.matrix.user_id if config.router.matrix else None
    if router_id and localpart_of_user(router_id) != config.router.localpart:
        problems.append((("router", "matrix", "user_id"), "does not match router.localpart"))
    owners: dict[str, str] = {config.router.localpart: "the router"}
    aliases = {config.naming.lobby_alias: "the lobby", config.space.alias: "the space"}
    if config.naming.lobby_alias == config.space.alias:
        problems.append((("naming", "lobby_alias"), "must differ from space.alias"))
    for agent_id, agent in config.agents.items():
        loc: Loc = ("agents", agent_id)
        user_id = agent.matrix.user_id if agent.matrix else None
        if user_id and agent.localpart and localpart_of_user(user_id) != agent.localpart:
            problems.append(((*loc, "matrix", "user_id"), "does not match the agent's localpart"))
        localpart = config.agent_localpart(agent_id)
        if localpart in owners:
            msg = f"localpart {localpart!r} is already used by {owners[localpart]}"
            problems.append(((*loc, "localpart") if agent.localpart else loc, msg))
        owners.setdefault(localpart, f"agent {agent_id!r}")
        alias = config.agent_room_alias_localpart(agent_id)
        if alias in aliases:
            problems.append((loc, f"room alias {alias!r} is already used by {aliases[alias]}"))
    return problems


def peer_problems(config: SalonConfig) -> Problems:
    """Peers that are hosted here too, whose user id something else already has, or
    that may task agents this gateway does not host."""
    problems: Problems = []
    users: dict[str, str] = {}
    if config.homeserver is not None:  # without a server name local user ids are unknown
        server = config.homeserver.server_name
        users[config.router_user_id(server)] = "the router"
        users.update({config.agent_user_id(a, server): f"agent {a!r}" for a in config.agents})
    for peer_id, peer in config.peers.items():
        loc: Loc = ("peers", peer_id)
        if peer_id in config.agents:
            msg = f"{peer_id!r} is an agent of this gateway; list only agents other gateways host"
            problems.append((loc, msg))
        elif peer.user_id in users:
            msg = f"user id {peer.user_id!r} is already used by {users[peer.user_id]}"
            problems.append(((*loc, "user_id"), msg))
        users.setdefault(peer.user_id, f"peer {peer_id!r}")
        for i, target in enumerate(peer.may_task):
            if target != "*" and target not in config.agents:
                msg = f"{target!r} is not an agent of this gateway (or '*' for all of them)"
                problems.append(((*loc, "may_task", i), msg))
    for remote_id in config.a2a_agents:
        if remote_id in config.agents or remote_id in config.peers:
            msg = f"{remote_id!r} is already an agent or peer; a remote A2A agent needs its own id"
            problems.append((("a2a_agents", remote_id), msg))
    return problems
