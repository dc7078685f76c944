"""Async tests in this folder run on a qasync loop (see tests/qt_loop.py)."""

from tests.qt_loop import pytest_asyncio_loop_factories  # noqa: F401 - a pytest hook
