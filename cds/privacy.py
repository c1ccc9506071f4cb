"""Keyed hashing of patient identifiers, so records can correlate a patient without holding
their id. The key comes from the settings (`hmac_secret`) or is generated once per data
directory; without the key the hash cannot be reversed by trying ids."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from functools import lru_cache
from pathlib import Path

from cds.settings import Settings


@lru_cache(maxsize=8)
def _key_file_secret(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as fh:
        secret = secrets.token_hex(32).encode()
        fh.write(secret)
    return secret


def hmac_key(settings: Settings) -> bytes:
    """The secret for patient hashes: configured, else `<data_dir>/hmac.key` (created 0600)."""
    if settings.hmac_secret:
        return settings.hmac_secret.encode()
    return _key_file_secret((settings.data_dir / "hmac.key").resolve())


def patient_key(settings: Settings, patient_id: str) -> str:
    """HMAC-SHA256 of a patient id, hex; the only form in which a patient is ever stored."""
    return hmac.new(hmac_key(settings), patient_id.encode(), hashlib.sha256).hexdigest()
