"""The disclaimer shown with every forecast: the one place its text and versions live.

glucokit's forecasts are informational trend estimates. They are not a medical
device and never give diagnosis, dosing or triage advice.

Every prediction stores the version of the disclaimer it was shown with
(prediction.disclaimer_version), so earlier versions stay here when the text
changes: add a new version, never edit a published one.
"""

from typing import Final, Literal, get_args

Language = Literal["en", "de"]
LANGUAGES: Final[tuple[Language, ...]] = get_args(Language)

DISCLAIMERS: Final[dict[str, dict[Language, str]]] = {
    "v1": {
        "en": (
            "Informational only. This forecast is an estimate of your glucose trend, not a medical device. "
            "It does not diagnose, recommend doses or treatments, or assess urgency. "
            "Talk to your care team about decisions on your health."
        ),
        "de": (
            "Nur zur Information. Diese Vorhersage schätzt den Verlauf Ihres Glukosewerts und ist kein "
            "Medizinprodukt. Sie stellt keine Diagnose, empfiehlt keine Dosen oder Behandlungen und bewertet "
            "keine Dringlichkeit. Besprechen Sie Entscheidungen über Ihre Gesundheit mit Ihrem Behandlungsteam."
        ),
    },
}

# The version new forecasts are written with.
DISCLAIMER_VERSION: Final = "v1"
DISCLAIMER: Final = DISCLAIMERS[DISCLAIMER_VERSION]


def disclaimer_text(version: str, language: Language) -> str:
    """The text of a disclaimer version in one of LANGUAGES."""
    if version not in DISCLAIMERS:
        raise ValueError(f"unknown disclaimer version {version!r} (known: {', '.join(DISCLAIMERS)})")
    if language not in LANGUAGES:
        raise ValueError(f"the disclaimer is written in {', '.join(LANGUAGES)}, not {language!r}")
    return DISCLAIMERS[version][language]
