"""What PostgreSQL's text (and jsonb) can hold: every Unicode character but NUL, and no half of a UTF-16 pair.

JSON can escape both (``\\u0000``, a lone ``\\ud800``) and Python keeps them in a str, so text from a client is
checked here before it reaches the database, where it would fail as a server error.
"""

from __future__ import annotations

import re
from typing import Final

_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def unstorable(text: str) -> str | None:
    """Why the database cannot store ``text``, or None when it can."""
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which text in the database cannot hold"
    if not text.isascii() and _SURROGATE.search(text):
        return "contains an unpaired surrogate (\\ud800-\\udfff), which is not a character"
    return None
