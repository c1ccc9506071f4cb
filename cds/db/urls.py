"""Which database: `settings.database_url`, or the SQLite file under the data directory."""

from __future__ import annotations

from cds.runtime.settings import Settings


def database_url(settings: Settings) -> str:
    return settings.database_url or f"sqlite:///{settings.data_dir / 'cds.sqlite3'}"


def sqlite_path(url: str) -> str | None:
    """The file of a `sqlite:///relative` or `sqlite:////absolute` URL; None for other URLs."""
    if not url.startswith("sqlite:"):
        return None
    return url.removeprefix("sqlite:").removeprefix("//").removeprefix("/")


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))
