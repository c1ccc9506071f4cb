"""`cds serve`: run the service with uvicorn."""

from __future__ import annotations

import argparse
import math
import os
import sys

from cds.runtime.settings import SettingsError, load_settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the CDS Hooks service")
    p.add_argument("--host", help="interface to listen on (default 127.0.0.1; CDS_HOST)")
    p.add_argument("--port", type=int, help="port (default 8080; CDS_PORT)")
    p.add_argument("--workers", type=int, help="worker processes (default 1; CDS_WORKERS)")
    p.add_argument("--config", help="TOML settings file (CDS_CONFIG)")
    p.add_argument("--data-dir", help="data directory for the database and keys (CDS_DATA_DIR)")
    p.add_argument(
        "--dev",
        action="store_true",
        help="local development mode: trusts a generated local key (see `cds token`); never in production",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    # Workers are separate processes that read settings from the environment: pass overrides there.
    if args.config:
        os.environ["CDS_CONFIG"] = args.config
    for name in ("host", "port", "workers", "data_dir"):
        value = getattr(args, name)
        if value is not None:
            os.environ["CDS_" + name.upper()] = str(value)
    if args.dev:
        os.environ["CDS_DEV"] = "1"
    from cds.fhir.terminology.maps import MapError, TerminologyMaps

    try:
        settings = load_settings()
        from cds.auth.clients import parse_trusted_clients
        from cds.hooks.discovery import Discovery

        Discovery.load(settings.hooks_file)
        parse_trusted_clients(settings)  # a bad client entry: one line here, not a worker's traceback
        TerminologyMaps.load(settings.terminology_maps)
    except (SettingsError, MapError) as e:
        print(f"cds: invalid settings: {e}", file=sys.stderr)
        return 2
    from cds.runtime.logs import configure_logging

    configure_logging(settings.log_level)
    from cds.web.frontdoor import DoorLimits, GuardedHttpToolsProtocol

    GuardedHttpToolsProtocol.limits = DoorLimits.of(settings)  # workers read the same settings
    uvicorn.run(
        "cds.web.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
        server_header=False,
        # Front door (docs/robustness.md): header size, header/body time and connection limits live
        # in the protocol; in-flight requests are capped too (503); idle keep-alive is uvicorn's.
        http="cds.web.frontdoor:GuardedHttpToolsProtocol",
        limit_concurrency=settings.max_connections + 1,  # uvicorn refuses at >=; ours at >
        timeout_keep_alive=math.ceil(settings.keep_alive_seconds),  # uvicorn takes whole seconds
    )
    return 0
