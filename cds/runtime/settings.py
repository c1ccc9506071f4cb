"""Settings: defaults, then an optional TOML file, then `CDS_*` environment variables.

Invalid settings stop start-up with a message naming the setting and what is wrong with it.
Per-service options live under `[services.<id>]` in the TOML file; trusted EHRs under
`[[trusted_clients]]` (or `CDS_TRUSTED_CLIENTS` as JSON).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

import msgspec
import msgspec.inspect as mi
from msgspec import Meta

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
REPO_ROOT = PACKAGE_ROOT.parent


class SettingsError(ValueError):
    """A setting is missing or invalid; the message says which and how to fix it."""


def _default_models_dir() -> Path:
    env_free = REPO_ROOT / "models"
    return env_free if env_free.is_dir() else Path("/app/models")


# Declared constraints: load_settings and validate() check every value against its field's type.
Positive = Annotated[int, Meta(ge=1, description="a positive number")]
Seconds = Annotated[float, Meta(gt=0, description="positive")]


@dataclass
class Settings:
    # --- server -----------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=1, le=65535, description="a TCP port, 1-65535")] = 8080
    workers: Annotated[int, Meta(ge=1, description="at least 1")] = 1
    log_level: Annotated[
        str, Meta(pattern="(?i)^(debug|info|warning|error)$", description="debug, info, warning or error")
    ] = "info"
    data_dir: Path = Path(".cds-data")
    models_dir: Path = field(default_factory=_default_models_dir)
    hooks_file: Path = REPO_ROOT / "hooks.json"
    # The URL EHRs use to reach this service (behind a proxy); None: taken from each request.
    public_base_url: (
        Annotated[str, Meta(pattern="^https?://", description="a URL starting with http:// or https://")]
        | None
    ) = None
    # --- limits -----------------------------------------------------------------------------
    max_body_bytes: Positive = 5 * 1024 * 1024  # hook calls and their feedback (prefetch is large)
    max_other_body_bytes: Positive = 64 * 1024  # every other endpoint: sandbox API, operations
    max_json_depth: Positive = 64
    max_prefetch_resources: Positive = 20_000
    max_draft_orders: Positive = 100
    # --- front door (cds/web/frontdoor.py; per worker) -----------------------------------------
    max_header_bytes: Positive = 16 * 1024  # request line + header fields: 431 above
    header_timeout_seconds: Seconds = 10.0  # to send the headers, from connect or last answer: 408
    body_timeout_seconds: Seconds = 30.0  # to send the whole body, from the end of the headers: 408
    max_connections: Positive = 500  # open connections per worker (503 above); below `ulimit -n` 1024
    keep_alive_seconds: Seconds = 5.0  # idle time between requests on one connection (uvicorn)
    # --- FHIR fallback ----------------------------------------------------------------------
    fhir_timeout_seconds: Seconds = 2.0
    fhir_max_pages: Positive = 5
    # --- security ---------------------------------------------------------------------------
    dev: bool = False
    trusted_clients: list[dict[str, Any]] = field(default_factory=list)
    clock_skew_seconds: int = 60
    jwks_cache_seconds: int = 3600
    jwks_timeout_seconds: float = 2.0
    jwks_max_bytes: Positive = 1024 * 1024  # a JWK Set larger than this is refused, never cut short
    cors_origins: list[str] = field(default_factory=list)
    # Key for HMAC of patient ids (feedback, suppression): hmac_secret (e.g. CDS_HMAC_SECRET), else
    # read from hmac_key_file, by default <data_dir>-keys/hmac.key, generated (0600) when absent.
    hmac_secret: str | None = None
    hmac_key_file: Path | None = None
    # --- feedback store ---------------------------------------------------------------------
    database_url: (
        Annotated[
            str,
            Meta(
                pattern="^(sqlite:|postgresql://|postgres://)",
                description="sqlite:///PATH or postgresql://...",
            ),
        ]
        | None
    ) = None
    retention_days: int = 365
    db_write_timeout_seconds: float = 0.05
    # Longest a call waits on the replay seen-set before trusting this process's cache alone.
    replay_db_timeout_seconds: Annotated[float, Meta(gt=0, le=10, description="between 0 and 10")] = 0.2
    # --- sandbox ----------------------------------------------------------------------------
    sandbox: bool | None = None
    # --- terminology ------------------------------------------------------------------------
    # Reviewed FHIR ConceptMaps (local lab/vital codes -> LOINC); paths relative to the settings file.
    terminology_maps: list[str] = field(default_factory=list)
    # --- per-service options ----------------------------------------------------------------
    services: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def sandbox_enabled(self) -> bool:
        return self.dev if self.sandbox is None else self.sandbox

    def service_options(self, service_id: str) -> dict[str, Any]:
        return self.services.get(service_id, {})

    def validate(self) -> Settings:
        """Every value checked against its declared type and constraints, then the rules between
        settings; SettingsError naming the setting otherwise."""
        hints = _hints()
        for f in fields(self):
            _coerce(f.name, hints[f.name], getattr(self, f.name))
        if self.sandbox and not self.dev and not self.trusted_clients:
            raise SettingsError(
                "sandbox = true outside development mode puts /sandbox/api/* behind the JWT check, and no "
                "trusted_clients are configured to sign for it: add a trusted client, use --dev on a "
                "workstation, or turn the sandbox off"
            )
        if self.trusted_clients and not self.dev and not self.public_base_url:
            # Otherwise each token's `aud` would be checked against a URL built from the Host
            # header, so a token minted for one deployment could be replayed at another.
            raise SettingsError(
                "public_base_url is required when trusted_clients are configured: set it to the URL "
                'EHRs call, e.g. public_base_url = "https://cds.example.org"'
            )
        if not isinstance(self.terminology_maps, list) or not all(
            isinstance(p, str) for p in self.terminology_maps
        ):
            raise SettingsError("terminology_maps must be a list of ConceptMap file paths")
        # The maps' contents are read (and refused when malformed) at start-up, by the app.
        return self


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def _path(typ: type, raw: Any) -> Any:
    """msgspec's hook for the one declared type it does not know: a path, from text."""
    if typ is Path and isinstance(raw, str | os.PathLike):
        return Path(raw)
    raise NotImplementedError


@cache
def _hints() -> dict[str, Any]:
    """Each setting's declared type, constraints included."""
    return get_type_hints(Settings, include_extras=True)


@cache
def _kinds(typ: Any) -> set[type]:
    """The kinds of value a declared type accepts (msgspec's view: BoolType, ListType, ...)."""
    info = mi.type_info(typ)
    kinds = info.types if isinstance(info, mi.UnionType) else (info,)
    return {type(t.type if isinstance(t, mi.Metadata) else t) for t in kinds}


def _coerce(name: str, typ: Any, raw: Any) -> Any:
    """A setting's value as its declared type: text (environment, TOML strings) is converted,
    everything else checked. Lists and tables come from the environment as JSON."""
    kinds = _kinds(typ)
    try:
        if isinstance(raw, str):
            if mi.BoolType in kinds and raw.lower() in _TRUE + _FALSE:
                raw = raw.lower() in _TRUE
            elif kinds & {mi.ListType, mi.DictType}:
                raw = msgspec.json.decode(raw)
        return msgspec.convert(raw, typ, strict=False, dec_hook=_path)
    except msgspec.ValidationError as e:
        hint = _description(typ)
        if hint and "`, got `" not in str(e):  # the right type, outside its declared constraint
            raise SettingsError(f"setting {name} must be {hint}, not {raw!r}") from None
        raise SettingsError(f"setting {name}: cannot read {raw!r} as {_type_text(typ)} ({e})") from None
    except msgspec.DecodeError as e:
        raise SettingsError(f"setting {name}: cannot read {raw!r} as {_type_text(typ)} ({e})") from None


def _description(typ: Any) -> str | None:
    """The human description of a declared constraint (`Meta(description=...)`), if any."""
    info = mi.type_info(typ)
    for t in info.types if isinstance(info, mi.UnionType) else (info,):
        if isinstance(t, mi.Metadata) and t.extra_json_schema and "description" in t.extra_json_schema:
            return str(t.extra_json_schema["description"])
    return None


def _type_text(typ: Any) -> str:
    """`int`, `str | None`, `list[str]`: the declared type without its constraints."""
    origin, args = get_origin(typ), get_args(typ)
    if origin is Annotated:
        return _type_text(args[0])
    if origin in (Union, UnionType):
        return " | ".join(_type_text(a) for a in args)
    if isinstance(typ, type) and not args:
        return "None" if typ is type(None) else typ.__name__
    return str(typ).replace("typing.", "")


def _check_misplaced_keys(data: dict[str, Any], names: set[str], path: str | Path) -> None:
    """Refuse a top-level setting that TOML attached to a table because it was written after
    the table's header (`cors_origins` below `[[trusted_clients]]` becomes that client's key)."""
    tables: list[tuple[str, Any]] = []
    clients = data.get("trusted_clients")
    if isinstance(clients, list):
        tables += [(f"[[trusted_clients]] number {i + 1}", c) for i, c in enumerate(clients)]
    services = data.get("services")
    if isinstance(services, dict):
        tables += [(f"[services.{sid}]", opts) for sid, opts in services.items()]
    for where, table in tables:
        if not isinstance(table, dict):
            continue
        for key in table:
            if key in names:
                raise SettingsError(
                    f"{path}: {key} is written inside the table {where}, but it is a top-level setting; "
                    f"move the line `{key} = ...` above the first [table] header of the file "
                    "(in TOML every key after a [table] header belongs to that table)"
                )


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from defaults, `config_file` (or `CDS_CONFIG`), `CDS_*` env, then overrides."""
    hints = _hints()
    names = {f.name for f in fields(Settings)}
    values: dict[str, Any] = {}
    path = config_file or os.environ.get("CDS_CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise SettingsError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as e:
            raise SettingsError(f"config file {path} is not valid TOML: {e}") from None
        _check_misplaced_keys(data, names, path)
        unknown = set(data) - names
        if unknown:
            raise SettingsError(f"unknown setting(s) in {path}: {', '.join(sorted(unknown))}")
        maps = data.get("terminology_maps")
        if isinstance(maps, list):  # relative to the settings file, not to where the service starts
            base = Path(path).resolve().parent
            data["terminology_maps"] = [str(base / m) if isinstance(m, str) else m for m in maps]
        values.update(data)
    for name in names:
        env = os.environ.get("CDS_" + name.upper())
        if env is not None:
            values[name] = env
    values.update({k: v for k, v in overrides.items() if v is not None})
    for k, v in list(values.items()):
        if k not in names:
            raise SettingsError(f"unknown setting {k}")
        values[k] = _coerce(k, hints[k], v)
    settings = Settings(**values)
    if settings.database_url is None:
        settings.database_url = f"sqlite:///{settings.data_dir / 'cds.sqlite3'}"
    return settings.validate()
