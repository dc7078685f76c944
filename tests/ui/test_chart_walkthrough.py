"""The chart's defects found in a real-window walkthrough (issue 16): a drag pans into history, order labels leave
the candles their room, the crosshair read-out is compact and goes with the mouse, fills are not arrows, a dragged
order lands on a round price."""

from __future__ import annotations

import re
import time
from decimal import Decimal as D

import pytest
from PySide6 import QtCore, QtGui, QtTest

from app.models import Fill, Liquidity, Position, Side
from app.ui import theme
from app.ui.chart.chart_widget import ChartWidget
from app.view.chart import ChartOrder
from tests.ui.conftest import shown_chart
from tests.ui.test_chart import aggregator_with_trades
from tests.ui.test_chart_trading import BTC, drag, orders_near, view_rect


@pytest.fixture
def chart(qtbot):
    w = shown_chart(qtbot, symbols=["BTCUSDT", "ETHUSDT"])
    w.set_symbol("BTCUSDT")
    w.set_instrument(BTC)
    return w


@pytest.fixture
def series():
    return aggregator_with_trades().series("1m")


def mouse_move(vp, p: QtCore.QPoint, buttons) -> None:
    ev = QtGui.QMouseEvent(QtCore.QEvent.Type.MouseMove, QtCore.QPointF(p), QtCore.QPointF(vp.mapToGlobal(p)),
                           QtCore.Qt.MouseButton.NoButton, buttons, QtCore.Qt.KeyboardModifier.NoModifier)
    QtCore.QCoreApplication.sendEvent(vp, ev)


def pan(chart: ChartWidget, qtbot, dx_px: int, steps: int = 12, release: bool = True) -> QtCore.QPoint:
    """A hand's drag on the candles: many small mouse steps, spaced by more than a screen refresh."""
    vp = chart.glw.viewport()
    start = chart.glw.mapFromScene(view_rect(chart).center() + QtCore.QPointF(-150, 60))
    QtTest.QTest.mouseMove(vp, start)
    QtTest.QTest.mousePress(vp, QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier, start)
    p = start
    for k in range(1, steps + 1):
        p = QtCore.QPoint(start.x() + dx_px * k // steps, start.y())
        qtbot.wait(25)
        mouse_move(vp, p, QtCore.Qt.MouseButton.LeftButton)
    if release:
        QtTest.QTest.mouseRelease(vp, QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier, p)
    return p


def x_range(chart: ChartWidget) -> tuple[float, float]:
    (x0, x1), _ = chart.price_plot.vb.viewRange()
    return x0, x1


# ----- 1. a drag pans into history ------------------------------------------------------------------------------
def test_a_drag_in_small_steps_pans_into_history_and_live_data_does_not_snap_it_back(chart, series, qtbot):
    chart.refresh(series)
    assert chart.follow
    _x0, x1 = x_range(chart)
    px = chart.price_plot.vb.viewPixelSize()[0]
    pan(chart, qtbot, 120)  # 120 px to the right: back in time, the newest candle still in view
    n0, n1 = x_range(chart)
    assert n1 < x1 - 100 * px  # the view moved with the mouse
    assert not chart.follow and not chart.follow_button.isChecked()
    chart._live_version = -1  # a new trade arrives
    chart.refresh(series)
    assert x_range(chart) == (n0, n1)  # it stays where the trader put it


def test_the_view_moves_during_the_drag_not_only_at_its_end(chart, series, qtbot):
    chart.refresh(series)
    _, x1 = x_range(chart)
    px = chart.price_plot.vb.viewPixelSize()[0]
    p = pan(chart, qtbot, 60, steps=6, release=False)
    assert x_range(chart)[1] < x1 - 40 * px
    QtTest.QTest.mouseRelease(chart.glw.viewport(), QtCore.Qt.MouseButton.LeftButton,
                              QtCore.Qt.KeyboardModifier.NoModifier, p)


def test_follow_comes_back_only_when_a_drag_back_to_the_live_edge_ends(chart, series, qtbot):
    chart.refresh(series)
    pan(chart, qtbot, 400)
    assert not chart.follow
    p = pan(chart, qtbot, -500, release=False)  # back past the live edge, still holding the button
    assert not chart.follow
    QtTest.QTest.mouseRelease(chart.glw.viewport(), QtCore.Qt.MouseButton.LeftButton,
                              QtCore.Qt.KeyboardModifier.NoModifier, p)
    assert chart.follow and chart.follow_button.isChecked()
    assert x_range(chart)[0] < series.arrays().open_ms[-1] / 1000.0 < x_range(chart)[1]


# ----- 2. order labels leave the candles their room -------------------------------------------------------------
def test_an_order_outside_the_price_range_reserves_no_room_and_gets_an_edge_marker(chart, series):
    chart.refresh(series)
    chart.grab()
    right_before = x_range(chart)[1]
    far = D("57000.0") if chart.last_line.value() > 58000 else D("90000.0")
    chart.show_orders([ChartOrder("O7", "BTCUSDT", "BUY", "LIMIT", far, "0.010")])
    chart.grab()
    assert x_range(chart)[1] == right_before  # the candles kept their room
    line = chart.order_lines["O7"]
    arrow = "↓" if far < D(str(chart.last_line.value())) else "↑"
    assert line.shown_text == f"BUY LMT 0.010 @ {BTC.fmt_price(far)} {arrow}"
    label = line.label_scene_rect()
    plot = view_rect(chart)
    assert plot.contains(label)  # at the top or bottom edge, inside the plot
    assert min(abs(label.top() - plot.top()), abs(label.bottom() - plot.bottom())) < 10


def test_the_edge_marker_of_an_order_out_of_view_is_not_dragged(chart, series, qtbot):
    chart.refresh(series)
    chart.show_orders([ChartOrder("O7", "BTCUSDT", "BUY", "LIMIT", D("30000.0"), "0.010")])
    chart.grab()
    line = chart.order_lines["O7"]
    assert line.off_view() == -1
    moved = []
    chart.order_moved.connect(lambda *args: moved.append(args))
    drag(chart, line, 30000.0 + 40 * chart.price_plot.vb.viewPixelSize()[1], qtbot)  # 40 px up from the marker
    assert moved == [] and line.value() == 30000.0


def test_labels_in_view_reserve_at_most_a_modest_part_of_the_width(chart, series):
    chart.resize(1280, 700)
    chart.refresh(series)
    last = D(str(chart.last_line.value()))
    chart.show_orders([ChartOrder("O8", "BTCUSDT", "BUY", "LIMIT", BTC.round_price(last - 5), "0.010",
                                  label="BUY LMT 0.010 @ a very long label that a caller might give · " * 3)])
    chart.grab()
    vb = chart.price_plot.vb
    live_right = series.arrays().open_ms[-1] / 1000.0 + chart.bar_s
    room_px = (x_range(chart)[1] - live_right) / vb.viewPixelSize()[0]
    assert room_px <= min(0.18 * vb.width(), 220) + 2


# ----- 3. the crosshair read-out ---------------------------------------------------------------------------------
def test_the_crosshair_goes_when_the_mouse_leaves_the_chart(chart, series, qtbot):
    chart.refresh(series)
    vp = chart.glw.viewport()
    centre = chart.glw.mapFromScene(view_rect(chart).center())
    QtTest.QTest.mouseMove(vp, centre)
    chart.price_plot.scene().sigMouseMoved.emit(view_rect(chart).center())
    assert chart.cross_v.isVisible() and chart.readout.text()
    QtCore.QCoreApplication.sendEvent(vp, QtCore.QEvent(QtCore.QEvent.Type.Leave))
    assert not chart.cross_v.isVisible() and not chart.cross_h.isVisible() and chart.readout.text() == ""


def test_the_read_out_is_compact_and_elided_at_the_room_it_has(chart, series, qtbot):
    chart.refresh(series)
    chart.price_plot.scene().sigMouseMoved.emit(view_rect(chart).center())
    full = chart.readout_full
    assert full.count(" O ") == 1 and " H " in full and " C " in full
    assert full.startswith("15 Nov 2023 ")  # another year's bar: day, month, year, then the time
    assert re.fullmatch(r"\d\d:\d\d", chart._bar_time(time.time()))  # today's: the time only
    metrics = QtGui.QFontMetrics(chart.readout.font())
    assert metrics.horizontalAdvance(chart.readout.text()) <= chart.readout.width()
    for width in range(1200, 500, -50):  # narrower until the read-out has less room than its line (toolbar style)
        chart.resize(width, 700)
        qtbot.wait(10)
        if 60 <= chart.readout.width() < metrics.horizontalAdvance(full):
            break
    chart.price_plot.scene().sigMouseMoved.emit(view_rect(chart).center())
    shown = chart.readout.text()
    assert shown.endswith("…") and metrics.horizontalAdvance(shown) <= chart.readout.width()
    assert chart.readout.toolTip() == chart.readout_full


# ----- 4. labels over every line ----------------------------------------------------------------------------------
def test_level_labels_are_drawn_above_the_last_price_line(chart, series):
    chart.refresh(series)
    assert chart.label_layer.zValue() > chart.last_line.zValue()
    assert all(line.zValue() < chart.label_layer.zValue() for line in chart.position_lines.values())


def test_the_last_price_tag_is_the_axis_label_of_the_last_price_in_its_colour(chart, series):
    chart.refresh(series)
    image = chart.grab().toImage()
    tag = chart.last_price_tag_rect()
    ax = chart.price_plot.getAxis("right")
    axis = ax.mapRectToScene(QtCore.QRectF(0, 0, ax.width(), ax.height()))
    assert tag.left() <= axis.left() + 2 and tag.right() >= axis.right() - 3  # the tick label under it, whole
    a = series.arrays()
    colour = chart.last_line.tag._colour.name()
    assert colour == (theme.current().up if a.close[-1] >= a.open[-1] else theme.current().down)
    edge = chart.glw.mapTo(chart, chart.glw.mapFromScene(QtCore.QPointF(tag.left() + 2, tag.center().y())))
    assert image.pixelColor(edge).name() == colour  # filled in the price's colour


# ----- 5. fills are told apart from proposal arrows --------------------------------------------------------------
def test_fill_markers_are_not_triangles_and_say_what_they_are(chart, series):
    chart.refresh(series)
    a = series.arrays()
    fills = [Fill("F1", "O1", "BTCUSDT", Side.BUY, D("0.1"), D(str(a.close[-5])), D("0"), Liquidity.TAKER,
                  int(a.open_ms[-5])),
             Fill("F2", "O2", "BTCUSDT", Side.SELL, D("0.1"), D(str(a.close[-3])), D("0"), Liquidity.TAKER,
                  int(a.open_ms[-3]))]
    chart.show_position(None, (None, None), fills)
    symbols = set(chart.fill_markers.data["symbol"])
    assert symbols and not symbols & {"t", "t1", "t2", "t3"}
    tip = chart.fill_markers.opts["tip"]  # what hovering a marker shows
    assert [tip(x=0, y=0, data=d) for d in chart.fill_markers.data["data"]] == [
        f"Fill · BUY 0.100 @ {BTC.fmt_price(fills[0].price)}", f"Fill · SELL 0.100 @ {BTC.fmt_price(fills[1].price)}"]


# ----- 6. a dragged order lands on a round price ------------------------------------------------------------------
def test_a_dragged_order_snaps_to_a_round_step_that_follows_the_zoom(chart, series, qtbot):
    chart.refresh(series)
    rows = orders_near(chart)
    chart.show_orders(rows)
    chart.grab()
    step = chart.snap_step()
    px = chart.price_plot.vb.viewPixelSize()[1]
    assert BTC.on_tick(step) and step > BTC.tick_size and 1.5 * px <= float(step) <= 10 * px
    with qtbot.waitSignal(chart.order_moved, timeout=1000) as sig:
        drag(chart, chart.order_lines["O1"], float(rows[0].price) - 37.37, qtbot)
    price = sig.args[1]
    assert price % step == 0 and BTC.on_tick(price)


def test_the_entry_label_drops_the_currency_then_the_price_when_the_room_is_short(chart, series):
    chart.refresh(series)
    last = BTC.round_price(D(str(chart.last_line.value())))
    entry = chart.position_lines["entry"]
    texts = {}
    for width in (3000, 1000, 500):
        chart.resize(width, 700)
        chart.LABEL_ROOM_PX = 10_000 if width == 3000 else ChartWidget.LABEL_ROOM_PX
        chart.show_position(Position("BTCUSDT", qty=D("0.5"), avg_price=last), (None, None), [], mark=last + 10)
        texts[width] = entry.text
        assert entry.label_width_px() <= chart._label_room_px() or width == 500
    price = BTC.fmt_price(last)
    assert texts[3000] == f"LONG 0.500 @ {price} · +5.00 USDT"  # room enough: all of it
    assert texts[500] == "LONG 0.500 · +5.00"  # a narrow chart: side, size and open PnL
    assert texts[1000] in (f"LONG 0.500 @ {price} · +5.00", "LONG 0.500 · +5.00")
