"""The one ledgered turn pipeline: spec, slots, deadline, stream, replies, outcomes.

Every agent turn, whatever starts it (a message, a delegated task, a report, a team
member's part, a cron run, an API request), runs through :class:`~salon.turns.runner.TurnRunner`.
Below both `gateway/` and `api/`, so neither needs the other.
"""
