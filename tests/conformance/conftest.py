"""The in-process dev-mode app of tests/core (`caller`, `make_caller`), shared here."""

from tests.core.conftest import caller, make_caller

__all__ = ["caller", "make_caller"]
