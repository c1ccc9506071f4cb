"""Issue 15, finding 12: the patient-id HMAC key is kept apart from the database: from
CDS_HMAC_SECRET or a key file (0600) outside the data directory, generated beside it when absent;
the data directory is created 0700. A copy of the data directory alone cannot test identifiers."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from cds.runtime.privacy import _key_file_secret, default_key_file, hmac_key, patient_key
from cds.runtime.settings import Settings, SettingsError, load_settings
from cds.web.app import create_app


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    _key_file_secret.cache_clear()
    yield
    _key_file_secret.cache_clear()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_fresh_start_keeps_the_key_beside_the_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "cds-data"
    settings = Settings(dev=True, data_dir=data)
    with TestClient(create_app(settings)):  # start-up creates what it needs
        pass
    key = tmp_path / "cds-data-keys" / "hmac.key"
    assert default_key_file(data) == key
    assert key.is_file() and mode(key) == 0o600 and mode(key.parent) == 0o700
    assert mode(data) == 0o700
    assert not any(p.name == "hmac.key" for p in data.rglob("*"))  # nothing of the key in data_dir
    for p in data.rglob("*"):
        assert key.read_bytes() not in p.read_bytes() if p.is_file() else True
    expected = hmac.new(key.read_bytes().strip(), b"p1", hashlib.sha256).hexdigest()
    assert patient_key(settings, "p1") == expected


def test_key_from_the_environment_or_a_configured_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CDS_HMAC_SECRET", "from-the-environment-" + "x" * 32)
    settings = load_settings(data_dir=tmp_path / "d")
    assert hmac_key(settings) == ("from-the-environment-" + "x" * 32).encode()
    assert not default_key_file(tmp_path / "d").exists()  # nothing generated
    monkeypatch.delenv("CDS_HMAC_SECRET")

    configured = tmp_path / "secrets" / "cds-hmac.key"
    monkeypatch.setenv("CDS_HMAC_KEY_FILE", str(configured))
    settings = load_settings(data_dir=tmp_path / "d")
    key = hmac_key(settings)
    assert configured.read_bytes() == key and mode(configured) == 0o600
    _key_file_secret.cache_clear()
    assert hmac_key(load_settings(data_dir=tmp_path / "d")) == key  # read back, not regenerated


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k" / "hmac.key"
    path.parent.mkdir()
    path.write_text("y" * 64)
    os.chmod(path, 0o644)
    with pytest.raises(SettingsError, match="chmod 600"):
        hmac_key(Settings(data_dir=tmp_path / "d", hmac_key_file=path))
    os.chmod(path, 0o600)
    assert hmac_key(Settings(data_dir=tmp_path / "d", hmac_key_file=path)) == b"y" * 64


def test_a_key_left_in_the_data_directory_by_an_older_version_is_moved_out(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    old = data / "hmac.key"
    fd = os.open(old, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"z" * 64)
    os.close(fd)
    settings = Settings(data_dir=data)
    assert hmac_key(settings) == b"z" * 64  # the same key: stored hashes still match
    assert not old.exists() and default_key_file(data).read_bytes() == b"z" * 64
