"""PostgreSQL connection URLs as the different tools want them."""

from typing import Final
from urllib.parse import parse_qs, urlsplit, urlunsplit

from glucokit.errors import GlucokitError

# Supabase's pooler (Supavisor) in transaction mode listens on port 6543 and hands each transaction to any of its
# server connections, so a statement prepared on one is unknown to the next. Supabase's guide "Disabling Prepared
# statements" says to set psycopg's prepare_threshold to None there; direct connections and session mode (5432)
# keep psycopg's default (prepare a statement on its 5th execution).
TRANSACTION_POOLER_PORT: Final = 6543
PREPARE_THRESHOLD: Final = 5


def check_url(url: str) -> None:
    """Reject what is not a postgres:// or postgresql:// URL, before any tool sees it."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise GlucokitError(f"not a PostgreSQL URL (expected postgresql://...): {redact(url)}")


def prepare_threshold(url: str) -> int | None:
    """psycopg's ``prepare_threshold`` for a URL: None (never prepare) through a transaction-mode pooler."""
    try:
        port = urlsplit(url).port
    except ValueError:  # not a port: libpq says so when connecting
        port = None
    return None if port == TRANSACTION_POOLER_PORT else PREPARE_THRESHOLD


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def with_host(url: str) -> str:
    """A socket-only URL (``postgresql://user@/db?host=/dir``) with a placeholder host.

    The Supabase CLI and node-postgres need a host in the authority part; the
    ``host`` query parameter still decides where libpq-style clients connect.
    """
    parts = urlsplit(url)
    if parts.hostname or "host" not in parse_qs(parts.query):
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    netloc = f"{userinfo}@localhost{hostport}" if userinfo else f"localhost{hostport}"
    return urlunsplit(parts._replace(netloc=netloc))


def with_database(url: str, database: str) -> str:
    """The same server and credentials, another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/") or "postgres"
