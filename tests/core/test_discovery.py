"""hooks.json: the declared entry shape, services found from their entry's implementation, and
the service contract every shipped service keeps (plain constructor, options, load)."""

from __future__ import annotations

import builtins
import copy
import io
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from cds.hooks.discovery import Discovery, ServiceDeclaration, ServiceEntry
from cds.hooks.registry import load_service, service_class
from cds.hooks.service import CDSService, ServiceLoadError
from cds.runtime.settings import Settings, SettingsError
from tests.shipped_services import DISCOVERY, SERVICE_IDS

SHIPPED = json.loads(Settings().hooks_file.read_text())["services"]
EXAMPLE = "tests.example_service.shock_index:ShockIndexService"


def _write(tmp: Path, services: Any) -> Path:
    path = tmp / "hooks.json"
    path.write_text(json.dumps({"services": services}))
    return path


def test_every_entry_names_its_implementation_and_the_published_document_never_does() -> None:
    assert all(s["implementation"] for s in SHIPPED)
    published = json.loads(DISCOVERY.body)["services"]
    assert published == [{k: v for k, v in s.items() if k != "implementation"} for s in SHIPPED]
    assert [e.document for e in DISCOVERY.services.values()] == published
    widened = DISCOVERY.with_prefetch(lambda t: t + "&x=1")
    assert "implementation" not in widened.body.decode()
    assert [e.implementation for e in widened.services.values()] == [s["implementation"] for s in SHIPPED]


def test_the_declared_shape_is_the_published_one_plus_implementation() -> None:
    fields = set(ServiceDeclaration.__struct_fields__)
    assert fields == {"hook", "id", "title", "description", "prefetch", "usageRequirements", "implementation"}
    schema = msgspec.json.schema(ServiceDeclaration)
    assert "implementation" in json.dumps(schema)


def _broken(change: dict[str, Any] | None = None, drop: str | None = None) -> list[dict[str, Any]]:
    entry = copy.deepcopy(SHIPPED[0])
    entry.update(change or {})
    if drop:
        del entry[drop]
    return [entry]


@pytest.mark.parametrize(
    ("services", "message"),
    [
        ([], "services"),
        (_broken(drop="implementation"), "implementation"),
        (_broken({"implementation": "cds.services.deterioration.service"}), "implementation"),
        (_broken({"implementation": "cds.services.nothing:Service"}), "'cds.services.nothing' not found"),
        (_broken({"implementation": "nothing_at_all.x:Service"}), "not found"),
        (_broken({"extension": {"x": 1}}), "extension"),
        (_broken({"hook": "encounter-start"}), "unsupported hook"),
        (_broken({"id": "a b"}), "id"),
        (_broken({"title": ""}), "title"),
        (_broken(drop="description"), "description"),
        (_broken({"prefetch": {"p": "Patient/{{context.nothing}}"}}), "prefetch p"),
        (_broken({"prefetch": {"p": 5}}), "prefetch"),
        (_broken() + _broken(), "duplicate id"),
    ],
)
def test_a_broken_hooks_file_stops_start_up_naming_the_problem(
    tmp_path: Path, services: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        Discovery.load(_write(tmp_path, services))


def test_not_json_or_missing_file_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="not found"):
        Discovery.load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SettingsError, match="not valid JSON"):
        Discovery.load(tmp_path / "bad.json")


def _entry(sid: str, hook: str, implementation: str) -> ServiceEntry:
    return ServiceEntry(sid, hook, {}, {}, implementation)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (_entry("shock-index", "order-sign", EXAMPLE), "on 'patient-view'"),
        (_entry("other-id", "patient-view", EXAMPLE), "implements 'shock-index'"),
        (_entry("x", "patient-view", "cds.hooks.service:ServiceLoadError"), "not a CDS service class"),
        (_entry("x", "patient-view", "cds.hooks.service:nothing"), "not a CDS service class"),
    ],
)
def test_an_implementation_must_answer_its_entry(entry: ServiceEntry, message: str) -> None:
    with pytest.raises(ServiceLoadError, match=message):
        service_class(entry)


def test_a_service_that_cannot_load_shows_at_readyz_and_the_others_answer(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from cds.web.app import create_app

    example = json.loads((Path(__file__).parents[1] / "example_service" / "hooks.json").read_text())
    wrong = copy.deepcopy(example["services"][0]) | {"id": "wrong-id"}
    hooks = _write(tmp_path, [*example["services"], wrong])
    settings = Settings(dev=True, data_dir=tmp_path / "data", hooks_file=hooks)
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "implements 'shock-index'" in ready.json()["services"]["wrong-id"]
        assert list(ready.json()["services"]) == ["wrong-id"]
        assert list(client.app.state.cds.services) == ["shock-index"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("sid", SERVICE_IDS)
def test_every_shipped_service_keeps_the_contract(sid: str, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = DISCOVERY.services[sid]
    cls = service_class(entry)
    assert issubclass(cls, CDSService) and cls.hook == entry.hook and cls.id == sid
    assert issubclass(cls.Options, msgspec.Struct)
    assert set(cls.optional_prefetch) <= set(entry.prefetch)
    cls.Options()  # every option has a default: an empty [services.<id>] table is valid

    def no_io(*args: Any, **kwargs: Any) -> io.IOBase:
        raise AssertionError(f"{sid}: the constructor read a file: {args[:1]}")

    with monkeypatch.context() as m:  # parameters in, nothing read (scikit-learn's estimator contract)
        m.setattr(builtins, "open", no_io)
        m.setattr(io, "open", no_io)
        m.setattr(Path, "read_bytes", no_io)
        m.setattr(Path, "read_text", no_io)
        built = cls.from_settings(Settings())
    assert built.load() is built


def test_options_errors_name_the_setting() -> None:
    entry = DISCOVERY.services[SERVICE_IDS[0]]
    cls = service_class(entry)
    bad = {name: object() for name in cls.Options.__struct_fields__}
    if bad:
        with pytest.raises(ServiceLoadError, match=rf"services\.{entry.id}\."):
            load_service(entry, Settings(services={entry.id: bad}))


def _example_app(tmp_path: Path, options: dict[str, Any]) -> Any:
    from starlette.testclient import TestClient

    from cds.web.app import create_app

    hooks = Path(__file__).parents[1] / "example_service" / "hooks.json"
    settings = Settings(dev=True, data_dir=tmp_path / "data", hooks_file=hooks, services=options)
    return TestClient(create_app(settings), base_url="http://localhost")


def test_a_misspelt_option_stops_its_service_naming_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with _example_app(tmp_path, {"shock-index": {"max_pair_minute": 5}, "shock-idx": {}}) as client:
        ready = client.get("/readyz")
    assert ready.status_code == 503
    reason = ready.json()["services"]["shock-index"]
    assert "unknown option(s) max_pair_minute" in reason and "max_pair_minutes" in reason
    assert [r.service for r in caplog.records if r.getMessage().startswith("options for")] == ["shock-idx"]  # type: ignore[attr-defined]


def test_options_other_parts_read_share_the_table(tmp_path: Path) -> None:
    options = {
        "shock-index": {"max_pair_minutes": 5, "suppress_minutes": 60, "suppress_overridden_minutes": 0}
    }
    with _example_app(tmp_path, options) as client:
        assert client.get("/readyz").status_code == 200
        assert client.app.state.cds.services["shock-index"].options.max_pair_minutes == 5  # type: ignore[attr-defined]
