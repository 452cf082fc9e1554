"""Offline demo agents: small ``python`` backends that do real, deterministic work.

They ship with Salon so that ``make demo`` shows what routing, delegation and
teams are for without a model server (see ``examples/salon.yaml`` and the
README's "A short tour"):

- :mod:`salon.demo.calculator` — safe arithmetic (``what is 6*7``);
- :mod:`salon.demo.notes` — remembers and recalls notes per person, in a JSON
  file in the agent's home dir;
- :mod:`salon.demo.clock` — the time in a city or time zone;
- :mod:`salon.demo.concierge` — routes by keywords and delegates to the
  others, and merges a team's answers when it leads one.

Each module's class is its own factory: ``backend: {type: python, entry:
salon.demo.clock:Clock}``. One convention ties them together: a reply that
starts with :data:`~salon.demo.common.NOTHING_FOR_ME` means "this message is
not for me" (the concierge leaves such answers out of a team's summary).
"""
