"""The contract every CDS service fulfils (scikit-learn's estimator contract, applied to a service).

- `hook`: the hook it answers (its discovery entry must name the same one);
- `Options`: a msgspec Struct of its `[services.<id>]` settings, decoded and checked by `from_settings`;
- `__init__(options, *, models_dir)`: parameters in, no I/O, so a service can be built and inspected
  anywhere (tests, the CLI, the registry);
- `load()`: reads its knowledge or model, raising `ServiceLoadError` when it cannot; returns self;
- `evaluate(request, record) -> list[Card]`: synchronous pure CPU work of a few milliseconds, no I/O.

The prefetch a service needs is declared in its discovery entry (hooks.json), the one place the
published discovery document is built from; `optional_prefetch` names the keys it can do without.
Services are found from that entry's `implementation` (see `cds.hooks.registry`).
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, Self, TypeVar

import msgspec

from cds.runtime.errors import ServiceLoadError

if TYPE_CHECKING:
    from cds.fhir.record import PatientRecord
    from cds.hooks.cards import Card
    from cds.hooks.request import HookRequest
    from cds.runtime.settings import Settings


__all__ = ["CDSService", "NoOptions", "Service", "ServiceLoadError"]


class NoOptions(msgspec.Struct):
    """For a service without options of its own."""


OptionsT = TypeVar("OptionsT", bound=msgspec.Struct)


class Service(Protocol):
    """What the app needs of a loaded service."""

    id: ClassVar[str]
    hook: ClassVar[str]
    optional_prefetch: ClassVar[tuple[str, ...]]

    def evaluate(self, request: HookRequest, record: PatientRecord) -> list[Card]:
        """The cards for this patient, most important first. Empty when nothing is worth saying."""
        ...


def decode_options(
    service_id: str, raw: Any, options_type: type[OptionsT], shared: Collection[str] | None = None
) -> OptionsT:
    """`[services.<id>]` as the service's Options; a wrong value names its setting.

    The same table also holds options other parts read (the feedback store's `suppress_minutes`):
    with `shared` given, a key that is neither an option nor shared is refused (a typo would
    otherwise be ignored silently); without it, unknown keys are left alone."""
    if raw is None:
        raw = {}
    if shared is not None and isinstance(raw, dict):
        known = set(options_type.__struct_fields__) | set(shared)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ServiceLoadError(
                f"services.{service_id}: unknown option(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known)) or 'none'}"
            )
    try:
        return msgspec.convert(raw, options_type)
    except msgspec.ValidationError as e:
        message = str(e).replace("`$.", f"`services.{service_id}.").replace("`$`", f"`services.{service_id}`")
        raise ServiceLoadError(f"services.{service_id}: {message}") from None


class CDSService(Generic[OptionsT]):
    """Base class of the services: the constructor and `from_settings`; subclasses set the class
    attributes and write `load` and `evaluate`."""

    id: ClassVar[str]
    hook: ClassVar[str]
    Options: ClassVar[type[msgspec.Struct]] = NoOptions
    optional_prefetch: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: OptionsT | None = None, *, models_dir: Path | None = None) -> None:
        self.options: OptionsT = options if options is not None else self.Options()  # type: ignore[assignment]
        self.models_dir = models_dir

    @classmethod
    def from_settings(cls, settings: Settings, shared_options: Collection[str] | None = None) -> Self:
        """Built (not loaded) from the settings: its options table and the models directory.
        `shared_options`: keys of the table that other parts read (see `decode_options`)."""
        options = decode_options(cls.id, settings.service_options(cls.id), cls.Options, shared_options)
        return cls(options, models_dir=Path(settings.models_dir))  # type: ignore[arg-type]

    def load(self) -> Self:
        """Read knowledge and models; raise ServiceLoadError when they are missing or invalid."""
        return self

    def evaluate(self, request: HookRequest, record: PatientRecord) -> list[Card]:
        raise NotImplementedError
