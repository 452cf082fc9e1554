"""The ``python`` backend: the three factory shapes, start-up errors, plugin failures."""

from __future__ import annotations

from typing import Any

import pytest

from salon._exceptions import BackendError, ConfigError
from salon.agents.backend import TurnRequest
from salon.agents.errors import PluginError
from salon.agents.python_backend import PythonPluginBackend
from salon.agents.registry import build_backend, close_backend
from salon.config.models import PythonBackend as PythonConfig
from salon.config.models import SalonConfig
from salon.ids import AgentId

PLUGIN = "tests.agents.sample_plugin"
KEY = "agents.bot.backend.entry"

REQUEST = TurnRequest(AgentId("bot"), "@alice:localhost", "two words", "s", "1")


def backend(factory: str, **options: Any) -> PythonPluginBackend:
    config = PythonConfig(type="python", entry=f"{PLUGIN}:{factory}", options=options)
    return PythonPluginBackend(config, agent_id="bot")


async def collect(plugin: PythonPluginBackend) -> list[str]:
    return [chunk async for chunk in plugin.stream(REQUEST)]


async def test_object_with_stream_method() -> None:
    plugin = backend("object_factory", prefix="> ")
    assert await collect(plugin) == ["> ", "two ", "words "]
    await plugin.aclose()
    assert plugin.plugin.closed


async def test_class_as_factory() -> None:
    assert await collect(backend("WordStreamer")) == ["two ", "words "]


async def test_async_function() -> None:
    assert await collect(backend("coroutine_factory", greeting="hey")) == [
        "hey @alice:localhost, bot here"
    ]


async def test_async_generator_function() -> None:
    assert await collect(backend("generator_factory", times=3)) == [
        "0:two words;",
        "1:two words;",
        "2:two words;",
    ]


def test_factory_gets_agent_id_and_read_only_options() -> None:
    plugin = backend("object_factory", prefix="x")
    assert plugin.plugin.agent_id == "bot"
    assert plugin.plugin.options == {"prefix": "x"}
    with pytest.raises(TypeError):
        plugin.plugin.options["prefix"] = "y"


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("tests.agents.no_such_module:factory", "cannot import module"),
        (f"{PLUGIN}:no_such_factory", "has no attribute 'no_such_factory'"),
        (f"{PLUGIN}:NOT_CALLABLE", "is not callable"),
        (f"{PLUGIN}:failing_factory", "failed: RuntimeError: model file missing"),
        (f"{PLUGIN}:useless_factory", "returned int"),
        (f"{PLUGIN}:async_factory", "returned an awaitable"),
    ],
)
def test_bad_entry_is_a_config_error_naming_the_key(entry: str, words: str) -> None:
    config = PythonConfig(type="python", entry=entry)
    with pytest.raises(ConfigError) as info:
        PythonPluginBackend(config, agent_id="bot")
    assert str(info.value).startswith(f"{KEY}: ")
    assert words in str(info.value)
    assert info.value.path == KEY


async def test_plugin_raising_is_a_backend_error() -> None:
    got: list[str] = []
    with pytest.raises(PluginError) as info:
        async for chunk in backend("raising_plugin_factory").stream(REQUEST):
            got.append(chunk)
    assert got == ["partial "]
    assert str(info.value) == "bot plugin failed: ValueError: division by cucumber"
    assert isinstance(info.value, BackendError)


async def test_plugin_returning_a_plain_value_is_a_backend_error() -> None:
    with pytest.raises(PluginError, match="bot plugin failed: it returned str"):
        await collect(backend("sync_result_factory"))


async def test_registry_builds_it_and_reports_bad_entries_at_start_up() -> None:
    agents = {
        "bot": {"backend": {"type": "python", "entry": f"{PLUGIN}:generator_factory"}},
        "bad": {"backend": {"type": "python", "entry": f"{PLUGIN}:missing"}},
    }
    config = SalonConfig.model_validate({"agents": agents})
    built = build_backend(config.agent("bot"))
    assert isinstance(built, PythonPluginBackend)
    assert [c async for c in built.stream(REQUEST)] == ["0:two words;", "1:two words;"]
    await close_backend(built)
    with pytest.raises(ConfigError, match=r"agents\.bad\.backend\.entry"):
        build_backend(config.agent("bad"))
