"""Agents answer with files, on the real Synapse: a python backend returns a file; the
person's client sees an m.file after the text and downloads the same bytes; in an
encrypted DM an independent encrypting client (matrix-nio) gets an encrypted event
with an encrypted file, and decrypts the very bytes; over the cap, the reply says so."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from mautrix.types import ContentURI
from nio import RoomEncryptedMedia
from nio.crypto.attachments import decrypt_attachment

from salon.app.gateway import Gateway
from salon.config.models import SalonConfig

from ..conftest import register_user
from . import plugins
from .conftest import Person, salon_config
from .modes import SECRETS, with_overrides
from .nio_person import NioPerson, open_dm
from .test_appservice import as_setup  # noqa: F401  (a fixture)
from .test_crash import _write_config, running

FILER = {
    "label": "Filer",
    "backend": {"type": "python", "entry": "tests.integration.plugins:filer"},
}


async def _files_after(person: Person, room_id: str, asked: str, count: int) -> list[Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        replies = await person.replies_to(room_id, asked)
        if len(replies) >= count:
            return replies
        await asyncio.sleep(0.2)
    raise AssertionError(f"fewer than {count} replies to {asked}")


async def test_a_python_agent_answers_with_a_file_the_person_downloads(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    config = salon_config(
        synapse, tmp_path, agents={"filer": FILER}, attachments={"max_bytes": 4000}
    )
    await gateways(config, invite=[person.user_id])
    alias = f"#{config.agent_room_alias_localpart('filer')}:{synapse.server_name}"
    room_id = await person.join(alias)

    asked = await person.say(room_id, "send notes.txt 1500")
    text, file = await _files_after(person, room_id, asked, 2)
    assert text["content"]["body"] == "here is notes.txt"  # the text first, then the file
    content = file["content"]
    assert content["msgtype"] == "m.file"
    assert content["body"] == "notes.txt"
    assert content["info"] == {"mimetype": "text/plain", "size": 1500}
    assert "file" not in content  # a plain room: a plain upload
    data = await person.api.download_media(ContentURI(content["url"]))
    assert data == plugins.reply_file_bytes("notes.txt", 1500)

    # Over attachments.max_bytes: not sent, and the reply says so.
    asked = await person.say(room_id, "send huge.bin 5000")
    (reply,) = await _files_after(person, room_id, asked, 1)
    assert reply["content"]["body"].startswith(
        "here is huge.bin\n\n📎 Filer answered with huge.bin"
    )
    assert "over the limit of 4000 bytes" in reply["content"]["body"]
    assert not any("info" in e["content"] for e in await person.replies_to(room_id, asked)), (
        "no file event"
    )


async def test_in_an_encrypted_dm_the_file_is_encrypted_and_opens(
    synapse: Any,
    tmp_path: Path,
    gateways: Callable[..., Awaitable[Gateway]],
    nio_person: NioPerson,
    http: aiohttp.ClientSession,
) -> None:
    config = salon_config(synapse, tmp_path, agents={"filer": FILER}, sync={"timeout_ms": 1000})
    await gateways(config)
    filer = str(config.agent_user_id("filer", synapse.server_name))
    room_id = await open_dm(nio_person, filer)

    await nio_person.say(room_id, "send secret.png 3000")
    await nio_person.until(
        lambda: any(f.sender == filer for f in nio_person.files), "the agent's file event"
    )
    (event,) = [f for f in nio_person.files if f.sender == filer]
    assert isinstance(event, RoomEncryptedMedia)  # an encrypted file, in an event nio decrypted
    assert event.decrypted
    assert event.source["content"]["msgtype"] == "m.image"
    assert event.body == "secret.png"
    assert event.source["content"]["info"] == {"mimetype": "image/png", "size": 3000}
    assert "url" not in event.source["content"]  # only ``file``: the server holds ciphertext

    server, media_id = event.url.removeprefix("mxc://").split("/", 1)
    url = f"{synapse.base_url}/_matrix/client/v1/media/download/{server}/{media_id}"
    headers = {"Authorization": f"Bearer {nio_person.client.access_token}"}
    async with http.get(url, headers=headers) as response:
        assert response.status == 200, await response.text()
        ciphertext = await response.read()
    expected = plugins.reply_file_bytes("secret.png", 3000)
    assert ciphertext != expected
    plain = decrypt_attachment(ciphertext, event.key["k"], event.hashes["sha256"], event.iv)
    assert plain == expected
    assert any(
        e.body == "here is secret.png" and e.decrypted for e in nio_person.replies_from(filer)
    )


async def test_a_kill_9_while_files_are_sent_sends_each_exactly_once(
    synapse: Any, tmp_path: Path, person: Person
) -> None:
    marker, log = tmp_path / "killed", tmp_path / "uploads.log"
    entry = "tests.integration.plugins:filer_killed"
    options = {"marker": str(marker), "log": str(log)}
    agents = {"filer": {"backend": {"type": "python", "entry": entry, "options": options}}}
    config_path = _write_config(synapse, tmp_path, person, agents)
    config = yaml.safe_load(config_path.read_text())
    alias = (
        f"#{config['naming']['agent_room_alias'].replace('{id}', 'filer')}:{synapse.server_name}"
    )

    with running(config_path) as first:
        first.wait_ready()
        room_id = await person.join(alias)
        asked = await person.say(room_id, "your files, please")
        assert first.proc.wait(30) == -signal.SIGKILL  # at the second file's upload
    assert log.read_text().split() == ["first.txt", "second.txt"]
    # The first file went out before the kill; the second did not.
    bodies = [e["content"]["body"] for e in await person.replies_to(room_id, asked)]
    assert bodies == ["two files", "first.txt"]

    with running(config_path) as second:
        second.wait_ready()
        await _files_after(person, room_id, asked, 3)
        await asyncio.sleep(2)  # room for a duplicate to show up, if there were one
        replies = await person.replies_to(room_id, asked)
    assert [e["content"]["body"] for e in replies] == ["two files", "first.txt", "second.txt"]
    # The re-run uploaded only what had not been uploaded: the first file's upload and
    # message were in the ledger.
    assert log.read_text().split() == ["first.txt", "second.txt", "second.txt"]
    for event in replies[1:]:
        name = event["content"]["body"]
        data = await person.api.download_media(ContentURI(event["content"]["url"]))
        assert data == plugins.reply_file_bytes(name, 800)


@pytest.fixture
def appservice_setup(as_setup: tuple[Any, SalonConfig]) -> tuple[Any, SalonConfig]:  # noqa: F811
    """A Synapse with an appservice registration, and the config in appservice mode."""
    return as_setup


async def test_in_appservice_mode_the_agent_uploads_and_sends_as_itself(
    appservice_setup: tuple[Any, SalonConfig],
    gateways: Callable[..., Awaitable[Gateway]],
    http: aiohttp.ClientSession,
) -> None:
    hs, config = appservice_setup
    config = with_overrides(config, agents={"filer": FILER})
    person = Person(await register_user(hs), hs.base_url, http)
    await gateways(config, invite=[person.user_id], secrets=SECRETS)
    room_id = await person.join(f"#{config.agent_room_alias_localpart('filer')}:localhost")

    asked = await person.say(room_id, "send as.txt 700")
    _, file = await _files_after(person, room_id, asked, 2)
    assert file["sender"] == str(config.agent_user_id("filer", "localhost"))
    assert file["content"]["body"] == "as.txt"
    data = await person.api.download_media(ContentURI(file["content"]["url"]))
    assert data == plugins.reply_file_bytes("as.txt", 700)
    # Uploaded as the agent (the appservice masquerades), not as the appservice's bot.
    admin = await register_user(hs, admin=True)
    agent = str(config.agent_user_id("filer", "localhost"))
    url = f"{hs.base_url}/_synapse/admin/v1/users/{agent}/media"
    headers = {"Authorization": f"Bearer {admin.access_token}"}
    async with http.get(url, headers=headers) as response:
        assert response.status == 200, await response.text()
        media = (await response.json())["media"]
    media_id = file["content"]["url"].rsplit("/", 1)[1]
    assert [m["media_id"] for m in media] == [media_id]


async def test_the_demo_notes_agent_exports_notes_as_a_file(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    notes = {"label": "Notes", "backend": {"type": "python", "entry": "salon.demo.notes:Notes"}}
    config = salon_config(synapse, tmp_path, agents={"notes": notes})
    await gateways(config, invite=[person.user_id])
    alias = f"#{config.agent_room_alias_localpart('notes')}:{synapse.server_name}"
    room_id = await person.join(alias)
    await person.wait_reply(room_id, await person.say(room_id, "remember buy oat milk"))

    asked = await person.say(room_id, "export notes")
    text, file = await _files_after(person, room_id, asked, 2)
    assert text["content"]["body"] == "Your note, as a file."
    assert file["content"]["body"] == "notes.txt"
    data = await person.api.download_media(ContentURI(file["content"]["url"]))
    assert data == b"Your notes:\n1. buy oat milk\n"
