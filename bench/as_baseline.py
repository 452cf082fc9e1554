"""The baseline of ``roundtrip.py --mode appservice``: a bare mautrix ``AppService``
whose bot (its ``sender``) answers every text with the same body, as a reply.

It is registered with the homeserver beside Salon's own registration (its own
tokens, namespace and port), so both are pushed transactions by the same Synapse.
Nothing else: no store, no inbox, no ledger (mautrix answers each transaction
before its handlers run, and remembers transaction ids in memory only).
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any

import yaml
from mautrix.appservice import AppService
from mautrix.appservice.state_store import FileASStateStore
from mautrix.types import (
    Event,
    EventType,
    InReplyTo,
    MessageEvent,
    MessageType,
    RelatesTo,
    RoomID,
    TextMessageEventContent,
)

from salon.devserver.synapse import SynapseLayout, free_port


class EchoAppservice:
    """A bare mautrix appservice echoing texts in the rooms its bot is in."""

    def __init__(self, layout: SynapseLayout, data_dir: Path, log: logging.Logger) -> None:
        self.localpart = f"bench-asbot-{secrets.token_hex(3)}"
        self.mxid = f"@{self.localpart}:{layout.server_name}"
        self.port = free_port()
        self._tokens = (secrets.token_urlsafe(24), secrets.token_urlsafe(24))
        self._layout = layout
        self._data_dir = data_dir
        self._log = log
        self._service: AppService | None = None

    def write_registration(self, path: Path) -> Path:
        """The registration Synapse loads for this appservice."""
        document: dict[str, Any] = {
            "id": f"bench-baseline-{self.localpart}",
            "url": f"http://127.0.0.1:{self.port}",
            "as_token": self._tokens[0],
            "hs_token": self._tokens[1],
            "sender_localpart": self.localpart,
            "namespaces": {
                "users": [{"exclusive": True, "regex": f"@{self.localpart}-.*"}],
                "aliases": [],
                "rooms": [],
            },
            "rate_limited": False,
        }
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        path.chmod(0o600)
        return path

    async def start(self, room_id: str) -> None:
        """Listen for transactions, then join ``room_id`` (the bot is invited)."""
        service = AppService(
            server=self._layout.base_url,
            domain=self._layout.server_name,
            as_token=self._tokens[0],
            hs_token=self._tokens[1],
            bot_localpart=self.localpart,
            id=f"bench-baseline-{self.localpart}",
            log=self._log,
            state_store=FileASStateStore(
                str(self._data_dir / f"{self.localpart}-state.json"), binary=False
            ),
        )
        service.matrix_event_handler(self._on_event)
        await service.start("127.0.0.1", self.port)
        self._service = service
        await service.intent.join_room_by_id(RoomID(room_id))

    async def _on_event(self, evt: Event) -> None:
        service = self._service
        if service is None or evt.type != EventType.ROOM_MESSAGE:
            return
        assert isinstance(evt, MessageEvent)
        if evt.sender == self.mxid or not isinstance(evt.content, TextMessageEventContent):
            return
        relates = RelatesTo(in_reply_to=InReplyTo(event_id=evt.event_id))
        await service.intent.send_text(
            evt.room_id, evt.content.body, msgtype=MessageType.TEXT, relates_to=relates
        )

    async def stop(self) -> None:
        """Stop listening."""
        if self._service is not None:
            await self._service.stop()
            self._service = None
