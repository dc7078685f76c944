"""Domain types shared by every layer.

Market data is float64 (it feeds numpy and charts); money that changes hands (orders, fills, balances) will be
Decimal. Every market event carries two clocks: the exchange's time in UTC milliseconds (data) and our
``perf_counter_ns`` at receipt (for latency), see docs/ARCHITECTURE.md.

Market events (``Trade``, ``Quote``, ``BookUpdate``, ``Candle``) are immutable by convention, not by ``frozen=True``:
one event object is shared by every subscriber of the bus (the chart's market state, the broker, the tape), so a
consumer that changed one would change it for all of them. They are built once per frame on the feed's hot path, and
a frozen dataclass costs ~1.4 µs to build (every field goes through ``object.__setattr__``) against ~0.3 µs for a
plain slots one built with positional arguments. They keep what code relies on: equality and a hash by value (the tape
keys rows by trade), ``dataclasses.replace``. To change one, build a new one (``dataclasses.replace``). Tests enforce
the convention with :func:`guard_market_events`, which makes every field write-once.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


# unsafe_hash: a hash by value although not frozen (see the module docstring: never mutated, so the hash holds).
@dataclass(slots=True, unsafe_hash=True)
class Trade:
    symbol: str
    price: float
    qty: float
    side: Side  # aggressor side: SELL when the buyer was the maker
    trade_id: int
    exchange_ms: int
    recv_ns: int


@dataclass(slots=True, unsafe_hash=True)
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


@dataclass(slots=True, unsafe_hash=True)
class BookUpdate:
    """A depth snapshot (``is_snapshot``) or a diff covering update ids ``first_id``..``last_id``.

    A level with quantity 0 in a diff removes that price. ``prev_id`` is the previous diff's ``last_id`` when the
    exchange says it (Binance USD-M futures' ``pu``): the book then checks continuity by it instead of by ids.
    """

    symbol: str
    bids: tuple[tuple[float, float], ...]
    asks: tuple[tuple[float, float], ...]
    first_id: int
    last_id: int
    is_snapshot: bool
    exchange_ms: int
    recv_ns: int
    prev_id: int | None = None


@dataclass(slots=True, unsafe_hash=True)
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
MARKET_EVENT_CLASSES = (Trade, Quote, BookUpdate, Candle)


def _write_once(self: Any, name: str, value: Any) -> None:
    try:
        getattr(self, name)
    except AttributeError:  # an unset slot: the constructor filling it in
        object.__setattr__(self, name, value)
        return
    raise FrozenInstanceError(f"cannot assign to field {name!r} of a {type(self).__name__}: market events are "
                              "shared by every subscriber; build a new one (dataclasses.replace)")


def _no_delete(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r} of a {type(self).__name__}")


def guard_market_events(on: bool = True) -> None:
    """Make the market events' fields write-once (``on``) or plain slots again. For tests: it makes building an event
    several times slower, which is why the classes are not frozen in the first place."""
    for cls in MARKET_EVENT_CLASSES:
        if on:
            cls.__setattr__ = _write_once  # type: ignore[method-assign,assignment]
            cls.__delattr__ = _no_delete  # type: ignore[method-assign,assignment]
        else:
            for name in ("__setattr__", "__delattr__"):
                if name in cls.__dict__:
                    delattr(cls, name)


class FeedState(StrEnum):
    CONNECTING = "connecting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    STALE = "stale"
    STOPPED = "stopped"


# ----- trading: money is Decimal (DESIGN rule 5) ---------------------------------------------------------------


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP_MARKET = "STOP_MARKET"  # stop-loss legs of a bracket: a market order once the price trades through


class OrderStatus(StrEnum):
    NEW = "NEW"  # accepted, working (limit/stop) or about to fill (market, during the submit latency)
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"

    @property
    def is_open(self) -> bool:
        return self in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)


class OrderOrigin(StrEnum):
    MODEL = "MODEL"  # from an approved (or modified) proposal
    MANUAL = "MANUAL"  # the order ticket
    BRACKET = "BRACKET"  # stop-loss / take-profit child of another order
    FLATTEN = "FLATTEN"  # "flatten position" or the kill switch


class Liquidity(StrEnum):
    MAKER = "MAKER"
    TAKER = "TAKER"


@dataclass(slots=True, frozen=True)
class OrderRequest:
    """What someone asks the broker to do; RiskManager checks it before anything is sent."""

    symbol: str
    side: Side
    type: OrderType
    qty: Decimal
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    origin: OrderOrigin = OrderOrigin.MANUAL
    proposal_id: str | None = None
    parent_id: str | None = None
    reduce_only: bool = False
    stop_loss_pct: Decimal | None = None  # bracket legs to attach once the entry fills, % from the fill price
    take_profit_pct: Decimal | None = None
    # Or at absolute prices (typed as prices on the ticket): used as given, whatever the fill (a price wins over a %).
    stop_loss_price: Decimal | None = None
    take_profit_price: Decimal | None = None

    @property
    def bracketed(self) -> bool:
        """Whether legs are to be attached once the entry fills."""
        return (self.stop_loss_pct is not None or self.take_profit_pct is not None
                or self.stop_loss_price is not None or self.take_profit_price is not None)


@dataclass(slots=True)
class Order:
    id: str
    request: OrderRequest
    status: OrderStatus
    created_ms: int
    filled_qty: Decimal = Decimal(0)
    avg_price: Decimal | None = None
    fees: Decimal = Decimal(0)
    reject_reason: str | None = None
    updated_ms: int = 0
    exchange_id: str | None = None  # the exchange's own id for it (live); ours (``id``) is its client order id

    @property
    def symbol(self) -> str:
        return self.request.symbol

    @property
    def remaining(self) -> Decimal:
        return self.request.qty - self.filled_qty


@dataclass(slots=True, frozen=True)
class Fill:
    id: str
    order_id: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    fee: Decimal  # in ``fee_asset``
    liquidity: Liquidity
    exchange_ms: int
    # The asset the commission was paid in, as the exchange says it (Binance: a buy pays in the base coin, a sell in
    # the quote, or BNB). None = the quote currency: every paper fill, and every fill journaled before v5.
    fee_asset: str | None = None


@dataclass(slots=True)
class Position:
    symbol: str
    qty: Decimal = Decimal(0)  # signed: > 0 long, < 0 short
    avg_price: Decimal = Decimal(0)
    realized_pnl: Decimal = Decimal(0)  # after fees
    fees: Decimal = Decimal(0)
