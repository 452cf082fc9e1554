"""The ``python`` backend: an in-process agent built by a ``pkg.mod:factory`` entry point.

At start-up Salon imports the module and calls ``factory(agent_id, options)``
(``options`` is the read-only ``backend.options`` mapping from the config). The
factory returns any one of:

- an object with a ``stream(request)`` method that is an async generator of
  text chunks (the :class:`~salon.agents.backend.Backend` interface itself);
- an async function ``(request) -> str`` that returns the whole reply;
- an async generator function ``(request) -> AsyncIterator[str]``.

To answer with files, a generator may yield a
:class:`~salon.agents.reply_files.ReplyFile` among its text chunks, and an async
function may return one, or a list of strings and ReplyFiles; either may also call
:func:`~salon.agents.reply_files.attach`. The files are sent after the text.

A class whose constructor takes ``(agent_id, options)`` and which has a
``stream`` method works as a factory too. Problems found at start-up (import
fails, no such attribute, the factory raises or returns something unusable)
are a :class:`ConfigError` naming ``agents.<id>.backend.entry``; anything the
plugin raises during a turn becomes a :class:`PluginError` (a BackendError).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import AsyncIterator, Callable
from types import MappingProxyType
from typing import Any

from salon._exceptions import BackendError, ConfigError
from salon.agents.backend import TurnRequest
from salon.agents.errors import PluginError
from salon.agents.reply_files import ReplyFile, attach
from salon.config.models import PythonBackend as PythonConfig


def load_entry_point(entry: str, *, key: str) -> Any:
    """The object ``pkg.mod:attr.path`` names; ConfigError naming ``key`` otherwise."""
    module_name, sep, attr_path = entry.partition(":")
    if not sep or not module_name or not attr_path:
        raise ConfigError(f"{key}: {entry!r} is not of the form 'package.module:factory'", path=key)
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(
            f"{key}: cannot import module {module_name!r}: {type(exc).__name__}: {exc}", path=key
        ) from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(
                f"{key}: module {module_name!r} has no attribute {attr_path!r}", path=key
            ) from None
    return obj


class PythonPluginBackend:
    """Wraps whatever a plugin factory returned into the Backend interface."""

    def __init__(self, config: PythonConfig, *, agent_id: str) -> None:
        self.config = config
        self.agent_id = agent_id
        key = f"agents.{agent_id}.backend.entry"
        factory = load_entry_point(config.entry, key=key)
        if not callable(factory):
            raise ConfigError(f"{key}: {config.entry!r} is not callable", path=key)
        try:
            plugin = factory(agent_id, MappingProxyType(dict(config.options)))
        except Exception as exc:
            raise ConfigError(
                f"{key}: factory {config.entry!r} failed: {type(exc).__name__}: {exc}", path=key
            ) from exc
        if inspect.isawaitable(plugin):
            if inspect.iscoroutine(plugin):
                plugin.close()
            raise ConfigError(
                f"{key}: factory {config.entry!r} returned an awaitable; "
                "the factory must be a plain (non-async) function",
                path=key,
            )
        method = getattr(plugin, "stream", None)
        handler = method if callable(method) else plugin
        if not callable(handler):
            raise ConfigError(
                f"{key}: factory {config.entry!r} returned {type(plugin).__name__}, which has "
                "no stream() method and is not an async function",
                path=key,
            )
        self.plugin = plugin
        self._handler: Callable[[TurnRequest], Any] = handler

    async def aclose(self) -> None:
        """Let the plugin release its resources, if it has an ``aclose`` (or ``close``)."""
        for name in ("aclose", "close"):
            closer = getattr(self.plugin, name, None)
            if callable(closer):
                result = closer()
                if inspect.isawaitable(result):
                    await result
                return

    async def stream(self, request: TurnRequest) -> AsyncIterator[str]:
        """Yield the plugin's reply; anything it raises becomes a PluginError."""
        try:
            result = self._handler(request)
            if hasattr(result, "__aiter__"):
                try:
                    async for chunk in result:
                        if isinstance(chunk, ReplyFile):
                            attach(chunk)
                        elif not isinstance(chunk, str):
                            raise self._bad(f"yielded {type(chunk).__name__}, expected str")
                        elif chunk:
                            yield chunk
                finally:
                    closer = getattr(result, "aclose", None)
                    if callable(closer):
                        await closer()
            elif inspect.isawaitable(result):
                text = self._returned(await result)
                if text:
                    yield text
            else:
                raise self._bad(
                    f"returned {type(result).__name__}; expected an async generator or a coroutine"
                )
        except BackendError:
            raise  # the plugin's own (or our) deliberate, already readable error
        except Exception as exc:
            raise PluginError(
                f"{self.agent_id} plugin failed: {type(exc).__name__}: {exc}"
            ) from exc

    def _returned(self, reply: Any) -> str:
        """The text of what an async function returned; its files attached."""
        parts = reply if isinstance(reply, list | tuple) else [reply]
        texts: list[str] = []
        for part in parts:
            if isinstance(part, ReplyFile):
                attach(part)
            elif isinstance(part, str):
                texts.append(part)
            else:
                raise self._bad(f"returned {type(part).__name__}, expected str or ReplyFile")
        return "".join(texts)

    def _bad(self, what: str) -> PluginError:
        return PluginError(f"{self.agent_id} plugin failed: it {what}")
