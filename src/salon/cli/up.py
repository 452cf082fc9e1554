"""`salon up`: an embedded Synapse, the operator account, and the gateway."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import Iterable
from pathlib import Path

import aiohttp
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from salon._exceptions import DevServerError
from salon.api.a2a import CARD_PATH as A2A_CARD
from salon.app.gateway import Gateway, GatewayState, ReloadSource, on_stop_signals
from salon.cli import api_file
from salon.cli.api_file import ApiFile
from salon.cli.operator import OperatorClient
from salon.cli.operator_file import OperatorFile, previous_device
from salon.cli.up_appservice import local_appservice
from salon.config import load_config
from salon.config.models import ApiConfig, AppserviceConfig, HomeserverConfig, SalonConfig
from salon.devserver.synapse import (
    SynapseLayout,
    SynapseProcess,
    SynapseSettings,
    free_port,
    write_synapse_config,
)
from salon.ids import AgentId, UserId
from salon.matrix.api import SESSION_TIMEOUT
from salon.matrix.registration import Credentials, derive_password, register_or_login
from salon.procs import pid_alive
from salon.store.db import ensure_private_dir

# The HTTP API of `salon up`: loopback only, this port or the next free one.
DEFAULT_API_PORT = 8765
API_PORT_TRIES = 100
# The names the API's config gives its token and the operator's access token. `salon
# up` hands the values to the gateway directly (Gateway(secrets=…)), never through
# its environment, which backends and their child processes would inherit.
API_TOKEN_ENV = "SALON_UP_API_TOKEN"
OPERATOR_TOKEN_ENV = "SALON_UP_OPERATOR_TOKEN"


def local_config(
    config: SalonConfig,
    layout: SynapseLayout,
    data_dir: Path,
    api: ApiConfig | None = None,
    operator: str | None = None,
    appservice: AppserviceConfig | None = None,
) -> SalonConfig:
    """The demo config pointed at the embedded homeserver and the data dir's store,
    with ``api`` as its HTTP API (None: the config's own) and ``operator`` among the
    admins (the running config only; the file is left as it is); with ``appservice``
    the gateway runs as the homeserver's application service."""
    homeserver = HomeserverConfig(
        url=layout.base_url,
        server_name=layout.server_name,
        registration_shared_secret=layout.registration_shared_secret,
        mode="appservice" if appservice else "client",
        appservice=appservice,
    )
    # The data dir's store, with the file's other store settings (retention…).
    store = config.store.model_copy(
        update={"url": f"sqlite:///{(data_dir / 'salon.db').resolve()}"}
    )
    update: dict[str, object] = {
        "homeserver": homeserver,
        "store": store,
        "data_dir": str(data_dir.resolve()),
    }
    if api is not None:
        update["api"] = api
    admins = config.access.admins
    if operator is not None and operator not in admins:
        # Access fails closed (admins only by default): the person at the keyboard may.
        update["access"] = config.access.model_copy(update={"admins": [*admins, operator]})
    return config.model_copy(update=update)


def can_listen(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``host:port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp does
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def choose_api_port(requested: int | None, homeserver_port: int | None = None) -> int:
    """The API's port: ``requested`` (0: any free one, chosen when listening), else
    ``DEFAULT_API_PORT`` (the server takes the next free one if it is taken: see
    :func:`api_config`), never the homeserver's.

    Raises:
        DevServerError: the requested port is taken (nothing was started).
    """
    if requested is not None:
        if requested and requested == homeserver_port:
            raise DevServerError(
                f"--api-port {requested} is the homeserver's port; give another one"
            )
        if requested and not can_listen(requested):
            raise DevServerError(
                f"--api-port {requested} is in use: something already listens on"
                f" 127.0.0.1:{requested}; leave the option out (8765 or the next free port)"
                " or give --api-port 0 (any free port)"
            )
        return requested
    # No probe for a free port here: two `salon up` started together would both find
    # the same one. The server binds and moves on to the next port itself.
    return DEFAULT_API_PORT + 1 if homeserver_port == DEFAULT_API_PORT else DEFAULT_API_PORT


def api_config(port: int, operator_user_id: str, *, tries: int = API_PORT_TRIES) -> ApiConfig:
    """The API section `salon up` runs with: ``port`` or, when taken, one of the next
    ``tries`` (its tokens under names `salon up` hands the gateway the values of)."""
    return ApiConfig(
        listen=f"127.0.0.1:{port}",
        port_tries=tries if port else 1,
        token_env=API_TOKEN_ENV,
        operator_user_id=operator_user_id,
        operator_token_env=OPERATOR_TOKEN_ENV,
        # The demo shows every agent as an A2A agent at /a2a/<id> (token-protected).
        a2a=True,
    )


async def register_operator(
    layout: SynapseLayout, localpart: str, device_id: str | None = None
) -> Credentials:
    """Create (or log in) the operator account for the person at the keyboard; on
    ``device_id`` (the last run's) when given, so its encryption device stays one."""
    async with aiohttp.ClientSession(timeout=SESSION_TIMEOUT) as session:
        return await register_or_login(
            session,
            layout.base_url,
            layout.registration_shared_secret,
            localpart,
            layout.server_name,
            admin=True,
            displayname="Operator",
            device_id=device_id,
        )


def operator_file(
    config: SalonConfig, layout: SynapseLayout, creds: Credentials, state: GatewayState
) -> OperatorFile:
    """What the CLI needs to act as the operator."""
    server = layout.server_name
    return OperatorFile(
        homeserver_url=layout.base_url,
        server_name=server,
        user_id=creds.user_id,
        password=derive_password(layout.registration_shared_secret, creds.user_id),
        access_token=creds.access_token,
        device_id=creds.device_id,
        space_alias=f"#{config.space.alias}:{server}",
        lobby_alias=f"#{config.naming.lobby_alias}:{server}",
        agent_rooms={
            agent_id: f"#{config.agent_room_alias_localpart(agent_id)}:{server}"
            for agent_id in state.agent_apis
        },
    )


async def join_operator(op: OperatorFile) -> None:
    """Accept the operator's invitations so the rooms show up in a client at once."""
    async with aiohttp.ClientSession(timeout=SESSION_TIMEOUT) as session:
        client = OperatorClient(op, session)
        for alias in (op.space_alias, op.lobby_alias, *op.agent_rooms.values()):
            with contextlib.suppress(Exception):
                await client.room(alias)


def example_agent(config: SalonConfig, hosted: Iterable[str]) -> str:
    """The agent the start-up hints use: ``default_agent``, else the first one configured."""
    hosted = list(hosted)
    if config.default_agent is not None and config.default_agent in hosted:
        return config.default_agent
    return next((a for a in config.agents if a in hosted), hosted[0] if hosted else "echo")


def print_ready(
    console: Console,
    op: OperatorFile,
    data_dir: Path,
    state: GatewayState,
    config: SalonConfig | None = None,
    api: ApiFile | None = None,
) -> None:
    """Tell the person what is running and how to talk to it (and its HTTP API)."""
    table = Table(show_header=True, header_style="bold", box=None)
    table.add_column("agent")
    table.add_column("room")
    table.add_column("user")
    order = list(config.agents) if config is not None else sorted(op.agent_rooms)
    agents = [a for a in order if a in op.agent_rooms]
    agents += [a for a in op.agent_rooms if a not in agents]
    for agent_id in agents:
        table.add_row(agent_id, op.agent_rooms[agent_id], state.agent_users[AgentId(agent_id)])
    console.print(table)
    first = example_agent(config, agents) if config is not None else agents[0] if agents else "echo"
    dd = "" if data_dir == Path("salon-data") else f" --data-dir {data_dir}"
    space = "" if state.topology.space_id else "  [yellow](Space unavailable)[/]"
    lines = [
        f"[bold]Salon is running[/] on {op.homeserver_url}{space}",
        "",
        "Talk to the agents from another terminal:",
        f"  .venv/bin/salon who{dd}",
        f'  .venv/bin/salon send{dd} --to {first} "hello"',
        f'  .venv/bin/salon send{dd} "hello everyone"',
        f"  .venv/bin/salon read{dd} --room {first}",
        f"  .venv/bin/salon logs{dd} -f",
    ]
    if api is not None:
        token_file = data_dir / api_file.FILENAME
        lines += [
            "",
            f"HTTP API on {escape(api.url)} (bearer token in {escape(str(token_file))}):",
            f'  curl -H "Authorization: Bearer $(jq -r .token {escape(str(token_file))})"'
            f" {escape(api.url)}/api/v1/agents",
        ]
        if config is not None and config.a2a_served(first):
            lines.append(f"A2A agent card (same token): {escape(api.url)}/a2a/{first}{A2A_CARD}")
    console.print(Panel.fit("\n".join(lines), title="salon up"))
    # Outside the panel so nothing wraps and the password copies cleanly.
    if api is not None and api.dashboard_url:  # one line: it copies whole
        console.print(f"Dashboard (the link logs in once): {api.dashboard_url}", soft_wrap=True)
    console.print("Or log in with Element (or any Matrix client):")
    console.print(f"  homeserver  {op.homeserver_url}", highlight=False)
    console.print(f"  user        {op.user_id}", highlight=False)
    console.print(f"  password    {op.password}", highlight=False)
    console.print(
        f"Credentials are in {data_dir / 'operator.json'}."
        f" Stop with Ctrl-C (or `salon stop{dd}` from another terminal)."
    )


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def check_port(data_dir: Path, port: int) -> None:
    """Fail early, before anything starts, if the homeserver's port is taken.

    A Synapse left behind by a crashed `salon up` on this data dir is not an
    obstacle: starting replaces it.

    Raises:
        DevServerError: the port is in use; the message proposes a free one.
    """
    pid_file = data_dir / "synapse" / "homeserver.pid"
    with contextlib.suppress(OSError, ValueError):
        if pid_alive(int(pid_file.read_text(encoding="ascii").strip())):
            return
    if port_in_use(port):
        raise DevServerError(
            f"port {port} is in use: something already listens on http://127.0.0.1:{port}"
            f" (another homeserver, or Salon from another data dir?); try --port {free_port()}"
        )


async def up(
    config: SalonConfig,
    data_dir: Path,
    *,
    port: int | None,
    operator: str,
    console: Console,
    stop: asyncio.Event | None = None,
    restart_command: str = "salon up",
    api_port: int | None = None,
    config_path: Path | None = None,
    mode: str = "client",
) -> None:
    """Run Synapse and the gateway until Ctrl-C / SIGTERM; both stop cleanly.

    ``mode``: ``client`` (each agent logs in and syncs) or ``appservice`` (Synapse
    loads a registration written for the config; see :mod:`salon.cli.up_appservice`).

    The gateway serves its HTTP API on loopback, port ``api_port`` (None: 8765
    or the next free one; 0: any), with a fresh token; ``<data_dir>/api.json``
    says where and holds the token while it runs. ``restart_command`` is how the
    person started this (with their flags), for the "start again" hint.

    Raises:
        DevServerError: a port is taken (nothing was started) or Synapse failed.
    """
    stop = stop or asyncio.Event()
    # Tokens, the operator's password and every message live under it: owner only.
    ensure_private_dir(data_dir)
    if port is not None:
        check_port(data_dir, port)
    listen_port = choose_api_port(api_port, port)
    api_token = secrets.token_urlsafe(32)
    gateway: Gateway | None = None
    # Ctrl-C / SIGTERM: the first lets running replies finish (shutdown.drain_s), a
    # second stops the gateway at once; Synapse stops after it either way.
    on_stop_signals(stop, lambda: gateway.stop_now() if gateway is not None else None)
    local_as = None
    with console.status("Writing the homeserver config…"):
        files: tuple[Path, ...] = ()
        if mode == "appservice":
            local_as = local_appservice(config, data_dir, SynapseSettings(data_dir).server_name)
            files = (local_as.registration,)
        layout = write_synapse_config(
            SynapseSettings(data_dir=data_dir, port=port, app_service_config_files=files)
        )
    as_settings = local_as.settings if local_as else None
    synapse = SynapseProcess(layout)
    started = False
    try:
        with console.status(f"Starting Synapse on {layout.base_url}…"):
            await asyncio.to_thread(synapse.start)
        started = True
        console.print(f"[green]✓[/] Synapse is up on {layout.base_url} (logs: {layout.log_file})")
        with console.status("Registering the operator account…"):
            device = previous_device(data_dir, operator)
            creds = await register_operator(layout, operator, device)
        console.print(f"[green]✓[/] Operator {creds.user_id}")
        # An explicit --api-port is that port or nothing; the default moves on if taken.
        tries = API_PORT_TRIES if api_port is None else 1
        api_settings = api_config(listen_port, creds.user_id, tries=tries)
        cfg = local_config(config, layout, data_dir, api_settings, creds.user_id, as_settings)

        def reload_config() -> SalonConfig:
            # The file again, pointed at the same homeserver, store and API as at start.
            assert config_path is not None
            return local_config(
                load_config(config_path),
                layout,
                data_dir,
                api_settings,
                creds.user_id,
                as_settings,
            )

        gateway = Gateway(
            cfg,
            invite=[UserId(creds.user_id)],
            reload=ReloadSource(
                reload_config if config_path is not None else None, watch=config_path
            ),
            secrets={
                API_TOKEN_ENV: api_token,
                OPERATOR_TOKEN_ENV: creds.access_token,
                **(local_as.secrets if local_as else {}),
            },
        )
        with console.status(
            f"Starting the gateway: {len(cfg.agents)} agents, Space, lobby and agent rooms…"
        ):
            state = await gateway.start()
        op = operator_file(cfg, layout, creds, state)
        op.save(data_dir)
        api = None
        if gateway.api is not None:  # written once it listens: the URL has the real port
            url = api_file.client_url(gateway.api.config.host, gateway.api.port)
            login = gateway.api.login_link(url)
            api = ApiFile(url=url, token=api_token, pid=os.getpid(), dashboard_url=login)
            api.save(data_dir)
        with console.status("Joining the operator to the Space and rooms…"):
            await join_operator(op)
        console.print("[green]✓[/] Gateway ready")
        print_ready(console, op, data_dir, state, cfg, api)
        await stop.wait()
        drain_s = cfg.shutdown.drain_s
        console.print(
            f"Stopping… (running replies get up to {drain_s:g} s; Ctrl-C again stops at once)"
            if drain_s
            else "Stopping…"
        )
        await gateway.shutdown()
    finally:
        api_file.remove(data_dir, pid=os.getpid())
        if gateway is not None:
            await gateway.stop()
        await asyncio.to_thread(synapse.stop)  # also reaps a Synapse that failed to start
        if started:
            console.print(
                "[green]✓[/] Stopped Salon and Synapse."
                f" Start again with `{escape(restart_command)}`."
            )
