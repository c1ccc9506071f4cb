"""Subcommands of the `cds` CLI, one module each."""
