"""What a backend sees of its turn, set before its stream's task starts: whom it may
delegate to (each delegation an approvable call), who approves its calls, how
attachments travel, and where the files it answers with are collected."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from salon.agents.approval import Approver, ApprovingDelegator, approver_context
from salon.agents.attachments import AttachmentWire, wire_context
from salon.agents.context import delegator_context
from salon.agents.reply_files import Outbox, outbox_context
from salon.agents.tools import Delegator


@contextlib.contextmanager
def backend_context(
    delegator: Delegator | None, approver: Approver | None, wire: AttachmentWire
) -> Iterator[Outbox]:
    """The turn's context for the block; yields the outbox of its reply files."""
    if delegator is not None:
        delegator = ApprovingDelegator(delegator)
    with (
        delegator_context(delegator),
        approver_context(approver),
        wire_context(wire),
        outbox_context() as box,
    ):
        yield box
