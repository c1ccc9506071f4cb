"""Prometheus metrics. Labels carry service ids, statuses and indicators, never patient data."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """One registry per app, so several apps (tests) never collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "cds_hook_requests",
            "Hook calls by service and HTTP status",
            ["service", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "cds_hook_latency_seconds",
            "Hook answer time",
            ["service"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.cards = Counter(
            "cds_cards", "Cards returned by indicator", ["service", "indicator"], registry=self.registry
        )
        self.fallback = Counter(
            "cds_fhir_fallback_fetches",
            "Prefetch keys fetched from fhirServer",
            ["service", "outcome"],
            registry=self.registry,
        )
        self.precondition_failed = Counter(
            "cds_precondition_failed",
            "412 answers (required data unavailable)",
            ["service"],
            registry=self.registry,
        )
        self.skipped_resources = Counter(
            "cds_skipped_resources",
            "Prefetch or fetched resources left out of the record, by reason (never their content)",
            ["service", "reason"],
            registry=self.registry,
        )
        self.evaluation_failures = Counter(
            "cds_evaluation_failures",
            "Hook calls answered with a could-not-evaluate card because the service raised",
            ["service"],
            registry=self.registry,
        )
        self.client_disconnects = Counter(
            "cds_client_disconnects",
            "Requests whose client went away before the answer (not errors)",
            ["service"],
            registry=self.registry,
        )
        self.backend_tokens = Counter(
            "cds_backend_tokens",
            "SMART Backend Services token requests: obtained, cache_hit, or why one failed",
            ["outcome"],
            registry=self.registry,
        )
        self.replay_fallback = Counter(
            "cds_replay_store_fallback",
            "Tokens whose jti was checked in this process only (shared replay store unavailable)",
            registry=self.registry,
        )
        self.not_checked = Counter(
            "cds_orders_not_checked",
            "Draft orders a service could not check (answered with a 'not checked' info card), by reason",
            ["service", "reason"],
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "cds_auth_failures", "Rejected JWTs by failed check", ["check"], registry=self.registry
        )

        self.unmapped_codes = Counter(
            "cds_unmapped_observation_codes",
            "Observations in hook calls with no LOINC code, by local code system (no codes, no values)",
            ["service", "system"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
