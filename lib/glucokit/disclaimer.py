"""The disclaimer shown with every forecast: the one place its text and version live.

glucokit's forecasts are informational trend estimates. They are not a medical
device and never give diagnosis, dosing or triage advice.
"""

from typing import Final

# Stored with every prediction (prediction.disclaimer_version); bump it whenever
# the text changes so that each forecast records the wording it was shown with.
DISCLAIMER_VERSION: Final = "v1"

DISCLAIMER: Final[dict[str, str]] = {
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
}
