"""A pytest-asyncio hook that runs async tests on a qasync loop inside a real QApplication (offscreen), as the
terminal does. Conftests of Qt test folders import it: ``from tests.qt_loop import pytest_asyncio_loop_factories``.
"""

from __future__ import annotations

import pytest
import qasync
from PySide6 import QtWidgets


def _qasync_loop():
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    app.setQuitOnLastWindowClosed(False)  # as in the terminal: closing a window must not stop the loop
    return qasync.QEventLoop(app)


@pytest.hookimpl
def pytest_asyncio_loop_factories(config, item):
    return {"qasync": _qasync_loop}
