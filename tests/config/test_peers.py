"""``peers:``: agents of other gateways, pinned by their full user id."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from salon._exceptions import ConfigError
from salon.config import SalonConfig, load_config
from salon.config.models import PeerConfig

HS = {"url": "http://127.0.0.1:8008", "server_name": "example.org"}


def make(**overrides: Any) -> SalonConfig:
    data: dict[str, Any] = {"agents": {"coder": {"backend": "echo"}}}
    return SalonConfig.model_validate({**data, **overrides})


def test_no_peers_by_default() -> None:
    assert make().peers == {}


def test_string_shorthand_pins_the_user_id() -> None:
    config = make(peers={"researcher": "@salon_researcher:example.org"})
    peer = config.peers["researcher"]
    assert isinstance(peer, PeerConfig)
    assert peer.user_id == "@salon_researcher:example.org"
    assert peer.label is None
    assert peer.id == "researcher"
    assert peer.display_label == "Researcher"
    assert peer.description == ""
    assert config.peer_user_id("researcher") == "@salon_researcher:example.org"


def test_full_form() -> None:
    config = make(
        peers={
            "researcher": {
                "user_id": "@bot_r:other.example.org",  # not the naming pattern: pinned as given
                "label": "Dr. R",
                "description": "Finds papers.",
            }
        }
    )
    peer = config.peers["researcher"]
    assert peer.user_id == "@bot_r:other.example.org"
    assert peer.display_label == "Dr. R"
    assert peer.description == "Finds papers."
    assert config.peer_user_id("researcher") == "@bot_r:other.example.org"
    with pytest.raises(KeyError, match="unknown peer 'nope' \\(known: researcher\\)"):
        config.peer_user_id("nope")


def test_peers_are_delegation_targets() -> None:
    config = make(
        agents={
            "coder": {"backend": "echo", "can_delegate_to": ["researcher"]},
            "writer": {"backend": "echo"},
        },
        peers={"researcher": "@salon_researcher:example.org"},
    )
    assert config.delegation_targets("coder") == ["researcher"]
    assert config.delegation_targets("writer") == ["coder", "researcher"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"peers": {"researcher": {}}}, "peers.researcher.user_id\n  Field required"),
        ({"peers": {"researcher": "salon_researcher"}}, "not a full user id"),
        ({"peers": {"researcher": {"user_id": "@r:x", "url": "y"}}}, "Extra inputs"),
        ({"peers": {"Bad": "@salon_bad:example.org"}}, "peers.Bad: invalid agent id 'Bad'"),
        (
            {"peers": {"coder": "@salon_coder:other.org"}},
            "peers.coder: 'coder' is an agent of this gateway",
        ),
        (
            {"homeserver": HS, "peers": {"r": "@salon_coder:example.org"}},
            "peers.r.user_id: user id '@salon_coder:example.org' is already used by agent 'coder'",
        ),
        (
            {"homeserver": HS, "peers": {"r": "@salon:example.org"}},
            "already used by the router",
        ),
        (
            {"peers": {"a": "@same:example.org", "b": "@same:example.org"}},
            "peers.b.user_id: user id '@same:example.org' is already used by peer 'a'",
        ),
        (
            {
                "agents": {"coder": {"backend": "echo", "can_delegate_to": ["ghost"]}},
                "peers": {"researcher": "@salon_researcher:example.org"},
            },
            "unknown agent 'ghost'",
        ),
    ],
)
def test_invalid(overrides: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError) as info:
        make(**overrides)
    assert expected in str(info.value)


def test_peer_clashing_with_a_team_id() -> None:
    with pytest.raises(ValidationError, match=r"peers\.dev: 'dev' is an agent of this gateway"):
        make(
            agents={"a": {"backend": "echo"}, "b": {"backend": "echo"}},
            teams={"dev": {"agents": ["a", "b"]}},
            peers={"dev": "@salon_dev:example.org"},
        )


def load_error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "gateway-a.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


def test_old_list_form_names_file_and_key_and_shows_the_new_form(tmp_path: Path) -> None:
    message = load_error(
        tmp_path,
        """\
        homeserver: {url: "http://127.0.0.1:8008", server_name: example.org}
        agents:
          coder: {backend: echo}
        peers: [researcher, writer]
        """,
    )
    assert message == (
        f"{tmp_path / 'gateway-a.yaml'}:4: peers: a list of agent ids is no longer accepted: "
        "peers are pinned by their full user id, e.g. peers: "
        '{researcher: "@salon_researcher:example.org", writer: "@salon_writer:example.org"}'
    )


def test_old_list_form_hint_uses_the_naming_pattern(tmp_path: Path) -> None:
    message = load_error(
        tmp_path,
        """\
        naming: {agent_localpart: "bot-{id}"}
        agents:
          coder: {backend: echo}
        peers:
          - researcher
        """,
    )
    assert ":4: peers: a list of agent ids is no longer accepted" in message
    assert 'peers: {researcher: "@bot-researcher:example.org"}' in message


def test_clash_with_an_agent_id_is_located(tmp_path: Path) -> None:
    message = load_error(
        tmp_path,
        """\
        agents:
          coder: {backend: echo}
        peers:
          researcher: "@salon_researcher:example.org"
          coder: "@salon_coder:other.org"
        """,
    )
    assert message == (
        f"{tmp_path / 'gateway-a.yaml'}:5: peers.coder: 'coder' is an agent of this gateway; "
        "list only agents other gateways host"
    )


def test_bad_shorthand_user_id_is_located(tmp_path: Path) -> None:
    message = load_error(
        tmp_path,
        """\
        agents:
          coder: {backend: echo}
        peers:
          researcher: salon_researcher
        """,
    )
    assert message.startswith(f"{tmp_path / 'gateway-a.yaml'}:4: peers.researcher.user_id: ")
    assert "is not a full user id like '@alice:example.org'" in message


def test_a_peer_may_task_nobody_unless_listed() -> None:
    config = make(
        agents={"coder": {"backend": "echo"}, "writer": {"backend": "echo"}},
        peers={
            "researcher": "@salon_researcher:example.org",
            "scout": {"user_id": "@salon_scout:example.org", "may_task": ["writer"]},
            "boss": {"user_id": "@salon_boss:example.org", "may_task": ["*"]},
        },
    )
    researcher, scout, boss = (config.peers[p] for p in ("researcher", "scout", "boss"))
    assert researcher.may_task == []
    assert not researcher.may_task_agent("coder")
    assert scout.may_task_agent("writer") and not scout.may_task_agent("coder")
    assert boss.may_task_agent("coder") and boss.may_task_agent("writer")


def test_may_task_names_agents_of_this_gateway() -> None:
    scout = {"user_id": "@salon_scout:example.org", "may_task": ["coder", "nobody"]}
    with pytest.raises(ValidationError, match=r"peers\.scout\.may_task\.1: 'nobody' is not an"):
        make(peers={"scout": scout})
