"""The replay seen-set table `cds_replay`: one row per (iss, jti) until the token expires.

Used by `cds.auth.replay_store` (record a token) and the feedback store's retention loop (purge
expired rows); written with `:name` parameters for both dialects.
"""

from __future__ import annotations

# A row whose token expired but is not purged yet is taken over (the jti may be reused by then);
# a live row is left alone: 0 rows changed means the token was seen before.
REMEMBER = """
INSERT INTO cds_replay (iss, jti, expires_ms) VALUES (:iss, :jti, :expires_ms)
ON CONFLICT (iss, jti) DO UPDATE SET expires_ms = excluded.expires_ms
WHERE cds_replay.expires_ms < :now_ms
"""

PURGE_CHUNK = 10_000
PURGE = f"""
DELETE FROM cds_replay WHERE (iss, jti) IN
  (SELECT iss, jti FROM cds_replay WHERE expires_ms < :now_ms LIMIT {PURGE_CHUNK})
"""
