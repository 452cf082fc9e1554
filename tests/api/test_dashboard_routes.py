"""The dashboard's routes on a fake gateway: the one-time link, the cookie, CSRF and
cross-site refusals, the page's headers, the snapshot and the event stream."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.api.rig import AUTH, TOKEN, ApiRig, rig_and_client
from tests.api.test_admin_delegations import _record
from tests.api.test_admin_routes import Client
from tests.gateway.helpers import CODER

from salon.api.dashboard import AUTH as DASHBOARD_AUTH
from salon.api.dashboard_auth import COOKIE
from salon.store.delegations import DelegationPhase
from salon.store.records import TurnState

# Ways a script turns text into markup: the page uses none (textContent only).
HTML_SINKS = re.compile(r"\.(innerHTML|outerHTML)\s*[+]?=|insertAdjacentHTML|document\.write")


@pytest.fixture
async def rc(tmp_path: Path) -> AsyncIterator[tuple[ApiRig, Client]]:
    async for pair in rig_and_client(tmp_path):
        yield pair


def _link(client: Client) -> str:
    assert client.server is not None
    return client.server.app[DASHBOARD_AUTH].login_link("")


async def _csrf(client: Client) -> str:
    response = await client.get("/api/v1/dashboard/session")
    assert response.status == 200
    return str((await response.json())["csrf"])


async def test_the_login_link_works_once_and_sets_a_strict_httponly_cookie(
    rc: tuple[ApiRig, Client],
) -> None:
    _, client = rc
    link = _link(client)
    first = await client.get(link, allow_redirects=False)
    assert first.status == 303 and first.headers["Location"] == "/dashboard/"
    cookie = first.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie and "Path=/" in cookie
    assert (await client.get("/api/v1/dashboard/snapshot")).status == 200
    client.session.cookie_jar.clear()
    again = await client.get(link, allow_redirects=False)
    assert again.status == 303 and again.headers["Location"] == "/dashboard/#link-used"
    assert "Set-Cookie" not in again.headers
    assert (await client.get("/api/v1/dashboard/snapshot")).status == 401


async def test_the_form_takes_the_token_and_logout_ends_the_session(
    rc: tuple[ApiRig, Client],
) -> None:
    _, client = rc
    wrong = await client.post("/api/v1/dashboard/login", json={"token": "nope"})
    assert wrong.status == 401 and (await wrong.json())["error"]["code"] == "login_failed"
    assert (await client.post("/api/v1/dashboard/login", json={"token": TOKEN})).status == 200
    csrf = await _csrf(client)
    stolen = client.session.cookie_jar.filter_cookies(client.make_url("/"))[COOKIE].value
    out = await client.post("/api/v1/dashboard/logout", json={}, headers={"X-CSRF-Token": csrf})
    assert out.status == 200
    # The cookie value, replayed after logging out, opens nothing.
    replay = await client.get(
        "/api/v1/dashboard/snapshot", headers={"Cookie": f"{COOKIE}={stolen}"}
    )
    assert replay.status == 401


async def test_posts_need_csrf_and_this_origin(rc: tuple[ApiRig, Client]) -> None:
    _, client = rc
    await client.get(_link(client))
    csrf = await _csrf(client)
    url = "/api/v1/dashboard/reload"
    no_csrf = await client.post(url, json={})
    assert (await no_csrf.json())["error"]["code"] == "csrf_failed" and no_csrf.status == 403
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # another port of the same host
    ):
        refused = await client.post(url, json={}, headers={"X-CSRF-Token": csrf, **headers})
        assert refused.status == 403, headers
        assert (await refused.json())["error"]["code"] == "cross_site"
    # Even the bearer token does not make a cross-site POST pass.
    crossed = await client.post(url, json={}, headers={**AUTH, "Origin": "http://evil.example"})
    assert crossed.status == 403
    # This page's own POST passes the guards (the rig's gateway cannot reload: 400).
    assert client.server is not None
    own = {"X-CSRF-Token": csrf, "Origin": f"http://{client.host}:{client.port}"}
    mine = await client.post(url, json={}, headers={**own, "Sec-Fetch-Site": "same-origin"})
    assert mine.status == 400 and (await mine.json())["error"]["code"] == "invalid_request"


async def test_forged_or_expired_cookies_are_refused(rc: tuple[ApiRig, Client]) -> None:
    _, client = rc
    assert client.server is not None
    auth = client.server.app[DASHBOARD_AUTH]
    good = auth.redeem(auth.new_code())
    assert good is not None
    sid, expiry, signature = good.split(".")
    for value in (f"{sid}.{int(expiry) + 999}.{signature}", f"{sid}.1.{signature}", "x", ""):
        response = await client.get(
            "/api/v1/dashboard/session", headers={"Cookie": f"{COOKIE}={value}"}
        )
        assert response.status == 401, value


async def test_the_page_is_served_with_a_strict_policy(rc: tuple[ApiRig, Client]) -> None:
    _, client = rc
    page = await client.get("/dashboard/")
    assert page.status == 200 and page.content_type == "text/html"
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    assert "https://" not in await page.text()  # nothing fetched from elsewhere
    for name, kind in (
        ("dashboard.js", "text/javascript"),
        ("approvals.js", "text/javascript"),
        ("dashboard.css", "text/css"),
    ):
        asset = await client.get(f"/dashboard/static/{name}")
        assert asset.status == 200 and asset.content_type == kind
        assert not HTML_SINKS.search(await asset.text()), name
    assert (await client.get("/dashboard/static/../server.py")).status in (401, 404)


async def test_the_snapshot_counts_turns_and_draws_delegations(rc: tuple[ApiRig, Client]) -> None:
    rig, client = rc
    for event_id, state in (("$a", TurnState.REPLIED), ("$b", TurnState.FAILED)):
        await rig.store.turns.admit(event_id, CODER, "!r:localhost")
        await rig.store.turns.start(event_id, CODER)
        await rig.store.turns.finish(event_id, CODER, state, error="boom")
    await rig.store.turns.admit("$c", CODER, "!r:localhost")
    await rig.store.delegations.create(_record("d-1", "out", DelegationPhase.COMPLETED))
    await rig.store.delegations.create(_record("d-2", "out", DelegationPhase.SENT))
    body = await (await client.get("/api/v1/dashboard/snapshot", headers=AUTH)).json()
    coder = next(a for a in body["agents"] if a["id"] == CODER)
    assert (coder["replies_1h"], coder["errors_1h"], coder["waiting"]) == (1, 1, 1)
    assert coder["room_link"].startswith("https://matrix.to/#/")
    assert {t["event_id"] for t in body["turns"]} == {"$a", "$b", "$c"}
    assert [e["count"] for e in body["delegations"]["graph"]["edges"]] == [2]
    assert [d["id"] for d in body["delegations"]["open"]] == ["d-2"]
    assert sum(body["charts"]["turns_per_minute"]["*"]) == 3
    assert body["operations"]["version"] and "loops" in body["operations"]


async def test_the_stream_sends_a_snapshot_at_once(rc: tuple[ApiRig, Client]) -> None:
    _, client = rc
    plain = await client.get("/api/v1/dashboard/events", headers=AUTH)
    assert plain.status == 406 and (await plain.json())["error"]["code"] == "not_acceptable"
    stream = await client.get(
        "/api/v1/dashboard/events", headers={**AUTH, "Accept": "text/event-stream"}
    )
    assert stream.status == 200 and stream.content_type == "text/event-stream"
    event: dict[str, Any] = {}
    while "data" not in event:
        line = (await stream.content.readline()).decode().rstrip("\n")
        if line.startswith("event: "):
            event["name"] = line.removeprefix("event: ")
        elif line.startswith("data: "):
            event["data"] = json.loads(line.removeprefix("data: "))
    assert event["name"] == "snapshot" and "agents" in event["data"]
    stream.close()
