"""The places of a config that name an agent, and removing an agent with them.

Used by `salon agent remove`: refused while :func:`references` finds any, unless
``--force``, which :func:`remove_agent` honours by removing them too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from salon.cli.yaml_comments import _attach_before, _delete, _delete_key, _keys
from salon.cli.yaml_edit import Document


@dataclass(frozen=True)
class Reference:
    """A place in the config that names an agent."""

    where: str  # key path, e.g. ``teams.desk.agents``
    line: int | None


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def references(doc: Document, agent_id: str) -> list[Reference]:
    """Every place that names ``agent_id``: routes, teams (members, lead), agents'
    ``can_delegate_to`` and team backends, ``default_agent``."""
    found: list[Reference] = []
    data = doc.data
    routes = data.get("routes")
    for i, route in enumerate(_as_list(routes)):
        if isinstance(route, dict) and route.get("agent") == agent_id:
            found.append(Reference(f"routes[{i}].agent", doc.line_of(routes, i)))
    teams: CommentedMap = doc.mapping("teams") or CommentedMap()
    for team_id, team in teams.items():
        if not isinstance(team, dict) or team_id == agent_id:
            continue
        members = team.get("agents")
        if agent_id in _as_list(members):
            found.append(Reference(f"teams.{team_id}.agents", doc.line_of(team, "agents")))
        if team.get("lead") == agent_id:
            found.append(Reference(f"teams.{team_id}.lead", doc.line_of(team, "lead")))
    agents: CommentedMap = doc.mapping("agents") or CommentedMap()
    for other_id, agent in agents.items():
        if not isinstance(agent, dict) or other_id == agent_id:
            continue
        if agent_id in _as_list(agent.get("can_delegate_to")):
            where = f"agents.{other_id}.can_delegate_to"
            found.append(Reference(where, doc.line_of(agent, "can_delegate_to")))
        backend = agent.get("backend")
        if isinstance(backend, dict) and backend.get("type") == "team":
            if agent_id in _as_list(backend.get("members")):
                where = f"agents.{other_id}.backend.members"
                found.append(Reference(where, doc.line_of(backend, "members")))
            if backend.get("lead") == agent_id:
                found.append(
                    Reference(f"agents.{other_id}.backend.lead", doc.line_of(backend, "lead"))
                )
    if data.get("default_agent") == agent_id:
        found.append(Reference("default_agent", doc.line_of(data, "default_agent")))
    return found


def _without(container: Any, key: Any, agent_id: str) -> bool:
    """Remove every ``agent_id`` from the list ``container[key]``; False: it is left empty
    (then nothing is removed, for the caller to decide)."""
    items = container[key]
    positions = [i for i, v in enumerate(items) if v == agent_id]
    if len(positions) == len(items):
        return False
    for i in reversed(positions):
        leftover = _delete(items, i)
        assert not leftover  # the list is not empty
    return True


def _detach(doc: Document, agent_id: str) -> tuple[list[str], list[str]]:
    """Remove every reference to ``agent_id`` (see :func:`references`); returns what was
    done, and the teams left without members (to be removed in turn)."""
    done: list[str] = []
    emptied: list[str] = []
    data = doc.data
    routes = data.get("routes")
    if isinstance(routes, list):
        for i in reversed(range(len(routes))):
            route = routes[i]
            if isinstance(route, dict) and route.get("agent") == agent_id:
                leftover = _delete(routes, i)
                done.append(f"removed route {i} (to {agent_id})")
                if leftover:  # the last route: drop the empty `routes:` too
                    index = _keys(data).index("routes")
                    _delete_key(data, "routes")
                    _attach_before(data, index, leftover)
    teams = doc.mapping("teams") or CommentedMap()
    for team_id, team in list(teams.items()):
        if not isinstance(team, dict) or team_id == agent_id:
            continue
        if agent_id in _as_list(team.get("agents")):
            if _without(team, "agents", agent_id):
                done.append(f"removed {agent_id} from the members of team {team_id}")
            else:
                emptied.append(team_id)
                continue
        if team.get("lead") == agent_id:
            _delete_key(team, "lead")
            members = _as_list(team.get("agents"))
            first = f" (now its first member, {members[0]})" if members else ""
            done.append(f"removed the lead of team {team_id}{first}")
    agents = doc.mapping("agents") or CommentedMap()
    for other_id, agent in list(agents.items()):
        if not isinstance(agent, dict) or other_id == agent_id:
            continue
        if agent_id in _as_list(agent.get("can_delegate_to")):
            if not _without(agent, "can_delegate_to", agent_id):
                # Only it: an empty list (delegates to nobody), not none (to everyone).
                targets = agent["can_delegate_to"]
                rest: list[str] = []
                while len(targets):
                    rest = _delete(targets, len(targets) - 1) or rest
                empty = CommentedSeq()
                empty.fa.set_flow_style()
                agent["can_delegate_to"] = empty
                _attach_before(agent, _keys(agent).index("can_delegate_to"), rest)
            done.append(f"removed {agent_id} from the delegates of {other_id}")
        backend = agent.get("backend")
        if isinstance(backend, dict) and backend.get("type") == "team":
            if agent_id in _as_list(backend.get("members")):
                if _without(backend, "members", agent_id):
                    done.append(f"removed {agent_id} from the members of team {other_id}")
                else:
                    emptied.append(other_id)
                    continue
            if backend.get("lead") == agent_id:
                lead = _as_list(backend.get("members"))[0]
                backend["lead"] = lead
                done.append(f"made {lead} the lead of team {other_id} instead")
    if data.get("default_agent") == agent_id:
        _delete_key(data, "default_agent")
        done.append("cleared default_agent")
    return done, emptied


def _remove_entry(doc: Document, agent_id: str) -> None:
    """Delete the agent (or team) ``agent_id`` itself."""
    for section in ("agents", "teams"):
        entries = doc.mapping(section)
        if entries is not None and agent_id in entries:
            leftover = _delete(entries, agent_id)
            if section == "teams" and not _keys(entries):  # the last team: `teams:` goes
                index = _keys(doc.data).index(section)
                _delete_key(doc.data, section)
                _attach_before(doc.data, index, leftover)
            return


def remove_agent(doc: Document, agent_id: str) -> list[str]:
    """Remove ``agent_id`` and (the caller has checked ``--force``) every reference to
    it; a team left without members goes too, with its references. Returns what was
    done besides removing the agent."""
    done: list[str] = []
    queue = [agent_id]
    removed: set[str] = set()
    while queue:
        current = queue.pop(0)
        if current in removed:
            continue
        removed.add(current)
        if current != agent_id:
            done.append(f"removed team {current} (no members left)")
        _remove_entry(doc, current)
        steps, emptied = _detach(doc, current)
        done += steps
        queue += emptied
    return done
