"""What the trader asks from the chart and the Orders dock reaches the desk's commands, through the same risk
checks as a new order: a dragged order line replaces the order at the new price, a dragged stop-loss moves the
position's stop, the blotter's Modify… loads the ticket and its Cancel cancels; the chart draws the working orders
and the account panel renders the view model's snapshot."""

from __future__ import annotations

from decimal import Decimal

import pytest
from PySide6 import QtWidgets

from app.config import Settings
from app.models import OrderOrigin, OrderRequest, OrderType, Side
from app.session import Session
from app.ui.log_dock import BufferingHandler
from app.ui.main_window import MainWindow, apply_theme
from tests.conftest import wait_until
from tests.ui.test_window_shell import _priced

D = Decimal


@pytest.fixture
def window(qtbot, tmp_path):
    apply_theme(QtWidgets.QApplication.instance())
    session = Session(Settings(journal_path=tmp_path / "j.sqlite3", history_bars=0, symbol="BTCUSDT"))
    w = MainWindow(session, BufferingHandler())
    qtbot.addWidget(w)
    w.show()
    _priced(session, "BTCUSDT", 60000.0, spread=0.5)
    yield w
    session.journal.close()


async def _limit_buy(window, price: str) -> str:
    result = await window.session.desk.submit_manual(
        OrderRequest("BTCUSDT", Side.BUY, OrderType.LIMIT, D("0.01"), limit_price=D(price), origin=OrderOrigin.MANUAL))
    assert result.ok, result.message
    return result.order_id


def _working(window) -> list:
    return window.session.desk.broker.open_orders("BTCUSDT")


@pytest.mark.asyncio
async def test_a_working_order_is_drawn_and_dragging_its_line_replaces_it_at_the_new_price(window):
    oid = await _limit_buy(window, "59500")
    window.refresh_slow(0.0)
    drawn = window.view_model.chart_orders("BTCUSDT")
    assert [(r.order_id, r.price) for r in drawn] == [(oid, D("59500"))]
    assert oid in window.chart.order_lines  # the line the trader drags

    window.chart.order_moved.emit(oid, D("59400.00"))
    await wait_until(lambda: [o.request.limit_price for o in _working(window)] == [D("59400.00")]
                     and window.trading_panel.last_result is not None, what="the order replaced at the dragged price")
    assert window.trading_panel.last_result.ok and "replaces order" in window.trading_panel.last_result.message
    new_id = window.trading_panel.last_result.order_id
    window.refresh_slow(0.0)
    old_row = next(r for r in window.view_model.blotter().orders if r.order_id == oid)
    assert old_row.status == "REPLACED" and new_id in old_row.note  # the blotter links the two
    journaled = window.session.journal.history(0).orders
    assert any(o.id == oid and o.reject_reason == f"replaced by {new_id}" for o in journaled)


@pytest.mark.asyncio
async def test_a_drag_beyond_the_risk_band_is_refused_in_words_and_the_order_stays(window):
    oid = await _limit_buy(window, "59500")
    window.chart.order_moved.emit(oid, D("40000.00"))  # 33 % from the market: outside the price band
    await wait_until(lambda: window.trading_panel.last_result is not None
                     and not window.trading_panel.last_result.ok, what="the refusal")
    assert "risk" in window.trading_panel.last_result.message
    assert [o.id for o in _working(window)] == [oid]


@pytest.mark.asyncio
async def test_dragging_the_stop_loss_line_moves_the_positions_stop(window):
    desk = window.session.desk
    result = await desk.submit_manual(OrderRequest("BTCUSDT", Side.BUY, OrderType.MARKET, D("0.01"),
                                                   origin=OrderOrigin.MANUAL, stop_loss_pct=D("2")))
    assert result.ok, result.message
    _priced(window.session, "BTCUSDT", 60000.0, spread=0.5)
    await wait_until(lambda: desk.bracket_levels("BTCUSDT")[0] is not None, what="the position's stop-loss")
    window.chart.bracket_moved.emit("BTCUSDT", "SL", D("59000.00"))
    await wait_until(lambda: desk.bracket_levels("BTCUSDT")[0] == D("59000.00"), what="the stop moved")


@pytest.mark.asyncio
async def test_the_blotters_modify_loads_the_ticket_and_its_cancel_cancels(window):
    oid = await _limit_buy(window, "59500")
    window.refresh_slow(0.0)
    window.blotter.modify_requested.emit(oid)
    assert window.trading_panel.modifying is not None and window.trading_panel.modifying.id == oid
    window.blotter.cancel_requested.emit(oid)
    await wait_until(lambda: not _working(window), what="the order canceled")


def test_the_account_panel_renders_the_view_models_snapshot(window):
    window.refresh_slow(0.0)
    view = window.view_model.account("BTCUSDT")
    assert window.trading_panel.equity.text() == view.row("equity").value


@pytest.mark.asyncio
async def test_a_panel_that_fails_to_refresh_is_counted_and_logged_and_the_others_still_refresh(window, monkeypatch,
                                                                                                caplog):
    oid = await _limit_buy(window, "59500")

    def broken() -> None:
        raise RuntimeError("a bad row")

    monkeypatch.setattr(window.blotter, "refresh", broken)
    window.refresh_slow(0.0)
    window.refresh_slow(0.0)
    assert window.render_failures == {"orders": 2}
    assert sum("orders panel failed to refresh" in r.getMessage() for r in caplog.records) == 1  # once a minute
    assert oid in window.chart.order_lines  # the chart's levels come after the broken panel: still drawn
    assert window.trading_panel.equity.text() == window.view_model.account("BTCUSDT").row("equity").value


def test_the_view_model_is_not_imported_before_the_first_paint():
    # Its snapshot types take ~10-30 ms to define: made on the first refresh, after the window is on screen.
    import json
    import subprocess
    import sys

    code = ("import sys, json, app.__main__, app.session, app.ui.main_window; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('app.view'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "app.view.model" not in json.loads(out.stdout)


def test_the_4hz_refresh_spreads_its_panels_over_turns_of_the_loop(window, qtbot):
    """No single hold of the event loop is the sum of all panels: each runs (and is timed) in a turn of its own."""
    window.refresh_slow(0.0)  # everything once, now
    calls: list[str] = []
    timed: list[int] = []
    window._render = lambda name, render: calls.append(name)  # which panels ran, and when
    original = window.bridge.timed
    window.bridge.timed = lambda refresh: (timed.append(1), original(refresh))
    window.refresh_slow(0.0, spread=True)
    assert calls == [], "nothing ran inside the timer's own turn"
    qtbot.waitUntil(lambda: "log" in calls, timeout=2000)
    assert calls[:3] == ["decisions", "orders", "account"] and calls[-2:] == ["chart levels", "log"]
    assert {"watchlist", "order book"} <= set(calls)
    assert len(timed) == len(calls)  # each one a UI frame of its own


def test_a_tick_makes_every_panel_current_at_once(window, qtbot):
    """The smoke test's screenshot and the tests call tick(): the status bar and the panels show one moment."""
    calls: list[str] = []
    window._render = lambda name, render: calls.append(name)
    window.refresh_perf = lambda spread=True: None  # the performance panel's own refresh is not what this checks
    window.bridge.tick()
    assert "log" in calls and "order book" in calls  # all ran inside the call, nothing left for later turns
