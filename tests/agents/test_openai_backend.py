"""The ``openai`` backend, with the real ``openai`` client against a local fake server."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from tests.agents.conftest import KEY_ENV
from tests.agents.fakes import FakeOpenAI, unused_port

from salon._exceptions import BackendError
from salon.agents.attachments import Attachment
from salon.agents.backend import ChatMessage, TurnRequest
from salon.agents.errors import BackendRejectedError, BackendUnavailableError
from salon.agents.openai_backend import PLACEHOLDER_API_KEY, OpenAIChatBackend
from salon.agents.registry import build_backend, close_backend
from salon.config.models import OpenAIBackend as OpenAIConfig
from salon.config.models import SalonConfig
from salon.ids import AgentId

REQUEST = TurnRequest(
    agent_id=AgentId("coder"),
    sender="@alice:localhost",
    text="and now?",
    session_key="agent:coder:matrix:!room",
    chat_id="7",
    persona="You are terse.",
    history=(ChatMessage("user", "first question"), ChatMessage("assistant", "first answer")),
)


async def collect(backend: OpenAIChatBackend, request: TurnRequest = REQUEST) -> list[str]:
    return [chunk async for chunk in backend.stream(request)]


async def test_streams_chunks_in_order(fake: tuple[FakeOpenAI, str], make_backend: Any) -> None:
    _, url = fake
    assert await collect(make_backend(url)) == ["Hel", "lo", ", ", "world"]


async def test_sends_messages_model_options_and_key(
    fake: tuple[FakeOpenAI, str], make_backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, url = fake
    server.api_key = "sk-test-123"
    monkeypatch.setenv(KEY_ENV, "sk-test-123")
    await collect(make_backend(url, temperature=0.3, max_tokens=50))
    [received] = server.requests
    assert received.headers["Authorization"] == "Bearer sk-test-123"
    assert received.body["model"] == "test-model"
    assert received.body["stream"] is True
    assert received.body["temperature"] == 0.3
    assert received.body["max_tokens"] == 50
    assert received.body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "and now?"},
    ]


async def test_images_go_as_image_parts_only_to_a_model_that_takes_them(
    fake: tuple[FakeOpenAI, str], make_backend: Any, tmp_path: Path
) -> None:
    server, url = fake
    (tmp_path / "dot.png").write_bytes(b"\x89PNG")
    image = Attachment("dot.png", "image/png", 4, tmp_path / "dot.png")
    request = replace(REQUEST, text="what is it?", attachments=(image,))
    await collect(make_backend(url, images=True), request)
    await collect(make_backend(url), request)  # images: false, the default
    seeing, blind = (r.body["messages"] for r in server.requests)
    assert seeing[:-1] == blind[:-1]  # only the new message differs
    assert seeing[-1]["content"] == [
        {"type": "text", "text": "what is it?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw=="}},
    ]
    assert blind[-1]["content"] == "what is it?\n[attachment: dot.png image/png 4 bytes]"


async def test_without_key_sends_placeholder_and_no_unset_options(
    fake: tuple[FakeOpenAI, str], make_backend: Any
) -> None:
    server, url = fake
    request = TurnRequest(AgentId("coder"), "@alice:localhost", "hi", "s", "1")
    assert await collect(make_backend(url), request) == ["Hel", "lo", ", ", "world"]
    [received] = server.requests
    assert received.headers["Authorization"] == f"Bearer {PLACEHOLDER_API_KEY}"
    assert "temperature" not in received.body
    assert received.body["max_tokens"] == 2048  # replies are capped by default
    assert received.body["messages"] == [{"role": "user", "content": "hi"}]


async def test_a_local_endpoint_never_gets_the_openai_key(
    fake: tuple[FakeOpenAI, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, url = fake
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-openai-key")
    config = OpenAIConfig(type="openai", base_url=url, model="test-model", retry_backoff_s=0.01)
    assert config.api_key_env is None  # no key variable unless the config names one
    backend = OpenAIChatBackend(config, agent_id="coder")
    try:
        assert await collect(backend) == ["Hel", "lo", ", ", "world"]
    finally:
        await backend.aclose()
    [received] = server.requests
    assert received.headers["Authorization"] == f"Bearer {PLACEHOLDER_API_KEY}"


@pytest.mark.parametrize(
    ("base_url", "key_env"),
    [
        (None, "OPENAI_API_KEY"),  # the default base_url is OpenAI's
        ("https://api.openai.com/v1/", "OPENAI_API_KEY"),
        ("https://API.OpenAI.com/v1", "OPENAI_API_KEY"),
        ("http://api.openai.com/v1", None),  # not over TLS: no key
        ("https://api.openai.com.evil.example/v1", None),
        ("https://openrouter.ai/api/v1", None),
        ("http://192.168.1.20:8000/v1", None),
    ],
)
async def test_only_openai_gets_the_openai_key_by_default(
    base_url: str | None, key_env: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-openai-key")
    fields: dict[str, Any] = {"type": "openai", "model": "m"}
    if base_url is not None:
        fields["base_url"] = base_url
    config = OpenAIConfig.model_validate(fields)
    assert config.api_key_env == key_env
    backend = OpenAIChatBackend(config, agent_id="coder")
    try:
        expected = "sk-real-openai-key" if key_env else PLACEHOLDER_API_KEY
        assert backend._client.api_key == expected
    finally:
        await backend.aclose()
    # Naming a variable sends its key anywhere: the operator chose that endpoint's key.
    named = OpenAIConfig.model_validate({**fields, "api_key_env": "OPENAI_API_KEY"})
    assert named.api_key_env == "OPENAI_API_KEY"


async def test_max_tokens_null_sends_no_cap(
    fake: tuple[FakeOpenAI, str], make_backend: Any
) -> None:
    server, url = fake
    await collect(make_backend(url, max_tokens=None))
    [received] = server.requests
    assert "max_tokens" not in received.body


@pytest.mark.parametrize("statuses", [[500], [503, 502], [429], [500, 429]])
async def test_transient_errors_are_retried(
    fake: tuple[FakeOpenAI, str], make_backend: Any, statuses: list[int]
) -> None:
    server, url = fake
    server.fail_with = list(statuses)
    assert "".join(await collect(make_backend(url, max_retries=3))) == "Hello, world"
    assert len(server.requests) == len(statuses) + 1


async def test_gives_up_after_max_retries(fake: tuple[FakeOpenAI, str], make_backend: Any) -> None:
    server, url = fake
    server.fail_with = [500] * 5
    with pytest.raises(BackendUnavailableError, match=r"HTTP 500 \(after 3 attempts\)") as info:
        await collect(make_backend(url, max_retries=2))
    assert len(server.requests) == 3
    assert info.value.status == 500


async def test_backoff_doubles(fake: tuple[FakeOpenAI, str], make_backend: Any) -> None:
    server, url = fake
    server.fail_with = [500, 500, 500]
    started = time.monotonic()
    await collect(make_backend(url, max_retries=3, retry_backoff_s=0.05))
    assert time.monotonic() - started >= 0.05 + 0.1 + 0.2


async def test_authentication_failure_is_reported_at_once(
    fake: tuple[FakeOpenAI, str], make_backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, url = fake
    server.api_key = "sk-right"
    monkeypatch.setenv(KEY_ENV, "sk-wrong-secret")
    started = time.monotonic()
    with pytest.raises(BackendRejectedError) as info:
        await collect(make_backend(url, retry_backoff_s=30))
    assert time.monotonic() - started < 10  # no retry after the 30 s backoff
    assert str(info.value) == f"authentication failed at {url} (check {KEY_ENV})"
    assert "sk-wrong-secret" not in str(info.value)
    assert len(server.requests) == 1


async def test_unknown_model_is_reported_at_once(
    fake: tuple[FakeOpenAI, str], make_backend: Any
) -> None:
    server, url = fake
    with pytest.raises(BackendRejectedError) as info:
        await collect(make_backend(url, model="llama-9000", retry_backoff_s=1))
    assert str(info.value) == f"model 'llama-9000' not found at {url}"
    assert info.value.status == 404
    assert len(server.requests) == 1


async def test_bad_request_is_not_retried(fake: tuple[FakeOpenAI, str], make_backend: Any) -> None:
    server, url = fake
    server.fail_with = [400]
    with pytest.raises(BackendRejectedError, match=r"rejected the request \(HTTP 400\)"):
        await collect(make_backend(url))
    assert len(server.requests) == 1


async def test_unreachable_endpoint_names_the_url(make_backend: Any) -> None:
    url = f"http://127.0.0.1:{unused_port()}/v1"
    with pytest.raises(BackendUnavailableError) as info:
        await collect(make_backend(url, max_retries=1))
    assert str(info.value) == f"cannot reach {url} (after 2 attempts)"


async def test_failure_after_first_chunk_is_not_retried(
    fake: tuple[FakeOpenAI, str], make_backend: Any
) -> None:
    server, url = fake
    server.drop_after = 2
    got: list[str] = []
    with pytest.raises(BackendUnavailableError, match="broke off") as info:
        async for chunk in make_backend(url, max_retries=3).stream(REQUEST):
            got.append(chunk)
    assert got == ["Hel", "lo"]
    assert len(server.requests) == 1
    assert url in str(info.value)


async def test_slow_server_times_out(fake: tuple[FakeOpenAI, str], make_backend: Any) -> None:
    server, url = fake
    server.delay_s = 1.0
    with pytest.raises(BackendUnavailableError, match=r"did not answer within 0\.2 s"):
        await collect(make_backend(url, timeout_s=0.2, max_retries=0))


async def test_consumer_may_stop_early(fake: tuple[FakeOpenAI, str], make_backend: Any) -> None:
    _, url = fake
    backend = make_backend(url)
    stream = backend.stream(REQUEST)
    assert await anext(stream) == "Hel"
    await stream.aclose()
    assert await collect(backend) == ["Hel", "lo", ", ", "world"]  # the client is still usable


async def test_registry_builds_it(fake: tuple[FakeOpenAI, str]) -> None:
    _, url = fake
    config = SalonConfig.model_validate(
        {
            "agents": {
                "coder": {"backend": {"type": "openai", "base_url": url, "model": "test-model"}}
            }
        }
    )
    backend = build_backend(config.agent("coder"))
    assert isinstance(backend, OpenAIChatBackend)
    try:
        assert "".join([c async for c in backend.stream(REQUEST)]) == "Hello, world"
    finally:
        await close_backend(backend)


def test_errors_are_backend_errors() -> None:
    assert issubclass(BackendRejectedError, BackendError)
    assert issubclass(BackendUnavailableError, BackendError)
