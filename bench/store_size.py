"""How big the store gets, and what the retention janitor gives back.

Fills a fresh SQLite store through the store API with ``--messages`` messages' worth
of rows, as one message → reply writes them (the inbox row with the raw event, the
routing decision, the turn with its spec and outcome, the session's user message and
reply), spread over ``--rooms`` rooms; prints the size; then runs the retention
janitor once with its clock ``retention_days`` + 1 days ahead (every row past the
cut-off), and prints the size after, as one JSON line:

    .venv/bin/python bench/store_size.py                      # 10,000 messages
    .venv/bin/python bench/store_size.py --messages 2000 --data-dir /tmp/s

A store created by this version uses incremental auto-vacuum: the janitor gives the
freed pages back (``PRAGMA incremental_vacuum``, a bounded step at a time, then a WAL
checkpoint) and the file shrinks. ``longest_delete_ms`` and ``longest_reclaim_step_ms``
are the longest the janitor held the store at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from salon import log as salon_log
from salon.gateway.retention import DAY_MS, RetentionJanitor
from salon.store import Store
from salon.store.records import InboxItem, InboxState, TurnState, now_ms
from salon.store.retention import TABLES
from salon.store.saved import Decision

QUESTION = "Could you look at the failing build on main and tell me what broke? " * 2
ANSWER = (
    "The build fails in the integration job: a test waits for a reply that the new "
    "routing rule sends to another agent. Updating the expected agent fixes it. " * 4
)


def event_json(event_id: str, room: str, n: int) -> str:
    """A raw m.room.message event about the size Synapse hands over."""
    return json.dumps(
        {
            "event_id": event_id,
            "room_id": room,
            "sender": "@alice:localhost",
            "type": "m.room.message",
            "origin_server_ts": now_ms(),
            "content": {"msgtype": "m.text", "body": f"{QUESTION} ({n})", "m.mentions": {}},
            "unsigned": {"age": 12, "transaction_id": f"m{n}.{n * 7}"},
        }
    )


async def fill(store: Store, messages: int, rooms: int) -> None:
    batch: list[InboxItem] = []
    for n in range(messages):
        room = f"!room{n % rooms}:localhost"
        event_id = f"$event{n}-{'x' * 30}"
        batch.append(
            InboxItem(
                event_id,
                room,
                "@alice:localhost",
                "m.room.message",
                event_json(event_id, room, n),
                now_ms(),
                "@salon_router:localhost",
            )
        )
        if len(batch) == 100 or n == messages - 1:
            await store.inbox.admit(batch)  # as the dispatcher admits a sync batch
            for item in batch:
                await one_message(store, item)
            batch = []


async def one_message(store: Store, item: InboxItem) -> None:
    agent, room = "coder", item.room_id
    await store.decisions.record(
        Decision(item.event_id, room, (agent,), "agent_room", "the agent's own room")
    )
    spec = json.dumps(
        {"turn_id": item.event_id, "agent_id": agent, "room_id": room, "text": QUESTION}
    )
    await store.turns.admit(item.event_id, agent, room, spec=spec)
    await store.turns.start(item.event_id, agent)
    await store.turns.set_output(
        item.event_id, agent, json.dumps({"state": "replied", "text": ANSWER})
    )
    await store.turns.finish(
        item.event_id, agent, TurnState.REPLIED, reply_event_id=f"$reply-{item.event_id}"
    )
    await store.sessions.append_turn(
        f"agent:{agent}:matrix:{room}",
        agent,
        item.event_id,
        [("user", QUESTION, 40), ("assistant", ANSWER, 160)],
    )
    await store.inbox.mark(item.event_id, InboxState.DONE, "routed")


def files(path: Path) -> dict[str, int]:
    """The database file and its WAL, apart (size_bytes() is their sum)."""
    wal = path.with_name(path.name + "-wal")
    return {"db": path.stat().st_size, "wal": wal.stat().st_size if wal.exists() else 0}


async def counts(store: Store) -> dict[str, int]:
    return {t: int(await store.db.fetchval(f"SELECT COUNT(*) FROM {t}")) for t in TABLES}


def fresh_store(data_dir: str | None) -> Path:
    """Where the store goes, with no store of an earlier run left there."""
    where = Path(data_dir or tempfile.mkdtemp(prefix="salon-store-size-"))
    where.mkdir(parents=True, exist_ok=True)
    for stale in where.glob("salon.db*"):
        stale.unlink()
    return where / "salon.db"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    path = fresh_store(args.data_dir)
    store = await Store.open(f"sqlite:///{path}")
    try:
        mode = int(await store.db.fetchval("PRAGMA auto_vacuum"))
        started = time.monotonic()
        await fill(store, args.messages, args.rooms)
        fill_s = time.monotonic() - started
        rows_before = await counts(store)
        size_before, files_before = await store.size_bytes(), files(path)

        longest = 0.0
        prune = store.retention.prune

        async def timed(table: str, cutoff_ms: int, limit: int) -> int:
            nonlocal longest
            t0 = time.monotonic()
            try:
                return await prune(table, cutoff_ms, limit)
            finally:
                longest = max(longest, time.monotonic() - t0)

        store.retention.prune = timed  # type: ignore[method-assign]
        longest_reclaim = 0.0
        reclaim = store.db.reclaim

        async def timed_reclaim(max_pages: int) -> int:
            nonlocal longest_reclaim
            t0 = time.monotonic()
            try:
                return await reclaim(max_pages)
            finally:
                longest_reclaim = max(longest_reclaim, time.monotonic() - t0)

        store.db.reclaim = timed_reclaim  # type: ignore[method-assign]
        janitor = RetentionJanitor(store, retention_days=args.retention_days)
        later = now_ms() + int((args.retention_days + 1) * DAY_MS)
        started = time.monotonic()
        pruned = await janitor.sweep(now=later)
        sweep_s = time.monotonic() - started
        size_after, files_after = await store.size_bytes(), files(path)
        rows_after = await counts(store)
    finally:
        await store.close()
    return {
        "messages": args.messages,
        "rooms": args.rooms,
        "auto_vacuum": {0: "none", 1: "full", 2: "incremental"}.get(mode, str(mode)),
        "rows_before": rows_before,
        "size_before_bytes": size_before,
        "files_before": files_before,
        "bytes_per_message": round(size_before / max(args.messages, 1)),
        "pruned": pruned,
        "rows_after": rows_after,
        "size_after_bytes": size_after,
        "files_after": files_after,
        "fill_s": round(fill_s, 2),
        "sweep_s": round(sweep_s, 2),
        "longest_delete_ms": round(longest * 1000, 1),
        "longest_reclaim_step_ms": round(longest_reclaim * 1000, 1),
        "store": str(path),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rooms", type=int, default=100, help="sessions the messages spread over")
    parser.add_argument("--retention-days", type=float, default=30)
    parser.add_argument("--data-dir", help="where the store goes (default: a temp dir)")
    args = parser.parse_args()
    salon_log.configure(level="WARNING")
    print(json.dumps(asyncio.run(run(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
