"""`salon status` lists the parked appservice transactions set aside, on both store
backends, and `salon appservice retry` makes them due again."""

from __future__ import annotations

import asyncio
from pathlib import Path

from typer.testing import CliRunner

from salon.cli.main import app
from salon.store import Store

runner = CliRunner()


def _set_aside(url: str) -> None:
    async def go() -> None:
        store = await Store.open(url)
        try:
            await store.appservice_txns.park("k1", 7, "{}")
            await store.appservice_txns.park("k2", 8, "{}")
            assert await store.appservice_txns.failed("k1", "ValueError: poisoned", 1)
        finally:
            await store.close()

    asyncio.run(go())


def _due(url: str) -> list[tuple[str, int]]:
    async def go() -> list[tuple[str, int]]:
        store = await Store.open(url)
        try:
            return [(p.txn_id, p.tries) for p in await store.appservice_txns.parked()]
        finally:
            await store.close()

    return asyncio.run(go())


def test_status_shows_a_set_aside_transaction_and_retry_makes_it_due(
    tmp_path: Path, store_url: str
) -> None:
    _set_aside(store_url)
    config = tmp_path / "salon.yaml"
    config.write_text(
        f"agents: {{echo: {{backend: {{type: echo}}}}}}\nstore: {{url: '{store_url}'}}\n"
        f"data_dir: {tmp_path}\n"
    )
    result = runner.invoke(app, ["status", "-c", str(config)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "appservice transaction k1 set aside after 1 failed tries" in text
    assert "ValueError: poisoned" in text and "k2" not in text

    result = runner.invoke(app, ["appservice", "retry", "-c", str(config), "nosuch"])
    assert result.exit_code == 1 and "no such transaction set aside" in result.output
    result = runner.invoke(app, ["appservice", "retry", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "due again: k1" in result.stdout
    assert _due(store_url) == [("k1", 0), ("k2", 0)]
    result = runner.invoke(app, ["status", "-c", str(config)])
    assert "set aside" not in result.stdout
    result = runner.invoke(app, ["appservice", "retry", "-c", str(config)])
    assert result.exit_code == 0 and "No transaction is set aside" in result.stdout
