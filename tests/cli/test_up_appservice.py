"""`salon up --mode appservice`: the embedded Synapse loads Salon's registration, and
the operator's CLI works as in client mode (messages, delegation, presence)."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest
import yaml

from salon.devserver.synapse import free_port

from .test_up import _salon, salon_up

pytestmark = pytest.mark.subprocess


def test_salon_up_in_appservice_mode(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with salon_up(data_dir, free_port(), "--mode", "appservice"):
        registration = data_dir / "appservice" / "registration.yaml"
        assert stat.S_IMODE(registration.stat().st_mode) == 0o600
        synapse = yaml.safe_load((data_dir / "synapse" / "homeserver.yaml").read_text())
        assert synapse["app_service_config_files"] == [str(registration.resolve())]
        # Heartbeats: every agent online.
        who = _salon("who", "--data-dir", str(data_dir))
        assert who.returncode == 0, who.stderr
        assert who.stdout.count("online") == 3
        sent = _salon("send", "--data-dir", str(data_dir), "--to", "parrot", "hello there")
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout.strip() == "🦜 hello there"
        # Delegation: echo asks parrot; echo's answer carries parrot's result.
        dlg = _salon(
            "delegate", "--data-dir", str(data_dir), "--from", "echo", "--to", "parrot", "hi"
        )
        assert dlg.returncode == 0, dlg.stderr
        assert "🦜 hi" in dlg.stdout
        with sqlite3.connect(data_dir / "salon.db") as db:
            # Events came as transactions; no agent has a token of its own.
            assert db.execute("SELECT count(*) FROM appservice_txns").fetchone()[0] > 0
            tokens = db.execute("SELECT count(*) FROM identities WHERE access_token IS NOT NULL")
            assert tokens.fetchone()[0] == 0
