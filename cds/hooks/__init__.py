"""The CDS Hooks 2.0 protocol: hook requests, discovery, prefetch, the FHIR fallback, cards, the service contract."""
