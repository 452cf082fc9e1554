"""How this gateway runs turns, read once from the config."""

from __future__ import annotations

from dataclasses import dataclass, field

from salon.config.models import SalonConfig
from salon.matrix.delivery import Delivery
from salon.turns.spec import TurnPolicy
from salon.turns.stream import StreamLimits


@dataclass(frozen=True)
class TurnSettings:
    """The knobs of every turn: how a reply streams, a turn's bounds, how sends are
    retried, and the language of the notices a turn posts."""

    limits: StreamLimits = field(default_factory=StreamLimits)
    policy: TurnPolicy = field(default_factory=TurnPolicy)
    delivery: Delivery = field(default_factory=Delivery)
    locale: str = "en"

    @classmethod
    def from_config(cls, config: SalonConfig) -> TurnSettings:
        replies, turns = config.replies, config.turns
        return cls(
            limits=StreamLimits(
                replies.edit_interval_s,
                replies.max_edits,
                replies.max_message_chars,
                max_reply_chars=turns.max_reply_chars,
            ),
            policy=TurnPolicy(
                max_attempts=replies.max_attempts,
                deadline_s=turns.deadline_s,
                typing_after_s=replies.typing_after_s,
            ),
            delivery=Delivery(config.sync.backoff_initial_s / 10, config.sync.backoff_max_s),
            locale=config.locale,
        )
