"""The last-price line and the indicator curves keep their bounds across view changes their data did not see (a new
bounding rect has the scene re-index the item after every refresh): what is on screen after live ticks, pans, zooms
and resizes, repainted piece by piece as a window is, is still what a fresh paint of the whole chart shows."""

from __future__ import annotations

import pytest
from PySide6 import QtCore, QtGui, QtWidgets

from app.ui.chart.chart_widget import ChartWidget
from tests.ui.test_chart_pan import long_series, pan, zoom_to


@pytest.fixture
def chart(chart):
    w = chart
    if w.devicePixelRatioF() != 1:  # the offscreen platform grabs a 2x window at 1x: nothing to compare
        pytest.skip("on-screen pixels are compared on a 1x screen")
    return w


def on_screen(chart: ChartWidget) -> QtGui.QImage:
    """The window's pixels after Qt repainted only what it was told changed (the items' bounds)."""
    for _ in range(3):  # a deferred refit (after a resize) posts its own repaint
        QtWidgets.QApplication.processEvents()
    image = chart.screen().grabWindow(chart.winId()).toImage()
    return image.convertToFormat(QtGui.QImage.Format.Format_RGB32)


def fresh(chart: ChartWidget) -> QtGui.QImage:
    """The whole chart painted afresh."""
    return chart.grab().toImage().convertToFormat(QtGui.QImage.Format.Format_RGB32)


def assert_line_and_tag_at_price(chart: ChartWidget, price: float) -> None:
    line = chart.last_line
    assert line.value() == price
    vb = chart.price_plot.vb
    (x0, x1), (y0, y1) = vb.viewRange()
    px = (y1 - y0) / vb.height()
    bounds = line.boundingRect()
    # The line as painted (across the view at the price, a pixel either side) lies inside its bounds.
    assert bounds.left() <= x0 and bounds.right() >= x1
    assert bounds.top() <= price - px and bounds.bottom() >= price + px
    if y0 < price < y1:  # the tag on the price axis is centred on the line
        scene_y = vb.mapViewToScene(QtCore.QPointF(x0, price)).y()
        assert abs(chart.last_price_tag_rect().center().y() - scene_y) <= 1.0


def test_the_last_price_line_and_tag_follow_the_price_through_ticks_pans_zooms_and_resizes(chart, qtbot):
    series = long_series()
    chart.refresh(series)
    zoom_to(chart, 150)
    chart.refresh(series)
    assert on_screen(chart) == fresh(chart)
    last = series.last()
    lo, hi = chart.price_plot.vb.viewRange()[1]
    # Small steps (inside the line's bounds), a jump of a fifth of the range, and back.
    prices = [last.close + d for d in (0.5, 1.0, -0.7, (hi - lo) * 0.2, (hi - lo) * 0.21, -(hi - lo) * 0.1)]
    steps = [("tick", p) for p in prices] + [("pan", -0.05), ("tick", prices[0]), ("pan", -0.4), ("tick", prices[2]),
                                             ("resize", (900, 600)), ("tick", prices[3]), ("zoom", 2_000),
                                             ("tick", prices[1]), ("resize", (1300, 800)), ("follow", None),
                                             ("tick", prices[4])]
    for i, (what, arg) in enumerate(steps):
        if what == "tick":
            series.add_trade(last.open_ms + 1_000 + i, arg, 0.1)
        elif what == "pan":
            pan(chart, arg)
        elif what == "zoom":
            zoom_to(chart, arg)
        elif what == "resize":
            chart.resize(*arg)
            qtbot.waitUntil(lambda arg=arg: (chart.width(), chart.height()) == arg, timeout=2000)
        else:
            chart.set_follow(True)
        chart.refresh(series)
        on = on_screen(chart)
        assert_line_and_tag_at_price(chart, series.last().close)
        assert on == fresh(chart), f"stale pixels on screen after {what} {arg}"


def test_a_refit_of_the_view_without_new_data_leaves_the_curves_and_line_bounds_alone(chart):
    series = long_series()
    chart.refresh(series)
    zoom_to(chart, 500)
    chart.refresh(series)
    on_screen(chart)
    curves = [chart.overlays.ema_fast.curve, chart.overlays.ema_slow.curve, chart.overlays.vwap.curve]
    before = [c.boundingRect() for c in curves] + [chart.last_line.boundingRect()]
    vb = chart.price_plot.vb
    (_, _), (y0, y1) = vb.viewRange()
    for step in (0.001, 0.002, -0.001):  # the small refits a live tick makes
        vb.setYRange(y0 - (y1 - y0) * step, y1 + (y1 - y0) * step, padding=0)
        pan(chart, 0.0)
        on = on_screen(chart)
        assert [c.boundingRect() for c in curves] + [chart.last_line.boundingRect()] == before
        assert on == fresh(chart)
    # New data: the curves' bounds are the new data's again.
    last = series.last()
    series.add_trade(last.open_ms + 60_000, last.close * 1.01, 1.0)  # a new bar
    chart.set_follow(True)
    chart.refresh(series)
    for c in curves:
        x, y = c.getData()
        b = c.boundingRect()
        assert b.left() <= x.min() and b.right() >= x.max() and b.top() <= y.min() and b.bottom() >= y.max()
    assert on_screen(chart) == fresh(chart)
