"""The access policy line: said at start-up and when a reload changes it."""

from __future__ import annotations

from structlog.testing import capture_logs

from salon.config.models import AccessConfig
from salon.gateway.live import log_access_policy


def test_a_policy_that_lets_nobody_in_is_a_warning() -> None:
    with capture_logs() as logs:
        log_access_policy(AccessConfig())
        log_access_policy(AccessConfig(allowed_users=["@*:example.org"]))
    assert [(e["log_level"], e["policy"]) for e in logs] == [
        ("warning", "nobody (set access.admins or access.allowed_users)"),
        ("info", "@*:example.org"),
    ]
