"""`cds sandbox check SCENARIOS...`: run QA scenarios against a CDS service and diff the cards.

    cds sandbox check cds/sandbox/scenarios/                 # starts the service in-process
    cds sandbox check my.yaml --url http://127.0.0.1:8080    # against a running service
    cds sandbox check cds/sandbox/scenarios/ --junit results.xml

Exit status: 0 all passed, 1 a scenario differed (or got no answer), 2 bad usage or scenario file.
"""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial
from pathlib import Path

from cds.runtime.settings import SettingsError, load_settings
from cds.sandbox.scenarios import ScenarioError, load_scenarios

SHIPPED = Path(__file__).resolve().parents[1] / "sandbox" / "scenarios"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("sandbox", help="hook sandbox tools: check QA scenarios")
    sub = p.add_subparsers(dest="sandbox_command", required=True, metavar="SUBCOMMAND")
    c = sub.add_parser(
        "check",
        help="run scenario files against a service and report differences",
        description="Run scenario files (YAML/JSON; directories are searched) against a CDS service "
        "and print what differed. Without --url the service is started in-process in development "
        f"mode with a temporary data directory. The shipped scenarios live in {SHIPPED}.",
    )
    c.add_argument(
        "scenarios", nargs="*", type=Path, help=f"scenario files or directories (default: {SHIPPED})"
    )
    c.add_argument("--url", help="base URL of a running service, e.g. http://127.0.0.1:8080")
    c.add_argument(
        "--token",
        help="one bearer JWT for every call: its aud must be the URL called and, as the service refuses a "
        "replayed jti, it serves a single scenario (prefer --key)",
    )
    c.add_argument(
        "--key",
        type=Path,
        help="PEM private key of a client the service trusts: a fresh JWT is "
        "signed for each call (use with --iss, and --kid if its key set has several keys)",
    )
    c.add_argument("--iss", help="issuer for --key tokens, as configured in the service's trusted_clients")
    c.add_argument("--kid", help="key id for --key tokens")
    c.add_argument(
        "--data-dir",
        help="data directory holding the development key used when neither --token "
        "nor --key is given (default: settings; matches `cds serve --dev`)",
    )
    c.add_argument("--config", help="settings file (default: CDS_CONFIG)")
    c.add_argument("--junit", type=Path, help="write JUnit XML results to this file")
    c.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each answer (default 10)")
    c.add_argument("-v", "--verbose", action="store_true", help="also list the cards of passing scenarios")
    c.set_defaults(func=check)


def check(args: argparse.Namespace) -> int:
    from cds.auth.devkeys import mint_dev_token
    from cds.hooks.discovery import Discovery
    from cds.sandbox.report import text_report, write_junit
    from cds.sandbox.runner import TokenFor, key_signer, local_service, run_all
    from cds.web.app import create_app

    try:
        scenarios = load_scenarios(args.scenarios or [SHIPPED])
        settings = load_settings(args.config, data_dir=args.data_dir)
        discovery = Discovery.load(settings.hooks_file)
    except (ScenarioError, SettingsError) as e:
        print(f"cds sandbox check: {e}", file=sys.stderr)
        return 2
    if not scenarios:
        print("cds sandbox check: no scenarios found", file=sys.stderr)
        return 2
    if args.url:
        if not args.url.startswith(("http://", "https://")):
            print("cds sandbox check: --url must be an http(s) base URL", file=sys.stderr)
            return 2
        token_for: TokenFor
        if args.key:
            if not args.iss:
                print("cds sandbox check: --key needs --iss", file=sys.stderr)
                return 2
            try:
                token_for = key_signer(args.key, args.iss, args.kid)
            except (OSError, ValueError, TypeError) as e:
                print(f"cds sandbox check: cannot use --key: {e}", file=sys.stderr)
                return 2
        elif args.token:
            token: str = args.token
            token_for = lambda aud: token  # noqa: E731 (one fixed token for every call)
        else:
            token_for = partial(mint_dev_token, settings)
        results = run_all(scenarios, args.url, discovery, token_for, args.timeout)
    else:
        logging.getLogger("cds").setLevel(logging.WARNING)
        try:
            with local_service(create_app, hooks_file=settings.hooks_file) as (base_url, local):
                results = run_all(
                    scenarios, base_url, discovery, lambda aud: mint_dev_token(local, aud), args.timeout
                )
        except RuntimeError as e:
            print(f"cds sandbox check: {e}", file=sys.stderr)
            return 1
    print(text_report(results, verbose=args.verbose))
    if args.junit:
        write_junit(results, args.junit)
        print(f"JUnit XML written to {args.junit}")
    return 0 if all(r.passed for r in results) else 1
