"""A throwaway PostgreSQL server for the tests, on 127.0.0.1 and a socket in a temporary folder.

`start_server` runs Debian's `initdb` and `pg_ctl` (as the `postgres` user when the tests run
as root, since PostgreSQL refuses to run as root) and returns the server's admin URL; each test
then gets a database of its own from `create_database`. `CURATOR_TEST_PG_URL` names an existing
server (an admin URL ending in a database the user can connect to) instead of starting one.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

URL_ENV = "CURATOR_TEST_PG_URL"
USER = "curator"


class Unavailable(Exception):
    """No PostgreSQL server could be found or started; the message says why."""


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if candidates:
        return candidates[-1]
    raise Unavailable(f"PostgreSQL's {name} is not installed (Debian: apt-get install postgresql)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A PostgreSQL server the tests may create databases on."""

    admin_url: str
    _stop: list[list[str]] = field(default_factory=list)
    _run_as: str | None = None

    def _admin(self, statement: str) -> None:
        """One statement outside a transaction (as CREATE and DROP DATABASE need)."""
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(statement))
        finally:
            engine.dispose()

    def create_database(self) -> str:
        """A new, empty database; returns its psycopg URL."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        self._admin(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def drop_database(self, url: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')

    def stop(self) -> None:
        for command in self._stop:
            subprocess.run(command, capture_output=True, timeout=60, check=False)


def start_server(base: Path) -> Server:
    """Start a throwaway cluster under `base` (a folder the postgres user can reach, such as
    one made by tempfile.mkdtemp), or use the server `CURATOR_TEST_PG_URL` names."""
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise Unavailable("psycopg is not installed (pip install 'psycopg[binary]')") from exc
    if os.environ.get(URL_ENV):
        server = Server(admin_url=os.environ[URL_ENV])
        _check(server)
        return server
    initdb, pg_ctl = _tool("initdb"), _tool("pg_ctl")
    run_as: str | None = None
    prefix: list[str] = []
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError as exc:
            raise Unavailable("running as root, and there is no postgres user to run as") from exc
        run_as = "postgres"
        prefix = ["runuser", "-u", run_as, "--"]
    base.mkdir(parents=True, exist_ok=True)
    data, sockets, log = base / "data", base / "run", base / "server.log"
    sockets.mkdir(exist_ok=True)
    if run_as:
        for path in (base, sockets):
            shutil.chown(path, user=run_as)
    port = _free_port()
    init = subprocess.run(
        [*prefix, initdb, "-D", str(data), "-U", USER, "-A", "trust", "-E", "UTF8",
         "--no-sync", "--locale=C"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if init.returncode != 0:
        raise Unavailable(f"initdb failed: {init.stderr.strip().splitlines()[-1:]}")
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={sockets} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    start = subprocess.run(
        [*prefix, pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60",
         "start"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if start.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
        raise Unavailable(f"the PostgreSQL server did not start: {tail or start.stderr.strip()}")
    server = Server(
        admin_url=f"postgresql+psycopg://{USER}@127.0.0.1:{port}/postgres",
        _stop=[[*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"]],
        _run_as=run_as,
    )
    _check(server)
    return server


def _check(server: Server) -> None:
    engine = create_engine(server.admin_url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        server.stop()
        raise Unavailable(f"cannot connect to PostgreSQL at {server.admin_url}: {exc}") from exc
    finally:
        engine.dispose()
