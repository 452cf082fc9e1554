"""A turn's wall-clock deadline bounds its backend, never its sends.

The deadline is applied to the stream of chunks, not to the code that shows
them: a reply the backend finished in time is delivered however long the
homeserver keeps it waiting (an outage is waited out, not charged to the turn).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable


class DeadlineExceeded(Exception):
    """The backend was still producing when the turn's deadline passed."""


async def within(
    chunks: AsyncIterator[str], seconds: float, *, on_first: Callable[[], None] | None = None
) -> AsyncIterator[str]:
    """``chunks``, ending with :class:`DeadlineExceeded` once ``seconds`` have passed
    (``on_first`` is called when the first chunk arrives)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    iterator = aiter(chunks)
    try:
        while True:
            remaining = end - loop.time()
            if remaining <= 0:
                raise DeadlineExceeded
            try:
                # A cancel scope, not wait_for: the backend's steps must all run in the
                # one task (and context) that iterates it.
                async with asyncio.timeout(remaining):
                    chunk = await anext(iterator)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise DeadlineExceeded from None
            if on_first is not None:
                on_first()
                on_first = None
            yield chunk
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()
