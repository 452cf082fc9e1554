"""`salon read -n N` finds N messages however many edits, reactions and state events
came after them, and shows each message as last edited."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from typer.testing import CliRunner

from salon.cli.main import app
from salon.cli.operator_file import OperatorFile
from salon.ids import RoomId, UserId
from salon.matrix.api import MatrixAPI

from ..conftest import register_user, unique_localpart

runner = CliRunner()


async def _send(api: MatrixAPI, room: RoomId, event_type: str, content: dict[str, Any]) -> str:
    return await api.send_event(room, event_type, content, txn_id=uuid.uuid4().hex)


def _busy_room(synapse: Any, tmp_path: Path) -> None:
    """Two messages (the second edited twice), then a lot of events that are not messages."""

    async def setup() -> None:
        creds = await register_user(synapse)
        localpart = unique_localpart("busy")
        async with aiohttp.ClientSession() as session:
            api = MatrixAPI(
                synapse.base_url, UserId(creds.user_id), creds.access_token, session=session
            )
            room = await api.create_room(alias_localpart=localpart, name="busy")
            text = {"msgtype": "m.text"}
            await _send(api, room, "m.room.message", {**text, "body": "first message"})
            second = await _send(api, room, "m.room.message", {**text, "body": "draft"})
            for body in ("better draft", "final answer"):
                await _send(
                    api,
                    room,
                    "m.room.message",
                    {
                        **text,
                        "body": f"* {body}",
                        "m.new_content": {**text, "body": body},
                        "m.relates_to": {"rel_type": "m.replace", "event_id": second},
                    },
                )
            for i in range(40):
                await _send(
                    api,
                    room,
                    "m.reaction",
                    {
                        "m.relates_to": {
                            "rel_type": "m.annotation",
                            "event_id": second,
                            "key": str(i),
                        }
                    },
                )
                await api.send_state(room, "m.room.topic", {"topic": f"topic {i}"})
        OperatorFile(
            homeserver_url=synapse.base_url,
            server_name=synapse.server_name,
            user_id=creds.user_id,
            password="unused",
            access_token=creds.access_token,
            space_alias=f"#{unique_localpart('space')}:{synapse.server_name}",
            lobby_alias=f"#{localpart}:{synapse.server_name}",
            agent_rooms={"busy": f"#{localpart}:{synapse.server_name}"},
        ).save(tmp_path)

    asyncio.run(setup())


def test_read_pages_back_to_n_messages_and_applies_edits(synapse: Any, tmp_path: Path) -> None:
    _busy_room(synapse, tmp_path)
    result = runner.invoke(app, ["read", "--data-dir", str(tmp_path), "--room", "busy", "-n", "2"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout
    assert lines[0].endswith(": first message")
    assert lines[1].endswith(": final answer")  # the newest edit, not the draft
    assert "draft" not in result.stdout and "* " not in result.stdout


def test_read_stops_at_the_start_of_the_room(synapse: Any, tmp_path: Path) -> None:
    _busy_room(synapse, tmp_path)
    result = runner.invoke(app, ["read", "--data-dir", str(tmp_path), "--room", "busy", "-n", "50"])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 2
