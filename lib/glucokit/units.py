"""Glucose units and codes: glucose is stored in mg/dL everywhere."""

from typing import Final

MG_DL: Final = "mg/dL"
MMOL_L: Final = "mmol/L"

# LOINC codes of glucose readings and the unit each is reported in.
GLUCOSE_CODES: Final[dict[str, str]] = {
    "99504-3": MG_DL,  # Glucose [Mass/volume] in Interstitial fluid (CGM)
    "105272-9": MMOL_L,  # Glucose [Moles/volume] in Interstitial fluid (CGM)
    "14745-4": MMOL_L,  # Glucose [Moles/volume] in Body fluid
    "15074-8": MMOL_L,  # Glucose [Moles/volume] in Blood
    "2339-0": MG_DL,  # Glucose [Mass/volume] in Blood
}
LOINC: Final = "http://loinc.org"
CGM_CODE: Final = "99504-3"
