"""The CLI over the running gateway's HTTP API: each command's data, as direct.py gives it.

The functions mirror :mod:`salon.cli.direct` one for one, with the same return
types; where a direct function takes the data dir (or the store file), these
take the :class:`Endpoint` found by :func:`discover`. API errors become the
errors the direct path raises for the same facts (an unknown agent, no reply in
time, the homeserver down), so the CLI prints the same lines and exit codes.

The endpoint comes from ``--api URL`` (token: ``--api-token`` or
``SALON_API_TOKEN``) or else from ``<data-dir>/api.json``; it is used only if
its ``/healthz`` answers quickly, otherwise the CLI takes the direct path.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from salon._exceptions import ConfigError, SalonError
from salon.cli import operator as ops
from salon.cli import status as status_report
from salon.cli.api_file import FILENAME, ApiFile
from salon.cli.status import DelegationRow, GatewayInfo, LoopRow, StatusReport, TurnRow
from salon.coordination.heartbeat import AgentStatus

PREFIX = "/api/v1"
LOBBY = "lobby"
PROBE_TIMEOUT_S = 1.0  # `/healthz` of a gateway on this machine answers in milliseconds
CALL_TIMEOUT_S = 30.0  # a call that does not wait for an agent
WAIT_MARGIN_S = 15.0  # on top of a waiting call's own timeout_s
MAX_TIMEOUT_S = 3600.0  # the longest timeout_s the API takes
MAX_READ_LIMIT = 200  # the most messages one read returns

JSON = dict[str, Any]


@dataclass(frozen=True)
class Endpoint:
    """Where the API is, its token, and where that was learnt (for messages)."""

    url: str
    token: str | None
    source: str  # "--api" or the api.json path
    pid: int | None = None


@dataclass(frozen=True)
class Discovery:
    """The endpoint to use (None: take the direct path) and why, for ``--verbose``."""

    endpoint: Endpoint | None
    note: str


class ApiCallError(SalonError):
    """The API answered with an error the CLI has no better words for."""

    def __init__(self, message: str, *, code: str | None, status: int, exit_code: int) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.exit_code = exit_code


class ApiUnreachable(ApiCallError):
    """The API stopped answering in the middle of a command."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code=None, status=0, exit_code=1)


class GatewayHomeserverUnreachable(ops.HomeserverUnreachable):
    """The gateway answers, but says its homeserver does not."""

    def __init__(self, api_url: str, detail: str) -> None:
        SalonError.__init__(self, f"the gateway at {api_url} cannot reach its homeserver: {detail}")
        self.url = api_url


# --- finding the API ------------------------------------------------------------------


def candidate(data_dir: Path, url: str | None, token: str | None) -> tuple[Endpoint | None, str]:
    """The endpoint named by ``--api`` or ``api.json`` (not yet probed), or why there is none."""
    try:
        saved = ApiFile.load(data_dir)
    except ConfigError as e:
        if url is None:
            return None, f"{e}; using the direct path"
        saved = None
    if url is not None:
        url = url.rstrip("/")
        if saved is not None and saved.url.rstrip("/") == url:
            # The data dir's own gateway: it knows the token and the pid.
            return Endpoint(url, token or saved.token, "--api", saved.pid), ""
        return Endpoint(url, token, "--api"), ""
    if saved is None:
        return None, f"no {data_dir / FILENAME}; using the direct path"
    return Endpoint(saved.url.rstrip("/"), saved.token, str(data_dir / FILENAME), saved.pid), ""


async def probe(endpoint: Endpoint, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """None if ``/healthz`` answers 200 within ``timeout_s``, else what went wrong."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session,
            session.get(f"{endpoint.url}/healthz") as resp,
        ):
            if resp.status != 200:
                return f"/healthz answered HTTP {resp.status}"
            return None
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"
    except (aiohttp.ClientError, ValueError) as e:
        return _reason(e)


def discover(
    data_dir: Path,
    *,
    url: str | None = None,
    token: str | None = None,
    timeout_s: float = PROBE_TIMEOUT_S,
) -> Discovery:
    """The API to use if it answers: ``url`` (``--api``) else ``<data_dir>/api.json``."""
    endpoint, why = candidate(data_dir, url, token)
    if endpoint is None:
        return Discovery(None, why)
    problem = asyncio.run(probe(endpoint, timeout_s))
    if problem is not None:
        return Discovery(
            None,
            f"the API at {endpoint.url} (from {endpoint.source}) does not answer"
            f" ({problem}); using the direct path",
        )
    return Discovery(endpoint, f"using the API at {endpoint.url} (from {endpoint.source})")


# --- calls ---------------------------------------------------------------------------------


def _reason(error: Exception) -> str:
    text = str(error) or type(error).__name__
    return re.sub(r"^\w+(Error|Exception): ", "", text)


_NO_AGENT = re.compile(r"^no agent (?P<agent>.+) \(known: (?P<known>.*)\)$")


def _error(
    endpoint: Endpoint, status: int, body: Any, *, wait_s: float | None = None
) -> SalonError:
    """The CLI's error for an API error answer."""
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    exit_code = 1 if status >= 500 else 2
    if not isinstance(code, str) or not isinstance(message, str):
        return ApiCallError(
            f"the API at {endpoint.url} answered HTTP {status}",
            code=None,
            status=status,
            exit_code=exit_code,
        )
    if code == "timeout" and wait_s is not None:
        return ops.ReplyTimeout(f"no reply within {wait_s:g} s")
    if code == "homeserver_unavailable":
        return GatewayHomeserverUnreachable(
            endpoint.url, message.removeprefix("the homeserver is not reachable: ")
        )
    if code == "agent_not_found" and (m := _NO_AGENT.match(message)):
        # What the direct path says, known agents sorted.
        known = sorted(a for a in m["known"].split(", ") if a and a != "none")
        message = f"unknown agent {m['agent']} (known: {', '.join(known) or 'none'})"
    elif code == "unauthorized":
        given = "no token" if endpoint.token is None else "the token"
        where = (
            "give it with --api-token or SALON_API_TOKEN"
            if endpoint.source == "--api"
            else f"from {endpoint.source}"
        )
        message = f"the API at {endpoint.url} refused {given} ({where}): {message}"
    return ApiCallError(message, code=code, status=status, exit_code=exit_code)


async def call(
    endpoint: Endpoint,
    method: str,
    path: str,
    *,
    body: JSON | None = None,
    params: dict[str, str] | None = None,
    wait_s: float | None = None,
) -> JSON:
    """One request; the JSON object answered, or the CLI's error for what went wrong.

    ``wait_s``: the call waits that long for an agent (the answer may take as
    long; running out of time is ``ReplyTimeout``, as on the direct path).
    """
    timeout_s = CALL_TIMEOUT_S if wait_s is None else min(wait_s, MAX_TIMEOUT_S) + WAIT_MARGIN_S
    headers = {"Authorization": f"Bearer {endpoint.token}"} if endpoint.token else {}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session,
            session.request(
                method, endpoint.url + path, json=body, params=params, headers=headers
            ) as resp,
        ):
            try:
                answer = await resp.json(content_type=None)
            except ValueError:
                answer = None
            if resp.status >= 400:
                raise _error(endpoint, resp.status, answer, wait_s=wait_s)
    except TimeoutError:
        if wait_s is not None:
            raise ops.ReplyTimeout(f"no reply within {wait_s:g} s") from None
        raise ApiUnreachable(
            f"the API at {endpoint.url} gave no answer within {timeout_s:g} s"
        ) from None
    except aiohttp.ClientError as e:
        raise ApiUnreachable(f"the API at {endpoint.url} is unreachable ({_reason(e)})") from e
    if not isinstance(answer, dict):
        raise ApiCallError(
            f"the API at {endpoint.url} answered {path} with no JSON object",
            code=None,
            status=resp.status,
            exit_code=1,
        )
    return answer


def _timeout(wait_s: float) -> float:
    """``timeout_s`` as the API takes it (more than 0, at most an hour)."""
    return min(max(wait_s, 0.001), MAX_TIMEOUT_S)


def _reply(view: Any, routed: Any) -> ops.Reply:
    """One reply of ``POST messages`` as the direct path's Reply."""
    if not isinstance(view, dict):
        return ops.Reply(f"no agent answered ({routed or 'not routed'})", True)
    failed = view.get("state") == "failed"
    text = view.get("text")
    if text is None:
        error = view.get("error") or f"{view.get('agent')} did not answer ({view.get('state')})"
        return ops.Reply(str(error), True)
    return ops.Reply(str(text), bool(view.get("notice")) or failed)


# --- the commands --------------------------------------------------------------------------


def who(endpoint: Endpoint) -> ops.WhoResult:
    """Every agent with a heartbeat in its room (as `salon who` lists them)."""
    answer = asyncio.run(call(endpoint, "GET", f"{PREFIX}/agents"))
    statuses = {s.value for s in AgentStatus}
    rows = []
    for agent in answer.get("agents") or []:
        # "unknown": no room, or no heartbeat in it; the direct path lists neither.
        if not isinstance(agent, dict) or agent.get("status") not in statuses:
            continue
        beat = agent.get("last_beat_ms")
        rows.append(
            ops.AgentRow(
                agent=str(agent.get("id")),
                user_id=str(agent.get("user_id")),
                alias=str(agent.get("room_alias") or agent.get("room_id") or ""),
                status=AgentStatus(agent["status"]),
                last_beat_ms=beat if isinstance(beat, int) else None,
            )
        )
    return ops.WhoResult(sorted(rows, key=lambda r: r.agent), None)


def send(
    endpoint: Endpoint, text: str, *, to: str | None, wait_s: float | None
) -> ops.Reply | None:
    """Post ``text`` as the operator to agent ``to``'s room (or the lobby); with
    ``wait_s``, its reply.

    Raises:
        ReplyTimeout: no reply within ``wait_s``.
    """
    body: JSON = {"to": to or LOBBY, "text": text}
    if wait_s is not None:
        body.update(wait=True, timeout_s=_timeout(wait_s))
    answer = asyncio.run(call(endpoint, "POST", f"{PREFIX}/messages", body=body, wait_s=wait_s))
    if wait_s is None:
        return None
    return _reply(answer.get("reply"), answer.get("routed"))


def read(endpoint: Endpoint, room: str, n: int) -> list[ops.Message]:
    """The last ``n`` (at most ``MAX_READ_LIMIT``) messages of an agent's room or the
    lobby, oldest first, each as last edited."""
    answer = asyncio.run(
        call(
            endpoint,
            "GET",
            f"{PREFIX}/rooms/{quote(room, safe='')}/messages",
            params={"limit": str(min(n, MAX_READ_LIMIT))},
        )
    )
    return [
        ops.Message(
            ts=int(m.get("ts") or 0),
            sender=str(m.get("sender")),
            body=str(m.get("body", "")),
            notice=bool(m.get("notice")),
        )
        for m in answer.get("messages") or []
        if isinstance(m, dict)
    ]


def delegate(
    endpoint: Endpoint, task: str, *, frm: str, to: str, wait_s: float
) -> ops.Reply | None:
    """Have agent ``frm`` delegate ``task`` to agent ``to``; the outcome (a notice if it
    failed).

    Raises:
        ReplyTimeout: no outcome within ``wait_s``.
    """
    body: JSON = {"from": frm, "to": to, "task": task, "wait": True, "timeout_s": _timeout(wait_s)}
    answer = asyncio.run(call(endpoint, "POST", f"{PREFIX}/delegations", body=body, wait_s=wait_s))
    return ops.Reply(str(answer.get("text") or ""), not answer.get("ok"))


def status(endpoint: Endpoint) -> StatusReport:
    """Open delegations, turns in flight and loops, as the running gateway sees them."""
    answer = asyncio.run(call(endpoint, "GET", f"{PREFIX}/status"))
    delegations = [
        DelegationRow(
            id=str(d.get("id")),
            from_agent=str(d.get("from")),
            to_agent=str(d.get("to")),
            state=str(d.get("state")),
            age_s=int(d.get("age_s") or 0),
        )
        for d in answer.get("delegations") or []
        if isinstance(d, dict)
    ]
    turns = [
        TurnRow(
            event_id=str(t.get("event_id")),
            agent_id=str(t.get("agent")),
            state=str(t.get("state") or "running"),
            attempts=t.get("attempts") if isinstance(t.get("attempts"), int) else None,
            age_s=None,  # the API does not say
        )
        for t in answer.get("turns_in_flight") or []
        if isinstance(t, dict)
    ]
    loops = [
        LoopRow(
            name=str(loop.get("name")),
            restarts=int(loop.get("restarts") or 0),
            backing_off=bool(loop.get("backing_off")),
            last_error=loop.get("last_error"),
        )
        for loop in answer.get("loops") or []
        if isinstance(loop, dict)
    ]
    problems = []
    for check in ("store", "homeserver"):
        result = answer.get(check)
        if isinstance(result, dict) and not result.get("ok", True):
            problems.append(f"{check}: {result.get('error') or 'failing'}")
    set_aside = [t for t in answer.get("appservice_set_aside") or [] if isinstance(t, dict)]
    problems += status_report.set_aside_problems(
        (str(t.get("txn_id")), int(t.get("tries") or 0), t.get("reason")) for t in set_aside
    )
    gateway = GatewayInfo(
        name=str(answer.get("gateway", "?")),
        pid=endpoint.pid,
        updated_ms=int(time.time() * 1000),
        running=True,  # it answered
        loops=loops,
        access=answer.get("access") if isinstance(answer.get("access"), str) else None,
        devices=status_report.device_rows(answer.get("encryption")),
    )
    size = answer.get("store_size_bytes")
    return StatusReport(
        delegations,
        turns,
        gateway,
        api_url=endpoint.url,
        problems=problems,
        store_bytes=size if isinstance(size, int) else None,
    )
