"""The discovery document: hooks.json, the one source of truth for services and prefetch."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from cds.hooks.prefetch import UnresolvedToken, token_value
from cds.hooks.registry import SERVICE_MODULES
from cds.hooks.validation import HOOK_CONTEXT
from cds.runtime.settings import SettingsError

_TOKEN = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")
_SPEC_FIELDS = {"hook", "title", "description", "id", "prefetch", "usageRequirements"}


@dataclass(frozen=True)
class ServiceEntry:
    id: str
    hook: str
    prefetch: dict[str, str]
    document: dict[str, Any]


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
            services[sid] = ServiceEntry(e.id, e.hook, prefetch, doc)
        body = orjson.dumps({"services": [e.document for e in services.values()]})
        return Discovery(services=services, body=body)

    @classmethod
    def load(cls, path: Path) -> Discovery:
        """Read and check hooks.json; a broken file stops start-up with a clear message."""
        try:
            doc = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            raise SettingsError(f"hooks file not found: {path}") from None
        except orjson.JSONDecodeError as e:
            raise SettingsError(f"hooks file {path} is not valid JSON: {e}") from None
        services: dict[str, ServiceEntry] = {}
        entries = doc.get("services") if isinstance(doc, dict) else None
        if not isinstance(entries, list) or not entries:
            raise SettingsError(f"{path}: 'services' must be a non-empty list")
        for s in entries:
            sid = s.get("id")
            where = f"{path}: service {sid!r}"
            if not isinstance(sid, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", sid):
                raise SettingsError(f"{where}: id must be URL-safe text")
            if sid in services:
                raise SettingsError(f"{where}: duplicate id")
            if sid not in SERVICE_MODULES:
                raise SettingsError(f"{where}: no module implements it (cds/hooks/registry.py)")
            if s.get("hook") not in HOOK_CONTEXT:
                raise SettingsError(f"{where}: unsupported hook {s.get('hook')!r}")
            if not s.get("description") or not s.get("title"):
                raise SettingsError(f"{where}: title and description are required")
            unknown = set(s) - _SPEC_FIELDS
            if unknown:
                raise SettingsError(f"{where}: fields not in CDS Hooks 2.0: {', '.join(sorted(unknown))}")
            prefetch = s.get("prefetch") or {}
            probe = {name: "x" for name in HOOK_CONTEXT[s["hook"]]} | {"userId": "Practitioner/x"}
            for key, template in prefetch.items():
                for token in _TOKEN.findall(template):
                    try:
                        token_value(token, probe)
                    except UnresolvedToken as e:
                        raise SettingsError(f"{where}: prefetch {key}: {e}") from None
            services[sid] = ServiceEntry(sid, s["hook"], dict(prefetch), s)
        body = orjson.dumps({"services": [e.document for e in services.values()]})
        return cls(services=services, body=body)
