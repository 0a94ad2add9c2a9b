"""SFER-MDFAE teaching and explainability workbook (Shou et al., Sensors 2024)."""

__version__ = "0.1.0"
