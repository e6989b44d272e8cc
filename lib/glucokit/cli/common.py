"""What every command group shares: the exit statuses, the parser class and the person to act as.

The exit table lives here rather than in main.py because every group's handlers and help texts name its statuses,
and main.py imports the groups.
"""

from __future__ import annotations

import argparse
from enum import IntEnum
from typing import NoReturn
from uuid import UUID

from glucokit.db.queries import query
from glucokit.db.sessions import Connection
from glucokit.errors import GlucokitError, NotFound


class Exit(IntEnum):
    """The exit status of every glucokit command; ``EXIT_MEANINGS`` says what each one means."""

    OK = 0
    FAILED = 1
    USAGE = 2
    NOTHING = 3
    UNREACHABLE = 4
    NOT_FOUND = 5


EXIT_MEANINGS = {
    Exit.OK: "done",
    Exit.FAILED: "failed: the command found a problem (a lint, drift, a failed person) or could not do what was asked",
    Exit.USAGE: "bad input: an unknown option or a missing argument, a malformed value (a person id that is not"
    " a UUID), a file that cannot be read or written",
    Exit.NOTHING: "done, with nothing to show or not everything done (no versions, entries rejected, continue)",
    Exit.UNREACHABLE: "the database cannot be reached (not running, refused, or no answer in time)",
    Exit.NOT_FOUND: "not found or not allowed: an unknown or someone else's person, an unknown experiment,"
    " no consent for the purpose",
}


class BadArgument(GlucokitError):
    """An argument the parser accepted that the command cannot take (exit 2, like the parser's own errors)."""


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error on one line: the usage itself is one ``--help`` away."""

    def error(self, message: str) -> NoReturn:
        self.exit(Exit.USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def person_owner(conn: Connection, person_id: UUID, user: UUID | None) -> UUID:
    """The user to act as: ``--user``, or else the person's owner (the CLI holds the database's credentials)."""
    if user is not None:
        return user
    row = conn.execute(query("person_owner"), {"person_id": person_id}).fetchone()
    conn.commit()
    if row is None:
        raise NotFound(f"person {person_id} does not exist")
    owner = row[0]
    assert isinstance(owner, UUID)
    return owner
