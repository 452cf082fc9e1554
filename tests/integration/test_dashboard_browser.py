"""The dashboard in a real browser (Debian's headless Chromium) against a running
gateway on the real Synapse: the one-time login link, live agents and turns, a
hot reload from the page, a delegation in the graph, Matrix text shown as text,
and the data endpoints refusing strangers and other sites' pages."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from salon.app.gateway import Gateway, ReloadSource
from salon.config import load_config
from salon.matrix.registration import Credentials

from .dashboard_harness import AGENTS, Dash, chromium, start_dash
from .test_admin_api import free_port
from .test_approvals import PLUGINS, wait_row

pytestmark = [pytest.mark.subprocess, pytest.mark.timeout(300)]
WAIT_MS = 30_000
HOSTILE = "<script>window.pwned = 1</script><img src=x onerror='window.pwned = 2'> hi"


@pytest.fixture
async def dash(
    synapse: Any,
    tmp_path: Path,
    new_user: Callable[..., Awaitable[Credentials]],
    monkeypatch: pytest.MonkeyPatch,
    gateways: Callable[..., Awaitable[Gateway]],
    http: aiohttp.ClientSession,
) -> Dash:
    return await start_dash(synapse, tmp_path, await new_user(), monkeypatch, gateways, http)


async def _all_online(page: Any, agents: list[str]) -> None:
    for agent in agents:
        await page.wait_for_selector(
            f'#agents-table tr[data-agent="{agent}"][data-status="online"]', timeout=WAIT_MS
        )


async def test_the_dashboard_live_in_chromium(dash: Dash, tmp_path: Path) -> None:
    async with chromium(tmp_path / "profile") as browser:
        page = await browser.new_page()
        link = dash.login_link()
        await page.goto(link)
        # The link set the cookie and left a clean URL (no code in the history).
        assert page.url == dash.base + "/dashboard/"
        await _all_online(page, list(AGENTS))

        # A message sent meanwhile appears as a turn without reloading the page; its
        # body, HTML and all, is shown as text.
        await page.evaluate("window.notReloaded = true")
        status, sent = await dash.post("/api/v1/messages", {"to": "parrot", "text": HOSTILE})
        assert status in (200, 202), sent
        row = page.locator(f'#turns-table tr[data-event="{sent["event_id"]}"]')
        await row.locator(".said").wait_for(timeout=WAIT_MS)
        assert await row.locator(".said").text_content() == HOSTILE
        await page.wait_for_selector(
            f'#turns-table tr[data-event="{sent["event_id"]}"][data-state="replied"]',
            timeout=WAIT_MS,
        )
        assert await page.evaluate("window.notReloaded") is True
        assert await page.evaluate("window.pwned") is None
        assert await page.locator("#turns-table script, #turns-table img").count() == 0

        # A delegation appears in the graph, as an edge from echo to parrot.
        status, outcome = await dash.post(
            "/api/v1/delegations",
            {"from": "echo", "to": "parrot", "task": "<b>say</b> hi", "timeout_s": 30},
        )
        assert status == 200 and outcome["ok"], outcome
        edge = page.locator('#delegation-graph g.edge[data-from="echo"][data-to="parrot"]')
        await edge.wait_for(timeout=WAIT_MS)
        assert await edge.get_attribute("class") == "edge completed"
        task = page.locator(f'#delegations-table tr[data-delegation="{outcome["id"]}"] td.text')
        assert await task.text_content() == "<b>say</b> hi"

        # Remove owl from the config and reload from the page (a CSRF-checked POST):
        # owl turns offline on the page.
        dash.write_agents({k: v for k, v in AGENTS.items() if k != "owl"})
        await page.click("#reload")
        await page.wait_for_selector(
            '#agents-table tr[data-agent="owl"][data-status="offline"]', timeout=WAIT_MS
        )
        assert "removed owl" in (await page.text_content("#reload-result") or "")
        await _all_online(page, ["echo", "parrot"])

        # The link works once: a browser without the cookie gets the login form.
        await browser.clear_cookies()
        await page.goto(link)
        await page.wait_for_selector("#login:not([hidden])", timeout=WAIT_MS)
        assert "already used" in (await page.text_content("#login-error") or "")
        assert await page.locator("#board").is_hidden()
        # The form takes the API token.
        await page.fill("#token", dash.token)
        await page.press("#token", "Enter")
        await _all_online(page, ["echo", "parrot"])


async def test_the_page_reconnects_after_a_gateway_restart(
    dash: Dash, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]]
) -> None:
    """The open page survives a restart (same token: the session holds): it shows it
    is reconnecting, then live again, and new turns arrive without a reload."""
    async with chromium(tmp_path / "profile") as browser:
        page = await browser.new_page()
        await page.goto(dash.login_link())
        await _all_online(page, list(AGENTS))
        await page.evaluate("window.notReloaded = true")
        started = time.monotonic()
        await dash.gateway.stop()  # an open stream must not hold the stop up
        stop_s = time.monotonic() - started
        assert stop_s < 20, stop_s
        await page.wait_for_selector("#live.off", timeout=WAIT_MS)
        path = dash.config_path
        dash.gateway = await gateways(
            load_config(path), reload=ReloadSource(lambda: load_config(path), watch=None)
        )
        await page.wait_for_selector("#live.on", timeout=60_000)
        status, sent = await dash.post("/api/v1/messages", {"to": "echo", "text": "back again"})
        assert status == 202, sent
        await page.wait_for_selector(
            f'#turns-table tr[data-event="{sent["event_id"]}"]', timeout=WAIT_MS
        )
        assert await page.evaluate("window.notReloaded") is True


async def test_an_approval_is_granted_from_the_page(
    synapse: Any,
    tmp_path: Path,
    new_user: Callable[..., Awaitable[Credentials]],
    monkeypatch: pytest.MonkeyPatch,
    gateways: Callable[..., Awaitable[Gateway]],
    http: aiohttp.ClientSession,
) -> None:
    """An agent's tool call waits for an OK: the panel lists it with its arguments (as
    text), Approve decides it as the admin API does, and the call runs."""
    agents = {
        "alpha": {
            "backend": {
                "type": "python",
                "entry": f"{PLUGINS}:delegating",
                "options": {"to": "beta"},
            },
            "approve": ["delegate"],
        },
        "beta": {"backend": {"type": "echo", "prefix": "beta says "}},
    }
    dash = await start_dash(
        synapse, tmp_path, await new_user(), monkeypatch, gateways, http, agents=agents
    )
    store = dash.gateway.store
    assert store is not None
    async with chromium(tmp_path / "profile") as browser:
        page = await browser.new_page()
        await page.goto(dash.login_link())
        await _all_online(page, ["alpha", "beta"])
        status, _ = await dash.post("/api/v1/messages", {"to": "alpha", "text": "<i>please</i>"})
        assert status == 202
        row = page.locator("#approvals-table tr[data-approval]")
        await row.wait_for(timeout=WAIT_MS)
        assert "task: <i>please</i>" in (await row.locator("pre.args").text_content() or "")
        assert await page.locator("#approvals-table i").count() == 0
        assert await page.text_content('[data-nav="approvals"]') == "Approvals (1)"
        aid = await row.get_attribute("data-approval")
        assert aid is not None
        await row.locator('button[data-decide="approve"]').click()
        record = await wait_row(store, aid, lambda r: not r.pending)
        assert (record.state.value, record.decided_by) == ("approved", "api")
        edge = page.locator('#delegation-graph g.edge[data-from="alpha"][data-to="beta"]')
        await edge.wait_for(timeout=WAIT_MS)
        await page.wait_for_selector(
            f'#approvals li[data-approval="{aid}"][data-state="approved"]', state="attached"
        )


async def test_another_sites_page_cannot_post(dash: Dash, tmp_path: Path) -> None:
    """A logged-in browser visiting another page (another port: same site, other
    origin) cannot make the dashboard reload: refused as cross-site, counted."""
    other = web.Application()
    other.router.add_get(
        "/", lambda _: web.Response(text="<p>elsewhere</p>", content_type="text/html")
    )
    runner = web.AppRunner(other)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with chromium(tmp_path / "profile") as browser:
            page = await browser.new_page()
            await page.goto(dash.login_link())
            await page.wait_for_selector("#board:not([hidden])", timeout=WAIT_MS)
            before = await dash.metric("salon_dashboard_refused_total", reason="cross_site")
            await page.goto(f"http://127.0.0.1:{port}/")
            await page.evaluate(
                """url => fetch(url, {method: "POST", credentials: "include", mode: "no-cors",
                                     headers: {"Content-Type": "text/plain"}, body: "{}"})
                         .catch(() => null)""",
                dash.base + "/api/v1/dashboard/reload",
            )
            after = await dash.metric("salon_dashboard_refused_total", reason="cross_site")
            assert after == before + 1
    finally:
        await runner.cleanup()


async def test_data_endpoints_need_a_session_or_the_token(dash: Dash) -> None:
    paths = ("snapshot", "session", "events")
    for path in paths:
        async with dash.http.get(
            f"{dash.base}/api/v1/dashboard/{path}",
            headers={"Accept": "text/event-stream", "Cookie": "salon_dashboard=forged.1.abc"},
        ) as r:
            assert r.status == 401, path
            assert (await r.json())["error"]["code"] == "unauthorized"
    async with dash.http.get(dash.base + "/api/v1/dashboard/snapshot", headers=dash.auth) as r:
        assert r.status == 200
        assert {a["id"] for a in (await r.json())["agents"]} == set(AGENTS)

    # A session from the link: its POSTs need the page's CSRF token and this origin.
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        async with browser.get(dash.login_link()) as r:
            assert r.status == 200 and str(r.url).endswith("/dashboard/")
        async with browser.get(dash.base + "/api/v1/dashboard/session") as r:
            csrf = (await r.json())["csrf"]
        reload = dash.base + "/api/v1/dashboard/reload"
        refused = await dash.metric("salon_dashboard_refused_total", reason="csrf")
        async with browser.post(reload, json={}) as r:
            assert r.status == 403 and (await r.json())["error"]["code"] == "csrf_failed"
        assert await dash.metric("salon_dashboard_refused_total", reason="csrf") == refused + 1
        crossed = {"X-CSRF-Token": csrf, "Origin": "http://evil.example"}
        async with browser.post(reload, json={}, headers=crossed) as r:
            assert r.status == 403 and (await r.json())["error"]["code"] == "cross_site"
        async with browser.post(reload, json={}, headers={"X-CSRF-Token": csrf}) as r:
            assert r.status == 200 and (await r.json())["ok"] is True


def _shots_dir(tmp_path: Path) -> Path:
    out = Path(os.environ.get("SALON_SCREENSHOTS") or tmp_path / "shots")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _sizes(out: Path, names: list[str]) -> dict[str, int]:
    return {name: (out / f"dashboard-{name}.png").stat().st_size for name in names}


async def test_screenshots(dash: Dash, tmp_path: Path) -> None:
    """The main views, light and dark, wide and narrow, with some activity; `make
    screenshots` (SALON_SCREENSHOTS=docs/img) writes them for the docs."""
    out = _shots_dir(tmp_path)
    for i, text in enumerate(["hello", "what's new?", "FAIL on purpose", "one more"]):
        await dash.post("/api/v1/messages", {"to": "echo" if i % 2 else "parrot", "text": text})
    await dash.post("/api/v1/messages", {"to": "echo", "text": "FAIL again"})
    for task in ("summarise the notes", "check the links"):
        await dash.post("/api/v1/delegations", {"from": "echo", "to": "parrot", "task": task})
    await asyncio.sleep(3)
    for dark in (False, True):
        async with chromium(tmp_path / f"profile-{dark}", dark=dark) as browser:
            page = await browser.new_page()
            await page.goto(dash.login_link())
            await _all_online(page, list(AGENTS))
            await page.wait_for_selector('#turns-table tr[data-state="failed"]', timeout=WAIT_MS)
            name = "dark" if dark else "light"
            await page.screenshot(path=str(out / f"dashboard-{name}.png"), full_page=True)
            await page.set_viewport_size({"width": 420, "height": 900})
            await page.screenshot(path=str(out / f"dashboard-narrow-{name}.png"))
    sizes = _sizes(out, ["light", "dark", "narrow-light", "narrow-dark"])
    assert all(size > 10_000 for size in sizes.values()), sizes
