"""Units and codes: the one place that says which observations glucokit keeps and in which unit.

Glucose is stored in mg/dL everywhere; a reading that arrived in mmol/L keeps
its original value and unit beside the converted one.
"""

from dataclasses import dataclass
from decimal import Decimal
from typing import Final

MG_DL: Final = "mg/dL"
MMOL_L: Final = "mmol/L"
GRAM: Final = "g"
INSULIN_UNIT: Final = "[iU]"  # UCUM's international unit; "U" would be UCUM's enzyme unit (µmol/min)

LOINC: Final = "http://loinc.org"
SNOMED: Final = "http://snomed.info/sct"
UCUM: Final = "http://unitsofmeasure.org"

# mmol/L -> mg/dL for glucose (molar mass 180.16 g/mol).
MG_DL_PER_MMOL_L: Final = Decimal("18.016")

# What a sensor or a laboratory can report for a living person, in mg/dL. The
# same bounds are the observation_glucose_in_mg_dl check of the schema.
GLUCOSE_RANGE_MG_DL: Final = (Decimal(10), Decimal(1000))

# What a CGM sensor reports, in mg/dL: Dexcom G6/G7 and FreeStyle Libre show
# readings outside 40-400 as LOW or HIGH instead of a number. Forecast values
# and their bands are held inside it: a forecast beyond what the sensor can
# read could never be checked against a reading.
SENSOR_RANGE_MG_DL: Final = (Decimal(40), Decimal(400))

# The consensus target range, mg/dL: below 70 is a low, above 180 a high
# (Battelino et al., "Clinical targets for continuous glucose monitoring data
# interpretation", Diabetes Care 2019;42:1593-1603).
TARGET_RANGE_MG_DL: Final = (Decimal(70), Decimal(180))

# LOINC codes of glucose readings and the unit each is reported in.
GLUCOSE_CODES: Final[dict[str, str]] = {
    "99504-3": MG_DL,  # Glucose [Mass/volume] in Interstitial fluid (CGM)
    "105272-9": MMOL_L,  # Glucose [Moles/volume] in Interstitial fluid (CGM)
    "14745-4": MMOL_L,  # Glucose [Moles/volume] in Body fluid
    "15074-8": MMOL_L,  # Glucose [Moles/volume] in Blood
    "2339-0": MG_DL,  # Glucose [Mass/volume] in Blood
}
CGM_CODE: Final = "99504-3"
CGM_CODES: Final = frozenset({"99504-3", "105272-9"})
CARBOHYDRATE_CODE: Final = "9059-7"  # LOINC: Carbohydrate intake Estimated
# SNOMED CT 67866001 "Insulin (substance)": insulin delivered, in international
# units. FHIR's own home for insulin is MedicationAdministration; glucokit keeps
# delivered insulin as an observation because the forecasting models read it
# beside glucose and carbohydrate intake.
INSULIN_CODE: Final = "67866001"


@dataclass(frozen=True)
class ObservationKind:
    """A code glucokit keeps: its display name, the unit it is stored in and the values that make sense."""

    system: str
    code: str
    display: str
    category: str  # the default FHIR observation category when a resource names none
    unit: str  # stored unit (UCUM)
    received_unit: str  # the UCUM unit the code is reported in
    low: Decimal  # plausible range in the stored unit, inclusive
    high: Decimal

    @property
    def factor(self) -> Decimal:
        """Multiplier from the received unit to the stored unit."""
        return MG_DL_PER_MMOL_L if (self.received_unit, self.unit) == (MMOL_L, MG_DL) else Decimal(1)

    @property
    def is_glucose(self) -> bool:
        return self.system == LOINC and self.code in GLUCOSE_CODES


_GLUCOSE_DISPLAY: Final = {
    "99504-3": "Glucose [Mass/volume] in Interstitial fluid",
    "105272-9": "Glucose [Moles/volume] in Interstitial fluid",
    "14745-4": "Glucose [Moles/volume] in Body fluid",
    "15074-8": "Glucose [Moles/volume] in Blood",
    "2339-0": "Glucose [Mass/volume] in Blood",
}

KINDS: Final[dict[tuple[str, str], ObservationKind]] = {
    **{
        (LOINC, code): ObservationKind(
            LOINC, code, _GLUCOSE_DISPLAY[code], "laboratory", MG_DL, unit, *GLUCOSE_RANGE_MG_DL
        )
        for code, unit in GLUCOSE_CODES.items()
    },
    (LOINC, CARBOHYDRATE_CODE): ObservationKind(
        LOINC, CARBOHYDRATE_CODE, "Carbohydrate intake Estimated", "survey", GRAM, GRAM, Decimal(0), Decimal(1000)
    ),
    (SNOMED, INSULIN_CODE): ObservationKind(
        SNOMED, INSULIN_CODE, "Insulin (substance)", "therapy", INSULIN_UNIT, INSULIN_UNIT, Decimal(0), Decimal(100)
    ),
}

# UCUM spells the international unit both ways; they are the same unit.
UNIT_SYNONYMS: Final[dict[str, str]] = {"[IU]": INSULIN_UNIT}
