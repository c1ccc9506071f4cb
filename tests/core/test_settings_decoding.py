"""Settings are converted and checked by their declaration (the Settings dataclass): text from
`CDS_*` variables or TOML strings becomes the declared type, anything else must already be it."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, get_origin, get_type_hints

import pytest

from cds.runtime.settings import Settings, SettingsError, load_settings

HINTS = get_type_hints(Settings)
SCALARS = {int: "7", float: "2.5", str: "info", Path: "some/dir", bool: "true"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("CDS_")]:
        monkeypatch.delenv(name)


def _scalar(typ: Any) -> type | None:
    """The scalar a field holds (int for `int`, str for `str | None`), None for lists and tables."""
    if get_origin(typ) in (list, dict):
        return None
    args = [a for a in getattr(typ, "__args__", (typ,)) if a is not type(None)]
    return args[0] if len(args) == 1 and args[0] in SCALARS else None


SCALAR_FIELDS = sorted(f.name for f in dataclasses.fields(Settings) if _scalar(HINTS[f.name]))


@pytest.mark.parametrize("name", SCALAR_FIELDS)
def test_every_scalar_setting_is_read_from_the_environment_as_its_type(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kind = _scalar(HINTS[name])
    assert kind is not None
    monkeypatch.setenv("CDS_" + name.upper(), SCALARS[kind])
    try:
        settings = load_settings(dev=True)
    except SettingsError as e:  # a value of the right type that validate() refuses: not this test's concern
        assert "cannot read" not in str(e)
        return
    value = getattr(settings, name)
    assert type(value) is (Path if kind is Path else kind) or isinstance(value, kind)
    assert value == kind(SCALARS[kind]) if kind is not bool else value is True


@pytest.mark.parametrize("name", [n for n in SCALAR_FIELDS if _scalar(HINTS[n]) in (int, float)])
def test_a_number_setting_refuses_other_text_naming_it(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDS_" + name.upper(), "12 apples")
    with pytest.raises(SettingsError, match=rf"^setting {name}: cannot read '12 apples' as "):
        load_settings(dev=True)


@pytest.mark.parametrize(
    ("text", "value"), [("1", True), ("YES", True), ("on", True), ("off", False), ("", False)]
)
def test_switches_take_the_usual_words(text: str, value: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDS_SANDBOX", text)
    assert load_settings(dev=True).sandbox is value
    monkeypatch.setenv("CDS_SANDBOX", "maybe")
    with pytest.raises(SettingsError, match="setting sandbox: cannot read 'maybe'"):
        load_settings(dev=True)


def test_lists_and_tables_come_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDS_CORS_ORIGINS", '["https://ehr.example.org"]')
    monkeypatch.setenv("CDS_SERVICES", '{"care-gaps": {"suppress_minutes": 5}}')
    s = load_settings(dev=True)
    assert s.cors_origins == ["https://ehr.example.org"]
    assert s.service_options("care-gaps") == {"suppress_minutes": 5}
    monkeypatch.setenv("CDS_CORS_ORIGINS", "[3]")
    with pytest.raises(
        SettingsError, match=r"setting cors_origins: .*Expected `str`, got `int` - at `\$\[0\]`"
    ):
        load_settings(dev=True)
    monkeypatch.setenv("CDS_CORS_ORIGINS", "https://no-json")
    with pytest.raises(SettingsError, match="setting cors_origins: cannot read 'https://no-json'"):
        load_settings(dev=True)


@pytest.mark.parametrize(
    ("line", "name"),
    [("port = true", "port"), ("sandbox = 3", "sandbox"), ("cors_origins = \"https://a\"", "cors_origins"),
     ("services = {a = 1}", "services"), ("workers = 1.5", "workers")],
)  # fmt: skip
def test_toml_values_of_the_wrong_type_are_refused(tmp_path: Path, line: str, name: str) -> None:
    config = tmp_path / "cds.toml"
    config.write_text(line + "\n")
    with pytest.raises(SettingsError, match=rf"^setting {name}: cannot read"):
        load_settings(config, dev=True)


def test_toml_numbers_and_paths(tmp_path: Path) -> None:
    config = tmp_path / "cds.toml"
    config.write_text('port = 9000\nfhir_timeout_seconds = 3\ndata_dir = "d"\n')
    s = load_settings(config, dev=True)
    assert s.port == 9000 and s.fhir_timeout_seconds == 3.0 and isinstance(s.fhir_timeout_seconds, float)
    assert s.data_dir == Path("d")


def _bounds() -> list[tuple[str, float, float]]:
    """(setting, lowest allowed, highest allowed or inf) of every numeric setting with a constraint."""
    import math

    import msgspec.inspect as mi

    hints = get_type_hints(Settings, include_extras=True)
    out = []
    for name, typ in hints.items():
        info = mi.type_info(typ)
        info = info.type if isinstance(info, mi.Metadata) else info
        if isinstance(info, mi.IntType | mi.FloatType) and (info.ge is not None or info.gt is not None):
            low = info.ge if info.ge is not None else info.gt
            high = info.le if getattr(info, "le", None) is not None else math.inf
            out.append(
                (name, low, high) if info.ge is not None else (name, math.nextafter(low, math.inf), high)
            )
    return out


BOUNDS = _bounds()


def test_the_numeric_constraints_are_declared() -> None:
    names = {n for n, _, _ in BOUNDS}
    assert {"port", "workers", "max_body_bytes", "fhir_timeout_seconds", "replay_db_timeout_seconds"} <= names


@pytest.mark.parametrize(("name", "low", "high"), BOUNDS)
def test_a_numeric_setting_takes_its_bounds_and_refuses_beyond(name: str, low: float, high: float) -> None:
    import math

    kind = int if get_type_hints(Settings)[name] is int else float
    inside = [low] + ([high] if math.isfinite(high) else [])
    for value in inside:
        assert getattr(load_settings(dev=True, **{name: kind(value)}), name) == kind(value)
    below = low - 1 if kind is int else (0.0 if low > 0 else low - 1)
    outside = [below] + ([high + 1] if math.isfinite(high) else [])
    for value in outside:
        with pytest.raises(SettingsError, match=rf"^setting {name} must be .+, not {kind(value)!r}$"):
            load_settings(dev=True, **{name: kind(value)})
        with pytest.raises(SettingsError, match=rf"^setting {name} must be "):
            Settings(**{name: kind(value)}).validate()  # built directly: the same declaration


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        ("log_level", "WARNING", "loud"),
        ("public_base_url", "https://cds.example.org", "cds.example.org"),
        ("database_url", "postgresql://db/cds", "mysql://db/cds"),
    ],
)
def test_text_settings_follow_their_declared_pattern(name: str, good: str, bad: str) -> None:
    assert getattr(load_settings(dev=True, **{name: good}), name) == good
    with pytest.raises(SettingsError, match=rf"^setting {name} must be .+, not '{bad}'$"):
        load_settings(dev=True, **{name: bad})
