"""Finer kinds of :class:`~salon._exceptions.BackendError`.

Callers that only care that a turn failed catch ``BackendError``; the turn
ledger can look at the subclass to tell a failure worth retrying later
(the endpoint was down or overloaded) from one that will fail the same way
again (bad key, unknown model, a plugin bug)::

    BackendError
    ├── BackendUnavailableError   unreachable, timed out, 5xx, 429, stream broke off
    ├── BackendRejectedError      the endpoint answered with a definite error
    └── PluginError               an in-process (python) backend raised
"""

from __future__ import annotations

from salon._exceptions import BackendError


class BackendUnavailableError(BackendError):
    """The backend could not be reached, timed out, was overloaded or broke off.

    Trying the same turn again later may well succeed.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class BackendRejectedError(BackendError):
    """The backend answered with an error that a retry will not fix.

    Authentication failed, the model does not exist, the request was refused,
    or an upstream service replied with an explicit error.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class PluginError(BackendError):
    """An in-process plugin raised (or returned something unusable) during a turn."""


__all__ = ["BackendError", "BackendRejectedError", "BackendUnavailableError", "PluginError"]
