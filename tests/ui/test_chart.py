"""The chart as a trader relies on it: the right candles, a live last candle, auto-follow, timeframes, colours."""

from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtGui

from app.market.candles import CandleAggregator
from app.models import Side, Trade
from app.ui.theme import DARK
from tests.integration.test_cli import has_colour

T0 = 1_700_000_000_000  # a minute boundary


def aggregator_with_trades(minutes: int = 300, seed: int = 7) -> CandleAggregator:
    rng = np.random.default_rng(seed)
    agg = CandleAggregator("BTCUSDT")
    price = 60_000.0
    trades = []
    for i in range(minutes * 6):  # a trade every 10 s
        price += float(rng.normal(0, 15))
        trades.append(Trade("BTCUSDT", round(price, 2), 0.01 + float(rng.random()), Side.BUY, i, T0 + i * 10_000, 0))
    agg.on_trades(trades)
    return agg


def paint(widget) -> QtGui.QImage:
    return widget.grab().toImage()


def test_drawn_candles_are_the_series_visible_slice(chart):
    agg = aggregator_with_trades()
    series = agg.series("1m")
    chart.refresh(series)
    paint(chart)
    a = series.arrays()
    i0, i1 = chart.candles.visible_slice()
    assert 0 < i1 - i0 <= len(a.open_ms) and i1 == len(a.open_ms) - 1  # closed bars up to the live one
    assert chart.candles.drawn_bars == i1 - i0  # one candle per bar: none merged at this zoom
    # The candles painted for the view are exactly these bars.
    x, o, h, lo, c, v = chart.candles.painted_bars()
    assert list(o) == list(a.open[i0:i1]) and list(c) == list(a.close[i0:i1])
    assert list(h) == list(a.high[i0:i1]) and list(lo) == list(a.low[i0:i1])
    assert list(x) == list(a.open_ms[i0:i1] / 1000.0) and list(v) == list(a.volume[i0:i1])
    # The live candle is the series' last bar.
    _x, o, h, lo, c, _v = chart.live_candle.bar
    assert (o, h, lo, c) == (a.open[-1], a.high[-1], a.low[-1], a.close[-1])


def test_live_candle_moves_on_a_new_trade(chart):
    agg = aggregator_with_trades()
    series = agg.series("1m")
    chart.refresh(series)
    before = chart.live_candle.bar
    last_ms = int(series.arrays().open_ms[-1])
    agg.on_trade(Trade("BTCUSDT", before[2] + 50.0, 0.5, Side.BUY, 10**6, last_ms + 30_000, 0))
    assert chart.refresh(series)
    after = chart.live_candle.bar
    assert after[2] == before[2] + 50.0 and after[4] == before[2] + 50.0  # new high and close
    assert chart.last_line.value() == after[4]
    assert chart.last_line.text == f"{after[4]:,.2f}"  # BTC-sized prices: two decimals


def test_price_tag_shows_enough_decimals_for_cheap_coins():
    from app.ui.chart.items import price_decimals

    assert [price_decimals(p) for p in (61_234.5, 2_345.6, 143.2, 0.5123, 0.000012)] == [2, 2, 2, 5, 8]


def test_panning_stops_auto_follow_and_end_brings_it_back(chart, qtbot):
    series = aggregator_with_trades().series("1m")
    chart.refresh(series)
    assert chart.follow
    vb = chart.price_plot.vb
    (x0, x1), _ = vb.viewRange()
    vb.translateBy(x=-(x1 - x0) * 0.8)  # what a drag to the left does
    vb.sigRangeChangedManually.emit(vb.state["mouseEnabled"])
    assert not chart.follow and not chart.follow_button.isChecked()
    qtbot.keyClick(chart, QtCore.Qt.Key.Key_End)
    assert chart.follow and chart.follow_button.isChecked()
    (_, right), _ = vb.viewRange()
    assert right >= series.arrays().open_ms[-1] / 1000.0


def test_switching_timeframe_shows_correctly_aggregated_bars(chart):
    agg = aggregator_with_trades()
    chart.refresh(agg.series("1m"))
    chart.set_timeframe("5m")
    five = agg.series("5m")
    chart.refresh(five)
    one = agg.series("1m").arrays()
    a = five.arrays()
    # The first complete 5m bar equals its five 1m bars.
    k = int(np.searchsorted(one.open_ms, a.open_ms[1]))
    assert a.open[1] == one.open[k] and a.close[1] == one.close[k + 4]
    assert a.high[1] == one.high[k:k + 5].max() and a.low[1] == one.low[k:k + 5].min()
    assert chart.live_candle.bar[4] == a.close[-1]
    assert chart.bar_s == 300.0


def test_rendered_chart_has_rising_and_falling_candles(chart):
    chart.refresh(aggregator_with_trades().series("1m"))
    img = paint(chart)
    assert has_colour(img, DARK.up) and has_colour(img, DARK.down)


def test_proposals_are_arrows_in_their_badge_colour_and_holds_are_not_drawn(chart):
    from app.llm.schema import Action, CacheStatus, Decision, DecisionBody, DecisionMeta
    from app.ui.chart.chart_widget import BADGE_COLOURS

    series = aggregator_with_trades().series("1m")
    chart.set_symbol("BTCUSDT")
    chart.refresh(series)
    a = series.arrays()

    def decision(action: Action, status: CacheStatus, bar: int) -> Decision:
        body = DecisionBody(action=action, size_pct=1.0 if action is not Action.HOLD else 0.0, confidence=0.7,
                            rationale="test")
        meta = DecisionMeta(provider="t", model="m", prompt_version="v1", cache_status=status)
        return Decision(symbol="BTCUSDT", timeframe="1m", state_ms=int(a.open_ms[bar]) + 60_000, body=body, meta=meta)

    chart.show_proposals([decision(Action.BUY, CacheStatus.HIT, -5), decision(Action.SELL, CacheStatus.MISS, -3),
                          decision(Action.HOLD, CacheStatus.MISS, -2)], version=1)
    xs, ys = chart.proposal_markers.getData()
    assert len(xs) == 2
    assert ys[0] == a.low[-5] and ys[1] == a.high[-3]  # a buy arrow under its bar, a sell arrow above
    brushes = [QtGui.QColor(b.color()).name() for b in chart.proposal_markers.data["brush"]]
    assert brushes == [BADGE_COLOURS["HIT"], BADGE_COLOURS["MISS"]]


def test_the_crosshair_read_out_never_widens_the_window(chart, qtbot):
    # Hovering a candle wrote one long OHLCV line into a plain label, which raised the chart's (and so the main
    # window's) minimum width past a 1280 px screen: the Decisions dock went off-screen.
    before = chart.minimumSizeHint().width()
    chart.readout.setText("2026-12-06 10:10:00  O 59,999.69  H 60,010.01  L 59,950.05  C 59,951.32  V 89.47988  "
                          "N 1168  " * 3)
    qtbot.wait(10)  # the layouts take the new text in
    assert chart.minimumSizeHint().width() == before
