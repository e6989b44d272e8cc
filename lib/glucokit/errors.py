"""Errors meant for the person at the terminal."""


class GlucokitError(Exception):
    """A failure with a one-line, specific message; the CLI prints it without a traceback."""
