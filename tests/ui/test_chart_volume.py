"""The volume pane reads the same at every zoom: zoomed out, where k bars are drawn as one (their volumes summed),
its y range is fitted to those summed bars, not to single bars' volumes (every drawn bar overflowed the pane and
it was a solid band)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6 import QtGui, QtWidgets

from app.ui.chart.chart_widget import ChartWidget
from tests.ui.test_chart_pan import long_series, pan, zoom_to


def tallest_drawn_volume(chart: ChartWidget) -> float:
    """The tallest volume bar the last paint drew in view: the merged closed bars and the forming bar."""
    chart.grab()
    x, _o, _h, _l, _c, v = chart.volume.painted_bars()
    k = chart.volume.merge_factor(*chart.volume.visible_slice())
    (x0, x1), _ = chart.volume_plot.vb.viewRange()
    v = v[(x + k * chart.bar_s > x0) & (x < x1)]  # painted bars meeting the view (the paint has a margin)
    tallest = float(v.max()) if len(v) else 0.0
    if chart.live_volume.bar is not None and chart._live_edge_in_view():
        tallest = max(tallest, chart.live_volume.bar[5])
    return tallest


def volume_range(chart: ChartWidget) -> tuple[float, float]:
    _, (y0, y1) = chart.volume_plot.vb.viewRange()
    return y0, y1


def assert_fills_the_pane(chart: ChartWidget) -> None:
    tallest = tallest_drawn_volume(chart)
    y0, y1 = volume_range(chart)
    assert y0 == pytest.approx(0.0, abs=1e-9)
    assert tallest <= y1 * 1.003  # no bar overflows the pane (set_y_range tolerates 0.2 % of the span)
    assert tallest >= 0.5 * y1  # nor is the range absurdly larger than the bars drawn


@pytest.mark.parametrize("visible", [2_000, 5_000, 15_000])
def test_zoomed_out_the_volume_pane_fits_the_merged_bars_drawn(chart, visible):
    series = long_series()
    chart.refresh(series)
    zoom_to(chart, visible)
    chart.refresh(series)
    chart.grab()
    i0, i1 = chart.volume.visible_slice()
    assert chart.volume.merge_factor(i0, i1) > 1  # bars merge at this zoom
    assert_fills_the_pane(chart)
    for share in (-0.3, -0.6, 0.2):  # and after pans into history
        pan(chart, share)
        chart.refresh(series)
        assert_fills_the_pane(chart)


def test_after_a_resize_that_changes_the_merge_the_volume_pane_still_fits(chart, qtbot):
    series = long_series()
    chart.refresh(series)
    zoom_to(chart, 5_000)
    chart.refresh(series)
    chart.grab()
    k_before = chart.volume.merge_factor(*chart.volume.visible_slice())
    chart.resize(500, 700)
    qtbot.waitUntil(lambda: chart.volume.merge_factor(*chart.volume.visible_slice()) != k_before, timeout=2000)
    qtbot.waitUntil(lambda: assert_fills_the_pane(chart), timeout=2000)  # refitted once the layout settles


def test_at_normal_zoom_the_volume_range_is_the_tallest_single_bar_plus_a_tenth(chart):
    series = long_series()
    chart.refresh(series)
    zoom_to(chart, 150)
    chart.refresh(series)
    i0, i1 = chart.volume.visible_slice()
    chart.grab()
    assert chart.volume.merge_factor(i0, i1) == 1
    a = series.arrays()
    x = a.open_ms / 1000.0
    (x0, x1), _ = chart.price_plot.vb.viewRange()
    j0, j1 = np.searchsorted(x, x0 - chart.bar_s), np.searchsorted(x, x1, side="right")
    assert volume_range(chart)[1] == pytest.approx(float(a.volume[j0:j1].max()) * 1.1, rel=0.003)
    assert_fills_the_pane(chart)


def render(chart: ChartWidget) -> QtGui.QImage:
    """The chart's pixels as the screen shows them (on a 2x screen, twice as many each way)."""
    dpr = chart.devicePixelRatioF()
    image = QtGui.QImage(chart.size() * dpr, QtGui.QImage.Format.Format_RGB32)
    image.setDevicePixelRatio(dpr)
    chart.render(image)
    return image


def uncached(chart: ChartWidget) -> QtGui.QImage:
    """The chart with the volume bars painted afresh (no pixel cache)."""
    chart.volume.setCacheMode(QtWidgets.QGraphicsItem.CacheMode.NoCache)
    try:
        return render(chart)
    finally:
        chart.volume.setCacheMode(QtWidgets.QGraphicsItem.CacheMode.DeviceCoordinateCache)


@pytest.mark.parametrize("visible", [150, 5_000, 15_000])
def test_the_cached_volume_bars_are_the_pixels_of_a_fresh_paint_after_ticks_pans_and_new_bars(chart, visible):
    series = long_series()
    chart.refresh(series)
    zoom_to(chart, visible)
    chart.refresh(series)
    assert chart.volume.cacheMode() == QtWidgets.QGraphicsItem.CacheMode.DeviceCoordinateCache
    render(chart)
    last = series.last()
    steps = [("tick", 0.0)] * 3 + [("pan", s) for s in (-0.013, -0.031, 0.0093, -0.0041, 0.27)] + [("bar", 0.0)]
    for i, (what, share) in enumerate(steps):
        if what == "pan":
            pan(chart, share)
        elif what == "tick":
            series.add_trade(last.open_ms + 1_000 + i, last.close * (1 + 1e-4 * i), 5.0)
        else:  # a new bar: the forming one closes (drawn by the closed bars' item from now on)
            series.add_trade(last.open_ms + 60_000, last.close, 50.0)
            chart.set_follow(True)
        chart.refresh(series)
        cached = render(chart)
        assert cached == uncached(chart), f"volume pixels differ after {what} {share}"


def test_the_cached_volume_bars_on_a_2x_screen_are_the_pixels_of_a_fresh_paint():
    """The pixel test again in a process whose screen is 2x (Qt reads the scale factor once, at start): the cache
    holds device pixels."""
    env = {**os.environ, "QT_SCALE_FACTOR": "2", "QT_QPA_PLATFORM": "offscreen"}
    test = f"{__file__}::test_the_cached_volume_bars_are_the_pixels_of_a_fresh_paint_after_ticks_pans_and_new_bars"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test], env=env,
                         capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert run.returncode == 0, run.stdout[-2000:]
