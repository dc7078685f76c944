"""Help > Keyboard shortcuts lists the panels' own keys and gestures ("Mouse and panel keys") from one table, and every
row of that table is answered by its panel: each is driven here on the real widget, offscreen (a row without a check,
or a key a panel no longer answers to, fails)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal as D

from PySide6 import QtCore, QtTest, QtWidgets

from app.config import DEFAULT_HOTKEYS
from app.market.book import OrderBook
from app.ui.blotter import Blotter
from app.ui.chart.chart_widget import ChartWidget
from app.ui.help import KeyboardHelp, panel_key_rows
from app.ui.order_book import OrderBookPanel
from app.ui.panel_keys import PANEL_KEYS, WATCHLIST_CHOOSE
from app.ui.watchlist import WatchlistPanel
from app.view.book import book_ladder
from app.view.watchlist import PriceMemory
from tests.test_view_book import XRP, snapshot
from tests.ui.test_blotter import order
from tests.ui.test_blotter import snapshot as blotter_snapshot
from tests.ui.test_chart import aggregator_with_trades
from tests.ui.test_chart_trading import BTC, drag, orders_near, position, view_rect
from tests.ui.test_watchlist_panel import snapshot as watch_snapshot


def test_help_lists_the_mouse_and_panel_keys_in_a_second_section(qtbot):
    dialog = KeyboardHelp(dict(DEFAULT_HOTKEYS))
    qtbot.addWidget(dialog)
    text = dialog.text()
    assert "Mouse and panel keys" in text
    for pk in PANEL_KEYS:
        assert pk.key in text and pk.does in text, pk.name
    for key in ("Delete", "Double-click", "Ctrl+C", "Enter", "Drag"):  # what the walkthrough missed
        assert key in text
    assert [r[1] for r in panel_key_rows()] == [pk.key for pk in PANEL_KEYS]
    table = dialog.panel_table
    assert table.rowCount() == len(PANEL_KEYS)
    assert table.item(0, 0).text() == PANEL_KEYS[0].key and table.item(0, 2).text() == PANEL_KEYS[0].where
    assert dialog.table.rowCount() == len(DEFAULT_HOTKEYS)  # the hotkeys' section is still all there


# ----- every row, on its panel --------------------------------------------------------------------------------------
def _show(qtbot, w: QtWidgets.QWidget, size=(600, 400)) -> None:
    qtbot.addWidget(w)
    w.resize(*size)
    w.show()
    qtbot.waitExposed(w)


def check_watchlist_choose(qtbot) -> None:
    panel = WatchlistPanel()
    _show(qtbot, panel)
    panel.render(watch_snapshot({"BTCUSDT": 61_000.0, "XRPUSDT": 0.61}, PriceMemory()))
    got: list[str] = []
    panel.symbol_chosen.connect(got.append)
    panel.view.setFocus()
    panel.view.selectRow(1)
    panel.view.setCurrentIndex(panel.model.index(1, 1))
    for key in WATCHLIST_CHOOSE.qt_keys:
        qtbot.keyClick(panel.view, key)
    rect = panel.view.visualRect(panel.model.index(0, 1))
    qtbot.mouseClick(panel.view.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=rect.center())
    assert got == ["XRPUSDT"] * len(WATCHLIST_CHOOSE.qt_keys) + ["BTCUSDT"]


def check_book_click(qtbot) -> None:
    panel = OrderBookPanel(depth=5)
    _show(qtbot, panel, (260, 400))
    book = OrderBook("XRPUSDT")
    book.apply(snapshot("XRPUSDT", bids=[(0.5901, 100.0)], asks=[(0.5903, 10.3)]))
    panel.render(book_ladder(book, XRP, depth=5))
    with qtbot.waitSignal(panel.price_chosen) as got:
        qtbot.mouseClick(panel.view, QtCore.Qt.MouseButton.LeftButton, pos=panel.bid_rows()[0].geometry().center())
    assert got.args == [D("0.5901")]


def _blotter(qtbot) -> Blotter:
    blotter = Blotter()
    _show(qtbot, blotter)
    blotter.render(blotter_snapshot(working=[order("W2"), order("W1")], orders=[order("W1")]))
    return blotter


def check_orders_modify(qtbot) -> None:
    blotter = _blotter(qtbot)
    got: list[str] = []
    blotter.modify_requested.connect(got.append)
    view = blotter.working_view
    rect = view.visualRect(blotter.working.index(1, 0))
    qtbot.mouseClick(view.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(view.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=rect.center())
    assert got == [blotter.working.row(1).order_id]


def check_orders_cancel(qtbot) -> None:
    blotter = _blotter(qtbot)
    got: list[str] = []
    blotter.cancel_requested.connect(got.append)
    view = blotter.working_view
    view.setFocus()
    view.selectRow(0)
    qtbot.keyClick(view, QtCore.Qt.Key.Key_Delete)
    assert got == [blotter.working.row(0).order_id]


def check_orders_copy(qtbot) -> None:
    blotter = _blotter(qtbot)
    for tab, model in ((blotter.working_view, blotter.working), (blotter.orders_view, blotter.orders)):
        blotter.setCurrentWidget(tab)
        tab.setFocus()
        tab.selectRow(0)
        QtWidgets.QApplication.clipboard().clear()
        qtbot.keyClick(tab, QtCore.Qt.Key.Key_C, QtCore.Qt.KeyboardModifier.ControlModifier)
        assert QtWidgets.QApplication.clipboard().text() == model.row(0).order_id


def _chart(qtbot) -> ChartWidget:
    w = ChartWidget(timeframe="1m", symbols=["BTCUSDT", "ETHUSDT"])
    _show(qtbot, w, (1200, 700))
    w.set_symbol("BTCUSDT")
    w.set_instrument(BTC)
    w.refresh(aggregator_with_trades().series("1m"))
    return w


def check_chart_drag_order(qtbot) -> None:
    chart = _chart(qtbot)
    rows = orders_near(chart)
    chart.show_orders(rows)
    chart.grab()
    with qtbot.waitSignal(chart.order_moved, timeout=1000) as sig:
        drag(chart, chart.order_lines["O1"], float(rows[0].price) - 40.0, qtbot)
    assert sig.args[0] == "O1" and sig.args[1] < rows[0].price


def check_chart_drag_bracket(qtbot) -> None:
    chart = _chart(qtbot)
    entry = BTC.round_price(D(str(chart.last_line.value())))
    sl, tp = BTC.round_price(entry * D("0.995")), BTC.round_price(entry * D("1.005"))
    chart.show_position(position("0.5", str(entry)), (sl, tp), [])
    chart.grab()
    with qtbot.waitSignal(chart.bracket_moved, timeout=1000) as sig:
        drag(chart, chart.position_lines["sl"], float(sl) - 40.0, qtbot)
    assert sig.args[:2] == ["BTCUSDT", "SL"]


def check_chart_pan(qtbot) -> None:
    chart = _chart(qtbot)
    assert chart.follow
    (_, x1), _ = chart.price_plot.vb.viewRange()
    vp = chart.glw.viewport()
    start = chart.glw.mapFromScene(view_rect(chart).center() + QtCore.QPointF(-150, 60))
    QtTest.QTest.mouseMove(vp, start)
    QtTest.QTest.mousePress(vp, QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier, start)
    p = start
    for k in range(1, 13):
        p = QtCore.QPoint(start.x() + 300 * k // 12, start.y())
        qtbot.wait(25)
        QtTest.QTest.mouseMove(vp, p)
    QtTest.QTest.mouseRelease(vp, QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier, p)
    (_, x1_after), _ = chart.price_plot.vb.viewRange()
    assert x1_after < x1 and not chart.follow  # back in time, no longer following the live edge


CHECKS: dict[str, Callable] = {
    "watchlist_choose": check_watchlist_choose,
    "book_click": check_book_click,
    "orders_modify": check_orders_modify,
    "orders_cancel": check_orders_cancel,
    "orders_copy": check_orders_copy,
    "chart_drag_order": check_chart_drag_order,
    "chart_drag_bracket": check_chart_drag_bracket,
    "chart_pan": check_chart_pan,
}


def test_every_listed_panel_key_has_a_check():
    assert [pk.name for pk in PANEL_KEYS] == list(CHECKS)


def test_every_listed_panel_key_is_really_handled(qtbot):
    for pk in PANEL_KEYS:
        CHECKS[pk.name](qtbot)

