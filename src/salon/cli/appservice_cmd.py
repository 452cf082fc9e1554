"""`salon appservice register`: the registration file for running Salon as an
application service on an existing homeserver (``homeserver.mode: appservice``).
`salon appservice retry`: parked transactions set aside after failing, due again.

It writes the registration (both tokens, owner-only) and, beside it, an env file
with the two token variables the config names; the tokens are never printed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from salon._exceptions import ConfigError, SalonError
from salon.cli.options import _fail
from salon.cli.output import console
from salon.config import load_config

app = typer.Typer(help="Run Salon as a Matrix application service.", no_args_is_help=True)


@app.command("register")
def register(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="The salon.yaml.", show_default=False)
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the registration.")
    ] = Path("registration.yaml"),
    force: Annotated[
        bool,
        typer.Option("--force", help="Overwrite an existing registration (new tokens)."),
    ] = False,
) -> None:
    """Write an appservice registration for the homeserver, with fresh random tokens.

    The user namespace (exclusive) is the agents' naming pattern, the sender the
    router; the homeserver must load the file (Synapse: app_service_config_files)
    and be restarted. The tokens go to <output>.env as NAME=value lines.
    """
    # Imported here: `salon --help` need not load YAML writing and the devserver.
    from salon.devserver.appservice import write_registration

    try:
        cfg = load_config(config)
    except ConfigError as e:
        raise _fail(f"{config}: {e}") from None
    if cfg.homeserver is None:
        raise _fail(f"{config}: homeserver: required (url, server_name)")
    env_path = output.with_name(output.name + ".env")
    if not force and (output.exists() or env_path.exists()):
        raise _fail(
            f"{output} exists: its tokens are in use; pass --force to replace them "
            "(then update the homeserver and the gateway's environment)"
        )
    document = write_registration(cfg, output, env_path)
    mode = cfg.homeserver.mode
    console.print(
        f"Wrote {output} (appservice {document['id']!r}, sender "
        f"@{document['sender_localpart']}:{cfg.homeserver.server_name}, url {document['url']})"
        f" and {env_path} (the tokens; owner-only).",
        highlight=False,
        markup=False,
    )
    console.print(
        "Next: add the registration to the homeserver (Synapse: app_service_config_files)"
        " and restart it; start the gateway with the tokens in its environment, e.g.\n"
        f"  set -a; . {env_path}; set +a; salon run -c {config}",
        highlight=False,
        markup=False,
    )
    console.print(
        "For encrypted rooms, Synapse also needs in its homeserver.yaml:\n"
        "  experimental_features:\n"
        "    msc2409_to_device_messages_enabled: true\n"
        "    msc3202_transaction_extensions: true",
        highlight=False,
        markup=False,
    )
    if mode != "appservice":
        console.print(
            f"{config} still says homeserver.mode: {mode}; set it to appservice.",
            highlight=False,
            markup=False,
        )


@app.command("retry")
def retry(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="The salon.yaml.", show_default=False)
    ],
    txn_id: Annotated[
        str | None,
        typer.Argument(help="The one transaction to retry (default: every one set aside)."),
    ] = None,
) -> None:
    """Make parked transactions that were set aside due again (`salon status` lists them).

    A transaction pushed while the gateway started, whose admission failed three
    times, is set aside so that the gateway can start. Once the cause is fixed, this
    counts its tries from 0: the next start admits it, or a running gateway within
    about a minute. A store not migrated yet has none.
    """
    try:
        cfg = load_config(config)
    except ConfigError as e:
        raise _fail(f"{config}: {e}") from None
    try:
        ids = asyncio.run(_retry(cfg.store.url, txn_id))
    except SalonError as e:
        raise _fail(str(e)) from None
    if not ids and txn_id:
        raise _fail(f"no such transaction set aside: {txn_id}", 1)
    if not ids:
        console.print("No transaction is set aside.", highlight=False, markup=False)
    for one in ids:
        console.print(f"due again: {one}", highlight=False, markup=False)


async def _retry(url: str, txn_id: str | None) -> list[str]:
    from salon.store import Store

    store = await Store.open(url, pool_size=1)
    try:
        txns = store.appservice_txns
        ids = [p.txn_id for p in await txns.set_aside() if txn_id in (None, p.txn_id)]
        await txns.retry(txn_id)
        return ids
    finally:
        await store.close()
