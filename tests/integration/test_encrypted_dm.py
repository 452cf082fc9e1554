"""Encrypted rooms in client mode, with an independent client that encrypts as the
person (matrix-nio with its vodozemac crypto): the agent reads and answers, keeps
its device across a restart, and drops (and counts) what it can never decrypt."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import vodozemac
import yaml

from salon.app.gateway import Gateway
from salon.metrics import DECRYPTION_FAILURES

from .conftest import salon_config
from .nio_person import NioPerson, open_dm
from .test_crash import running


async def test_an_encrypted_dm_gets_a_decryptable_answer_across_a_restart(
    synapse: Any,
    tmp_path: Path,
    gateways: Callable[..., Awaitable[Gateway]],
    nio_person: NioPerson,
) -> None:
    config = salon_config(synapse, tmp_path, sync={"timeout_ms": 1000})
    gateway = await gateways(config)
    echo = str(config.agent_user_id("echo", synapse.server_name))
    room_id = await open_dm(nio_person, echo)

    await nio_person.say(room_id, "hello in secret")
    await nio_person.until(
        lambda: any("hello in secret" in e.body for e in nio_person.replies_from(echo)),
        "the echo agent's decryptable reply",
    )
    reply = next(e for e in nio_person.replies_from(echo) if "hello in secret" in e.body)
    assert reply.decrypted  # it came encrypted, and nio opened it
    store = gateway.store
    assert store is not None
    device, _ = await store.identities.load_credentials(echo)
    account = await store.crypto.account(echo)
    assert account is not None and account[0] == device
    assert "hello in secret" not in account[1]  # pickled, not in clear

    await gateway.stop()
    again = await gateways(config)
    store = again.store
    assert store is not None
    assert (await store.identities.load_credentials(echo))[0] == device
    assert (await store.crypto.account(echo) or ("",))[0] == device
    await nio_person.say(room_id, "still there?")
    await nio_person.until(
        lambda: any("still there?" in e.body for e in nio_person.replies_from(echo)),
        "a reply after the restart",
    )
    # The person's client still knows the agent by one device only.
    known = nio_person.client.device_store.active_user_devices(echo)
    assert [d.device_id for d in known] == [device]


def failures(identity: str) -> float:
    value = DECRYPTION_FAILURES.labels(identity=identity, reason="key_never_arrived")._value
    return float(value.get())


async def test_an_event_whose_key_never_arrives_is_dropped_and_counted(
    synapse: Any,
    tmp_path: Path,
    gateways: Callable[..., Awaitable[Gateway]],
    nio_person: NioPerson,
    http: aiohttp.ClientSession,
) -> None:
    config = salon_config(
        synapse, tmp_path, sync={"timeout_ms": 500}, encryption={"undecryptable_wait_s": 1}
    )
    gateway = await gateways(config)
    echo = str(config.agent_user_id("echo", synapse.server_name))
    room_id = await open_dm(nio_person, echo)
    # An answer first: the agent's own join is behind it, so the stray event below is
    # not among those from before its join (which it skips, never counts).
    await nio_person.say(room_id, "are you there?")
    await nio_person.until(
        lambda: any("are you there?" in e.body for e in nio_person.replies_from(echo)),
        "the agent's first answer",
    )
    store = gateway.store
    assert store is not None
    before = failures(echo)
    # A Megolm event whose session nobody ever shares: sent as ciphertext, raw.
    session = vodozemac.GroupSession()
    plaintext = b'{"type":"m.room.message","content":{"body":"lost"},"room_id":"%s"}' % (
        room_id.encode()
    )
    content = {
        "algorithm": "m.megolm.v1.aes-sha2",
        "sender_key": "x" * 43,
        "ciphertext": session.encrypt(plaintext).to_base64(),
        "session_id": session.session_id,
        "device_id": "NOWHERE",
    }
    client = nio_person.client
    url = f"{synapse.base_url}/_matrix/client/v3/rooms/{room_id}/send/m.room.encrypted/lost1"
    headers = {"Authorization": f"Bearer {client.access_token}"}
    async with http.put(url, json=content, headers=headers) as response:
        assert response.status == 200, await response.text()
    deadline = time.monotonic() + 30
    while failures(echo) < before + 1:
        assert time.monotonic() < deadline, "the undecryptable event was never given up on"
        await asyncio.sleep(0.2)
    assert await store.crypto.pending_count(echo) == 0
    assert failures(echo) == before + 1  # one drop, one count: no retry loop


async def test_an_encrypted_file_in_an_encrypted_dm_reaches_the_agent(
    synapse: Any,
    tmp_path: Path,
    gateways: Callable[..., Awaitable[Gateway]],
    nio_person: NioPerson,
) -> None:
    """The whole way an Element user sends a file: encrypted event, encrypted media."""
    data_dir = tmp_path / "data"
    config = salon_config(synapse, tmp_path, sync={"timeout_ms": 1000}, data_dir=str(data_dir))
    await gateways(config)
    echo = str(config.agent_user_id("echo", synapse.server_name))
    room_id = await open_dm(nio_person, echo)
    data = b"minutes of the meeting\n" * 40
    uploaded, keys = await nio_person.client.upload(
        lambda *_: data,
        content_type="application/octet-stream",
        encrypt=True,
        filesize=len(data),
    )
    assert keys is not None, uploaded
    content = {
        "msgtype": "m.file",
        "body": "minutes.txt",
        "info": {"mimetype": "text/plain", "size": len(data)},
        "file": {"url": uploaded.content_uri, **keys},
    }
    await nio_person.client.room_send(
        room_id, "m.room.message", content, ignore_unverified_devices=True
    )
    line = f"[attachment: minutes.txt text/plain {len(data)} bytes]"
    await nio_person.until(
        lambda: any(line in e.body for e in nio_person.replies_from(echo)),
        "the echo agent's description of the encrypted file",
    )
    reply = next(e for e in nio_person.replies_from(echo) if line in e.body)
    assert reply.decrypted
    stored = list((data_dir / "agents" / "echo" / "attachments").rglob("*-minutes.txt"))
    assert [p.read_bytes() for p in stored] == [data]


@pytest.mark.subprocess
async def test_after_kill_9_the_agent_still_decrypts_with_the_same_device(
    synapse: Any, tmp_path: Path, nio_person: NioPerson
) -> None:
    """A `salon run` killed with SIGKILL mid-conversation: restarted, the agent reads
    the person's new messages with the device (and keys) it had, and no second one."""
    config = salon_config(synapse, tmp_path, sync={"timeout_ms": 1000})
    path = tmp_path / "salon.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)))
    echo = str(config.agent_user_id("echo", synapse.server_name))
    with running(path) as first:
        first.wait_ready()
        room_id = await open_dm(nio_person, echo)
        await nio_person.say(room_id, "before the kill")
        await nio_person.until(
            lambda: any("before the kill" in e.body for e in nio_person.replies_from(echo)),
            "a reply before the kill",
        )
        first.kill()
    before = [d.device_id for d in nio_person.client.device_store.active_user_devices(echo)]
    assert len(before) == 1
    # Sent while the gateway is down: the room key waits for the agent's device too.
    await nio_person.say(room_id, "while you were down")
    with running(path) as second:
        second.wait_ready()
        await nio_person.say(room_id, "after the kill")
        for text in ("while you were down", "after the kill"):
            await nio_person.until(
                lambda text=text: any(text in e.body for e in nio_person.replies_from(echo)),
                f"a reply to {text!r} after the restart",
            )
    replies = [e for e in nio_person.replies_from(echo) if "after the kill" in e.body]
    assert replies and all(e.decrypted for e in replies)
    after = [d.device_id for d in nio_person.client.device_store.active_user_devices(echo)]
    assert after == before  # the same one device, no second
