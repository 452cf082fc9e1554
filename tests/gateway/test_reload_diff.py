"""Which config changes a reload applies, and which wait for a restart."""

from __future__ import annotations

from typing import Any

from salon.config.models import SalonConfig
from salon.gateway.reload import LIVE_SECTIONS, RESTART_SECTIONS, config_diff

BASE: dict[str, Any] = {"agents": {"echo": {"backend": {"type": "echo"}}}}


def _config(**extra: Any) -> SalonConfig:
    return SalonConfig.model_validate({**BASE, **extra})


def test_every_section_is_either_applied_or_waits_for_a_restart() -> None:
    sections = set(SalonConfig.model_fields)
    assert sections - set(LIVE_SECTIONS) - set(RESTART_SECTIONS) == set()
    assert not set(LIVE_SECTIONS) & set(RESTART_SECTIONS)


def test_a_dispatch_change_is_reported_as_needing_a_restart() -> None:
    diff = config_diff(_config(), _config(dispatch={"max_rooms": 4}))
    assert diff.restart == ["dispatch"]


def test_a_hop_limit_change_rebuilds_the_router() -> None:
    diff = config_diff(_config(), _config(routing={"hop_limit": 5}))
    assert diff.routing and not diff.restart


def test_an_mcp_servers_change_is_applied_live() -> None:
    server = {"command": ["python", "notes.py"]}
    diff = config_diff(_config(), _config(mcp_servers={"notes": server}))
    assert diff.tools and not diff.restart and not diff.empty
