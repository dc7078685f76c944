"""The window comes back as the trader left it: dock layout, geometry, symbol and timeframe (QSettings INI file);
and the frame can be shown before its side panels are built."""

from __future__ import annotations

import pytest
from PySide6 import QtCore

from app.config import Settings
from app.session import Session
from app.ui.log_dock import BufferingHandler
from app.ui.main_window import MainWindow


def _session(tmp_path) -> Session:
    return Session(Settings(journal_path=tmp_path / "j.sqlite3", history_bars=0))


def _window(session, ini, **kw) -> MainWindow:
    ui_state = QtCore.QSettings(str(ini), QtCore.QSettings.Format.IniFormat)
    return MainWindow(session, BufferingHandler(), ui_state=ui_state, **kw)


@pytest.mark.asyncio
async def test_layout_symbol_and_timeframe_restored_on_next_start(qtbot, tmp_path):
    ini = tmp_path / "window.ini"
    session = _session(tmp_path)
    first = _window(session, ini)
    qtbot.addWidget(first)
    first.show()
    first.set_symbol("ETHUSDT")
    first.chart.set_timeframe("5m")
    first.perf_dock.hide()
    first.resize(780, 640)  # Qt keeps it at least the docks' minimum size
    saved = first.size()
    assert saved != QtCore.QSize(1440, 900)  # the size a window without saved state starts with
    first.close()  # closing saves
    assert ini.exists()

    second = _window(session, ini)
    qtbot.addWidget(second)
    second.show()
    assert second.symbol == "ETHUSDT" and second.chart.symbol_choice.currentText() == "ETHUSDT"
    assert second.trading_panel.symbol == "ETHUSDT" and second.decisions_panel.symbol == "ETHUSDT"
    assert second.chart.timeframe == "5m"
    assert not second.perf_dock.isVisible() and second.decisions_dock.isVisible()
    # The offscreen screen is 800 px high, so restoreGeometry may trim the height by the frame margin.
    assert second.width() == saved.width() and abs(second.height() - saved.height()) <= 30
    second.close()
    session.journal.close()


@pytest.mark.asyncio
async def test_flags_keep_their_symbol_over_the_saved_one(qtbot, tmp_path):
    ini = tmp_path / "window.ini"
    st = QtCore.QSettings(str(ini), QtCore.QSettings.Format.IniFormat)
    st.setValue("view/symbol", "SOLUSDT")
    st.setValue("view/timeframe", "1h")
    st.sync()
    session = _session(tmp_path)
    w = _window(session, ini, restore_view=False)
    qtbot.addWidget(w)
    assert (w.symbol, w.chart.timeframe) == ("BTCUSDT", "1m")
    w.close()
    session.journal.close()


@pytest.mark.asyncio
async def test_a_saved_symbol_not_on_this_feed_is_ignored_and_a_garbled_file_is_harmless(qtbot, tmp_path):
    ini = tmp_path / "window.ini"
    ini.write_text("[window]\ngeometry=not a byte array\nstate=@ByteArray(garbage)\n[view]\nsymbol=DOGEUSDT\n"
                   "timeframe=7m\n")
    session = _session(tmp_path)
    w = _window(session, ini)
    qtbot.addWidget(w)
    w.show()
    assert (w.symbol, w.chart.timeframe) == ("BTCUSDT", "1m")
    assert all(d.isVisible() for d in (w.decisions_dock, w.orders_dock, w.trading_dock, w.perf_dock))
    w.close()
    session.journal.close()


@pytest.mark.asyncio
async def test_frame_first_then_panels(qtbot, tmp_path):
    session = _session(tmp_path)
    w = MainWindow(session, BufferingHandler(), build_panels=False)
    qtbot.addWidget(w)
    w.show()
    assert not w.panels_built and not hasattr(w, "blotter")
    w.refresh_slow(0.0)  # the status bar refreshes; panels are not touched before they exist
    w.set_symbol("ETHUSDT")
    w.build_panels()
    assert w.decisions_dock.widget() is w.decisions_panel and w.orders_dock.widget() is w.blotter
    assert w.trading_panel.symbol == "ETHUSDT"
    w.refresh_slow(0.0)
    w.close()
    session.journal.close()


def test_a_window_larger_than_the_screen_opens_maximized_and_one_that_fits_keeps_its_size():
    # 1440x900 on a 1280x720 screen left the status bar (LIVE, prices) below the screen's edge.
    from PySide6 import QtCore

    from app.ui.main_window import should_maximize

    default = QtCore.QSize(1440, 900)
    assert should_maximize(default, QtCore.QRect(0, 0, 1280, 720))
    assert should_maximize(default, QtCore.QRect(0, 0, 1600, 900))  # the height with its title bar does not fit
    assert not should_maximize(default, QtCore.QRect(0, 0, 1600, 1000))
    assert not should_maximize(default, QtCore.QRect(0, 0, 1920, 1050))
    assert should_maximize(QtCore.QSize(1900, 1000), QtCore.QRect(0, 0, 1600, 1000))  # a layout saved elsewhere
