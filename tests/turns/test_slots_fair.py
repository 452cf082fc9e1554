"""Fair turn slots: waiting turns granted round-robin across senders (and, within one
sender, across agents), the waiting bound refusing and counting, and slots lent back
while a turn waits on a delegation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from tests.gateway.helpers import BOB, ScriptedBackend, TurnRig, eventually, open_store, sample

from salon.agents.backend import TurnRequest
from salon.agents.context import lending_context, waiting_on_others
from salon.store.records import TurnState
from salon.turns.slots import SlotLimits, TurnSlots
from salon.turns.spec import TurnSpec


class Turns:
    """Turns holding slots until told to finish, logging the order they start in."""

    def __init__(self, slots: TurnSlots) -> None:
        self.slots = slots
        self.started: list[str] = []
        self.done: dict[str, asyncio.Event] = {}
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, name: str, agent: str, sender: str) -> None:
        self.done[name] = asyncio.Event()

        async def turn() -> None:
            async with self.slots.hold(agent, sender):
                self.started.append(name)
                await self.done[name].wait()

        self.tasks.append(asyncio.create_task(turn()))

    async def finish(self, name: str) -> None:
        self.done[name].set()
        for _ in range(3):
            await asyncio.sleep(0)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_waiting_senders_take_turns() -> None:
    turns = Turns(TurnSlots(SlotLimits(total=1, per_agent=10, per_sender=10)))
    try:
        for i in range(4):
            turns.start(f"alice{i}", "helper", "@alice:x")
        turns.start("bob0", "fast", "@bob:x")
        await _settle()
        for name in ("alice0", "bob0"):
            await turns.finish(name)
    finally:
        await turns.close()
    assert turns.started[:3] == ["alice0", "bob0", "alice1"], "bob is not behind alice's flood"


async def test_one_persons_message_to_another_agent_is_not_behind_their_flood() -> None:
    turns = Turns(TurnSlots(SlotLimits(total=32, per_agent=8, per_sender=2)))
    try:
        for i in range(10):
            turns.start(f"helper{i}", "helper", "@alice:x")
        turns.start("fast", "fast", "@alice:x")
        await _settle()
        assert turns.started == ["helper0", "helper1"]
        await turns.finish("helper0")
    finally:
        await turns.close()
    assert turns.started == ["helper0", "helper1", "fast"]


async def test_waiting_turns_are_bounded_per_sender_and_per_agent_and_counted() -> None:
    limits = SlotLimits(
        total=32, per_agent=1, per_sender=1, max_waiting_per_sender=2, max_waiting_per_agent=3
    )
    slots = TurnSlots(limits)
    turns = Turns(slots)
    refused_sender = sample("salon_turns_refused_total", reason="sender")
    refused_agent = sample("salon_turns_refused_total", reason="agent")
    try:
        assert slots.refusal("helper", "@alice:x") is None, "a free slot: it runs at once"
        for i in range(3):  # one runs, two wait
            turns.start(f"a{i}", "helper", "@alice:x")
        await _settle()
        assert slots.waiting(sender="@alice:x") == 2
        assert slots.refusal("helper", "@alice:x") == "sender"
        assert slots.refusal("other", "@alice:x") == "sender", "any agent: alice waits enough"
        turns.start("b0", "helper", "@bob:x")
        await _settle()
        assert slots.refusal("helper", "@carol:x") == "agent", "helper has three waiting"
        assert slots.refusal("fast", "@carol:x") is None
    finally:
        await turns.close()
    assert sample("salon_turns_refused_total", reason="sender") == refused_sender + 2
    assert sample("salon_turns_refused_total", reason="agent") == refused_agent + 1
    assert slots.waiting() == 0 and slots.running("helper") == 0, "nothing left behind"


async def test_a_turn_waiting_on_others_lends_its_slots_and_comes_back_first() -> None:
    slots = TurnSlots(SlotLimits(total=1, per_agent=1, per_sender=1))
    turns = Turns(slots)
    result = asyncio.Event()
    log: list[str] = []

    async def delegating() -> None:
        async with slots.hold("main", "@alice:x") as lease:
            log.append("main runs")
            with lending_context(lease.lend):
                async with waiting_on_others():
                    await result.wait()
            log.append("main back")

    main = asyncio.create_task(delegating())
    try:
        await _settle()
        turns.start("task", "fifth", "@main:x")  # the agent main waits on
        await _settle()
        assert turns.started == ["task"], "the task runs while main waits"
        turns.start("later", "main", "@alice:x")  # queued before main's result is back
        await _settle()
        result.set()
        await _settle()
        assert log == ["main runs"], "main waits for its slot again"
        await turns.finish("task")
        await asyncio.wait_for(main, 10)
        assert log == ["main runs", "main back"]
        await _settle()
        assert turns.started == ["task", "later"], "main came back ahead of a new turn"
    finally:
        await turns.close()
        main.cancel()


async def test_a_turn_waiting_on_others_lets_another_turn_of_its_agent_run(
    tmp_path: Path,
) -> None:
    """Through the runner: the agent's only slot is free while its turn waits."""
    store = await open_store(tmp_path)
    backend = ScriptedBackend(chunks=("done",))
    rig = await TurnRig.start(store, tmp_path, backend, slot_limits=SlotLimits(1, 1, 1))
    answer = asyncio.Event()
    waiting = asyncio.Event()
    plain = backend.stream

    async def stream(request: TurnRequest) -> AsyncIterator[str]:
        if request.text != "delegate":
            async for chunk in plain(request):
                yield chunk
            return
        waiting.set()
        async with waiting_on_others():  # as the delegation manager waits for a result
            await answer.wait()
        yield "the result"

    backend.stream = stream  # type: ignore[method-assign]
    try:
        first = await rig.message("delegate")
        await rig.runner.submit(first)
        await asyncio.wait_for(waiting.wait(), 10)
        second = await rig.message("meanwhile", sender=BOB)
        await rig.runner.submit(second)

        async def replied(spec: TurnSpec) -> bool:
            return (await rig.turn(spec)).state is TurnState.REPLIED

        await eventually(lambda: replied(second), what="the second turn while the first waits")
        answer.set()
        await eventually(lambda: replied(first), what="the first turn, its result back")
    finally:
        await rig.runner.stop()
        await store.close()
