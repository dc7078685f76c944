"""Orders and the position on the chart, as a trader works with them (issue 16, item 4 and the chart's defects):
the read-out never widens the window, the last-price tag leaves the newest candles visible, entry / stop / target
labels are readable, End keeps the zoom, working orders are drawn and dragged to move them."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from PySide6 import QtCore, QtGui, QtTest

from app.market.instruments import Instrument
from app.models import Position
from app.ui.chart import levels
from app.ui.chart.chart_widget import ChartWidget
from app.view.chart import ChartOrder, chart_orders
from tests.ui.conftest import shown_chart
from tests.ui.test_chart import aggregator_with_trades

BTC = Instrument.from_steps("BTCUSDT", D("0.1"), D("0.001"))


@pytest.fixture
def chart(qtbot):
    w = shown_chart(qtbot, symbols=["BTCUSDT", "ETHUSDT"])
    w.set_symbol("BTCUSDT")
    w.set_instrument(BTC)
    return w


@pytest.fixture
def series():
    return aggregator_with_trades().series("1m")


def scene_y(chart: ChartWidget, price: float) -> float:
    return chart.price_plot.vb.mapViewToScene(QtCore.QPointF(0.0, price)).y()


def view_rect(chart: ChartWidget) -> QtCore.QRectF:
    return chart.price_plot.vb.sceneBoundingRect()


def position(qty: str, avg: str) -> Position:
    return Position("BTCUSDT", qty=D(qty), avg_price=D(avg))


# ----- defects ----------------------------------------------------------------------------------------------------
def test_hovering_a_candle_leaves_the_minimum_width_small_and_unchanged(chart, series):
    chart.refresh(series)
    for key in ("ema", "vwap", "bollinger"):
        chart.set_overlay(key, True)
    before = chart.minimumSizeHint().width()
    centre = view_rect(chart).center()
    chart.price_plot.scene().sigMouseMoved.emit(centre)  # what a hover over a candle sends
    QtTest.QTest.qWait(10)
    assert chart.readout_full.count(" O ") == 1 and len(chart.readout_full) > 100  # a long OHLCV line
    assert chart.minimumSizeHint().width() == before
    assert before < 1000  # the chart never asks for more than a 1280 px screen has beside the docks


def test_the_last_price_tag_sits_in_the_axis_gutter_not_over_the_newest_candles(chart, series):
    chart.refresh(series)
    chart.grab()
    tag = chart.last_price_tag_rect()  # scene coordinates
    plot = view_rect(chart)
    assert tag.width() > 20 and tag.left() >= plot.right() - 0.5  # beside the candles, on the price axis
    assert abs(tag.center().y() - scene_y(chart, chart.last_line.value())) <= 1.0  # at the last price
    # The newest candle lies inside the plot, so nothing of the tag covers it.
    live_x = chart.live_candle.mapRectToScene(chart.live_candle.boundingRect())
    assert plot.contains(live_x.center()) and not tag.intersects(live_x)


def test_entry_stop_and_target_labels_read_with_separators_above_their_lines_and_over_the_candles(chart, series):
    chart.resize(1900, 700)
    chart.LABEL_ROOM_PX = 1000  # room for the whole entry label (a narrow chart shortens it: test_chart_walkthrough)
    chart.refresh(series)
    last = D(str(chart.last_line.value()))
    entry = BTC.round_price(last)
    sl, tp = BTC.round_price(entry * D("0.988")), BTC.round_price(entry * D("1.015"))
    mark = entry + D("246.9")
    chart.show_position(position("0.5", str(entry)), (sl, tp), [], mark=mark)
    chart.refresh(series)
    chart.grab()
    lines = chart.position_lines
    pnl = BTC.fmt_money(D("0.5") * (mark - entry), sign=True)
    assert lines["entry"].text == f"LONG 0.500 @ {BTC.fmt_price(entry)} · {pnl} USDT"
    assert lines["sl"].text == f"SL {BTC.fmt_price(sl)} · -1.20 %"
    assert lines["tp"].text == f"TP {BTC.fmt_price(tp)} · +1.50 %"
    plot = view_rect(chart)
    for name, line in lines.items():
        assert line.isVisible(), name
        assert line.zValue() > max(chart.candles.zValue(), chart.live_candle.zValue(), 3), name  # over candles, EMAs
        label = line.label_scene_rect()
        assert plot.contains(label), name  # not cut by the plot's edge (the target sits near its top)
        assert abs(label.right() - plot.right()) < 40, name  # on the right edge
        assert label.bottom() <= scene_y(chart, line.value()) + 0.5, name  # above its line (scene y grows down)
    # Following the live edge leaves room for the labels: none covers the newest candles.
    chart.show_orders(orders_near(chart))
    newest = chart.live_candle.mapRectToScene(chart.live_candle.boundingRect())
    labels = [line.label_scene_rect() for line in [*lines.values(), *chart.order_lines.values()]]
    assert all(label.left() > newest.right() for label in labels)
    assert not any(a.intersects(b) for i, a in enumerate(labels) for b in labels[i + 1:])  # side by side


def test_the_open_pnl_on_the_position_line_follows_the_mark(chart, series):
    chart.resize(1900, 700)
    chart.LABEL_ROOM_PX = 1000  # room for the whole entry label
    chart.refresh(series)
    chart.show_position(position("-0.25", "60000"), (None, None), [], mark=D("59900"))
    assert chart.position_lines["entry"].text == "SHORT 0.250 @ 60,000.0 · +25.00 USDT"
    chart.show_position(position("-0.25", "60000"), (None, None), [], mark=D("60100"))
    assert chart.position_lines["entry"].text == "SHORT 0.250 @ 60,000.0 · -25.00 USDT"
    # The existing call (no mark) still works: the chart's own last price marks the position.
    chart.show_position(position("-0.25", "60000"), (None, None), [])
    last = D(str(chart.last_line.value()))
    assert chart.position_lines["entry"].text.endswith(f"{BTC.fmt_money(D('-0.25') * (last - 60000), sign=True)} USDT")
    assert not chart.position_lines["sl"].isVisible() and not chart.position_lines["tp"].isVisible()
    chart.show_position(Position("BTCUSDT"), (None, None), [])
    assert not chart.position_lines["entry"].isVisible()


def test_end_returns_to_the_live_edge_keeping_the_bars_the_trader_chose(chart, series, qtbot):
    chart.refresh(series)
    vb = chart.price_plot.vb
    last = series.arrays().open_ms[-1] / 1000.0
    vb.setXRange(last - 40 * chart.bar_s, last + 2 * chart.bar_s, padding=0)  # zoomed in to ~40 bars
    vb.sigRangeChangedManually.emit(vb.state["mouseEnabled"])
    (x0, x1), _ = vb.viewRange()
    width = x1 - x0
    vb.translateBy(x=-width * 3)  # dragged back in time
    vb.sigRangeChangedManually.emit(vb.state["mouseEnabled"])
    assert not chart.follow
    qtbot.keyClick(chart, QtCore.Qt.Key.Key_End)
    (x0, x1), _ = vb.viewRange()
    assert chart.follow
    assert x1 - x0 == pytest.approx(width)  # the same bars in view, not the default 150
    assert x0 < last < x1  # and the live candle in it


# ----- working orders -------------------------------------------------------------------------------------------
def orders_near(chart: ChartWidget) -> list[ChartOrder]:
    last = D(str(chart.last_line.value()))
    buy = BTC.round_price(last * D("0.998"))
    stop = BTC.round_price(last * D("1.003"))
    return [
        ChartOrder("O1", "BTCUSDT", "BUY", "LIMIT", buy, "0.500"),
        ChartOrder("O2", "BTCUSDT", "SELL", "STOP_MARKET", stop, "0.250"),
        ChartOrder("O3", "ETHUSDT", "BUY", "LIMIT", D("3000"), "1.000"),  # another symbol: not on this chart
    ]


def test_working_orders_of_the_symbol_on_screen_are_dashed_lines_coloured_by_side(chart, series):
    from app.ui.theme import current

    chart.refresh(series)
    rows = orders_near(chart)
    chart.show_orders(rows)
    assert set(chart.order_lines) == {"O1", "O2"}
    o1, o2 = chart.order_lines["O1"], chart.order_lines["O2"]
    assert o1.text == f"BUY LMT 0.500 @ {BTC.fmt_price(rows[0].price)}"
    assert o2.text == f"SELL STP 0.250 @ {BTC.fmt_price(rows[1].price)}"
    assert o1.value() == float(rows[0].price) and o1.movable and o2.movable
    assert o1.pen.style() == QtCore.Qt.PenStyle.DashLine
    assert o1.pen.color().name() == QtGui.QColor(current().up).name()
    assert o2.pen.color().name() == QtGui.QColor(current().down).name()
    assert o1.zValue() > chart.candles.zValue()
    # The same rows again: nothing is rebuilt or repainted.
    built = chart.order_lines_built
    chart.show_orders(list(rows))
    assert chart.order_lines_built == built and chart.order_lines["O1"] is o1
    # A moved order moves its line (same item); a gone order's line goes.
    moved = [ChartOrder("O1", "BTCUSDT", "BUY", "LIMIT", rows[0].price - D("10"), "0.500")]
    chart.show_orders(moved)
    assert chart.order_lines["O1"] is o1 and o1.value() == float(rows[0].price - D("10"))
    assert set(chart.order_lines) == {"O1"} and o2.scene() is None


def test_a_label_can_be_given_by_the_caller(chart, series):
    chart.refresh(series)
    chart.show_orders([ChartOrder("O9", "BTCUSDT", "SELL", "LIMIT", D("61000"), "0.100", label="TP of O1")])
    assert chart.order_lines["O9"].text == "TP of O1"


def drag(chart: ChartWidget, line, to_price: float, qtbot) -> None:
    """A real left-button drag on the line's label with the mouse, offscreen. pyqtgraph's scene drops mouse moves
    closer together than a screen refresh, so the moves are spaced as a hand's would be."""
    view = chart.glw
    start = view.mapFromScene(line.label_scene_rect().center())
    # The line moves by as much as the mouse does (grabbed on its label, a little above it).
    end = QtCore.QPoint(start.x(), start.y() + round(scene_y(chart, to_price) - scene_y(chart, line.value())))
    vp = view.viewport()
    QtTest.QTest.mouseMove(vp, start)
    QtTest.QTest.mousePress(vp, QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier, start)
    for k in range(1, 6):
        p = QtCore.QPoint(start.x(), start.y() + (end.y() - start.y()) * k // 5)
        ev = QtGui.QMouseEvent(QtCore.QEvent.Type.MouseMove, QtCore.QPointF(p), QtCore.QPointF(vp.mapToGlobal(p)),
                               QtCore.Qt.MouseButton.NoButton, QtCore.Qt.MouseButton.LeftButton,
                               QtCore.Qt.KeyboardModifier.NoModifier)
        qtbot.wait(25)
        QtCore.QCoreApplication.sendEvent(vp, ev)
    QtTest.QTest.mouseRelease(vp, QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier, end)


def test_dragging_a_limit_order_emits_its_new_price_on_the_tick_and_shows_it_until_the_truth_comes(
        chart, series, qtbot, monkeypatch):
    chart.refresh(series)
    rows = orders_near(chart)
    chart.show_orders(rows)
    chart.grab()
    line = chart.order_lines["O1"]
    target = float(rows[0].price) - 37.37
    with qtbot.waitSignal(chart.order_moved, timeout=1000) as sig:
        drag(chart, line, target, qtbot)
    order_id, price = sig.args
    assert order_id == "O1" and isinstance(price, D) and BTC.on_tick(price)
    assert abs(float(price) - target) < 0.02 * 37.37 + 5 * chart.price_plot.vb.viewPixelSize()[1]
    assert line.value() == float(price) and line.text == f"BUY LMT 0.500 @ {BTC.fmt_price(price)}"
    assert not chart.follow or chart.price_plot.vb.viewRange()[0][1] > 0  # the drag did not pan the chart away
    # The next refresh, before the desk answered: still where it was dropped (no flicker back).
    chart.show_orders(rows)
    assert line.value() == float(price)
    # Refused: the order stays where it was, and once the answer is due the line shows the truth again.
    now = levels.time.monotonic()
    monkeypatch.setattr(levels.time, "monotonic", lambda: now + levels.LevelLine.PENDING_S + 1)
    chart.show_orders(rows)
    assert line.value() == float(rows[0].price) and line.text.endswith(BTC.fmt_price(rows[0].price))


def test_a_replaced_order_shows_its_new_price_at_once(chart, series, qtbot):
    chart.refresh(series)
    rows = orders_near(chart)
    chart.show_orders(rows)
    line = chart.order_lines["O1"]
    line.drag_start()
    line.drag_move(float(rows[0].price) - 50)
    with qtbot.waitSignal(chart.order_moved, timeout=1000):
        line.drag_finish()
    accepted = [ChartOrder("O1", "BTCUSDT", "BUY", "LIMIT", rows[0].price - D("50"), "0.500"), *rows[1:]]
    chart.show_orders(accepted)
    assert line.value() == float(rows[0].price - D("50")) and not line.pending


def test_dragging_the_stop_loss_emits_bracket_moved_and_the_entry_line_does_not_move(chart, series, qtbot):
    chart.refresh(series)
    last = D(str(chart.last_line.value()))
    entry = BTC.round_price(last)
    sl, tp = BTC.round_price(entry * D("0.995")), BTC.round_price(entry * D("1.005"))
    chart.show_position(position("0.5", str(entry)), (sl, tp), [])
    chart.refresh(series)
    chart.grab()
    assert not chart.position_lines["entry"].movable
    line = chart.position_lines["sl"]
    with qtbot.waitSignal(chart.bracket_moved, timeout=1000) as sig:
        drag(chart, line, float(sl) - 40.0, qtbot)
    symbol, which, price = sig.args
    assert (symbol, which) == ("BTCUSDT", "SL") and isinstance(price, D) and BTC.on_tick(price) and price < sl
    assert line.text.startswith(f"SL {BTC.fmt_price(price)} · ")
    chart.show_position(position("0.5", str(entry)), (sl, tp), [])  # desk not answered yet: no flicker back
    assert line.value() == float(price)
    tp_line = chart.position_lines["tp"]
    tp_line.drag_start()
    tp_line.drag_move(float(tp) + 12.34)
    with qtbot.waitSignal(chart.bracket_moved, timeout=1000) as sig:
        tp_line.drag_finish()
    step = chart.snap_step()  # a round step at this zoom, a multiple of the tick
    assert sig.args[:2] == ["BTCUSDT", "TP"]
    assert sig.args[2] == (BTC.round_price(tp + D("12.34")) / step).to_integral_value() * step


def test_chart_orders_from_the_broker_leave_out_bracket_legs_and_market_orders():
    from app.models import Order, OrderOrigin, OrderRequest, OrderStatus, OrderType, Side

    def order(oid, side, typ, origin=OrderOrigin.MANUAL, limit=None, stop=None, filled="0"):
        req = OrderRequest("BTCUSDT", side, typ, D("0.5"), limit_price=limit, stop_price=stop, origin=origin)
        return Order(oid, req, OrderStatus.NEW, 0, filled_qty=D(filled))

    rows = chart_orders([
        order("A", Side.BUY, OrderType.LIMIT, limit=D("60100"), filled="0.2"),
        order("B", Side.SELL, OrderType.STOP_MARKET, stop=D("59000")),
        order("C", Side.SELL, OrderType.STOP_MARKET, OrderOrigin.BRACKET, stop=D("59000")),  # the SL line
        order("D", Side.BUY, OrderType.MARKET),
    ], BTC)
    assert rows == [ChartOrder("A", "BTCUSDT", "BUY", "LIMIT", D("60100"), "0.300"),
                    ChartOrder("B", "BTCUSDT", "SELL", "STOP_MARKET", D("59000"), "0.500")]


def test_an_order_filled_while_it_is_dragged_is_not_moved(chart, series, qtbot):
    chart.refresh(series)
    rows = orders_near(chart)
    chart.show_orders(rows)
    line = chart.order_lines["O1"]
    line.drag_start()
    line.drag_move(float(rows[0].price) - 50)
    chart.show_orders(rows[1:])  # O1 filled meanwhile
    with qtbot.assertNotEmitted(chart.order_moved):
        line.drag_finish()
    assert "O1" not in chart.order_lines and line.scene() is None
