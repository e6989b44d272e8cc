"""PostgreSQL connection URLs as the different tools want them."""

from urllib.parse import parse_qs, urlsplit, urlunsplit

from glucokit.errors import GlucokitError


def check_url(url: str) -> None:
    """Reject what is not a postgres:// or postgresql:// URL, before any tool sees it."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise GlucokitError(f"not a PostgreSQL URL (expected postgresql://...): {redact(url)}")


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
