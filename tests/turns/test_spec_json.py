"""The ledger's spec JSON is written field by field (not ``asdict``, for speed): it
must stay exactly what ``asdict`` made, so rows written before and after read alike."""

from __future__ import annotations

import json
from dataclasses import asdict

from salon.ids import AgentId, RoomId
from salon.turns.replies import ReplyTo
from salon.turns.spec import TurnKind, TurnSpec


def test_every_field_is_written_as_asdict_wrote_it() -> None:
    spec = TurnSpec(
        turn_id="$t",
        agent_id=AgentId("coder"),
        kind=list(TurnKind)[-1],
        room_id=RoomId("!r:localhost"),
        sender="@alice:localhost",
        text="héllo",
        session_key="agent:coder:matrix:!r:localhost",
        reply_to=ReplyTo("$e", "$root", 2),
        delegation_id="d1",
        deadline_ts=5,
        stateless=True,
        history=(("user", "hi"), ("assistant", "yo")),
        slot_sender="token",
        for_user="@alice:localhost",
    )
    data = asdict(spec)
    data["kind"] = spec.kind.value
    assert spec.to_json() == json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    assert TurnSpec.from_json(spec.to_json()) == spec
