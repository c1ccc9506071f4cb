"""The contract every CDS service module fulfils.

A service is constructed once at start-up with the settings (it loads its models and knowledge
there, raising `ServiceLoadError` when it cannot), then `evaluate` is called per hook with a
validated request and the patient record. `evaluate` is synchronous, pure CPU work of a few
milliseconds, and must not do I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from cds.runtime.errors import ServiceLoadError

if TYPE_CHECKING:
    from cds.fhir.record import PatientRecord
    from cds.hooks.cards import Card
    from cds.hooks.request import HookRequest
    from cds.runtime.settings import Settings


__all__ = ["Service", "ServiceLoadError"]


class Service(Protocol):
    id: str

    def __init__(self, settings: Settings) -> None: ...

    def evaluate(self, request: HookRequest, record: PatientRecord) -> list[Card]:
        """The cards for this patient, most important first. Empty when nothing is worth saying."""
        ...
