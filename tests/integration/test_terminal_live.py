"""End to end: built-in exchange on loopback -> real WebSocket -> adapter -> bus -> candles -> chart, offscreen."""

from __future__ import annotations

import os

import psutil
import pytest

from app.config import Settings
from app.models import FeedState
from app.session import Session
from app.ui.log_dock import BufferingHandler
from app.ui.main_window import MainWindow
from tests.conftest import wait_until


@pytest.mark.asyncio
async def test_main_window_draws_live_candles_and_says_live(qtbot):
    session = Session(Settings(sim_trades_per_s=200.0, history_bars=120, timeframe="1s"))
    await session.start()
    window = MainWindow(session, BufferingHandler())
    qtbot.addWidget(window)
    try:
        window.show()
        window.bridge.start()
        market = session.market["BTCUSDT"]
        await wait_until(lambda: market.trades >= 20, timeout=15, what="trades over the WebSocket")
        await wait_until(lambda: window.chart.candles.drawn_bars > 0, timeout=10, what="candles drawn")
        await wait_until(lambda: "LIVE" in window.feed_label.text(), timeout=5, what="status bar LIVE")

        assert session.feed.state is FeedState.LIVE
        assert session.feed.rejected_total == 0
        # History came over the REST endpoint, then live trades extended it.
        assert session.history_loaded["BTCUSDT 1s"] == 120
        series = market.candles.series("1s")
        assert len(series) >= 120
        # The forming candle on screen is the series' last bar and moves with new trades (tick() is the
        # refresh timer's slot, called here so no trade can arrive between the redraw and the comparison).
        window.bridge.tick()
        first_bar = window.chart.live_candle.bar
        a = series.arrays()
        assert first_bar is not None and first_bar[4] == pytest.approx(a.close[-1])
        version = series.version
        await wait_until(lambda: series.version > version, timeout=10, what="a new trade")
        await wait_until(lambda: window.chart.live_candle.bar != first_bar, timeout=5, what="live candle redraw")
        window.bridge.tick()
        assert window.chart.live_candle.bar[4] == series.arrays().close[-1]
        # Status bar shows the data source and a positive message rate.
        assert "BUILT-IN EXCHANGE" in window.source_label.text()
        await wait_until(lambda: window.rate_label.text() != "0 msg/s", timeout=5, what="a message rate")
        exchange_pid = session.simulator.pid  # the built-in exchange runs in its own process
        assert exchange_pid is not None and exchange_pid != os.getpid()
    finally:
        window.close()
        await session.stop()
    assert session.feed.state is FeedState.STOPPED
    assert not psutil.pid_exists(exchange_pid)  # stopped with the session, not left behind
