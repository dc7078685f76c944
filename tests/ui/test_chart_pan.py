"""Panning a long history: the candles drawn are always the bars in view (into history and back, after new bars and
revised ones), and a pan or a tick does not rebuild what it did not change."""

from __future__ import annotations

import numpy as np
import pytest

from app.market.candles import CandleSeries
from app.ui.chart.chart_widget import ChartWidget

T0 = 1_699_999_980_000  # a minute boundary
N = 20_000


def long_series(n: int = N, seed: int = 3) -> CandleSeries:
    rng = np.random.default_rng(seed)
    close = 60_000 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    spread = np.abs(rng.normal(0, 0.0008, n)) * close
    series = CandleSeries("1m")
    series.load_history(T0 + np.arange(n, dtype=np.int64) * 60_000, open_, np.maximum(open_, close) + spread,
                        np.minimum(open_, close) - spread, close, rng.gamma(2.0, 1.0, n), np.ones(n, np.int64))
    return series


def pan(chart: ChartWidget, share: float) -> None:
    """A drag's step: the view moves by ``share`` of its width (negative: into history), the chart refreshes."""
    vb = chart.price_plot.vb
    (x0, x1), _ = vb.viewRange()
    chart._dragging = True  # as during a mouse drag: follow is off until it ends
    vb.translateBy(x=(x1 - x0) * share)
    vb.sigRangeChangedManually.emit(vb.state["mouseEnabled"])
    chart._dragging = False


def drawn_matches_view(chart: ChartWidget, series: CandleSeries) -> None:
    """What was painted is the series' closed bars in view, merged as the zoom asks: nothing missing, nothing stale."""
    chart.grab()
    a = series.arrays()
    i0, i1 = chart.candles.visible_slice()
    (x0, x1), _ = chart.price_plot.vb.viewRange()
    x = a.open_ms[:-1] / 1000.0
    assert i0 <= np.searchsorted(x, x0) and i1 >= np.searchsorted(x, x1)  # every bar in view is in the slice
    k = chart.candles.merge_factor(i0, i1)
    g0 = i0 // k * k  # merge groups start at multiples of k
    px, po, ph, pl, pc, pv = chart.candles.painted_bars()
    assert len(px) == chart.candles.drawn_bars == (i1 - 1) // k - i0 // k + 1
    starts = np.arange(g0, i1, k)
    ends = np.minimum(starts + k, len(x))  # whole groups, even at the view's edge (only the newest may be short)
    assert list(px) == list(x[starts])
    assert list(po) == list(a.open[starts]) and list(pc) == list(a.close[ends - 1])
    assert list(ph) == [a.high[s:e].max() for s, e in zip(starts, ends, strict=True)]
    assert list(pl) == [a.low[s:e].min() for s, e in zip(starts, ends, strict=True)]
    assert pv == pytest.approx([a.volume[s:e].sum() for s, e in zip(starts, ends, strict=True)])
    # The y range follows the bars in view (auto-range on pan).
    (_, _), (y0, y1) = chart.price_plot.vb.viewRange()
    j0, j1 = np.searchsorted(x, x0 - chart.bar_s), np.searchsorted(x, x1, side="right")
    assert y0 <= a.low[j0:j1].min() and a.high[j0:j1].max() <= y1


def zoom_to(chart: ChartWidget, bars: int) -> None:
    vb = chart.price_plot.vb
    (_, x1), _ = vb.viewRange()
    vb.setXRange(x1 - bars * chart.bar_s, x1, padding=0)
    chart.set_follow(True)


@pytest.mark.parametrize("visible", [150, 5_000])
def test_pan_into_history_and_back_draws_the_bars_in_view(chart, visible):
    series = long_series()
    chart.refresh(series)
    zoom_to(chart, visible)
    drawn_matches_view(chart, series)
    for share in [-0.03] * 15 + [-0.6] * 4 + [0.05] * 10 + [0.6] * 4:
        pan(chart, share)
        chart.refresh(series)
        drawn_matches_view(chart, series)
    assert not chart.follow


def test_a_pan_builds_only_the_chunk_it_moves_into_and_a_tick_builds_none(chart):
    series = long_series()
    chart.refresh(series)
    zoom_to(chart, 5_000)
    chart.grab()
    built = chart.candles.chunks_built
    for _ in range(10):  # 10 x 1 % of the view: 500 bars, under one chunk of 64 bars merged 12 to 1
        pan(chart, -0.01)
        chart.refresh(series)
        chart.grab()
    assert chart.candles.chunks_built - built <= 1
    built = chart.candles.chunks_built
    last = series.last()
    series.add_trade(last.open_ms + 30_000, last.close + 5.0, 0.1)  # a tick on the forming bar
    chart.refresh(series)
    chart.grab()
    assert chart.candles.chunks_built == built


def test_a_new_bar_after_a_pan_appears_when_back_at_the_live_edge(chart):
    series = long_series()
    chart.refresh(series)
    zoom_to(chart, 400)
    pan(chart, -2.0)  # into history
    chart.refresh(series)
    drawn_matches_view(chart, series)
    last = series.last()
    series.add_trade(last.open_ms + 60_000, last.close + 40.0, 0.2)  # the forming bar closes, a new one opens
    chart.refresh(series)
    drawn_matches_view(chart, series)
    chart.set_follow(True)
    chart.refresh(series)
    drawn_matches_view(chart, series)
    a = series.arrays()
    assert chart.candles.painted_bars()[4][-1] == a.close[-2]  # the bar that just closed, as it closed
    assert chart.live_candle.bar[4] == a.close[-1] == last.close + 40.0


def test_a_revised_older_bar_is_redrawn(chart):
    """A late trade changes a closed bar behind the forming one: once the chart takes the closed bars again (the
    next bar), its cached candle must not stay as it was."""
    series = long_series()
    chart.refresh(series)
    zoom_to(chart, 150)
    drawn_matches_view(chart, series)
    a = series.arrays()
    target, new_high = int(a.open_ms[-10]), float(a.high[-10]) + 300.0
    last = series.last()
    series.add_trade(target + 1_000, new_high, 0.1)  # late: a new high for a closed bar
    series.add_trade(last.open_ms + 60_000, last.close, 0.1)  # the next bar opens
    chart.refresh(series)
    drawn_matches_view(chart, series)
    assert chart.candles.painted_bars()[2].max() == new_high
