"""`cds token --aud URL`: print a fresh JWT signed with the development key, for curl and scripts
against `cds serve --dev` run with the same data directory."""

from __future__ import annotations

import argparse
import sys

from cds.auth.devkeys import dev_key_path, mint_dev_token
from cds.runtime.settings import SettingsError, load_settings


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "token",
        help="print a JWT signed with the development key (for `cds serve --dev`)",
        description="Print a fresh JWT (valid 5 minutes) signed with the development key in the data "
        "directory. The service accepts it only in development mode (cds serve --dev / CDS_DEV=1).",
    )
    p.add_argument(
        "--aud",
        required=True,
        help="the exact URL you will call, e.g. http://127.0.0.1:8080/cds-services/deterioration",
    )
    p.add_argument("--data-dir", help="directory holding dev-key.pem (default: CDS_DATA_DIR or settings)")
    p.add_argument("--tenant", help="add a tenant claim")
    p.add_argument("--config", help="config file (default: CDS_CONFIG)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.aud.startswith(("http://", "https://")) or "?" in args.aud or "#" in args.aud:
        print("cds token: --aud must be the exact http(s) URL you will call, no query", file=sys.stderr)
        return 2
    try:
        settings = load_settings(args.config, data_dir=args.data_dir)
    except SettingsError as e:
        print(f"cds token: {e}", file=sys.stderr)
        return 2
    created = not dev_key_path(settings).exists()
    token = mint_dev_token(settings, args.aud, tenant=args.tenant)
    if created:
        print(
            f"cds token: created development key {dev_key_path(settings)}; "
            "start the service with --dev on the same data directory to accept it",
            file=sys.stderr,
        )
    if settings.public_base_url and not args.aud.startswith(settings.public_base_url.rstrip("/") + "/"):
        print(
            f"cds token: warning: public_base_url is {settings.public_base_url}; "
            "the service expects aud to start with it",
            file=sys.stderr,
        )
    print(token)
    return 0
