"""No user-facing text of glucokit uses urgency, triage, dosing or diagnostic wording (see wording.py).

Scanned here: the disclaimer's own neighbours, every CLI help text, and the
API's OpenAPI document (titles, descriptions, summaries, examples). The chart's
labels and rendered text are scanned in test_chart.py, the demo's output in
test_cli.py and the API's responses in test_api.py.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from glucokit.api import ApiSettings, TokenVerifier, create_app
from glucokit.cli.main import build_parser
from glucokit.disclaimer import DISCLAIMERS
from wording import forbidden_words, prose, without_disclaimers


def test_the_scan_finds_instructions_and_leaves_plain_words() -> None:
    assert forbidden_words("Take a dose now") == ["dose", "take"]
    assert forbidden_words("Warnung: Notfall") == ["warn", "notfall"]
    assert forbidden_words("Great forecast, Messwerte") == []
    for languages in DISCLAIMERS.values():
        for disclaimer in languages.values():
            assert forbidden_words(disclaimer) == []  # taken out before the scan
            assert forbidden_words(f"{disclaimer} Call your doctor.") == ["call "]
            assert without_disclaimers(f"before {disclaimer} after") == "before after"


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _parsers(child)


def test_cli_help_is_neutral() -> None:
    helps = {parser.prog: parser.format_help() for parser in _parsers(build_parser())}
    assert len(helps) > 20
    assert {prog: forbidden_words(text) for prog, text in helps.items() if forbidden_words(text)} == {}


@pytest.mark.parametrize("language", ["en", "de"])
def test_the_api_documentation_is_neutral(language: str) -> None:
    app = create_app(ApiSettings("postgresql://unused", TokenVerifier(secret="unused-secret-of-32-characters!!")))
    document = app.openapi()
    texts = [document["info"]["title"], document["info"]["description"], *prose(document)]
    assert len(texts) > 50
    assert [text for text in texts if forbidden_words(text)] == []
    assert language in DISCLAIMERS["v1"]
