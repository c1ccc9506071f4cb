"""Which module implements which service id. Adding a service: one line here and one entry in
hooks.json."""

from __future__ import annotations

import importlib

SERVICE_MODULES: dict[str, str] = {
    "deterioration": "cds.services.deterioration.service:DeteriorationService",
    "care-gaps": "cds.services.care_gaps.service:CareGapsService",
    "medication-risk": "cds.services.medication_risk.service:MedicationRiskService",
}


def service_class(service_id: str) -> type:
    """The class implementing a service id (imported lazily)."""
    module, _, name = SERVICE_MODULES[service_id].partition(":")
    return getattr(importlib.import_module(module), name)
