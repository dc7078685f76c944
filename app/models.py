"""Domain types shared by every layer.

Market data is float64 (it feeds numpy and charts); money that changes hands (orders, fills, balances) will be
Decimal. Every market event carries two clocks: the exchange's time in UTC milliseconds (data) and our
``perf_counter_ns`` at receipt (for latency), see docs/ARCHITECTURE.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


@dataclass(slots=True, frozen=True)
class Trade:
    symbol: str
    price: float
    qty: float
    side: Side  # aggressor side: SELL when the buyer was the maker
    trade_id: int
    exchange_ms: int
    recv_ns: int


@dataclass(slots=True, frozen=True)
class Quote:
    """Best bid and offer."""

    symbol: str
    bid: float
    bid_qty: float
    ask: float
    ask_qty: float
    update_id: int
    exchange_ms: int  # 0 when the exchange does not send one (Binance bookTicker)
    recv_ns: int


@dataclass(slots=True, frozen=True)
class BookUpdate:
    """A depth snapshot (``is_snapshot``) or a diff covering update ids ``first_id``..``last_id``.

    A level with quantity 0 in a diff removes that price.
    """

    symbol: str
    bids: tuple[tuple[float, float], ...]
    asks: tuple[tuple[float, float], ...]
    first_id: int
    last_id: int
    is_snapshot: bool
    exchange_ms: int
    recv_ns: int


@dataclass(slots=True, frozen=True)
class Candle:
    """One OHLCV bar as the exchange reports it (kline stream or REST history)."""

    symbol: str
    timeframe: str
    open_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int
    closed: bool
    exchange_ms: int
    recv_ns: int


MarketEvent = Trade | Quote | BookUpdate | Candle


class FeedState(StrEnum):
    CONNECTING = "connecting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    STALE = "stale"
    STOPPED = "stopped"
