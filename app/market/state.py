"""The latest market picture per symbol: candles for every timeframe, best bid/offer, last trade, and the most recent
trades (the Trades dock's tape).

Written by the session's market task from bus batches; read by the UI on its timer (``version`` tells it
whether anything changed).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from app.market.candles import TIMEFRAMES, CandleAggregator
from app.models import Candle, MarketEvent, Quote, Trade

RECENT_TRADES = 500  # trades kept per symbol for the tape (and the sizes a big print is judged against)


@dataclass(slots=True)
class SymbolMarket:
    symbol: str
    candles: CandleAggregator
    quote: Quote | None = None
    last_trade: Trade | None = None
    trades: int = 0  # applied since start
    version: int = 0
    # The newest RECENT_TRADES trades, oldest first, as the exchange sent them.
    recent: deque[Trade] = field(default_factory=lambda: deque(maxlen=RECENT_TRADES))

    @property
    def recent_first_seq(self) -> int:
        """The number since start (0-based) of the oldest trade in ``recent``: a trade's sequence number stays put
        while it is kept, so it identifies a trade whose exchange id repeats."""
        return self.trades - len(self.recent)


@dataclass
class MarketData:
    symbols: list[str]
    capacity: int = 100_000
    by_symbol: dict[str, SymbolMarket] = field(init=False)
    # The newest exchange time of any trade applied (UTC ms; 0 before the first): a replay's market clock, and the
    # floor of a live one (a trade stamped ahead of this machine's clock moves the decisions' clock with it).
    last_exchange_ms: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.by_symbol = {
            s: SymbolMarket(s, CandleAggregator(s, tuple(TIMEFRAMES), capacity=self.capacity)) for s in self.symbols
        }

    def __getitem__(self, symbol: str) -> SymbolMarket:
        return self.by_symbol[symbol]

    def apply(self, batch: list[MarketEvent]) -> None:
        trades: dict[str, list[Trade]] = {}
        for ev in batch:
            m = self.by_symbol.get(ev.symbol)
            if m is None:
                continue
            if isinstance(ev, Trade):
                trades.setdefault(ev.symbol, []).append(ev)
            elif isinstance(ev, Quote):
                m.quote = ev
                m.version += 1
        for symbol, ts in trades.items():
            m = self.by_symbol[symbol]
            m.candles.on_trades(ts)
            m.last_trade = ts[-1]
            m.recent.extend(ts)
            self.last_exchange_ms = max(self.last_exchange_ms, max(t.exchange_ms for t in ts))
            m.trades += len(ts)
            m.version += 1

    def load_history(self, symbol: str, timeframe: str, candles: list[Candle]) -> None:
        m = self.by_symbol.get(symbol)
        if m is None or not candles:
            return
        m.candles.series(timeframe).load_history(
            np.array([c.open_ms for c in candles], dtype=np.int64),
            np.array([c.open for c in candles]),
            np.array([c.high for c in candles]),
            np.array([c.low for c in candles]),
            np.array([c.close for c in candles]),
            np.array([c.volume for c in candles]),
            np.array([c.trades for c in candles], dtype=np.int64),
        )
        m.version += 1
