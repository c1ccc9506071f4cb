"""The authenticated caller of a request, and where the service may fetch on its behalf."""

from __future__ import annotations

from dataclasses import dataclass

from cds.auth.clients import TrustedClient
from cds.auth.urls import normalize_base_url
from cds.runtime.outbound import Reach


@dataclass(frozen=True)
class Caller:
    """A CDS client whose JWT passed every check. `sub` and `tenant` are as the token states."""

    iss: str
    sub: str | None
    tenant: str | None
    jti: str
    client: TrustedClient
    dev: bool = False  # development mode: plain http FHIR servers allowed

    def allows_fhir_server(self, url: str) -> bool:
        """Whether the service may fetch from `url` (a hook's fhirServer) for this caller.

        Exact match against the client's allow-listed base URLs (after normalising case, default
        port and trailing slash), https only outside development mode unless the client has
        `allow_local_fhir`: an authenticated caller must not be able to point the service at
        arbitrary or internal URLs. The address is checked again at connect time (`reach`).
        """
        norm = normalize_base_url(url)
        if norm is None:
            return False
        if norm.startswith("http://") and not self.reach.http:
            return False
        return self.client.any_fhir_server or norm in self.client.fhir_servers

    @property
    def reach(self) -> Reach:
        """Which schemes and addresses the service may use on this caller's behalf."""
        return Reach.for_caller(dev=self.dev, allow_local=self.client.allow_local_fhir)
