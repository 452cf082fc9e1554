"""Work references in a delegated task, over a real Synapse: parsed into the request
event, listed in the origin room's notice and in `salon status`, validated on receipt."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from salon.app.gateway import Gateway
from salon.cli.status import read_status
from salon.coordination.protocol import REQUEST, STATUS
from salon.ids import AgentId, RoomId
from salon.matrix.membership import join_or_be_invited
from salon.store.delegations import DelegationDirection

from .conftest import Person, salon_config
from .test_agent_runtime import _final_text
from .test_delegation import _events, _inbox_reason, _request, _send_raw, _wait_status

PLUGINS = "tests.integration.plugins"
MESSAGE = (
    "please review group/project#12 and https://github.com/owner/repo/pull/34/files"
    " (ask in #salon-team:localhost, it is C#, colour #fff)"
)
REFS = [
    {"kind": "issue", "number": 12, "project": "group/project", "text": "group/project#12"},
    {
        "kind": "merge_request",
        "number": 34,
        "project": "owner/repo",
        "url": "https://github.com/owner/repo/pull/34",
        "forge": "github",
        "text": "https://github.com/owner/repo/pull/34/files",
    },
]


def _agents(beta_delay_s: float) -> dict[str, Any]:
    return {
        "alpha": {
            "backend": {
                "type": "python",
                "entry": f"{PLUGINS}:delegating",
                "options": {"to": "beta"},
            }
        },
        "beta": {"backend": {"type": "echo", "prefix": "beta says ", "delay_s": beta_delay_s}},
    }


async def test_refs_in_a_delegated_task_show_up_parsed_in_the_request_event(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    # Beta takes 3 s, so the delegation is open long enough to be seen in `salon status`.
    config = salon_config(synapse, tmp_path, agents=_agents(3.0))
    gateway = await gateways(config, invite=[person.user_id])
    assert gateway.store is not None
    server = synapse.server_name
    room = await person.join(f"#{config.agent_room_alias_localpart('alpha')}:{server}")
    asked = await person.say(room, MESSAGE)

    # While beta works: the open delegation's line in `salon status` names the refs.
    db_path = Path(config.store.sqlite_path)
    deadline = time.monotonic() + 15
    lines: list[Any] = []
    while time.monotonic() < deadline and not lines:
        lines = read_status(db_path).delegations
        await asyncio.sleep(0.1)
    assert len(lines) == 1 and list(lines[0].refs) == [
        "group/project#12",
        "owner/repo#34",
    ], lines

    assert (
        await _final_text(person, room, asked, timeout=30)
        == f"alpha got: beta says task: {MESSAGE}"
    )

    # The typed request in beta's room, sent by alpha's own user, carries them parsed.
    beta_room = await person.join(f"#{config.agent_room_alias_localpart('beta')}:{server}")
    (request,) = await _events(person, beta_room, REQUEST)
    assert request["sender"] == config.agent_user_id("alpha", server)
    assert request["content"]["task"] == f"task: {MESSAGE}"
    assert request["content"]["refs"] == REFS

    # The origin room's notice lists them, short.
    notices = [
        e["content"]["body"]
        for e in await _events(person, room, "m.room.message")
        if e["content"].get("msgtype") == "m.notice"
    ]
    sent = [n for n in notices if n.startswith("alpha → beta:")]
    assert len(sent) == 1 and sent[0].endswith("(refs: group/project#12, owner/repo#34)"), notices

    # Both sides stored them with the delegation.
    delegation_id = request["content"]["id"]
    for direction in DelegationDirection:
        record = await gateway.store.delegations.get(delegation_id, direction=direction)
        assert record is not None and list(record.refs) == REFS, direction


async def test_refs_are_validated_on_receipt_like_the_rest(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    config = salon_config(synapse, tmp_path, agents=_agents(0.0))
    gateway = await gateways(config, invite=[person.user_id])
    assert gateway.state is not None and gateway.store is not None
    alpha_api = gateway.state.agent_apis[AgentId("alpha")]
    server = synapse.server_name
    beta_room = await person.join(f"#{config.agent_room_alias_localpart('beta')}:{server}")
    # Visitors are invited when they visit: beta lets alpha in, as a delegation would.
    beta_api = gateway.state.agent_apis[AgentId("beta")]
    await join_or_be_invited(alpha_api, RoomId(beta_room), beta_api)

    # A request as an older Salon sends it (no refs), and one whose refs are well formed.
    await _send_raw(alpha_api, beta_room, REQUEST, _request("dlg_norefs"))
    good = _request("dlg_goodrefs", refs=REFS)
    await _send_raw(alpha_api, beta_room, REQUEST, good)
    # Malformed refs: the whole request is dropped, never answered.
    bad = {
        "dlg_badnumber": [{**REFS[0], "number": "12"}],
        "dlg_toomany": [REFS[0]] * 21,
        "dlg_badurl": [{**REFS[1], "url": "javascript:alert(1)"}],
        "dlg_notalist": "group/project#12",
    }
    for delegation_id, refs in bad.items():
        event_id = await _send_raw(
            alpha_api, beta_room, REQUEST, _request(delegation_id, refs=refs)
        )
        assert await _inbox_reason(gateway, event_id) == "delegation invalid", delegation_id

    assert (await _wait_status(person, beta_room, "dlg_norefs"))["state"] == "completed"
    assert (await _wait_status(person, beta_room, "dlg_goodrefs"))["state"] == "completed"
    stored = await gateway.store.delegations.get("dlg_goodrefs", direction=DelegationDirection.IN)
    assert stored is not None and list(stored.refs) == REFS
    old = await gateway.store.delegations.get("dlg_norefs", direction=DelegationDirection.IN)
    assert old is not None and old.refs == ()
    answered = {e["content"]["id"] for e in await _events(person, beta_room, STATUS)}
    assert answered == {"dlg_norefs", "dlg_goodrefs"}
