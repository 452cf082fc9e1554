"""`salon appservice register`: the registration file and the token env file."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import yaml
from typer.testing import CliRunner

from salon.cli.main import app

CONFIG = """\
homeserver:
  url: http://127.0.0.1:8008
  server_name: example.org
  mode: appservice
  appservice: {listen: "127.0.0.1:9111"}
router: {localpart: salon}
naming: {agent_localpart: "bot_{id}", agent_room_alias: "room-{id}"}
agents:
  echo: {backend: echo}
  odd: {backend: echo, localpart: special}
"""


def test_register_writes_registration_and_private_env(tmp_path: Path) -> None:
    config = tmp_path / "salon.yaml"
    config.write_text(CONFIG)
    out = tmp_path / "registration.yaml"
    result = CliRunner().invoke(app, ["appservice", "register", "-c", str(config), "-o", str(out)])
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(out.read_text())
    env = dict(
        line.split("=", 1) for line in (tmp_path / "registration.yaml.env").read_text().split()
    )
    assert env == {"SALON_AS_TOKEN": doc["as_token"], "SALON_HS_TOKEN": doc["hs_token"]}
    assert doc["as_token"] != doc["hs_token"] and len(doc["as_token"]) >= 32
    # Secrets never printed; both files owner-only.
    assert doc["as_token"] not in result.output and doc["hs_token"] not in result.output
    for path in (out, tmp_path / "registration.yaml.env"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert doc["url"] == "http://127.0.0.1:9111"
    assert doc["sender_localpart"] == "salon"
    assert doc["rate_limited"] is False
    # What encryption needs: to-device and ephemeral events, MSC3202, MSC4190 devices.
    assert doc["receive_ephemeral"] is True
    assert doc["de.sorunome.msc2409.push_ephemeral"] is True
    assert doc["org.matrix.msc3202"] is True
    assert doc["io.element.msc4190"] is True
    assert "msc3202_transaction_extensions: true" in result.output
    users = [n["regex"] for n in doc["namespaces"]["users"]]
    assert all(n["exclusive"] for n in doc["namespaces"]["users"])
    assert re.fullmatch(users[0], "@bot_echo:example.org")
    assert not re.fullmatch(users[0], "@bob:example.org")
    assert any(re.fullmatch(r, "@special:example.org") for r in users)
    aliases = [n["regex"] for n in doc["namespaces"]["aliases"]]
    assert any(re.fullmatch(r, "#room-echo:example.org") for r in aliases)
    # Run again: refused, the tokens in use are kept.
    again = CliRunner().invoke(app, ["appservice", "register", "-c", str(config), "-o", str(out)])
    assert again.exit_code == 2
    assert yaml.safe_load(out.read_text())["as_token"] == doc["as_token"]


def test_a_registration_over_a_readable_file_is_never_readable_by_others(
    tmp_path: Path,
) -> None:
    from salon.devserver.appservice import write_private

    path = tmp_path / "registration.yaml"
    path.write_text("old\n")
    path.chmod(0o644)
    write_private(path, "as_token: secret\n")
    assert path.read_text() == "as_token: secret\n"
    assert path.stat().st_mode & 0o077 == 0
    assert [p.name for p in tmp_path.iterdir()] == ["registration.yaml"]  # no temp left


def test_a_link_in_the_registrations_place_gets_no_tokens(tmp_path: Path) -> None:
    from salon.devserver.appservice import write_private

    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("old\n")
    elsewhere.chmod(0o644)
    path = tmp_path / "registration.yaml"
    path.symlink_to(elsewhere)
    write_private(path, "as_token: secret\n")
    # The old write followed the link: the tokens landed in a world-readable file.
    assert elsewhere.read_text() == "old\n"
    assert not path.is_symlink() and path.read_text() == "as_token: secret\n"
