"""The watchlist as a trader reads it, without Qt: one row per feed symbol in the feed's order, prices in each
symbol's precision, the change since this session's first trade and over 24 h (or why none), the spread in price and
basis points, a marker for a pending proposal, and a stale mark when trades stopped coming."""

from __future__ import annotations

from decimal import Decimal

import pytest

from app.market.instruments import Instrument, Instruments
from app.market.state import MarketData
from app.market.ticker24h import Ticker24h, Ticker24hUnavailable
from app.models import Quote, Side, Trade
from app.view.watchlist import PriceMemory, watchlist

S = 1_000_000_000  # ns per second
T0_MS = 1_700_000_000_000
SYMBOLS = ["BTCUSDT", "XRPUSDT", "ETHUSDT"]
INSTRUMENTS = Instruments.of(
    Instrument.from_steps("BTCUSDT", Decimal("0.01"), Decimal("0.00001")),
    Instrument.from_steps("XRPUSDT", Decimal("0.0001"), Decimal("0.1")),
    Instrument.from_steps("ETHUSDT", Decimal("0.01"), Decimal("0.0001")),
)


def trade(symbol: str, price: float, at_s: float, trade_id: int = 1) -> Trade:
    return Trade(symbol, price, 1.0, Side.BUY, trade_id, T0_MS + int(at_s * 1000), int(at_s * S))


def quote(symbol: str, bid: float, ask: float) -> Quote:
    return Quote(symbol, bid, 2.0, ask, 3.0, 1, 0, 0)


class Stats:
    def __init__(self, **by_symbol: Ticker24h) -> None:
        self.by_symbol = by_symbol

    def get(self, symbol: str) -> Ticker24h | None:
        return self.by_symbol.get(symbol)

    def why_missing(self, symbol: str) -> str:
        return "" if symbol in self.by_symbol else f"the exchange gave none for {symbol}"


def board(market: MarketData, memory: PriceMemory, *, now_s: float, pending=(), stats=None):
    return watchlist(market, INSTRUMENTS, memory=memory, pending_symbols=pending, stats24h=stats,
                     now_ns=int(now_s * S))


def test_one_row_per_feed_symbol_in_the_feeds_order_keyed_by_symbol():
    market = MarketData(SYMBOLS, capacity=100)
    w = board(market, PriceMemory(), now_s=0)
    assert w.keys == tuple(SYMBOLS)
    assert [r.symbol for r in w.rows] == SYMBOLS


def test_last_price_and_change_since_the_sessions_first_trade_in_each_symbols_precision():
    market = MarketData(SYMBOLS, capacity=100)
    memory = PriceMemory()
    market.apply([trade("XRPUSDT", 0.6, 1), trade("BTCUSDT", 60_000.0, 1)])
    board(market, memory, now_s=1)  # the first prices this session: the reference of the change
    market.apply([trade("XRPUSDT", 0.6012, 2, 2), trade("BTCUSDT", 59_400.0, 2, 2)])
    w = board(market, memory, now_s=2)
    xrp, btc = w.row("XRPUSDT"), w.row("BTCUSDT")
    assert xrp.last == "0.6012" and btc.last == "59,400.00"
    assert xrp.change == "+0.20 %" and xrp.direction == "up" and xrp.change_pct == pytest.approx(0.2)
    assert btc.change == "-1.00 %" and btc.direction == "down"
    assert xrp.tick == "up" and btc.tick == "down", "the last price's colour follows its latest move"
    assert "0.6000" in xrp.change_tip and "first trade" in xrp.change_tip
    # A later trade at the first price: flat, and the reference does not move
    market.apply([trade("BTCUSDT", 60_000.0, 3, 3)])
    btc = board(market, memory, now_s=3).row("BTCUSDT")
    assert btc.change == "+0.00 %" and btc.direction == "flat" and btc.tick == "up"


def test_spread_in_price_and_basis_points():
    market = MarketData(SYMBOLS, capacity=100)
    market.apply([quote("BTCUSDT", 60_000.00, 60_000.60), quote("XRPUSDT", 0.6000, 0.6001)])
    w = board(market, PriceMemory(), now_s=0)
    # one precision for every row (one decimal), so the column reads as one scale
    assert w.row("BTCUSDT").spread == "0.60" and w.row("BTCUSDT").spread_bps == "0.1"
    assert w.row("XRPUSDT").spread == "0.0001" and w.row("XRPUSDT").spread_bps == "1.7"
    # One tick on BTC is a fraction of a basis point: it reads as small, never as "0.0" (no spread)
    market.apply([quote("BTCUSDT", 60_000.00, 60_000.01), quote("ETHUSDT", 3000.00, 3006.00)])
    w = board(market, PriceMemory(), now_s=0)
    assert w.row("BTCUSDT").spread == "0.01" and w.row("BTCUSDT").spread_bps == "<0.1"
    assert "0.01 USDT" in w.row("BTCUSDT").spread_tip  # the price spread in the tooltip
    assert w.row("ETHUSDT").spread_bps == "20.0"
    market.apply([quote("ETHUSDT", 3000.00, 3000.00)])  # locked: no spread at all
    assert board(market, PriceMemory(), now_s=0).row("ETHUSDT").spread_bps == "0"


def test_a_pending_proposal_marks_its_symbol():
    market = MarketData(SYMBOLS, capacity=100)
    w = board(market, PriceMemory(), now_s=0, pending={"XRPUSDT"})
    assert [r.pending for r in w.rows] == [False, True, False]
    assert "proposal" in w.row("XRPUSDT").tooltip


def test_missing_data_shows_a_dash_and_says_why():
    market = MarketData(SYMBOLS, capacity=100)
    market.apply([quote("ETHUSDT", 3000.10, 3000.00)])  # crossed
    w = board(market, PriceMemory(), now_s=0, stats=Ticker24hUnavailable("Kraken gives no 24 h change"))
    btc, eth = w.row("BTCUSDT"), w.row("ETHUSDT")
    assert btc.last == "—" and "no trade" in btc.last_tip
    assert btc.change == "—" and btc.change_pct is None and btc.direction == "flat"
    assert btc.spread == "—" and btc.spread_bps == "—" and "bid" in btc.spread_tip
    assert eth.spread == "—" and "crossed" in eth.spread_tip
    assert btc.change_24h == "—" and btc.change_24h_tip == "Kraken gives no 24 h change"
    assert not btc.stale, "a symbol that never traded is not marked stale: its last price says it"
    no_poller = board(market, PriceMemory(), now_s=0, stats=None).row("BTCUSDT")
    assert no_poller.change_24h == "—" and no_poller.change_24h_tip


def test_24h_change_where_the_exchange_gives_it():
    market = MarketData(SYMBOLS, capacity=100)
    t = Ticker24h("XRPUSDT", last=0.63, open=0.6, change_pct=5.0, high=0.64, low=0.59, quote_volume=1_234_567.0,
                  close_ms=T0_MS, received_ms=T0_MS)
    w = board(market, PriceMemory(), now_s=0, stats=Stats(XRPUSDT=t))
    xrp = w.row("XRPUSDT")
    assert xrp.change_24h == "+5.00 %" and xrp.direction_24h == "up" and xrp.change_24h_pct == 5.0
    assert "0.6400" in xrp.change_24h_tip and "0.5900" in xrp.change_24h_tip, "high and low in XRP's precision"
    assert w.row("BTCUSDT").change_24h == "—" and "none for BTCUSDT" in w.row("BTCUSDT").change_24h_tip


def test_a_symbol_without_trades_for_long_is_marked_stale():
    market = MarketData(SYMBOLS, capacity=100)
    market.apply([trade("BTCUSDT", 60_000.0, 0), trade("XRPUSDT", 0.6, 100)])
    w = board(market, PriceMemory(), now_s=130)
    assert w.row("BTCUSDT").stale and "2 min" in w.row("BTCUSDT").tooltip
    assert not w.row("XRPUSDT").stale
