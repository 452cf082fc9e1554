"""The cron_runs table on both backends (a SQLite file, a real PostgreSQL): a scheduled
time is claimed once."""

from __future__ import annotations

import asyncio

from salon.store import Store
from salon.store.records import TurnState


async def _open(store_url: str) -> Store:
    return await Store.open(store_url)


async def test_a_scheduled_time_is_claimed_once(store_url: str) -> None:
    store = await _open(store_url)
    try:
        assert await store.cron.claim("coder", "news", 100, "cron:coder:news:100") is True
        assert await store.cron.claim("coder", "news", 100, "cron:coder:news:100") is False
        # Another time, another job or another agent is another run.
        assert await store.cron.claim("coder", "news", 102, "cron:coder:news:102") is True
        assert await store.cron.claim("coder", "digest", 100, "cron:coder:digest:100") is True
        assert await store.cron.claim("writer", "news", 100, "cron:writer:news:100") is True
        runs = await store.cron.runs("coder", "news")
        assert [(r.scheduled_ts, r.turn_id) for r in runs] == [
            (100, "cron:coder:news:100"),
            (102, "cron:coder:news:102"),
        ]
        assert len(await store.cron.runs()) == 4
    finally:
        await store.close()


async def test_last_run_is_the_latest_scheduled_time_with_its_turn_state(store_url: str) -> None:
    store = await _open(store_url)
    try:
        assert await store.cron.last("coder", "news") is None
        await store.cron.claim("coder", "news", 104, "cron:coder:news:104", catch_up=True)
        await store.cron.claim("coder", "news", 100, "cron:coder:news:100")
        await store.cron.claim("writer", "news", 90, "cron:writer:news:90")
        await store.turns.admit("cron:coder:news:104", "coder", "!r", kind="cron")
        await store.turns.finish("cron:coder:news:104", "coder", TurnState.REPLIED)

        last = await store.cron.last("coder", "news")
        assert last is not None
        assert (last.scheduled_ts, last.catch_up, last.turn_state) == (104, True, "replied")
        assert last.claimed_at > 0

        every = await store.cron.last_runs()
        assert {k: (r.scheduled_ts, r.turn_state) for k, r in every.items()} == {
            ("coder", "news"): (104, "replied"),
            ("writer", "news"): (90, None),  # claimed, no turn row (yet)
        }
    finally:
        await store.close()


async def test_two_stores_on_one_file_claim_each_time_once(store_url: str) -> None:
    """Two processes (two connections to one database) racing for the same times."""
    first, second = await _open(store_url), await _open(store_url)
    try:
        times = range(1000, 1100)

        async def claim_all(store: Store) -> list[int]:
            won = []
            for ts in times:
                if await store.cron.claim("coder", "news", ts, f"cron:coder:news:{ts}"):
                    won.append(ts)
            return won

        a, b = await asyncio.gather(claim_all(first), claim_all(second))
        assert sorted(a + b) == list(times)  # every time won by exactly one of them
        assert not set(a) & set(b)
    finally:
        await first.close()
        await second.close()
