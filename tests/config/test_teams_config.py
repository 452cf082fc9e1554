"""Teams in salon.yaml: a wrong member is reported once, where the user wrote it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from salon._exceptions import ConfigError
from salon.config import load_config


def _error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "salon.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


def test_unknown_team_member_is_the_only_problem(tmp_path: Path) -> None:
    message = _error(
        tmp_path,
        """\
        agents:
          a: {backend: {type: echo}}
        teams:
          t: {agents: [a, ghost]}
        """,
    )
    assert "teams.t: team member 'ghost' is not an agent" in message
    # Not also under the team's derived `can_delegate_to` (a key the user never wrote).
    assert "can_delegate_to" not in message
    assert message.count("ghost") == 1


def test_unknown_team_lead_and_self_membership_are_reported_once(tmp_path: Path) -> None:
    message = _error(
        tmp_path,
        """\
        agents:
          a: {backend: {type: echo}}
        teams:
          t: {agents: [a, t], lead: boss}
        """,
    )
    assert "team member 't' is not an agent" in message
    assert "team member 'boss' is not an agent" in message
    assert "can_delegate_to" not in message
    assert "cannot delegate to itself" not in message


def test_an_agents_own_can_delegate_to_is_still_checked(tmp_path: Path) -> None:
    message = _error(
        tmp_path,
        """\
        agents:
          a: {backend: {type: echo}, can_delegate_to: [nobody]}
        teams:
          t: {agents: [a]}
        """,
    )
    assert "agents.a.can_delegate_to.0: unknown agent 'nobody'" in message
