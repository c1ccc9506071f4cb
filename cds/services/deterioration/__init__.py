"""Deterioration: features, NEWS2, sepsis prompt, calibrated model and the service, in one place."""
