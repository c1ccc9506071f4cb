"""Services found from the discovery document: each entry's `implementation` names the class.

Adding a service: its module (a `CDSService` subclass) and one entry in hooks.json (or in the file
the `hooks_file` setting names). Nothing here lists services.
"""

from __future__ import annotations

import importlib
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from cds.hooks.service import CDSService, ServiceLoadError

if TYPE_CHECKING:
    from cds.hooks.discovery import ServiceEntry
    from cds.runtime.settings import Settings


def service_class(entry: ServiceEntry) -> type[CDSService[Any]]:
    """The class implementing a discovery entry (imported now); it must answer the entry's id and hook."""
    module, _, name = entry.implementation.partition(":")
    cls = getattr(importlib.import_module(module), name, None)
    if not (isinstance(cls, type) and issubclass(cls, CDSService)):
        raise ServiceLoadError(f"{entry.implementation} is not a CDS service class (cds.hooks.service)")
    if cls.id != entry.id or cls.hook != entry.hook:
        raise ServiceLoadError(
            f"{entry.implementation} implements {cls.id!r} on {cls.hook!r}, "
            f"but the discovery entry is {entry.id!r} on {entry.hook!r}"
        )
    return cls


def load_service(
    entry: ServiceEntry, settings: Settings, shared_options: Collection[str] | None = None
) -> CDSService[Any]:
    """The service of a discovery entry, built from the settings and loaded (ServiceLoadError if
    not). `shared_options`: the option keys other parts read; any other unknown key is refused."""
    return service_class(entry).from_settings(settings, shared_options).load()
