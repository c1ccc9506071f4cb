"""A validated CDS Hooks request, as the services see it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cds.fhir.value import as_list


@dataclass(frozen=True)
class HookRequest:
    """The parts of a hook call a service may use. Built only by `cds.hooks.validation`.

    `base_url` is this service's public base URL (for absolute links to model cards);
    `fhir_authorization` is never logged, stored or echoed.
    """

    service_id: str
    hook: str
    hook_instance: str
    context: dict[str, Any]
    prefetch: dict[str, Any] = field(default_factory=dict)
    fhir_server: str | None = None
    fhir_authorization: dict[str, Any] | None = field(default=None, repr=False)
    base_url: str = "http://127.0.0.1:8080"
    # The prefetch's resources, flattened and checked to be about this patient (by validation).
    prefetch_resources: tuple[dict[str, Any], ...] = field(default=(), repr=False)
    # Prefetch resources left out as (prefetch key, index in that key, reason): logged and counted.
    skipped: tuple[tuple[str, int, str], ...] = ()

    @property
    def patient_id(self) -> str:
        return str(self.context["patientId"])

    @property
    def draft_orders(self) -> list[dict[str, Any]]:
        """The resources of context.draftOrders (order-sign), else empty."""
        bundle = self.context.get("draftOrders")
        if not isinstance(bundle, dict):
            return []
        return [
            e["resource"]
            for e in as_list(bundle.get("entry"))
            if isinstance(e, dict) and isinstance(e.get("resource"), dict)
        ]
