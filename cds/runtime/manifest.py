"""The model manifest: SHA-256 of every shipped model file, checked before a service loads it.

One `models/manifest.json` for all models: `{"models": {name: {"files": {file: sha256}}}}`.
Each training run updates its own entry only, so services can add theirs independently.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from cds.runtime.errors import ServiceLoadError

MANIFEST = "manifest.json"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read(models_dir: Path) -> dict:
    path = Path(models_dir) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {"models": {}}
    except (OSError, json.JSONDecodeError) as e:
        raise ServiceLoadError(f"model manifest {path} is unreadable: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise ServiceLoadError(f"model manifest {path} has no 'models' object")
    return data


def verify(models_dir: Path | str, name: str) -> None:
    """Raise ServiceLoadError (with the reason) unless every file of model `name` matches its hash."""
    models_dir = Path(models_dir)
    if not (models_dir / MANIFEST).is_file():
        raise ServiceLoadError(f"model manifest not found: {models_dir / MANIFEST}")
    entry = _read(models_dir)["models"].get(name)
    files = entry.get("files") if isinstance(entry, dict) else None
    if not isinstance(files, dict) or not files:
        raise ServiceLoadError(f"model '{name}' is not listed in {models_dir / MANIFEST}")
    for file, expected in sorted(files.items()):
        path = models_dir / name / file
        if not path.is_file():
            raise ServiceLoadError(f"model '{name}': file {file} is missing from {models_dir / name}")
        actual = sha256_file(path)
        if actual != expected:
            raise ServiceLoadError(
                f"model '{name}': {file} does not match its SHA-256 in the manifest "
                f"(expected {expected[:12]}..., found {actual[:12]}...); refusing to load a changed model"
            )


def update(models_dir: Path | str, name: str, files: Iterable[str]) -> dict[str, str]:
    """Record the SHA-256 of `files` (names inside models_dir/name) as model `name`'s entry."""
    models_dir = Path(models_dir)
    hashes = {f: sha256_file(models_dir / name / f) for f in sorted(files)}
    # A lock so two trainings updating different entries at once do not lose one.
    lock = os.open(models_dir, os.O_RDONLY)  # lock the directory itself: no stray lock file
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = _read(models_dir)
        data["models"][name] = {"files": hashes}
        data["models"] = dict(sorted(data["models"].items()))
        fd, tmp = tempfile.mkstemp(dir=models_dir, prefix=".manifest.", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, models_dir / MANIFEST)  # atomic: a reader never sees half a manifest
    finally:
        os.close(lock)  # closing releases the lock
    return hashes
