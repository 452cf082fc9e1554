"""The event-source step: how an appservice listener ends, alone or beside others."""

from __future__ import annotations

from typing import Any, cast

import pytest

from salon.app.steps import syncing
from salon.matrix.appservice import AppserviceSource


class _Listener(AppserviceSource):
    """The listener's start and end only (its constructor needs a whole gateway)."""

    def __new__(cls) -> _Listener:
        listener = object.__new__(cls)
        listener.ends: list[str] = []  # type: ignore[misc]
        return listener

    def __init__(self) -> None: ...

    async def start(self, sink: Any) -> None: ...

    async def wait_ready(self, timeout: float) -> None: ...

    async def park(self) -> None:
        self.ends.append("park")

    async def stop(self, *, listening: bool = False) -> None:
        self.ends.append("stop")


@pytest.mark.parametrize(("alone", "end"), [(True, "park"), (False, "stop")])
async def test_a_listener_parks_at_stop_only_when_no_other_gateway_shares_the_store(
    alone: bool, end: str
) -> None:
    # Beside other gateways, what is parked waits a minute for one of them: the port
    # closes instead and the load balancer sends to a gateway that admits at once.
    listener = _Listener()
    async with syncing(listener, cast(Any, None), 1.0, alone=alone):
        pass
    assert listener.ends == [end]
