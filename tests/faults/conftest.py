"""Fault-injection tests share the in-process dev-mode app of tests/core (`caller`, `make_caller`)."""

from tests.core.conftest import caller, make_caller

__all__ = ["caller", "make_caller"]
