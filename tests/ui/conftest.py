"""Tests here run on a qasync loop inside a real QApplication (offscreen), as the terminal does."""

from __future__ import annotations

import pytest
from PySide6 import QtWidgets

import qasync


def _qasync_loop():
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    return qasync.QEventLoop(app)


@pytest.hookimpl
def pytest_asyncio_loop_factories(config, item):
    return {"qasync": _qasync_loop}
