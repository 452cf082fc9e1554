"""Shared-secret registration and password login against a real Synapse."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import aiohttp
import pytest

from salon._exceptions import (
    AuthError,
    ForbiddenError,
    MatrixConnectionError,
    MatrixRequestError,
    UserInUseError,
)
from salon.devserver.synapse import free_port
from salon.matrix.registration import (
    Credentials,
    derive_password,
    login_with_password,
    register_or_login,
    register_with_shared_secret,
)

if TYPE_CHECKING:
    from conftest import TestHomeserver


def localpart() -> str:
    return f"reg-{secrets.token_hex(6)}"


async def whoami(base_url: str, creds: Credentials) -> str:
    headers = {"Authorization": f"Bearer {creds.access_token}"}
    url = f"{base_url}/_matrix/client/v3/account/whoami"
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        user_id = (await resp.json())["user_id"]
        assert isinstance(user_id, str)
        return user_id


async def test_register_returns_a_working_token(synapse: TestHomeserver) -> None:
    name = localpart()
    async with aiohttp.ClientSession() as session:
        creds = await register_with_shared_secret(
            session, synapse.base_url, synapse.shared_secret, name, "pw", displayname="Reg"
        )
    assert creds.user_id == f"@{name}:{synapse.server_name}"
    assert creds.device_id
    assert await whoami(synapse.base_url, creds) == creds.user_id
    assert creds.access_token not in repr(creds)


async def test_registering_a_taken_localpart_raises_user_in_use(synapse: TestHomeserver) -> None:
    name = localpart()
    async with aiohttp.ClientSession() as session:
        await register_with_shared_secret(
            session, synapse.base_url, synapse.shared_secret, name, "a"
        )
        with pytest.raises(UserInUseError) as excinfo:
            await register_with_shared_secret(
                session, synapse.base_url, synapse.shared_secret, name, "b"
            )
    assert excinfo.value.errcode == "M_USER_IN_USE"
    assert excinfo.value.http_status == 400


async def test_register_or_login_twice_gives_the_same_user(synapse: TestHomeserver) -> None:
    name = localpart()
    async with aiohttp.ClientSession() as session:
        first = await register_or_login(
            session, synapse.base_url, synapse.shared_secret, name, synapse.server_name
        )
        second = await register_or_login(
            session, synapse.base_url, synapse.shared_secret, name, synapse.server_name
        )
    assert first.user_id == second.user_id == f"@{name}:{synapse.server_name}"
    assert first.access_token != second.access_token
    assert await whoami(synapse.base_url, first) == first.user_id
    assert await whoami(synapse.base_url, second) == first.user_id


async def test_register_or_login_refuses_an_account_with_another_password(
    synapse: TestHomeserver,
) -> None:
    name = localpart()
    async with aiohttp.ClientSession() as session:
        await register_with_shared_secret(
            session, synapse.base_url, synapse.shared_secret, name, "not-derived"
        )
        with pytest.raises(AuthError, match="derived"):
            await register_or_login(
                session, synapse.base_url, synapse.shared_secret, name, synapse.server_name
            )


async def test_login_with_the_derived_password(synapse: TestHomeserver) -> None:
    name = localpart()
    user_id = f"@{name}:{synapse.server_name}"
    password = derive_password(synapse.shared_secret, user_id)
    async with aiohttp.ClientSession() as session:
        await register_with_shared_secret(
            session, synapse.base_url, synapse.shared_secret, name, password
        )
        creds = await login_with_password(
            session, synapse.base_url, user_id, password, device_id="SALONDEV"
        )
        assert creds.device_id == "SALONDEV"
        assert await whoami(synapse.base_url, creds) == user_id
        with pytest.raises(ForbiddenError):
            await login_with_password(session, synapse.base_url, user_id, "wrong")


async def test_wrong_shared_secret_is_a_matrix_request_error(synapse: TestHomeserver) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(MatrixRequestError) as excinfo:
            await register_with_shared_secret(
                session, synapse.base_url, "not-the-secret", localpart(), "pw"
            )
    assert excinfo.value.http_status == 403


async def test_unreachable_homeserver_is_a_connection_error() -> None:
    base_url = f"http://127.0.0.1:{free_port()}"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(MatrixConnectionError):
            await register_with_shared_secret(session, base_url, "secret", localpart(), "pw")
        with pytest.raises(MatrixConnectionError):
            await login_with_password(session, base_url, "@a:localhost", "pw")


async def test_new_user_fixture_registers_fresh_users(
    synapse: TestHomeserver, new_user: Callable[..., Awaitable[Credentials]]
) -> None:
    alice = await new_user()
    bob = await new_user()
    assert alice.user_id != bob.user_id
    assert await whoami(synapse.base_url, alice) == alice.user_id


def test_derive_password_is_stable_and_secret_bound() -> None:
    a = derive_password("s1", "@bot:localhost")
    assert a == derive_password("s1", "@bot:localhost")
    assert a != derive_password("s2", "@bot:localhost")
    assert a != derive_password("s1", "@other:localhost")
    assert len(a) == 64 and int(a, 16) >= 0


async def test_register_or_login_continues_a_known_device(synapse: TestHomeserver) -> None:
    name = localpart()
    async with aiohttp.ClientSession() as session:
        first = await register_or_login(
            session, synapse.base_url, synapse.shared_secret, name, synapse.server_name
        )
        again = await register_or_login(
            session,
            synapse.base_url,
            synapse.shared_secret,
            name,
            synapse.server_name,
            device_id=first.device_id,
        )
    assert again.device_id == first.device_id
    assert again.access_token != first.access_token
    assert await whoami(synapse.base_url, again) == first.user_id
