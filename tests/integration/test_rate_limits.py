"""Salon's 429 policy against a Synapse whose message rate limit is strict."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from salon._exceptions import RateLimitedError
from salon.ids import UserId
from salon.matrix.api import MatrixAPI, RequestSettings
from salon.matrix.ratelimit import RetryPolicy
from salon.metrics import RATE_LIMIT_WAITS

from ..conftest import register_user


@pytest.fixture
def strict_synapse(synapse_factory: Callable[..., Any]) -> Any:
    return synapse_factory(rate_limit_overrides={"rc_message": {"per_second": 2, "burst_count": 2}})


async def test_burst_of_sends_all_land_despite_429(strict_synapse: Any) -> None:
    creds = await register_user(strict_synapse)
    async with aiohttp.ClientSession() as session:
        api = MatrixAPI(
            strict_synapse.base_url,
            UserId(creds.user_id),
            creds.access_token,
            session=session,
            requests=RequestSettings(RetryPolicy(max_retries=20, max_wait_s=5)),
        )
        room_id = await api.create_room(name="burst")
        waits_before = RATE_LIMIT_WAITS._value.get()
        sent = await asyncio.gather(
            *(
                api.send_event(
                    room_id,
                    "m.room.message",
                    {"msgtype": "m.text", "body": f"m{i}"},
                    txn_id=f"burst-{i}",
                )
                for i in range(8)
            )
        )
        assert len(set(sent)) == 8
        assert RATE_LIMIT_WAITS._value.get() > waits_before  # the limit was really hit
        page = await api.messages(room_id, limit=50)
        bodies = {e["content"].get("body") for e in page["chunk"] if e["type"] == "m.room.message"}
        assert bodies == {f"m{i}" for i in range(8)}


async def test_out_of_retries_raises_salons_own_error(strict_synapse: Any) -> None:
    creds = await register_user(strict_synapse)
    async with aiohttp.ClientSession() as session:
        api = MatrixAPI(
            strict_synapse.base_url,
            UserId(creds.user_id),
            creds.access_token,
            session=session,
            requests=RequestSettings(RetryPolicy(max_retries=0)),
        )
        room_id = await api.create_room(name="no patience")
        with pytest.raises(RateLimitedError) as info:
            for i in range(10):
                await api.send_event(
                    room_id, "m.room.message", {"msgtype": "m.text", "body": "x"}, txn_id=f"n{i}"
                )
        assert info.value.retry_after_s is not None and info.value.retry_after_s > 0
