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

# The wording of model cards (glucokit.modelops.model_card), beside the disclaimer it quotes as the out-of-scope
# use. Placeholders in braces are filled from the card's facts.
MODEL_CARD_WORDING: Final[dict[Language, dict[str, str]]] = {
    "en": {
        "title": "Model card: glucose forecast, version {version}",
        "model": "Model family {algorithm}, inputs: {features}. Disclaimer version {disclaimer_version}.",
        "intended_use": "Intended use",
        "intended_use_text": (
            "Shows a person their own likely glucose trend for the next 5 to 60 minutes, with a band around it, "
            "for their information, next to their sensor readings."
        ),
        "out_of_scope": "Out-of-scope use",
        "data": "Training data",
        "data_window": "Readings from {start} to {end} ({days} days).",
        "data_windows": "Windows of 2 hours: {train} for training, {validation} for validation, {test} for the test.",
        "data_dropped": "Readings not used as exact readings: {dropped}.",
        "selection": "Candidates and why this one",
        "selection_scores": "Validation RMSE, mean over 5-60 min: {scores} mg/dL.",
        "selection_chosen": "Chosen: {champion}: {reason}.",
        "selection_fallback": "No candidate was trained: {reason}. A baseline (persistence or AR2) stands in.",
        "selection_unrecorded": (
            "Registered before model cards: the comparison of candidates is in the version's metadata.json only."
        ),
        "metrics": "Test metrics",
        "metrics_windows": "On the last 4/14 of the data ({windows} windows), per forecast horizon:",
        "metrics_header": "| minutes | RMSE mg/dL | MAE mg/dL | persistence RMSE mg/dL |",
        "metrics_spread": "RMSE over the 12 horizons: {low} to {high} mg/dL.",
        "metrics_headline": "RMSE at 30 and 60 min: {rmse_30} and {rmse_60} mg/dL.",
        "metrics_none": "No test metrics: a baseline is not tested on held-out data.",
        "coverage": "Band coverage",
        "coverage_nominal": "Share of readings inside the band, for a nominal {nominal}:",
        "coverage_header": "| minutes | all readings | below 70 mg/dL | 70-180 mg/dL | above 180 mg/dL |",
        "coverage_counts": "Forecasts scored per range in the test, all horizons together: {counts}.",
        "limits": "Known limits",
        "limit_person": (
            "Learnt from this person's data alone: a new sensor, a changed routine or a change in health make it "
            "less accurate until the next retraining."
        ),
        "limit_ranges": (
            "Readings below 70 or above 180 mg/dL are rare in most data, so the coverage in those ranges rests on "
            "few readings."
        ),
        "limit_gaps": "A forecast needs the last hour of readings without a gap over 15 minutes.",
        "limit_sensor": "Forecasts and bands stay within 40-400 mg/dL, what a sensor reads.",
        "limit_unmeasured": "No test readings in the range {range}: the band coverage there is not measured.",
        "range_below_70": "below 70 mg/dL",
        "range_70_180": "70-180 mg/dL",
        "range_above_180": "above 180 mg/dL",
        "limit_fallback": "A baseline with bands calibrated on little data: its coverage is rougher.",
        "not_measured": "not measured",
    },
    "de": {
        "title": "Modellkarte: Glukosevorhersage, Version {version}",
        "model": "Modellfamilie {algorithm}, Eingaben: {features}. Version des Hinweises {disclaimer_version}.",
        "intended_use": "Vorgesehene Verwendung",
        "intended_use_text": (
            "Zeigt einer Person den voraussichtlichen Verlauf ihres eigenen Glukosewerts für die nächsten 5 bis "
            "60 Minuten, mit einem Band darum, zu ihrer Information, neben ihren Sensorwerten."
        ),
        "out_of_scope": "Nicht vorgesehene Verwendung",
        "data": "Trainingsdaten",
        "data_window": "Messwerte vom {start} bis {end} ({days} Tage).",
        "data_windows": (
            "Fenster von 2 Stunden: {train} zum Training, {validation} zur Validierung, {test} für den Test."
        ),
        "data_dropped": "Nicht als genaue Messwerte verwendet: {dropped}.",
        "selection": "Kandidaten und warum dieser",
        "selection_scores": "Validierungs-RMSE, Mittel über 5-60 min: {scores} mg/dL.",
        "selection_chosen": "Gewählt: {champion}: {reason}.",
        "selection_fallback": (
            "Kein Kandidat wurde trainiert: {reason}. Eine Basislinie (Persistenz oder AR2) steht dafür ein."
        ),
        "selection_unrecorded": (
            "Vor den Modellkarten registriert: der Vergleich der Kandidaten steht nur in metadata.json der Version."
        ),
        "metrics": "Testmetriken",
        "metrics_windows": "Auf den letzten 4/14 der Daten ({windows} Fenster), je Vorhersagehorizont:",
        "metrics_header": "| Minuten | RMSE mg/dL | MAE mg/dL | RMSE der Persistenz mg/dL |",
        "metrics_spread": "RMSE über die 12 Horizonte: {low} bis {high} mg/dL.",
        "metrics_headline": "RMSE nach 30 und 60 min: {rmse_30} und {rmse_60} mg/dL.",
        "metrics_none": "Keine Testmetriken: eine Basislinie wird nicht auf zurückgehaltenen Daten getestet.",
        "coverage": "Abdeckung des Bands",
        "coverage_nominal": "Anteil der Messwerte im Band, bei nominell {nominal}:",
        "coverage_header": "| Minuten | alle Messwerte | unter 70 mg/dL | 70-180 mg/dL | über 180 mg/dL |",
        "coverage_counts": "Bewertete Vorhersagen je Bereich im Test, alle Horizonte zusammen: {counts}.",
        "limits": "Bekannte Grenzen",
        "limit_person": (
            "Allein aus den Daten dieser Person gelernt: ein neuer Sensor, ein geänderter Alltag oder eine "
            "Veränderung der Gesundheit machen es bis zum nächsten Training ungenauer."
        ),
        "limit_ranges": (
            "Messwerte unter 70 oder über 180 mg/dL sind in den meisten Daten selten, die Abdeckung in diesen "
            "Bereichen beruht daher auf wenigen Messwerten."
        ),
        "limit_gaps": "Eine Vorhersage braucht die letzte Stunde an Messwerten ohne Lücke über 15 Minuten.",
        "limit_sensor": "Vorhersagen und Bänder bleiben in 40-400 mg/dL, dem Messbereich eines Sensors.",
        "limit_unmeasured": "Keine Testmesswerte im Bereich {range}: die Abdeckung des Bands ist dort nicht gemessen.",
        "range_below_70": "unter 70 mg/dL",
        "range_70_180": "70-180 mg/dL",
        "range_above_180": "über 180 mg/dL",
        "limit_fallback": "Eine Basislinie mit auf wenigen Daten kalibrierten Bändern: ihre Abdeckung ist grober.",
        "not_measured": "nicht gemessen",
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
