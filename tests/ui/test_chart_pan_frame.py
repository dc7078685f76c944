"""What a pan shows is what a fresh chart at that view shows: indicator curves (re-sliced, not recomputed, on a pan)
equal a fresh computation, and the axes drawn the fast way (grid lines as filled whole-pixel rectangles, time labels
remembered) are the same pixels as pyqtgraph's own drawing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6 import QtGui

from app.market import indicators as ind
from app.ui.chart import axes
from app.ui.chart.chart_widget import ChartWidget
from tests.ui.test_chart_pan import long_series, pan, zoom_to


def curve(item):
    x, y = item.getData()
    return np.asarray(x), np.asarray(y)


def fresh_indicators(series, chart: ChartWidget) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each curve the chart should show for its view, from indicators over the whole history."""
    a = series.arrays()
    x = a.open_ms.astype(np.float64) / 1000.0
    (x0, x1), _ = chart.price_plot.vb.viewRange()
    i0 = int(np.searchsorted(x, x0 - chart.bar_s, side="left"))
    i1 = int(np.searchsorted(x, x1, side="right"))
    xs = x[i0:i1] + chart.bar_s / 2
    bands = ind.bollinger(a.close)
    return {
        "ema_fast": (xs, ind.ema(a.close, 20)[i0:i1]),
        "ema_slow": (xs, ind.ema(a.close, 50)[i0:i1]),
        "vwap": (xs, ind.session_vwap(a.open_ms, a.high, a.low, a.close, a.volume)[i0:i1]),
        "bb_upper": (xs, bands.upper[i0:i1]),
        "bb_lower": (xs, bands.lower[i0:i1]),
        "rsi": (xs, ind.rsi(a.close)[i0:i1]),
    }


def assert_curves_fresh(chart: ChartWidget, series) -> None:
    """Each curve holds the bars in view (and more either side, clipped by the view) with fresh values."""
    for name, (xs, ys) in fresh_indicators(series, chart).items():
        x, y = curve(getattr(chart.overlays, name))
        j = int(np.searchsorted(x, xs[0]))
        np.testing.assert_array_equal(x[j:j + len(xs)], xs, err_msg=name)
        np.testing.assert_allclose(y[j:j + len(xs)], ys, rtol=1e-9, equal_nan=True, err_msg=name)


def test_indicator_curves_after_pans_equal_a_fresh_computation_and_a_pan_computes_nothing_new(chart):
    series = long_series()
    chart.set_overlay("bollinger", True)
    chart.refresh(series)
    zoom_to(chart, 2000)
    chart.set_follow(True)
    chart.refresh(series)
    assert_curves_fresh(chart, series)
    computed = chart.overlays.computed
    for share in (-0.05, -0.4, -0.9, 0.1):  # into history (past the computed window: a view wide each side), back
        pan(chart, share)
        chart.refresh(series)
        assert_curves_fresh(chart, series)
    assert 1 <= chart.overlays.computed - computed <= 2  # re-sliced inside the window, computed again only beyond it
    before = chart.overlays.computed
    pan(chart, -0.02)
    chart.refresh(series)
    assert chart.overlays.computed == before
    # New bars after the pan: computed again, and still equal to a fresh computation.
    last = series.last()
    series.add_trade(last.open_ms + 60_000, last.close * 1.001, 0.5)
    chart.refresh(series)
    assert chart.overlays.computed == before + 1
    assert_curves_fresh(chart, series)
    chart.set_oscillator("MACD")
    m = ind.macd(series.arrays().close)
    x, y = curve(chart.overlays.macd_line)
    i0 = int(np.searchsorted(series.arrays().open_ms / 1000.0, x[0] - chart.bar_s / 2))
    np.testing.assert_allclose(y, m.line[i0:i0 + len(y)], rtol=1e-9)
    (_, x1), _ = chart.price_plot.vb.viewRange()
    last_in_view = int(np.searchsorted(series.arrays().open_ms / 1000.0, x1, side="right")) - 1
    assert chart.overlays.values["macd"] == pytest.approx(float(m.line[last_in_view]))  # the read-out's value


def curves_only(chart: ChartWidget, x_range, y_range, osc_range) -> QtGui.QImage:
    """The indicator curves alone at the given ranges (everything else hidden): what they put on screen."""
    keep = {chart.overlays.ema_fast, chart.overlays.ema_slow, chart.overlays.vwap, chart.overlays.rsi}
    for plot in (chart.price_plot, chart.osc_plot):
        for item in plot.vb.addedItems:
            if item not in keep:
                item.setVisible(False)
    chart.volume_plot.setVisible(False)
    chart.price_plot.vb.setRange(xRange=x_range, yRange=y_range, padding=0)
    chart.osc_plot.vb.setYRange(*osc_range, padding=0)
    return render(chart)


def test_curves_after_pans_show_the_pixels_of_a_fresh_chart(qtbot, chart):
    series = long_series()
    chart.refresh(series)
    zoom_to(chart, 3000)
    chart.set_follow(True)
    chart.refresh(series)
    for share in (-0.3, -0.27, 0.11, -0.013):
        pan(chart, share)
        chart.refresh(series)
    (x0, x1), (y0, y1) = chart.price_plot.vb.viewRange()
    fresh = ChartWidget(timeframe="1m")
    fresh.resize(chart.size())
    qtbot.addWidget(fresh)
    fresh.show()
    qtbot.waitExposed(fresh)
    fresh.refresh(series)
    fresh.set_follow(False)
    fresh.price_plot.vb.setXRange(x0, x1, padding=0)
    fresh.refresh(series)  # a fresh computation for this view
    fresh._update_overlays()
    assert fresh.overlays._window.c0 != chart.overlays._window.c0  # computed for another window
    ranges = ((x0, x1), (y0, y1), (-2.0, 102.0))
    assert curves_only(chart, *ranges) == curves_only(fresh, *ranges)


def render(chart: ChartWidget) -> QtGui.QImage:
    image = QtGui.QImage(chart.size(), QtGui.QImage.Format.Format_RGB32)
    chart.render(image)
    return image


def all_axes(chart: ChartWidget) -> list:
    return [plot.getAxis(name) for plot in (chart.price_plot, chart.volume_plot, chart.osc_plot)
            for name in ("right", "bottom")]


def pyqtgraph_drawn(chart: ChartWidget) -> QtGui.QImage:
    """The same chart with its axes drawn by pyqtgraph's own code: lines as lines, labels formatted afresh."""
    axes._RectLines.use_rects = False
    try:
        for ax in all_axes(chart):
            if isinstance(ax, axes.TimeAxis):
                ax._labels.clear()
            ax.picture = None
            ax.update()
        return render(chart)
    finally:
        axes._RectLines.use_rects = True
        for ax in all_axes(chart):
            ax.picture = None
            ax.update()


@pytest.mark.parametrize("bars", [150, 5000])
def test_fast_axes_draw_the_same_pixels_as_pyqtgraph(chart, bars):
    series = long_series()
    chart.refresh(series)
    zoom_to(chart, bars)
    chart.refresh(series)
    assert isinstance(chart.price_plot.getAxis("right"), axes.PriceAxis)
    assert isinstance(chart.osc_plot.getAxis("bottom"), axes.TimeAxis)
    # Fractional shifts put grid lines at fractional pixels; the last steps go back over ticks labelled before.
    for share in (0.0, -0.013, -0.031, 0.027, 0.017, -0.0041, 0.0093):
        pan(chart, share)
        chart.refresh(series)
        fast = render(chart)
        assert fast == pyqtgraph_drawn(chart), f"axes differ after a pan of {share}"
        assert render(chart) == fast  # and back to the fast drawing



def test_fast_axes_on_a_2x_screen_draw_the_same_pixels_as_pyqtgraph():
    """On a 2x screen the axes' cached pixels are device pixels: a one-unit rectangle is two of them and a cosmetic
    line one, so lines are drawn there. The pixel test again, in a process whose screen is 2x (Qt reads the scale
    factor once, at start)."""
    env = {**os.environ, "QT_SCALE_FACTOR": "2", "QT_QPA_PLATFORM": "offscreen"}
    test = f"{__file__}::test_fast_axes_draw_the_same_pixels_as_pyqtgraph"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test], env=env,
                         capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert run.returncode == 0, run.stdout[-2000:]
