"""The `cds` command line. Each subcommand lives in `cds/commands/<name>.py` and exposes
`add_parser(subparsers)`, which registers its parser and sets `func(args) -> int`."""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ("serve", "token", "train", "score", "measure", "feedback", "sandbox", "keys", "terminology")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cds", description="CDS Hooks 2.0 decision-support service")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"cds.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"cds.commands.{name}":
                continue  # not built yet
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
