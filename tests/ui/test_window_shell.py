"""The window's shell offscreen: docks named for what they hold, closable and floatable, back on top when
reopened; a 1280x720 screen fits; the status bar keeps the prices at 1280 px; the SLOW badge; every key bound from
the hotkey table and listed by Help."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from PySide6 import QtCore, QtGui, QtWidgets

from app.config import HOTKEY_ACTIONS, Settings
from app.models import Quote, Side, Trade
from app.session import Session
from app.trading.desk import ActionResult
from app.ui.log_dock import BufferingHandler
from app.ui.main_window import UI_STATE_VERSION, MainWindow, apply_theme
from tests.conftest import wait_until
from tests.ui.test_decisions_panel import decision

DOCK_TITLES = ["Watchlist", "Order book", "Trades", "Decisions", "Orders", "Account · Ticket", "Performance", "Log"]


def _priced(session: Session, symbol: str, price: float, spread: float = 0.0) -> None:
    now_ms = int(time.time() * 1000)
    batch = [Trade(symbol, price, 1.0, Side.BUY, 1, now_ms, 0),
             Quote(symbol, price - spread, 1e6, price + spread, 1e6, 1, now_ms, 0)]
    session.desk.on_market(batch)
    session.desk.broker.on_market(batch)
    session.market.apply(list(batch))  # what the status bar reads: last trade and quote


@pytest.fixture
def window(qtbot, tmp_path):
    apply_theme(QtWidgets.QApplication.instance())
    session = Session(Settings(journal_path=tmp_path / "j.sqlite3", history_bars=0))
    w = MainWindow(session, BufferingHandler())
    qtbot.addWidget(w)
    w.show()
    yield w
    session.journal.close()  # qtbot closes the window


def test_docks_are_named_for_what_they_hold_closable_floatable_and_in_the_view_menu(window):
    assert [d.windowTitle() for d in window.docks] == DOCK_TITLES
    assert UI_STATE_VERSION >= 3  # the docks changed: an old saved layout is not misapplied
    view = next(a.menu() for a in window.menuBar().actions() if a.text() == "&View")
    toggles = [a.text() for a in view.actions()]
    F = QtWidgets.QDockWidget.DockWidgetFeature
    for dock in window.docks:
        assert dock.features() & F.DockWidgetClosable and dock.features() & F.DockWidgetFloatable
        assert dock.windowTitle() in toggles
        close = dock.findChild(QtWidgets.QAbstractButton, "qt_dockwidget_closebutton")
        assert close is not None and close.isVisible() and not close.icon().isNull(), dock.windowTitle()
    assert all(d.isVisible() for d in window.docks)


def test_a_floating_dock_reopened_from_the_view_menu_comes_back_active(window, qtbot):
    # How it looks is checked under a real X server (tests/ui/test_real_window_keys.py): offscreen a floating dock
    # has no title bar of its own.
    dock = window.perf_dock
    dock.setFloating(True)
    qtbot.waitUntil(dock.isFloating)
    toggle = dock.toggleViewAction()
    toggle.trigger()  # closed from the View menu ...
    assert not dock.isVisible()
    window.activateWindow()
    qtbot.waitUntil(lambda: QtWidgets.QApplication.activeWindow() is window)
    toggle.trigger()  # ... and reopened: visible and active, not left behind the main window
    qtbot.waitUntil(dock.isVisible)
    qtbot.waitUntil(lambda: QtWidgets.QApplication.activeWindow() is dock, timeout=2000)
    assert dock.isFloating()


def test_the_smoke_json_lists_the_open_docks_by_title(window):
    from app.__main__ import smoke_counters

    assert smoke_counters(window.session, window)["docks"] == DOCK_TITLES
    window.trades_dock.close()
    window.log_dock.close()
    assert smoke_counters(window.session, window)["docks"] == [
        t for t in DOCK_TITLES if t not in ("Trades", "Log")]


def test_the_window_fits_a_1280x720_work_area_with_every_panel_built(window, qtbot):
    session = window.session
    for symbol in ("BTCUSDT", "ETHUSDT", "SOLUSDT"):
        _priced(session, symbol, 60_000.0 if symbol == "BTCUSDT" else 3_000.0)
        session.desk.on_decision(decision(symbol), None)  # pending cards pinned in the Decisions dock
    window.refresh_slow(0.0)
    assert window.panels_built and len(window.decisions_panel.cards) == 3
    hint = window.minimumSizeHint()
    assert hint.width() <= 1264 and hint.height() <= 672, hint
    window.resize(1264, 672)
    qtbot.waitUntil(lambda: window.size() == QtCore.QSize(1264, 672))


def test_at_1280_the_status_bar_keeps_the_prices_whole_and_drops_less_important_items(window, qtbot):
    session = window.session
    _priced(session, "BTCUSDT", 60_123.45, spread=0.01)
    session.desk.on_decision(decision("BTCUSDT"), None)
    window.resize(1280, 700)
    # A long fault text and the SLOW badge compete for room.
    window.status_strip.apply(window.perf_badge, _slow())
    window.refresh_slow(1234.0)
    qtbot.waitUntil(lambda: window.size().width() == 1280)
    window.status_strip.fit()
    price = window.price_label
    assert price.text() == "BTCUSDT 60,123.45  bid 60,123.44 / ask 60,123.46"
    assert price.isVisible()
    qtbot.waitUntil(lambda: price.width() >= price.sizeHint().width())  # whole, not "bid 6…"
    assert window.mode_label.isVisible()
    shown = window.status_strip.shown()
    assert shown.index(window.mode_label) < shown.index(price)  # PAPER/LIVE, then the prices
    # Narrower still: the rate and the model go, the prices stay.
    window.status_strip.resize(520, window.status_strip.height())
    window.status_strip.fit()
    assert price.isVisibleTo(window) and window.mode_label.isVisibleTo(window)
    assert not window.model_status.isVisibleTo(window) and not window.rate_label.isVisibleTo(window)


def _slow():
    from app.view.status import RANK_SLOW, StatusItem

    return StatusItem("slow", "⚠ SLOW: loop lag p99 120 ms", "warn", RANK_SLOW, "")


def test_the_slow_badge_follows_the_sustained_rule_not_one_window(window, monkeypatch):
    p99 = {"loop_lag": 120e6, "ui_frame": 5e6}
    monkeypatch.setattr(window.perf_panel, "badge_p99_ns", lambda: dict(p99))
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    window._show_perf_badge("loop lag p99 120 ms")
    assert window.perf_badge.isHidden()  # one window over the limit: no badge
    for _ in range(40):
        now[0] += 1.0
        window._show_perf_badge("")
    assert window.perf_badge.isVisible() and window.perf_badge.text() == "⚠ SLOW: loop lag p99 120 ms"
    p99["loop_lag"] = 2e6
    for _ in range(20):
        now[0] += 1.0
        window._show_perf_badge("")
    assert window.perf_badge.isHidden()  # recovered: gone


def _keys_bound(window: MainWindow) -> set[str]:
    keys = {a.shortcut().toString() for a in window.findChildren(QtGui.QAction) if not a.shortcut().isEmpty()}
    keys |= {s.key().toString() for s in window.findChildren(QtGui.QShortcut) if s.isEnabled()
             and not s.key().isEmpty()}
    return keys


def test_every_key_is_bound_from_the_table_and_help_lists_them_all(window, qtbot):
    dialog = window.open_keyboard_help()
    qtbot.addWidget(dialog)
    listed = {dialog.table.item(i, 0).text() for i in range(dialog.table.rowCount())}
    bound = _keys_bound(window)
    assert bound, "no keys bound"
    portable = {QtGui.QKeySequence(k).toString(QtGui.QKeySequence.SequenceFormat.NativeText) for k in bound}
    assert portable <= listed, portable - listed  # nothing answers to a key Help does not list
    for name, _, label, default in HOTKEY_ACTIONS:
        action = window.hotkey_actions[name]
        assert action.shortcut() == QtGui.QKeySequence(default), name
        assert any(dialog.table.item(i, 1).text() == label for i in range(dialog.table.rowCount()))
    # F1 opens it (the same dialog again, raised); the End key is the window's, not the chart's as well.
    assert window.hotkey_actions["keyboard_help"].shortcut() == QtGui.QKeySequence("F1")
    assert not [s for s in window.chart.findChildren(QtGui.QShortcut) if s.isEnabled()]


def test_a_key_from_the_settings_file_is_the_one_bound_and_listed(qtbot, tmp_path):
    session = Session(Settings(journal_path=tmp_path / "j.sqlite3", history_bars=0,
                               hotkeys={"buy_at_ask": "F9", "cancel_all": ""}))
    w = MainWindow(session, BufferingHandler())
    qtbot.addWidget(w)
    assert w.hotkey_actions["buy_at_ask"].shortcut() == QtGui.QKeySequence("F9")
    assert w.hotkey_actions["cancel_all"].shortcut().isEmpty()
    dialog = w.open_keyboard_help()
    qtbot.addWidget(dialog)
    rows = {dialog.table.item(i, 1).text(): dialog.table.item(i, 0).text() for i in range(dialog.table.rowCount())}
    assert rows["Buy at the ask (the ticket's quantity)"] == "F9"
    assert rows["Cancel all working orders (positions and their stops and targets stay)"] == "(none)"
    w.close()
    session.journal.close()


@pytest.mark.asyncio
async def test_trading_keys_reach_the_ticket_and_the_desk(window, qtbot, monkeypatch):
    sent: list = []
    panel = window.trading_panel
    monkeypatch.setattr(panel, "send_at_touch", sent.append, raising=False)
    window.hotkey_actions["buy_at_ask"].trigger()
    window.hotkey_actions["sell_at_bid"].trigger()
    assert sent == [Side.BUY, Side.SELL]
    calls: list[str] = []

    async def cancel_all(symbols=None) -> ActionResult:
        calls.append("cancel_all")
        return ActionResult(True, "2 working orders canceled")

    async def flatten_all() -> ActionResult:
        calls.append("flatten_all")
        return ActionResult(True, "flat")

    monkeypatch.setattr(window.session.desk, "cancel_all", cancel_all)
    monkeypatch.setattr(window.session.desk, "flatten_all", flatten_all)
    window.hotkey_actions["cancel_all"].trigger()
    window.hotkey_actions["flatten_all"].trigger()
    await wait_until(lambda: calls == ["cancel_all", "flatten_all"], timeout=5, what="both commands")
    await wait_until(lambda: panel.last_result is not None and panel.last_result.message == "flat", timeout=5,
                     what="the result in the ticket")


def test_timeframe_keys_switch_the_chart(window):
    window.hotkey_actions["timeframe_5m"].trigger()
    assert window.chart.timeframe == "5m"
    window.hotkey_actions["timeframe_1m"].trigger()
    assert window.chart.timeframe == "1m"


def test_settings_dialog_names_the_flags_overriding_the_file(qtbot, tmp_path):
    session = Session(Settings(journal_path=tmp_path / "j.sqlite3", history_bars=0))
    w = MainWindow(session, BufferingHandler(), config_path=tmp_path / "settings.toml",
                   flag_overrides={"llm_model": "--model gpt-4o"})
    qtbot.addWidget(w)
    dialog = w.open_settings()
    qtbot.addWidget(dialog)
    assert dialog.flags_note.isVisible() and "--model gpt-4o" in dialog.flags_note.text()
    w.close()
    session.journal.close()


def test_decimal_prices_in_the_status_bar_use_the_instruments_precision(window):
    _priced(window.session, "BTCUSDT", 60_000.0)
    view = window.status_snapshot(0.0)
    assert view.keys[0] == "prices" and view.get("prices").text.startswith("BTCUSDT 60,000.00")
    assert isinstance(window.session.desk.portfolio.equity(), Decimal)


@pytest.mark.asyncio
async def test_the_market_docks_hold_their_panels_and_send_what_the_trader_chooses(window):
    assert window.watchlist_dock.widget() is window.watchlist_panel
    assert window.book_dock.widget() is window.book_panel and window.trades_dock.widget() is window.tape_panel
    _priced(window.session, "BTCUSDT", 60_000.0)
    _priced(window.session, "ETHUSDT", 3_000.0)
    window.refresh_slow(0.0)
    assert window.watchlist_panel.model.rowCount() >= 2
    window.watchlist_panel.symbol_chosen.emit("ETHUSDT")  # a click on the watchlist's row
    assert window.symbol == "ETHUSDT" and window.trading_panel.symbol == "ETHUSDT"
    window.book_panel.price_chosen.emit(Decimal("3000.5"))  # a click on a ladder level
    assert window.trading_panel.price.text() == "3000.50"
