"""The discovery document: hooks.json, the one source of truth for services and prefetch.

Each entry is a CDS Hooks 2.0 service definition plus `implementation`, the `module:Class` that
answers it (`cds.hooks.registry` imports it when the app starts). `implementation` is ours, not the
spec's: it never appears in the published discovery document.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import msgspec
import orjson

from cds.hooks.prefetch import UnresolvedToken, token_value
from cds.hooks.validation import HOOK_CONTEXT
from cds.runtime.settings import SettingsError

_TOKEN = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")
_IMPLEMENTATION = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class ServiceDefinition(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """A service as CDS Hooks 2.0 "Discovery" publishes it."""

    hook: str
    id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]+$")]
    title: NonEmpty
    description: NonEmpty
    prefetch: dict[str, str] | msgspec.UnsetType = msgspec.UNSET  # optional, never null
    usageRequirements: str | msgspec.UnsetType = msgspec.UNSET


class DiscoveryDocument(msgspec.Struct, forbid_unknown_fields=True):
    """The response of `GET /cds-services` (CDS Hooks 2.0 "Discovery")."""

    services: list[ServiceDefinition]


class ServiceDeclaration(ServiceDefinition, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """A hooks.json entry: the published definition and the class that implements it."""

    implementation: Annotated[str, msgspec.Meta(pattern=_IMPLEMENTATION.pattern)]


class HooksFile(msgspec.Struct, forbid_unknown_fields=True):
    services: Annotated[list[ServiceDeclaration], msgspec.Meta(min_length=1)]


@dataclass(frozen=True)
class ServiceEntry:
    id: str
    hook: str
    prefetch: dict[str, str]
    document: dict[str, Any]  # the published definition (no `implementation`)
    implementation: str = ""


@dataclass(frozen=True)
class Discovery:
    services: dict[str, ServiceEntry]
    body: bytes  # the discovery response, serialized once

    def with_prefetch(self, rewrite: Callable[[str], str]) -> Discovery:
        """The same services with each prefetch template rewritten (e.g. to add mapped local codes)."""
        services = {}
        for sid, e in self.services.items():
            prefetch = {k: rewrite(v) for k, v in e.prefetch.items()}
            doc = dict(e.document) | ({"prefetch": prefetch} if prefetch else {})
            services[sid] = ServiceEntry(e.id, e.hook, prefetch, doc, e.implementation)
        body = orjson.dumps({"services": [e.document for e in services.values()]})
        return Discovery(services=services, body=body)

    @classmethod
    def load(cls, path: Path) -> Discovery:
        """Read and check hooks.json; a broken file stops start-up with a clear message."""
        try:
            raw = Path(path).read_bytes()
        except FileNotFoundError:
            raise SettingsError(f"hooks file not found: {path}") from None
        try:
            doc = orjson.loads(raw)
            entries = msgspec.convert(doc, HooksFile).services
        except orjson.JSONDecodeError as e:
            raise SettingsError(f"hooks file {path} is not valid JSON: {e}") from None
        except msgspec.ValidationError as e:
            raise SettingsError(f"{path}: {e}") from None
        services: dict[str, ServiceEntry] = {}
        for s, published in zip(entries, doc["services"], strict=True):
            where = f"{path}: service {s.id!r}"
            if s.id in services:
                raise SettingsError(f"{where}: duplicate id")
            if s.hook not in HOOK_CONTEXT:
                raise SettingsError(f"{where}: unsupported hook {s.hook!r}")
            _check_implementation(where, s.implementation)
            prefetch = s.prefetch or {}  # UNSET is falsy
            probe = {name: "x" for name in HOOK_CONTEXT[s.hook]} | {"userId": "Practitioner/x"}
            for key, template in prefetch.items():
                for token in _TOKEN.findall(template):
                    try:
                        token_value(token, probe)
                    except UnresolvedToken as e:
                        raise SettingsError(f"{where}: prefetch {key}: {e}") from None
            document = {k: v for k, v in published.items() if k != "implementation"}  # hooks.json's order
            services[s.id] = ServiceEntry(s.id, s.hook, dict(prefetch), document, s.implementation)
        body = orjson.dumps({"services": [e.document for e in services.values()]})
        return cls(services=services, body=body)


def _check_implementation(where: str, implementation: str) -> None:
    """The implementing module exists (found, not imported: importing loads models' libraries)."""
    module = implementation.partition(":")[0]
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise SettingsError(f"{where}: implementation module {module!r} not found")
