"""Two `salon run` processes, each hosting one agent, delegating to each other across kill -9."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import yaml

from .conftest import Person, salon_config
from .test_agent_runtime import _final_text
from .test_crash import running

PLUGINS = "tests.integration.plugins"


def _configs(synapse: Any, tmp_path: Path, person: Person) -> tuple[Path, Path, dict[str, Any]]:
    base = salon_config(
        synapse,
        tmp_path,
        agents={
            "alpha": {
                "backend": {
                    "type": "python",
                    "entry": f"{PLUGINS}:delegating",
                    "options": {"to": "beta"},
                }
            },
            "beta": {"backend": {"type": "echo", "prefix": "beta says ", "delay_s": 4}},
        },
        access={"admins": [person.user_id]},
    )
    data = base.model_dump(mode="json", exclude_none=True)
    paths = []
    for mine, peer in (("alpha", "beta"), ("beta", "alpha")):
        variant = {
            **data,
            "agents": {mine: data["agents"][mine]},
            # alpha (beta's peer) tasks beta; a peer may task nobody unless listed.
            "peers": {
                peer: {
                    "user_id": base.agent_user_id(peer, synapse.server_name),
                    "may_task": [mine] if peer == "alpha" else [],
                }
            },
            "store": {"url": f"sqlite:///{tmp_path / mine}.db"},
            "data_dir": str(tmp_path / mine),
        }
        path = tmp_path / f"{mine}.yaml"
        path.write_text(yaml.safe_dump(variant, allow_unicode=True))
        paths.append(path)
    return paths[0], paths[1], data


async def test_two_gateways_delegate_and_a_result_that_lands_while_down_arrives_once(
    synapse: Any, tmp_path: Path, person: Person
) -> None:
    alpha_cfg, beta_cfg, data = _configs(synapse, tmp_path, person)
    alias = data["naming"]["agent_room_alias"].replace("{id}", "alpha")
    server = synapse.server_name
    with running(beta_cfg) as beta:
        beta.wait_ready()
        with running(alpha_cfg) as alpha:
            alpha.wait_ready()
            room = await person.join(f"#{alias}:{server}")
            # A plain round trip across the two processes first.
            asked = await person.say(room, "warm up")
            assert await _final_text(person, room, asked, timeout=30) == (
                "alpha got: beta says task: warm up"
            )
            # Now kill alpha right after its request went out; beta answers while it is down.
            asked = await person.say(room, "the real thing")
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                notes = [e["content"].get("body", "") for e in await person.history(room)]
                if any("alpha → beta: task: the real thing" in n for n in notes):
                    break
                await asyncio.sleep(0.1)
            alpha.kill()
        await asyncio.sleep(6)  # beta (4 s per task) completes while alpha is down
        with running(alpha_cfg) as alpha:
            alpha.wait_ready()
            text = await _final_text(person, room, asked, timeout=30)
            await asyncio.sleep(3)  # room for a duplicate to show up, if there were one
    assert text == "alpha got: beta says task: the real thing"
    answers = [
        e
        for e in await person.history(room, limit=200)
        if e["type"] == "m.room.message"
        and e["sender"] != person.user_id
        and "beta says task: the real thing" in e["content"].get("body", "")
        and (e["content"].get("m.relates_to") or {}).get("rel_type") != "m.replace"
    ]
    assert len(answers) == 1, [a["content"]["body"] for a in answers]
