"""Errors meant for the person at the terminal."""


class GlucokitError(Exception):
    """A failure with a one-line, specific message; the CLI prints it without a traceback."""


class NotFound(GlucokitError):
    """What was named does not exist or is not the caller's: row-level security tells the two apart to no one."""


class DatabaseUnreachable(GlucokitError):
    """No connection to the database: it is not running, refuses the connection or does not answer in time."""
