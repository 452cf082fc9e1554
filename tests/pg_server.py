"""A throwaway PostgreSQL server for the tests: initdb into a temp dir, start it on a
free loopback port (as the ``postgres`` user when we are root: the server refuses
root), one fresh database per test, stopped and removed at the end."""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

TEST_DATABASE = "salon_tests"
USER = "salon"  # the server's superuser (trusted by no one: it has a password)
HINT = (
    "the PostgreSQL store tests need the PostgreSQL server binaries (initdb, postgres):"
    " run `make install` as root, or `apt-get install postgresql`, or set"
    " SALON_PG_BINDIR to their directory"
)


def find_bindir() -> Path | None:
    """Where initdb and postgres are: $SALON_PG_BINDIR, Debian's layout, or PATH."""
    if os.environ.get("SALON_PG_BINDIR"):
        return Path(os.environ["SALON_PG_BINDIR"])
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if found:
        newest = max(found, key=lambda p: int(Path(p).parts[-3].split(".")[0]))
        return Path(newest).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` to the end on a loop of its own (callers may be inside one)."""
    result: list[Any] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as e:
            error.append(e)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


@dataclass
class PgServer:
    """A running server: ``url(db)`` is a connection URL to one of its databases."""

    port: int
    password: str
    root: Path
    process: subprocess.Popen[bytes]

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str, database: str = "postgres") -> None:
        """Run one statement on one of the server's databases."""

        async def run() -> None:
            conn = await asyncpg.connect(self.url(database))
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        run_async(run())

    def fresh_url(self) -> str:
        """The URL of a new, empty schema of the ``salon_tests`` database: a schema is
        made in milliseconds (a database in a few hundred), and the whole server goes
        at the end of the session."""
        name = "t_" + secrets.token_hex(6)
        self.admin(f"CREATE SCHEMA {name}", database=TEST_DATABASE)
        # asyncpg passes a URL's other query parameters as server settings.
        return self.url(TEST_DATABASE) + f"?search_path={name}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # "fast" shutdown
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def start(timeout_s: float = 60.0) -> PgServer:
    """initdb and start a server; raises RuntimeError saying what is missing or failed."""
    bindir = find_bindir()
    if bindir is None or not (bindir / "initdb").exists() or not (bindir / "postgres").exists():
        raise RuntimeError(HINT)
    as_user: dict[str, Any] = {}
    root = Path(tempfile.mkdtemp(prefix="salon-pg-"))
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError(
                "running as root, and PostgreSQL refuses root: a `postgres` system user"
                " is needed to run the test server as (apt-get install postgresql makes one)"
            ) from None
        as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        os.chown(root, account.pw_uid, account.pw_gid)
    root.chmod(0o700)
    password = secrets.token_urlsafe(16)
    pwfile = root / "pw"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    if as_user:
        os.chown(pwfile, as_user["user"], as_user["group"])
    data = root / "data"
    initdb = subprocess.run(
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            USER,
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
            "--no-instructions",
        ],
        capture_output=True,
        cwd=root,
        **as_user,
    )
    if initdb.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {initdb.stderr.decode(errors='replace')}")
    pwfile.unlink()
    port = _free_port()
    log = root / "server.log"
    with open(log, "wb") as out:
        if as_user:
            os.chown(log, as_user["user"], as_user["group"])
        process = subprocess.Popen(
            [
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(root),
                # A throwaway server: durability is not what the tests are about.
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=root,
            **as_user,
        )
    server = PgServer(port, password, root, process)
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            text = log.read_text(errors="replace")[-2000:]
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"postgres exited with {process.returncode}:\n{text}")
        try:
            server.admin("SELECT 1")
            server.admin(f"CREATE DATABASE {TEST_DATABASE}")
            return server
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"postgres did not accept connections in {timeout_s}s") from e
            time.sleep(0.1)
