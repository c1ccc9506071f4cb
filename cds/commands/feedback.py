"""`cds feedback report`: what clinicians did with the cards, per service and card kind."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson

from cds.runtime.settings import SettingsError, load_settings


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("feedback", help="feedback analytics (cards issued, accepted, overridden)")
    sub = p.add_subparsers(dest="feedback_command", required=True, metavar="ACTION")
    r = sub.add_parser(
        "report",
        help="per service and card kind: issued, accepted, overridden, ignored, reasons, model versions",
        description="Report on the cards issued in [--since, --until) from the feedback database "
        "(CDS_DATABASE_URL, default sqlite under CDS_DATA_DIR). Times: YYYY-MM-DD, RFC 3339, 'now', "
        "or an age such as 7d, 12h, 2w.",
    )
    r.add_argument("--since", help="start of the range (default: 30 days before --until)")
    r.add_argument("--until", help="end of the range, exclusive (default: now)")
    r.add_argument("--service", help="only this service id")
    r.add_argument(
        "--format", choices=("table", "json", "csv"), default="table", help="output format (table)"
    )
    r.add_argument(
        "--plot", metavar="PNG", help="also write a PNG of override rate over time (busiest kinds)"
    )
    r.add_argument("--config", help="TOML settings file (CDS_CONFIG)")
    r.add_argument("--data-dir", help="data directory (CDS_DATA_DIR)")
    r.add_argument("--database-url", help="sqlite:///PATH or postgresql://... (CDS_DATABASE_URL)")
    r.set_defaults(func=run_report)


async def _report(args: argparse.Namespace) -> dict:
    from cds.db.urls import database_url, sqlite_path
    from cds.feedback.report import build_report, time_range
    from cds.feedback.store import open_store

    settings = load_settings(args.config, data_dir=args.data_dir, database_url=args.database_url)
    since, until = time_range(args.since, args.until, datetime.now(UTC))
    path = sqlite_path(database_url(settings))
    if path and not Path(path).exists():
        raise ValueError(f"no feedback database at {path} (see --data-dir / --database-url)")
    store = await open_store(settings, background=False)
    try:
        return await build_report(store, since, until, args.service)
    finally:
        await store.close()


def run_report(args: argparse.Namespace) -> int:
    from cds.feedback.report import to_csv, to_table

    try:
        report = asyncio.run(_report(args))
    except (SettingsError, ValueError) as e:
        print(f"cds feedback report: {e}", file=sys.stderr)
        return 2
    except (ConnectionError, OSError) as e:
        print(f"cds feedback report: cannot read the feedback database: {e}", file=sys.stderr)
        return 1
    if args.format == "json":
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif args.format == "csv":
        sys.stdout.write(to_csv(report))
    else:
        sys.stdout.write(to_table(report))
    if args.plot:
        from cds.feedback.plot import plot_override_rate

        path = plot_override_rate(report, args.plot)
        print(f"plot written to {path}", file=sys.stderr)
    return 0
