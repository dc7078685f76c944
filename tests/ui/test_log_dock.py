"""The log dock's level and text filters (re-applied to lines already shown), its bounds, and the crash dialog."""

from __future__ import annotations

import logging

import pytest
from PySide6 import QtCore, QtGui, QtWidgets

from app.ui.crash_dialog import show_crash_dialog
from app.ui.log_dock import BufferingHandler, LogView


def _logger(handler: BufferingHandler, name: str = "tt.logdock") -> logging.Logger:
    log = logging.getLogger(name)
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG)
    return log


@pytest.fixture
def view_and_log(qtbot):
    handler = BufferingHandler()
    view = LogView(handler)
    qtbot.addWidget(view)
    return view, _logger(handler)


def test_level_filter_applies_to_new_and_already_shown_lines(view_and_log):
    view, log = view_and_log
    log.debug("d-one")
    log.info("i-one")
    log.warning("w-one")
    log.error("e-one")
    view.flush()
    shown = view.visible_text()
    assert view.level == logging.INFO  # the default view level
    assert "d-one" not in shown and all(s in shown for s in ("i-one", "w-one", "e-one"))

    view.set_level(logging.WARNING)
    shown = view.visible_text()
    assert "i-one" not in shown and "w-one" in shown and "e-one" in shown
    log.info("i-two")
    log.error("e-two")
    view.flush()
    assert "i-two" not in view.visible_text() and "e-two" in view.visible_text()

    view.set_level(logging.DEBUG)  # earlier records that were hidden come back
    shown = view.visible_text().splitlines()
    assert [line.split()[-1] for line in shown] == ["d-one", "i-one", "w-one", "e-one", "i-two", "e-two"]

    view.level_combo.setCurrentText("ERROR")
    assert [line.split()[-1] for line in view.visible_text().splitlines()] == ["e-one", "e-two"]


def test_text_filter_is_case_insensitive_and_clear_empties_the_view(view_and_log):
    view, log = view_and_log
    log.info("feed connected to Binance")
    log.info("decision HIT for BTCUSDT")
    view.flush()
    view.filter_edit.setText("binance")
    assert view.visible_text().count("\n") == 0 and "Binance" in view.visible_text()
    log.info("another BINANCE line")
    log.info("unrelated")
    view.flush()
    assert "another BINANCE line" in view.visible_text() and "unrelated" not in view.visible_text()
    view.filter_edit.clear()
    assert "unrelated" in view.visible_text()
    view.clear()
    assert view.visible_text() == ""


def test_handler_and_view_are_bounded(qtbot):
    handler = BufferingHandler(maxlen=10)
    view = LogView(handler, history=25)
    qtbot.addWidget(view)
    log = _logger(handler)
    for i in range(100):
        log.info("line %d", i)
    assert len(handler.pending) == 10  # a log storm between two UI ticks keeps the newest
    view.flush()
    assert not handler.pending
    for i in range(100, 140):
        log.info("line %d", i)
        view.flush()
    view.set_level(logging.DEBUG)  # re-render from the bounded history
    lines = view.visible_text().splitlines()
    assert len(lines) == 25 and lines[-1].endswith("line 139")
    assert view.text.blockCount() <= 25


def test_handler_takes_what_the_logger_passes(qtbot):
    handler = BufferingHandler()
    log = _logger(handler, "tt.logdock.level")
    log.setLevel(logging.INFO)  # as the root logger is without -v
    log.debug("not passed")
    log.info("passed")
    assert [line for _, line in handler.take()][-1].endswith("passed") and not handler.pending


def test_crash_dialog_shows_a_selectable_path_without_blocking(qtbot, tmp_path, monkeypatch):
    opened: list[str] = []
    monkeypatch.setattr(QtGui.QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()) or True)
    path = tmp_path / "crashes" / "crash-20240101-000000.txt"
    box = show_crash_dialog(path)  # returns at once: the box is opened, not exec()'d
    qtbot.waitUntil(box.isVisible, timeout=2000)
    assert str(path) in box.text() and "without secrets" in box.text()
    assert box.textInteractionFlags() & QtCore.Qt.TextInteractionFlag.TextSelectableByMouse
    folder = next(b for b in box.buttons() if b.text() == "Open folder")
    folder.click()
    assert opened == [str(path.parent)] and box.isVisible()  # opening the folder leaves the box open
    box.button(QtWidgets.QMessageBox.StandardButton.Close).click()
    qtbot.waitUntil(lambda: not box.isVisible(), timeout=2000)


def _tabs_with_log(qtbot, handler: BufferingHandler) -> tuple[QtWidgets.QTabWidget, LogView]:
    tabs = QtWidgets.QTabWidget()
    qtbot.addWidget(tabs)
    tabs.addTab(QtWidgets.QLabel("another panel"), "Other")
    view = LogView(handler)
    tabs.addTab(view, "Log")
    tabs.resize(500, 200)
    tabs.show()
    qtbot.waitExposed(tabs)
    return tabs, view


def _at_newest(view: LogView) -> bool:
    bar = view.text.verticalScrollBar()
    return bar.maximum() > 0 and bar.value() == bar.maximum()


def test_the_log_opens_at_the_newest_line_and_follows_new_ones_unless_scrolled_up(qtbot):
    handler = BufferingHandler()
    log = _logger(handler, "tt.logdock.follow")
    tabs, view = _tabs_with_log(qtbot, handler)
    for i in range(300):  # lines arrive while the Log tab is not the one shown
        log.info("line %d", i)
    view.flush()
    tabs.setCurrentIndex(1)  # the trader opens the Log tab: the newest line is in view, not the first
    qtbot.wait(30)  # laid out at its size
    assert _at_newest(view)
    for i in range(300, 320):
        log.info("line %d", i)
    view.flush()
    qtbot.waitUntil(lambda: _at_newest(view))  # following the newest
    bar = view.text.verticalScrollBar()
    bar.setValue(bar.maximum() // 2)  # the trader scrolls up to read: new lines do not pull the view away
    kept = bar.value()
    for i in range(320, 340):
        log.info("line %d", i)
    view.flush()
    QtCore.QCoreApplication.processEvents()
    assert bar.value() == kept
    bar.setValue(bar.maximum())  # back at the bottom: following again
    for i in range(340, 360):
        log.info("line %d", i)
    view.flush()
    qtbot.waitUntil(lambda: _at_newest(view))
    assert "line 359" in view.visible_text()
    tabs.setCurrentIndex(0)  # away and back: the newest again
    bar.setValue(0)
    tabs.setCurrentIndex(1)
    qtbot.waitUntil(lambda: _at_newest(view))
