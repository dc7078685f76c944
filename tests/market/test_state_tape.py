"""The recent trades each symbol keeps for the Trades dock: bounded, oldest first, every trade of a batch in the order
the exchange sent it, numbered since start; checked on real Binance trades read through the real adapter."""

from __future__ import annotations

import gzip
import itertools

import pytest

from app.market.adapters import binance
from app.market.state import RECENT_TRADES, MarketData
from app.models import Quote, Side, Trade
from tests.conftest import BINANCE_CAPTURE, require_data

pytestmark = pytest.mark.realdata


def real_trades(n: int) -> list[Trade]:
    """The capture's first ``n`` trades, parsed by the adapter the feed uses."""
    path = require_data(BINANCE_CAPTURE / "btcusdt_20240808.gz")
    out: list[Trade] = []
    with gzip.open(path, "rb") as fh:
        for line in fh:
            if b"@trade" not in line:
                continue
            ns, raw = line.split(b" ", 1)
            out.extend(e for e in binance.parse(raw, int(ns)) if isinstance(e, Trade))
            if len(out) >= n:
                return out[:n]
    return out


def test_every_trade_is_kept_in_exchange_order_with_its_number_since_start():
    trades = real_trades(300)
    market = MarketData(["BTCUSDT"], capacity=100)
    quote = Quote("BTCUSDT", 61837.62, 1.0, 61837.63, 1.0, 1, 0, 0)
    for batch in itertools.batched(trades, 17):  # batches of the size the bus hands over, with quotes between
        market.apply([quote, *batch])
    m = market["BTCUSDT"]
    assert list(m.recent) == trades  # nothing dropped below the bound, nothing reordered
    assert m.recent_first_seq == 0
    assert [t.trade_id for t in m.recent] == list(range(trades[0].trade_id, trades[0].trade_id + 300))  # contiguous
    assert {t.side for t in m.recent} == {Side.BUY, Side.SELL}


def test_the_buffer_is_bounded_and_keeps_the_newest():
    trades = real_trades(RECENT_TRADES + 250)
    assert len(trades) == RECENT_TRADES + 250
    market = MarketData(["BTCUSDT"], capacity=100)
    for batch in itertools.batched(trades, 40):
        market.apply(list(batch))
    m = market["BTCUSDT"]
    assert len(m.recent) == RECENT_TRADES
    assert list(m.recent) == trades[-RECENT_TRADES:]
    assert m.trades == len(trades)
    assert m.recent_first_seq == 250  # the oldest kept is the 251st trade since start
    assert m.last_trade == trades[-1]


def test_a_symbol_not_in_the_feed_keeps_nothing_and_others_are_apart():
    trades = real_trades(10)
    other = [Trade("ETHUSDT", 2500.0, 0.1, Side.BUY, 7, t.exchange_ms, t.recv_ns) for t in trades[:3]]
    stray = [Trade("XRPUSDT", 0.5, 10.0, Side.SELL, 1, 0, 0)]
    market = MarketData(["BTCUSDT", "ETHUSDT"], capacity=100)
    market.apply([*trades[:5], *other, *stray, *trades[5:]])
    assert list(market["BTCUSDT"].recent) == trades
    assert list(market["ETHUSDT"].recent) == other
    assert "XRPUSDT" not in market.by_symbol
