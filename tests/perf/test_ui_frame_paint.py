"""A repaint of the window is a UI frame: Qt paints in a turn of the loop of its own, after the refresh that
changed things, and in a real window that paint was most of what the UI held the loop for."""

from __future__ import annotations

import time

from PySide6 import QtWidgets

from app.perf.metrics import Recorder
from app.ui.bridge import PaintTimer


class SlowPaint(QtWidgets.QWidget):
    def __init__(self) -> None:
        super().__init__()
        self.painted = 0

    def paintEvent(self, event) -> None:
        self.painted += 1
        time.sleep(0.02)  # a costly paint


def test_each_repaint_of_the_window_is_timed_and_still_painted(qtbot):
    frames, paints = Recorder("ui_frame"), Recorder("ui_paint")
    window = QtWidgets.QMainWindow()
    child = SlowPaint()
    window.setCentralWidget(child)
    window.resize(300, 200)
    timer = PaintTimer(frames, paints)
    window.installEventFilter(timer)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    qtbot.wait(200)  # the first paints (on expose) are done
    before, timed = child.painted, paints.snapshot("all").count
    child.update()
    qtbot.waitUntil(lambda: child.painted > before and paints.snapshot("all").count > timed, timeout=3000)
    snap = paints.snapshot("all")
    assert snap.max >= 19_000_000  # the child's paint is inside the window's repaint
    assert frames.snapshot("all").count == snap.count
    window.removeEventFilter(timer)
