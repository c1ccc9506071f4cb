"""The in-process app fixtures of tests/core, shared here."""

from tests.core.conftest import make_caller  # noqa: F401
