"""deploy/salon.service: hardened. Where systemd-analyze exists, its exposure
score must be 2.0 or lower ("OK"); everywhere, the key directives are checked."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "salon.service"
SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|API_KEY", re.IGNORECASE)


def directives(section: str = "Service") -> dict[str, list[str]]:
    """Every ``Key=value`` of a section; a key given several times keeps each value."""
    found: dict[str, list[str]] = {}
    current = None
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            continue
        if current == section:
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


REQUIRED = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "ProtectProc": "invisible",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "CapabilityBoundingSet": "",
    "UMask": "0077",
    "StateDirectory": "salon",
    "SystemCallArchitectures": "native",
}


def test_key_hardening_directives_are_set() -> None:
    unit = directives()
    wrong = {key: unit.get(key) for key, value in REQUIRED.items() if unit.get(key) != [value]}
    assert not wrong, f"expected {', '.join(f'{k}={REQUIRED[k]}' for k in wrong)}; got {wrong}"
    assert unit.get("DynamicUser") == ["yes"] or unit.get("User", ["root"])[-1] != "root"
    assert unit["SystemCallFilter"][0] == "@system-service"


def test_secrets_come_from_an_environment_file() -> None:
    unit = directives()
    assert unit["EnvironmentFile"] == ["/etc/salon/salon.env"]
    for value in unit.get("Environment", []):
        for assignment in value.split():
            assert not SECRET_NAME.search(assignment.partition("=")[0]), assignment


def test_runs_the_installed_salon_with_a_config_check_first() -> None:
    unit = directives()
    assert unit["ExecStartPre"] == ["/opt/salon/bin/salon config check -c /etc/salon/salon.yaml"]
    assert unit["ExecStart"] == ["/opt/salon/bin/salon run -c /etc/salon/salon.yaml"]
    assert "SALON_DATA_DIR=/var/lib/salon" in unit["Environment"][0].split()
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]


@pytest.mark.subprocess
def test_systemd_analyze_rates_the_unit_ok(tmp_path: Path) -> None:
    # Never skipped: a missing tool would let the unit's hardening go unchecked.
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: install Debian's systemd package")
    unit = tmp_path / "salon.service"  # the name systemd-analyze reports
    unit.write_text(UNIT.read_text())
    result = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=true",
            "--threshold=20",
            "--no-pager",
            str(unit),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout)
    assert found, result.stdout + result.stderr
    score, rating = float(found[1]), found[2]
    assert score <= 2.0 and rating == "OK", f"exposure {score} {rating}:\n{result.stdout}"
    assert result.returncode == 0, result.stdout + result.stderr
