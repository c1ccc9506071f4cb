"""SQL shared by the SQLite and PostgreSQL backends, with `:name` parameters.

(The PostgreSQL backend rewrites `:name` to psycopg's `%(name)s`.) Only portable SQL here: what
differs between the two databases lives in sqlite.py and postgres.py.
"""

from __future__ import annotations

CARD_COLUMNS = (
    "uuid", "service", "kind", "indicator", "model_version", "score", "issued_ms", "patient_key", "suggestions",
    "issuer", "tenant", "override_reasons",
)  # fmt: skip
# What a feedback batch looks up of its cards (batch.issued_cards reads these columns in this order).
ISSUED_COLUMNS = "uuid, service, suggestions, issuer, tenant, override_reasons"
FEEDBACK_COLUMNS = (
    "card_uuid", "service", "outcome", "accepted_suggestions", "reason_system", "reason_code", "has_comment",
    "outcome_ms", "received_ms", "entry_key",
)  # fmt: skip

INSERT_CARD = """
INSERT INTO cds_card (uuid, service, kind, indicator, model_version, score, issued_ms, patient_key,
                      suggestions, issuer, tenant, override_reasons)
VALUES (:uuid, :service, :kind, :indicator, :model_version, :score, :issued_ms, :patient_key, :suggestions,
        :issuer, :tenant, :override_reasons)
ON CONFLICT (uuid) DO NOTHING
"""

RECENT_CARDS = """
SELECT c.kind, c.indicator, c.issued_ms,
       EXISTS (SELECT 1 FROM cds_feedback f
               WHERE f.card_uuid = c.uuid AND f.outcome = 'overridden') AS overridden
FROM cds_card c
WHERE c.service = :service AND c.patient_key = :patient_key AND c.issued_ms >= :since
"""

# Deletes in chunks so a large purge never holds a long write lock; feedback goes by cascade.
PURGE_CHUNK = 5000
PURGE = f"""
DELETE FROM cds_card WHERE uuid IN (SELECT uuid FROM cds_card WHERE issued_ms < :cutoff LIMIT {PURGE_CHUNK})
"""

COUNTS = "SELECT (SELECT COUNT(*) FROM cds_card), (SELECT COUNT(*) FROM cds_feedback)"

# A caller sees only the cards issued to it (its iss and tenant); NULL :issuer (the CLI) sees all.
_OWNED = "(CAST(:issuer AS TEXT) IS NULL OR (c.issuer = CAST(:issuer AS TEXT) AND c.tenant = :tenant))"

# A card's outcome is that of its latest feedback (a card once ignored may be acted upon later).
_CARDS_IN_RANGE = f"""
SELECT c.uuid, c.service, c.kind, c.model_version, c.issued_ms,
       (SELECT f.outcome FROM cds_feedback f WHERE f.card_uuid = c.uuid
        ORDER BY f.outcome_ms DESC, f.id DESC LIMIT 1) AS outcome
FROM cds_card c
WHERE c.issued_ms >= :since AND c.issued_ms < :until
  AND (CAST(:service AS TEXT) IS NULL OR c.service = CAST(:service AS TEXT))
  AND {_OWNED}
"""

SUMMARY_OUTCOMES = f"""
SELECT service, kind, model_version, COUNT(*) AS issued,
       SUM(CASE WHEN outcome = 'accepted' THEN 1 ELSE 0 END) AS accepted,
       SUM(CASE WHEN outcome = 'overridden' THEN 1 ELSE 0 END) AS overridden
FROM ({_CARDS_IN_RANGE}) t
GROUP BY service, kind, model_version
"""

SUMMARY_REASONS = f"""
SELECT c.service, c.kind, f.reason_system, f.reason_code, COUNT(DISTINCT c.uuid) AS n
FROM cds_card c JOIN cds_feedback f ON f.card_uuid = c.uuid
WHERE f.outcome = 'overridden' AND c.issued_ms >= :since AND c.issued_ms < :until
  AND (CAST(:service AS TEXT) IS NULL OR c.service = CAST(:service AS TEXT))
  AND {_OWNED}
GROUP BY c.service, c.kind, f.reason_system, f.reason_code
"""

SUMMARY_SERIES = f"""
SELECT service, kind, issued_ms / :bucket AS bucket, COUNT(*) AS issued,
       SUM(CASE WHEN outcome = 'overridden' THEN 1 ELSE 0 END) AS overridden
FROM ({_CARDS_IN_RANGE}) t
GROUP BY service, kind, issued_ms / :bucket
"""
