"""The Orders dock: defects a trader met in a real-window walkthrough. The selection follows its order by key and
never slides to a neighbour (Cancel selected must cancel what the trader picked, or nothing); rows made before the
exchange's instruments arrived are formatted again in their precision; the History header adds up what it lists;
a replaced order names the one that replaced it; the tables fit a 1280 px window without scrolling sideways."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D
from types import SimpleNamespace

from PySide6 import QtCore, QtWidgets

from app.market.instruments import Instrument, Instruments
from app.models import Fill, Liquidity, Order, OrderOrigin, OrderRequest, OrderStatus, OrderType, Position, Side
from app.trading.journal import HistoryRecords
from app.ui.blotter import Blotter, column_menu
from app.view.blotter import RowCache, TradeHistory, blotter_view
from tests.test_view_blotter import INSTRUMENTS, NOW

UTC = dt.UTC
BTC = Instrument.from_steps("BTCUSDT", D("0.01"), D("0.00001"))


def order(oid: str, price: str = "60000", *, ms: int = NOW, status: OrderStatus = OrderStatus.NEW,
          origin: OrderOrigin = OrderOrigin.MANUAL, side: Side = Side.BUY) -> Order:
    req = OrderRequest("BTCUSDT", side, OrderType.LIMIT, D("0.01"), limit_price=D(price), origin=origin)
    return Order(oid, req, status, created_ms=ms)


def snapshot(working=(), orders=(), fills=(), positions=(), history=None, instruments=INSTRUMENTS, cache=None):
    return blotter_view(working=working, orders=orders, fills=fills, positions=positions, mark=lambda s: None,
                        instruments=instruments, now_ms=NOW, history=history, tz=UTC, cache=cache)


def shown(blotter: Blotter, rows: list[Order]) -> Blotter:
    blotter.render(snapshot(working=rows))
    return blotter


# ----- 1. the selection follows its order, and clears when the order leaves ------------------------------------
def test_a_selected_order_that_leaves_the_working_list_leaves_nothing_selected(qtbot):
    blotter = Blotter()
    qtbot.addWidget(blotter)
    blotter.show()
    x, y, tp = order("X", ms=NOW - 1), order("Y", "61000", ms=NOW - 2), order("TP", "65000", ms=NOW - 3,
                                                                          origin=OrderOrigin.BRACKET)
    shown(blotter, [x, y, tp])
    view = blotter.working_view
    rect = view.visualRect(blotter.working.index(0, 0))
    qtbot.mouseClick(view.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=rect.center())
    assert blotter.selected_working_order_id() == "X"
    # Replace X (cancel + new): X leaves the working list, its replacement X2 arrives at the top
    shown(blotter, [order("X2", "59000", ms=NOW), y, tp])
    assert blotter.selected_working_order() is None, "the selection slid to another order"
    cancel: list[str] = []
    blotter.cancel_requested.connect(cancel.append)
    view.setFocus()
    qtbot.keyClick(view, QtCore.Qt.Key.Key_Delete)
    assert cancel == [], "Delete cancelled an order the trader never picked"
    shown(blotter, [y, tp])  # and again: nothing slides onto the take-profit leg
    assert blotter.selected_working_order() is None


def test_the_selection_stays_on_its_order_when_rows_before_it_come_and_go(qtbot):
    blotter = Blotter()
    qtbot.addWidget(blotter)
    blotter.show()
    a, b, y, c = order("A", ms=NOW), order("B", ms=NOW - 1), order("Y", ms=NOW - 2), order("C", ms=NOW - 3)
    shown(blotter, [a, b, y, c])
    blotter.working_view.selectRow(2)
    assert blotter.selected_working_order_id() == "Y"
    shown(blotter, [y, c])  # A and B filled
    assert blotter.selected_working_order_id() == "Y"
    shown(blotter, [order("N1", ms=NOW + 2), order("N2", ms=NOW + 1), y, c])  # two new ones above it
    assert blotter.selected_working_order_id() == "Y"
    shown(blotter, [y])  # the one after it left: still Y
    assert blotter.selected_working_order_id() == "Y"
    shown(blotter, [])
    assert blotter.selected_working_order() is None


# ----- 2. rows made before the instruments arrived are formatted again ---------------------------------------
def test_rows_made_before_the_exchanges_instruments_arrived_are_formatted_again():
    instruments = Instruments()  # a restart: nothing loaded yet, the 8-decimal fallback
    cache = RowCache()
    o = order("O1", "57910.53", status=OrderStatus.FILLED)
    f = Fill("F1", "O1", "BTCUSDT", Side.BUY, D("0.01"), D("57910.53"), D("0.5792638"), Liquidity.TAKER, NOW)
    early = snapshot(orders=[o], fills=[f], instruments=instruments, cache=cache)
    assert early.fills[0].price == "57,910.53000000"  # the fallback, as the trader saw it
    instruments.add({"BTCUSDT": BTC}, {})  # the exchange's filters arrive
    late = snapshot(orders=[o], fills=[f], instruments=instruments, cache=cache)
    assert (late.fills[0].qty, late.fills[0].price, late.fills[0].fee) == ("0.01000", "57,910.53", "0.5793 USDT")
    assert (late.orders[0].qty, late.orders[0].price) == ("0.01000", "57,910.53")


# ----- 3. the History header adds up what it lists; Filled says 0 -----------------------------------------------
def test_the_history_header_is_the_sum_of_the_closed_positions_listed():
    def f(fid, side, qty, price, ms, fee):
        return Fill(fid, "O" + fid, "BTCUSDT", side, D(qty), D(price), D(fee), Liquidity.TAKER, ms)
    h = TradeHistory.from_records(HistoryRecords(NOW - 86_400_000, {}, [
        f("1", Side.BUY, "0.01", "60000", NOW - 5000, "0.60"),
        f("2", Side.SELL, "0.01", "59900", NOW - 4000, "0.60"),  # -1.00 - 1.20 = -2.20
        f("3", Side.BUY, "0.01", "60000", NOW - 3000, "0.60"),  # still open: its entry fee
    ], []))
    v = snapshot(history=h, positions=[Position("BTCUSDT", D("0.01"), D("60000"))])
    listed = sum(D(r.realised) for r in v.closed)
    assert listed == D("-2.20")
    assert "-2.20 USDT" in v.history_line and "1 position closed" in v.history_line, v.history_line
    assert "-2.80" not in v.history_line.split("·")[0]
    assert "open" in v.history_line and "-0.60" in v.history_line, "the open position's fee said apart"


def test_a_working_order_with_nothing_filled_says_0_in_its_precision():
    v = snapshot(working=[order("W1")])
    assert v.working[0].filled == "0.00000"


# ----- 4. a replaced order names its replacement ---------------------------------------------------------------
def test_a_replaced_order_says_which_order_replaced_it():
    old = order("L1", "65000", status=OrderStatus.CANCELED, origin=OrderOrigin.BRACKET, side=Side.SELL)
    old.reject_reason = "moved: replaced by P17-9"
    plain = order("C1", status=OrderStatus.CANCELED)
    plain.reject_reason = "canceled by request"
    v = snapshot(orders=[old, plain])
    rows = {r.order_id: r for r in v.orders}
    assert rows["L1"].status == "REPLACED" and "replaced by P17-9" in rows["L1"].note
    assert rows["C1"].status == "CANCELED"


# ----- the tables fit the window ---------------------------------------------------------------------------------
def test_history_and_orders_fit_a_1280_px_window_without_scrolling_sideways(qtbot):
    def f(fid, side, price, ms):
        return Fill(fid, "O" + fid, "BTCUSDT", side, D("0.01"), D(price), D("0.5792638"), Liquidity.TAKER, ms)
    h = TradeHistory.from_records(HistoryRecords(NOW - 86_400_000, {}, [
        f("1", Side.BUY, "57910.53", NOW - 90_000_000), f("2", Side.SELL, "58010.53", NOW - 5000)], []))
    orders = [order(f"P1796533689487-{i}", ms=NOW - i) for i in range(5)]
    for width in (620, 700):  # the Orders dock at 1280 and at 1600 px (the walkthrough's windows)
        blotter = Blotter()
        qtbot.addWidget(blotter)
        blotter.resize(width, 260)
        blotter.show()
        blotter.render(snapshot(orders=orders, working=orders, fills=[f("9", Side.BUY, "57910.53", NOW)],
                                history=h))
        for tab in range(blotter.count()):
            blotter.setCurrentIndex(tab)
            qtbot.wait(10)
            for view in blotter.currentWidget().findChildren(QtWidgets.QTableView) or [blotter.currentWidget()]:
                bar = view.horizontalScrollBar()
                titles = [c.title for n, c in enumerate(view.model().columns) if not view.isColumnHidden(n)]
                assert bar.maximum() == 0, f"{width} px, {blotter.tabText(tab)} {titles}: scrolls {bar.maximum()} px"
                model, fm = view.model(), view.fontMetrics()
                for n, col in enumerate(model.columns):
                    if col.align_right and not view.isColumnHidden(n):  # a number is never cut
                        widest = max((fm.horizontalAdvance(t) for t in model.texts(n)), default=0)
                        assert widest <= view.columnWidth(n), f"{width} px, {col.title} is cut"
    assert "Exit" in [a.text() for a in column_menu(blotter.closed_view).actions()]  # a hidden one can be shown

def test_the_desks_blotter_formats_again_when_the_instruments_arrive_with_nothing_else_new():
    from app.trading.portfolio import Portfolio
    from app.view.blotter import DeskBlotter

    f = Fill("F1", "O1", "BTCUSDT", Side.BUY, D("0.01"), D("57910.53"), D("0.5792638"), Liquidity.TAKER, NOW)

    broker = SimpleNamespace(orders=[], open_orders=lambda: [])
    # what DeskBlotter reads of a trading desk, after a restart: one fill, no instruments yet
    desk = SimpleNamespace(broker=broker, portfolio=Portfolio(starting_cash=D("1000")), fills=[f],
                           books={"BTCUSDT": None}, version=7, instruments=Instruments(), journal=None,
                           last_price=lambda symbol: None, now_ms=lambda: NOW)
    blotter = DeskBlotter.load(desk, tz=UTC)
    assert blotter.snapshot().fills[0].qty == "0.01000000"
    desk.instruments.add({"BTCUSDT": BTC}, {})  # the desk's version does not move
    assert blotter.snapshot().fills[0].qty == "0.01000"
