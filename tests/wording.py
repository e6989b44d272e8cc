"""The wording no user-facing text may use: urgency and triage, dosing and treatment instructions, diagnostic claims.

glucokit is informational only (not a medical device), so its own text never
tells anyone what to do about their glucose. The disclaimer is the one text
that names these things, to say what glucokit does not do: the scan removes
every published disclaimer text before it looks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from glucokit.disclaimer import DISCLAIMERS

# Word beginnings, English and German, matched case-insensitively at the start of a word.
FORBIDDEN_STEMS = (
    *("alert", "alarm", "warn", "danger", "urgen", "emergenc", "immediate", "critical", "call "),
    *("dose", "dosing", "bolus", "inject", "take", "eat", "treat", "correct"),
    *("diagnos", "hypo", "hyper", "too low", "too high", "target", "goal"),
    *("gefahr", "gefährlich", "dringend", "dringlich", "notfall", "sofort", "kritisch"),
    *("dosis", "dosen", "dosier", "spritz", "nehmen", "einnehm", "essen", "behandl", "korrig"),
    *("unterzucker", "überzucker", "ziel"),
)


# Names that are not wording about glucose: the Supabase database linter's level names.
ALLOWED = re.compile(r"\b(WARN|ERROR|INFO)\b")


def without_disclaimers(text: str) -> str:
    """``text`` with every published disclaimer text taken out (compared with whitespace collapsed)."""
    flat = " ".join(text.split())
    for languages in DISCLAIMERS.values():
        for disclaimer in languages.values():
            flat = " ".join(flat.replace(" ".join(disclaimer.split()), " ").split())
    return flat


def forbidden_words(text: str) -> list[str]:
    """The forbidden stems that begin a word of ``text`` outside the disclaimer."""
    own = ALLOWED.sub(" ", without_disclaimers(text))
    return [stem for stem in FORBIDDEN_STEMS if re.search(rf"\b{re.escape(stem)}", own, re.IGNORECASE)]


# Members of JSON documents (API responses, the OpenAPI document) that hold prose; others hold names and
# data (an OpenAPI "title" is a field name, such as "Target At", or an HTTP status phrase).
PROSE = {"description", "summary", "detail", "example", "examples", "text", "comment", "stage_reason"}


def prose(node: Any, key: str = "") -> Iterator[str]:
    """The strings of a JSON document held by PROSE members, at any depth."""
    if isinstance(node, dict):
        for name, value in node.items():
            yield from prose(value, name)
    elif isinstance(node, list):
        for value in node:
            yield from prose(value, key)
    elif isinstance(node, str) and key in PROSE:
        yield node
