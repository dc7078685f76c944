"""The Broker protocol and PaperBroker, a simulated exchange that fills orders against live market data.

PaperBroker's fill model (every quantity, price, fee and balance is Decimal; market data floats are converted with
``Decimal(str(x))`` and put on the tick (prices, half-even) or the lot (quantities, rounded down)):

- **Latency.** ``submit`` registers the order (NEW, listeners told), then after ``submit_latency_s``
  (``asyncio.sleep``) the order "arrives at the exchange" and is processed against the market as it is then.
  Once sent, an order arrives even if the awaiting caller is cancelled (it runs in its own task); ``aclose`` cancels
  orders still in flight. Cancelling during the latency cancels the order before it arrives.
- **Market orders** walk the local ``OrderBook`` (given with ``on_book``) level by level, one fill per level, taker
  fee. If the book runs out, the remainder is **canceled** (the order ends CANCELED with its filled part and the
  reason in ``reject_reason``): a paper fill never invents liquidity that was not on the book. Without a usable book
  (none, no snapshot yet, or a gap awaiting resync) the last ``Quote`` is used: up to the top-of-book quantity fills
  at the touch; the excess fills at the touch moved by ``slippage_bps_per_unit × excess / top_qty`` basis points
  (rounded to the tick against the taker). With neither, the order is rejected.
- **Limit orders** that are marketable on arrival take liquidity as taker up to the limit price (book levels, or
  the quote's touch and size); the rest rests as maker. A resting limit fills only when the market **trades
  through** it: a trade strictly below a buy limit (strictly above a sell limit) fills at the limit price, up to the
  traded quantity, shared among resting orders by price then time priority. A trade *at* the limit price does not
  fill: our place in the queue is unknown, so the conservative assumption is that the queue ahead absorbed it.
  Quotes crossing a resting limit do not fill it either; only trades do. Maker fee.
- **STOP_MARKET** triggers when a trade reaches the stop price (sell stop: trade <= stop; buy stop: trade >= stop),
  then fills like a market order, at once. A stop that has already been reached when it arrives triggers at once.
- **Brackets.** An entry with ``stop_loss_pct`` and/or ``take_profit_pct`` gets its legs when it is done: FILLED,
  or CANCELED after a partial fill (then for the filled quantity). Legs are reduce-only, origin BRACKET,
  ``parent_id`` = the entry's id, for the entry's filled quantity: a STOP_MARKET at avg × (1 ∓ sl%) and a LIMIT at
  avg × (1 ± tp%), on the tick (half-even). They are placed at once, without latency (exchange-side OCO), and are
  linked: a fill of one leg shrinks the other to what is left of the first, so both always cover the same
  quantity; when one leg is fully filled the other is canceled.
- **Reduce-only** orders never increase the position this broker holds: their fills are capped at the position
  and, when there is nothing to reduce, they are canceled. When a symbol's position returns to zero, its open
  reduce-only orders are canceled.
- **Fees** are quantity × price × rate per fill, kept to 1e-8 (half-even); the order's average price likewise.
- Ids are deterministic: orders ``{prefix}{n}``, fills ``{prefix}F{n}``, counted from 1 per broker; after a restart
  call ``restore_ids`` (or give each session its own prefix) so that a journal never sees an id twice. Every change
  is reported synchronously to the listeners (a fill before the order update it causes); a failing listener is
  logged and counted.
- Fill times come from ``clock_ms`` (wall clock by default; in a replay, pass the market's clock).
- The broker does not consume the book it walks (market data is shared); two market orders in quick succession see
  the same liquidity.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Protocol, TypeVar, runtime_checkable

from app.market.book import OrderBook
from app.market.instruments import Instrument, Instruments
from app.models import (
    Fill,
    Liquidity,
    MarketEvent,
    Order,
    OrderOrigin,
    OrderRequest,
    OrderStatus,
    OrderType,
    Quote,
    Side,
    Trade,
)

log = logging.getLogger(__name__)

MARKET_ERRORS_LOGGED = 5  # the first few market events that fail are logged in full, then every 1000th

Q8 = Decimal("1e-8")
ZERO = Decimal(0)
BPS = Decimal(10_000)
HUNDRED = Decimal(100)

OrderListener = Callable[[Order], None]
FillListener = Callable[[Fill], None]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CancelReport:
    """What ``cancel_all`` did, for the kill switch and flatten: how many orders it canceled and, one sentence each,
    the orders the exchange would not cancel (a paper broker never refuses)."""

    canceled: int
    refused: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LegMove:
    """What moving a bracket leg (``Broker.replace_leg``) did, for the desk to say truthfully.

    ``moved``: the leg is at the new price (``new``, open or already filled), or ``closed_at_market`` when the market
    was already through it. Not moved: ``kept`` is the old leg still working (never canceled) or put back at the old
    price, ``filled`` the old leg filled meanwhile (the position is out), ``unprotected`` the old leg is gone and
    could not be put back (the position has no stop); ``why`` says why in words."""

    moved: bool = False
    new: Order | None = None
    kept: Order | None = None
    why: str = ""
    filled: bool = False
    unprotected: bool = False
    closed_at_market: bool = False


@runtime_checkable
class Broker(Protocol):
    """The order side of the terminal: PaperBroker (simulated fills) or LiveBroker (an exchange account). The desk
    depends on this only; the session chooses the implementation at start.

    ``submit`` never raises for an exchange's refusal: the order comes back REJECTED with ``reject_reason`` in the
    trader's words. Listeners are called synchronously, a fill before the order update it causes."""

    mode: str  # "PAPER" or "LIVE"
    label: str  # shown to the trader: "PAPER", "LIVE · Binance testnet", "LIVE · built-in exchange"

    async def submit(self, req: OrderRequest) -> Order: ...

    async def cancel(self, order_id: str) -> bool: ...

    async def cancel_all(self, symbol: str | None = None) -> CancelReport: ...

    async def replace_leg(self, order_id: str, req: OrderRequest) -> LegMove:
        """Move the bracket leg ``order_id`` to ``req``'s price, for what it has left; a new leg that is refused puts
        the old one back at its price (``LegMove`` says which)."""
        ...

    async def add_leg(self, req: OrderRequest, sibling_id: str | None = None) -> Order | None:
        """A bracket leg for a position that lacks one, linked to the open leg ``sibling_id`` when given (the two
        cover the same coins, one ends the other); None when nothing is left to protect."""
        ...

    def open_orders(self, symbol: str | None = None) -> list[Order]: ...

    @property
    def orders(self) -> list[Order]: ...

    def get(self, order_id: str) -> Order | None: ...

    def add_listener(self, on_order: OrderListener, on_fill: FillListener) -> None: ...

    def set_position(self, symbol: str, qty: Decimal) -> None: ...

    def restore_open_orders(self, orders: Iterable[Order]) -> None: ...

    def restore_ids(self, order_ids: Iterable[str] = (), fill_ids: Iterable[str] = ()) -> None: ...

    def on_market(self, batch: Iterable[MarketEvent]) -> None:
        """The broker's own share of the market (trades and quotes; the session subscribes it to the bus): paper
        fills resting orders and stops on it, a live broker watches the take-profits it holds."""
        ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


def on_filters(req: OrderRequest, inst: Instrument) -> OrderRequest:
    """The request on its instrument's grids, as an exchange would take it: quantity rounded down to the lot,
    a limit price to the tick on the trader's side (a buy never pays more, a sell never gets less than asked),
    a stop price to the nearest tick. Minimums are not judged here (risk and the broker say why in words)."""
    changes: dict[str, Decimal] = {}
    if req.qty > 0 and not inst.on_lot(req.qty):
        changes["qty"] = inst.round_qty(req.qty)
    if req.limit_price is not None and req.limit_price > 0 and not inst.on_tick(req.limit_price):
        changes["limit_price"] = inst.round_price(
            req.limit_price, ROUND_FLOOR if req.side is Side.BUY else ROUND_CEILING)
    if req.stop_price is not None and req.stop_price > 0 and not inst.on_tick(req.stop_price):
        changes["stop_price"] = inst.round_price(req.stop_price)
    return dataclasses.replace(req, **changes) if changes else req


def fmt_decimal(x: Decimal) -> str:
    """A quantity or price as the trader reads it: no exponent, no trailing zeros ("0.5", "100")."""
    return f"{x.normalize():f}"


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def notify(listeners: Iterable[Callable[[T], None]], item: T, what: str) -> int:
    """Call each listener with ``item`` (synchronously, in order); one that raises is logged and the rest still
    called. Returns how many failed (the brokers count them; a live broker refuses to send an order whose NEW the
    journal did not take)."""
    failed = 0
    for cb in list(listeners):
        try:
            cb(item)
        except Exception:
            failed += 1
            log.exception("%s listener failed on %s", what, getattr(item, "id", item))
    return failed


def end_order(order: Order, status: OrderStatus, reason: str | None, now_ms: int) -> None:
    """An order's new state and why (a reason given replaces the old one; None keeps it)."""
    order.status = status
    if reason is not None:
        order.reject_reason = reason
    order.updated_ms = now_ms


_fmt = fmt_decimal
_wall_ms = wall_ms


class PaperBroker:
    mode = "PAPER"
    label = "PAPER"

    def __init__(
        self,
        maker_fee: Decimal = Decimal("0.001"),
        taker_fee: Decimal = Decimal("0.001"),
        submit_latency_s: float = 0.05,
        clock_ms: Callable[[], int] = _wall_ms,
        slippage_bps_per_unit: Decimal = Decimal("10"),
        id_prefix: str = "P",
        tick_size: Decimal = Decimal("0.01"),
        lot_size: Decimal = Decimal("0.00001"),
        max_history: int = 10_000,
        instruments: Instruments | None = None,
    ) -> None:
        self.maker_fee = Decimal(maker_fee)
        self.taker_fee = Decimal(taker_fee)
        self.submit_latency_s = submit_latency_s
        self.clock_ms = clock_ms
        self.slippage_bps_per_unit = Decimal(slippage_bps_per_unit)
        self.id_prefix = id_prefix
        # Each symbol's tick, lot and minimums; tick_size/lot_size are the grid of symbols it does not know.
        self.instruments = instruments or Instruments(fallback_steps=(tick_size, lot_size))
        self.max_history = max_history
        self._next_order = 1
        self._next_fill = 1
        self._arrivals = itertools.count(1)
        self._orders: dict[str, Order] = {}  # history, oldest first (bounded; open orders are never evicted)
        self._open: dict[str, Order] = {}  # NEW or PARTIALLY_FILLED, in flight or at the exchange
        self._working: dict[str, int] = {}  # at the exchange: order id -> arrival sequence (time priority)
        self._notional: dict[str, Decimal] = {}  # per order: Σ qty × price of its fills (exact)
        self._oco: dict[str, str] = {}  # bracket leg -> its sibling
        self._bracketed: set[str] = set()  # entries whose legs were placed
        self._net: dict[str, Decimal] = {}  # position per symbol from this broker's fills
        self._books: dict[str, OrderBook] = {}
        self._quotes: dict[str, Quote] = {}
        self._quotes_since_ns = 0  # quotes received before this (an ended connection's) are ignored
        self._last_price: dict[str, Decimal] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self._order_listeners: list[OrderListener] = []
        self._fill_listeners: list[FillListener] = []
        self.fills: deque[Fill] = deque(maxlen=max_history)
        self.listener_errors = 0
        self.market_errors = 0  # market events whose handling raised (the rest of their batch still handled)
        self.rejected = 0
        self.version = 0

    # ------------------------------------------------------------------------------------------------ market data

    def on_market(self, batch: Iterable[MarketEvent]) -> None:
        """Its own share of the market: trades (resting orders, stops) and quotes. Books are not taken from the
        batch: the desk's books are shared by reference (``on_book``), so they are applied once. One event that
        fails is logged and counted (``market_errors``), and the rest of the batch still fills and triggers: a stop
        must not be skipped because the trade before it hit a bug."""
        for ev in batch:
            try:
                if isinstance(ev, Trade):
                    self.on_trade(ev)
                elif isinstance(ev, Quote):
                    self.on_quote(ev)
            except Exception:
                self.market_errors += 1
                n = self.market_errors
                if n <= MARKET_ERRORS_LOGGED or n % 1000 == 0:  # a bug on every trade must not flood the log
                    log.exception("paper broker: a market event failed (%d so far; the batch goes on): %r", n, ev)

    def on_quote(self, quote: Quote) -> None:
        if quote.recv_ns >= self._quotes_since_ns:  # else it came on a connection that has since ended
            self._quotes[quote.symbol] = quote

    def feed_reset(self, since_ns: int) -> None:
        """The feed connected or dropped: the last bid/ask of the old connection is no price to fill at. Market
        orders are refused until a quote arrives on the new connection (the books are invalidated alike)."""
        self._quotes.clear()
        self._quotes_since_ns = since_ns

    def on_book(self, book: OrderBook) -> None:
        """Walk this book for the symbol's market orders (a reference: later updates are seen)."""
        self._books[book.symbol] = book

    def on_trade(self, trade: Trade) -> None:
        sym = trade.symbol
        price = self._px(trade.price, trade.symbol)
        self._last_price[sym] = price
        working = [self._open[i] for i in self._working if i in self._open and self._open[i].symbol == sym]
        if not working:
            return
        for o in working:  # stops first: a stop-loss must not wait behind a take-profit
            if o.request.type is OrderType.STOP_MARKET and o.status.is_open and self._stop_reached(o, price):
                self._fill_market(o)
        traded = self._lot(trade.qty, trade.symbol)
        buys = [o for o in working if self._rests_through(o, Side.BUY, price)]
        sells = [o for o in working if self._rests_through(o, Side.SELL, price)]
        buys.sort(key=lambda o: (-self._limit(o), self._working.get(o.id, 0)))
        sells.sort(key=lambda o: (self._limit(o), self._working.get(o.id, 0)))
        for queue in (buys, sells):
            left = traded
            for o in queue:
                if left <= 0:
                    break
                if not o.status.is_open:  # an OCO sibling may have been canceled meanwhile
                    continue
                take = min(self._fillable(o), left)
                if take <= 0:
                    self._cancel_unreducible(o)
                    continue
                self._fill(o, take, self._limit(o), Liquidity.MAKER)
                left -= take

    def last_price(self, symbol: str) -> Decimal | None:
        return self._last_price.get(symbol)

    def position_qty(self, symbol: str) -> Decimal:
        """Signed position from this broker's fills."""
        return self._net.get(symbol, ZERO)

    # ------------------------------------------------------------------------------------------------ Broker API

    def add_listener(self, on_order: OrderListener, on_fill: FillListener) -> None:
        self._order_listeners.append(on_order)
        self._fill_listeners.append(on_fill)

    @property
    def orders(self) -> list[Order]:
        return list(self._orders.values())

    def get(self, order_id: str) -> Order | None:
        return self._orders.get(order_id) or self._open.get(order_id)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return [o for o in self._open.values() if symbol is None or o.symbol == symbol]

    async def submit(self, req: OrderRequest) -> Order:
        order = self._register(req)
        if not order.status.is_open:
            return order
        task = asyncio.get_running_loop().create_task(self._deliver(order), name=f"paper-submit-{order.id}")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        await asyncio.shield(task)
        return order

    async def cancel(self, order_id: str) -> bool:
        order = self._open.get(order_id)
        if order is None:
            return False
        self._close(order, OrderStatus.CANCELED, "canceled by request")
        return True

    async def cancel_all(self, symbol: str | None = None) -> CancelReport:
        n = 0
        for order in self.open_orders(symbol):
            if order.status.is_open:  # canceling an entry can place (and an OCO leg cancel) other orders
                self._close(order, OrderStatus.CANCELED, "canceled by request (cancel all)")
                n += 1
        return CancelReport(n)

    async def replace_leg(self, order_id: str, req: OrderRequest) -> LegMove:
        """Move a bracket leg (the desk's ``move_bracket``): the leg is canceled and ``req`` (its new price, for what
        the old one had left) placed at once, as the legs are (exchange-side), linked to the same sibling (OCO). A new
        leg that is refused puts the old one back at its price, linked alike (as the live broker does)."""
        old = self._open.get(order_id)
        if old is None and (done := self._orders.get(order_id)) is not None and done.status is OrderStatus.FILLED:
            return LegMove(filled=True)
        if old is None or old.request.origin is not OrderOrigin.BRACKET:
            return LegMove(why=f"{order_id} is no open bracket leg")
        sibling_id = self._oco.get(order_id)
        req = dataclasses.replace(req, qty=old.remaining, origin=OrderOrigin.BRACKET,
                                  parent_id=old.request.parent_id, reduce_only=True)
        self._close(old, OrderStatus.CANCELED, f"moved: replaced by {self.id_prefix}{self._next_order}")
        new = self._register(req)
        if self._place_leg(new, sibling_id):
            return LegMove(moved=True, new=new)
        back = self._register(dataclasses.replace(old.request, qty=req.qty))
        if self._place_leg(back, sibling_id):
            log.warning("bracket leg %s refused (%s): %s put back at the old price", new.id, new.reject_reason,
                        back.id)
            return LegMove(new=new, kept=back, why=new.reject_reason or "refused")
        log.error("bracket leg %s refused (%s) and the old leg could not be put back (%s): %s unprotected", new.id,
                  new.reject_reason, back.reject_reason, old.symbol)
        return LegMove(new=new, why=new.reject_reason or "refused", unprotected=True)

    def _place_leg(self, leg: Order, sibling_id: str | None) -> bool:
        """A leg registered by ``replace_leg``: linked to the sibling (OCO) and arrived; False if it was refused."""
        if not leg.status.is_open:
            return False
        if sibling_id is not None and sibling_id in self._open:
            self._oco[leg.id], self._oco[sibling_id] = sibling_id, leg.id
        self._arrive(leg)
        return True

    async def add_leg(self, req: OrderRequest, sibling_id: str | None = None) -> Order:
        """A bracket leg for a position that lacks one (the desk's ``move_bracket``): placed at once, reduce-only,
        linked to ``sibling_id`` (OCO) when that leg is open."""
        new = self._register(dataclasses.replace(req, origin=OrderOrigin.BRACKET, reduce_only=True))
        if new.status.is_open:
            if sibling_id is not None and sibling_id in self._open and sibling_id not in self._oco:
                self._oco[new.id], self._oco[sibling_id] = sibling_id, new.id
            self._arrive(new)
        return new

    async def start(self) -> None:
        """Nothing to connect or reconcile: the paper account is the journal's."""

    async def aclose(self) -> None:
        """Cancel orders still in flight (their submit raises CancelledError)."""
        tasks = list(self._pending)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    # ------------------------------------------------------------------------------------------------ restart

    def restore_ids(self, order_ids: Iterable[str] = (), fill_ids: Iterable[str] = ()) -> None:
        """Continue numbering after ids already used (e.g. every id in the journal), so that a restarted broker
        with the same prefix never reuses one."""
        self._next_order = max(self._next_order, 1 + max(map(self._number_of_order, order_ids), default=0))
        self._next_fill = max(self._next_fill, 1 + max(map(self._number_of_fill, fill_ids), default=0))

    def set_position(self, symbol: str, qty: Decimal) -> None:
        """The signed position this broker holds (after a restart), which caps reduce-only orders."""
        self._net[symbol] = Decimal(qty)

    def restore_open_orders(self, orders: Iterable[Order]) -> None:
        """Take back the orders that were open when the terminal stopped: limits and stops work again at once
        (they were at the exchange), bracket legs sharing a parent are linked as OCO again, and a market order
        that never filled is canceled (the market it was sent into is gone). Numbering continues after their ids.
        Call ``set_position`` for each restored position too, or reduce-only legs find nothing to reduce."""
        orders = [o for o in orders if o.status.is_open]
        self.restore_ids(o.id for o in orders)
        legs: dict[str, list[Order]] = {}
        for o in orders:
            self._orders[o.id] = o
            self._open[o.id] = o
            if o.request.type is OrderType.MARKET:
                self._close(o, OrderStatus.CANCELED, "a market order not filled before the restart")
                continue
            self._working[o.id] = next(self._arrivals)
            if o.filled_qty > 0 and o.avg_price is not None:
                self._notional[o.id] = o.filled_qty * o.avg_price
            if o.request.origin is OrderOrigin.BRACKET and o.request.parent_id is not None:
                legs.setdefault(o.request.parent_id, []).append(o)
                self._bracketed.add(o.request.parent_id)
        for pair in legs.values():
            if len(pair) == 2:
                self._oco[pair[0].id], self._oco[pair[1].id] = pair[1].id, pair[0].id
        self._trim_history()
        self.version += 1

    def _new_id(self, kind: str) -> str:
        if kind == "order":
            n, self._next_order = self._next_order, self._next_order + 1
            return f"{self.id_prefix}{n}"
        n, self._next_fill = self._next_fill, self._next_fill + 1
        return f"{self.id_prefix}F{n}"

    def _number_of_order(self, oid: str) -> int:
        rest = oid[len(self.id_prefix) :] if oid.startswith(self.id_prefix) else ""
        return int(rest) if rest.isdigit() else 0

    def _number_of_fill(self, fid: str) -> int:
        head = f"{self.id_prefix}F"
        rest = fid[len(head) :] if fid.startswith(head) else ""
        return int(rest) if rest.isdigit() else 0

    # ------------------------------------------------------------------------------------------------ lifecycle

    def _register(self, req: OrderRequest) -> Order:
        req = self._on_grid(req)
        now = self.clock_ms()
        order = Order(
            id=self._new_id("order"),
            request=req,
            status=OrderStatus.NEW,
            created_ms=now,
            updated_ms=now,
        )
        self._orders[order.id] = order
        self._trim_history()
        reason = self._invalid(req)
        if reason is not None:
            order.status = OrderStatus.REJECTED
            order.reject_reason = reason
            self.rejected += 1
        else:
            self._open[order.id] = order
        self._emit_order(order)
        return order

    def _on_grid(self, req: OrderRequest) -> OrderRequest:
        return on_filters(req, self.instruments.get(req.symbol))

    def _invalid(self, req: OrderRequest) -> str | None:
        inst = self.instruments.get(req.symbol)
        if req.qty <= 0:
            return f"quantity {_fmt(req.qty)} {inst.base} is not positive (after rounding down to the lot size " \
                   f"{_fmt(inst.lot_size)})"
        if req.type is OrderType.LIMIT and (req.limit_price is None or req.limit_price <= 0):
            return "a limit order needs a positive limit price"
        if req.type is OrderType.STOP_MARKET and (req.stop_price is None or req.stop_price <= 0):
            return "a stop order needs a positive stop price"
        if req.reduce_only or req.origin is OrderOrigin.FLATTEN:
            return None  # closing is never refused for size (the exchanges' own reduce-only rule)
        ref = req.limit_price or req.stop_price or self._reference_price(req)
        return inst.size_problem(req.qty, ref)

    def _reference_price(self, req: OrderRequest) -> Decimal | None:
        """The price a market order's value is judged at: the touch it would take, else the last trade."""
        quote = self._quotes.get(req.symbol)
        if quote is not None:
            touch = quote.ask if req.side is Side.BUY else quote.bid
            if touch > 0:
                return Decimal(str(touch))
        return self._last_price.get(req.symbol)

    async def _deliver(self, order: Order) -> None:
        try:
            await asyncio.sleep(self.submit_latency_s)
        except asyncio.CancelledError:
            if order.status.is_open:
                self._close(order, OrderStatus.CANCELED, "not sent: the broker was closed")
            raise
        if order.status.is_open:  # it may have been canceled during the latency
            self._arrive(order)

    def _arrive(self, order: Order) -> None:
        self._working[order.id] = next(self._arrivals)
        req = order.request
        if req.type is OrderType.MARKET:
            self._fill_market(order)
        elif req.type is OrderType.LIMIT:
            self._take_marketable(order)
        else:
            last = self._last_price.get(order.symbol)
            if last is not None and self._stop_reached(order, last):
                self._fill_market(order)

    def _close(self, order: Order, status: OrderStatus, reason: str | None) -> None:
        end_order(order, status, reason, self.clock_ms())
        if status is OrderStatus.REJECTED:
            self.rejected += 1
        self._open.pop(order.id, None)
        self._working.pop(order.id, None)
        self._notional.pop(order.id, None)
        sibling_id = self._oco.pop(order.id, None)
        if sibling_id is not None:
            self._oco.pop(sibling_id, None)
        self._emit_order(order)
        self._on_done(order)

    def _on_done(self, order: Order) -> None:
        """An order reached a final state: place its bracket legs if it was an entry that filled (in part)."""
        req = order.request
        if order.filled_qty <= 0 or order.id in self._bracketed:
            return
        if not req.bracketed:
            return
        self._bracketed.add(order.id)
        assert order.avg_price is not None
        avg, long = order.avg_price, req.side is Side.BUY
        exit_side = Side.SELL if long else Side.BUY
        legs: list[Order] = []
        base = OrderRequest(
            symbol=req.symbol,
            side=exit_side,
            type=OrderType.MARKET,
            qty=order.filled_qty,
            origin=OrderOrigin.BRACKET,
            proposal_id=req.proposal_id,
            parent_id=order.id,
            reduce_only=True,
        )
        if req.stop_loss_price is not None or req.stop_loss_pct is not None:  # a price typed: where it was typed
            k = (1 - req.stop_loss_pct / HUNDRED if long else 1 + req.stop_loss_pct / HUNDRED) \
                if req.stop_loss_pct is not None else 1
            stop = self._tick(req.stop_loss_price or avg * k, order.symbol)
            legs.append(self._register(dataclasses.replace(base, type=OrderType.STOP_MARKET, stop_price=stop)))
        if req.take_profit_price is not None or req.take_profit_pct is not None:
            k = (1 + req.take_profit_pct / HUNDRED if long else 1 - req.take_profit_pct / HUNDRED) \
                if req.take_profit_pct is not None else 1
            limit = self._tick(req.take_profit_price or avg * k, order.symbol)
            legs.append(self._register(dataclasses.replace(base, type=OrderType.LIMIT, limit_price=limit)))
        legs = [leg for leg in legs if leg.status.is_open]
        if len(legs) == 2:
            self._oco[legs[0].id], self._oco[legs[1].id] = legs[1].id, legs[0].id
        for leg in legs:
            if leg.status.is_open:
                self._arrive(leg)

    # ------------------------------------------------------------------------------------------------ matching

    def _fill_market(self, order: Order) -> None:
        """Fill what can be filled now as taker; the order ends FILLED, CANCELED (book too thin, nothing to
        reduce) or REJECTED (no market data)."""
        side = order.request.side
        want = self._fillable(order)
        if want <= 0:
            self._cancel_unreducible(order)
            return
        book = self._books.get(order.symbol)
        if book is not None and book.is_valid and (levels := book.taker_levels(side, book.max_levels)):
            for p, q in levels:
                if want <= 0:
                    break
                take = min(want, self._lot(q, order.symbol))
                if take > 0:
                    self._fill(order, take, self._px(p, order.symbol), Liquidity.TAKER)
                    want -= take
        else:
            quote = self._quotes.get(order.symbol)
            if quote is None:
                self._close(order, OrderStatus.REJECTED,
                            f"no live order book or bid/ask for {order.symbol} (the feed is connecting)")
                return
            self._fill_from_quote(order, quote, want)
            want = ZERO
        if order.status.is_open:
            if order.remaining > 0 and self._fillable(order) <= 0:
                self._cancel_unreducible(order)
            elif order.remaining > 0:
                self._close(
                    order,
                    OrderStatus.CANCELED,
                    f"the book was too thin: {_fmt(order.filled_qty)} of {_fmt(order.request.qty)} filled, "
                    "the rest canceled",
                )

    def _fill_from_quote(self, order: Order, quote: Quote, want: Decimal) -> None:
        buy = order.request.side is Side.BUY
        touch = self._px(quote.ask if buy else quote.bid, order.symbol)
        top = self._lot(quote.ask_qty if buy else quote.bid_qty, order.symbol)
        within = min(want, top)
        if within > 0:
            self._fill(order, within, touch, Liquidity.TAKER)
        excess = want - within
        if excess > 0 and order.status.is_open:
            ratio = excess / top if top > 0 else Decimal(1)
            move = touch * self.slippage_bps_per_unit * ratio / BPS
            price = self._tick(touch + move if buy else touch - move, order.symbol,
                               ROUND_CEILING if buy else ROUND_FLOOR)
            if price > 0:
                self._fill(order, excess, price, Liquidity.TAKER)

    def _take_marketable(self, order: Order) -> None:
        """A limit on arrival: take what is available up to the limit price as taker; the rest rests."""
        req = order.request
        limit = self._limit(order)
        buy = req.side is Side.BUY
        want = self._fillable(order)
        if want <= 0:
            self._cancel_unreducible(order)
            return
        book = self._books.get(order.symbol)
        levels: list[tuple[float, float]] = []
        if book is not None and book.is_valid:
            levels = book.taker_levels(req.side, book.max_levels)
        elif (quote := self._quotes.get(order.symbol)) is not None:
            levels = [(quote.ask, quote.ask_qty) if buy else (quote.bid, quote.bid_qty)]
        for p, q in levels:
            price = self._px(p, order.symbol)
            if want <= 0 or (price > limit if buy else price < limit):
                break
            take = min(want, self._lot(q, order.symbol))
            if take > 0:
                self._fill(order, take, price, Liquidity.TAKER)
                want -= take

    def _fill(self, order: Order, qty: Decimal, price: Decimal, liquidity: Liquidity) -> None:
        req = order.request
        rate = self.maker_fee if liquidity is Liquidity.MAKER else self.taker_fee
        fee = (qty * price * rate).quantize(Q8, rounding=ROUND_HALF_EVEN)
        now = self.clock_ms()
        fill = Fill(
            id=self._new_id("fill"),
            order_id=order.id,
            symbol=req.symbol,
            side=req.side,
            qty=qty,
            price=price,
            fee=fee,
            liquidity=liquidity,
            exchange_ms=now,
        )
        notional = self._notional.get(order.id, ZERO) + qty * price
        self._notional[order.id] = notional
        order.filled_qty += qty
        order.avg_price = (notional / order.filled_qty).quantize(Q8, rounding=ROUND_HALF_EVEN)
        order.fees += fee
        order.updated_ms = now
        signed = qty if req.side is Side.BUY else -qty
        self._net[req.symbol] = self._net.get(req.symbol, ZERO) + signed
        self.fills.append(fill)
        self._emit_fill(fill)
        sibling_id = self._oco.get(order.id)
        if order.remaining <= 0:
            self._close(order, OrderStatus.FILLED, None)  # may place bracket legs, which may fill at once
        else:
            order.status = OrderStatus.PARTIALLY_FILLED
            self._emit_order(order)
        if sibling_id is not None:
            self._sync_oco(order, sibling_id)
        if self._net[req.symbol] == 0:
            for other in self.open_orders(req.symbol):
                if other.request.reduce_only and other.status.is_open:
                    self._close(other, OrderStatus.CANCELED, "the position is closed; nothing left to reduce")

    def _sync_oco(self, leg: Order, sibling_id: str) -> None:
        sibling = self._open.get(sibling_id)
        if sibling is None:
            return
        if leg.remaining <= 0:
            self._close(sibling, OrderStatus.CANCELED, f"OCO: the other bracket leg {leg.id} filled")
            return
        new_qty = sibling.filled_qty + leg.remaining
        if new_qty < sibling.request.qty:
            sibling.request = dataclasses.replace(sibling.request, qty=new_qty)
            sibling.updated_ms = self.clock_ms()
            self._emit_order(sibling)

    def _fillable(self, order: Order) -> Decimal:
        rem = order.remaining
        if not order.request.reduce_only:
            return rem
        net = self._net.get(order.symbol, ZERO)
        room = net if order.request.side is Side.SELL else -net
        return min(rem, max(room, ZERO))

    def _cancel_unreducible(self, order: Order) -> None:
        if order.status.is_open:
            self._close(order, OrderStatus.CANCELED, "reduce-only: no position left to reduce")

    def _stop_reached(self, order: Order, price: Decimal) -> bool:
        stop = order.request.stop_price
        assert stop is not None
        return price <= stop if order.request.side is Side.SELL else price >= stop

    def _rests_through(self, o: Order, side: Side, price: Decimal) -> bool:
        req = o.request
        if req.type is not OrderType.LIMIT or req.side is not side or not o.status.is_open:
            return False
        limit = self._limit(o)
        return price < limit if side is Side.BUY else price > limit

    @staticmethod
    def _limit(o: Order) -> Decimal:
        assert o.request.limit_price is not None
        return o.request.limit_price

    # ------------------------------------------------------------------------------------------------ helpers

    def _px(self, x: float, symbol: str) -> Decimal:
        """A market-data price on the symbol's tick."""
        return self._tick(Decimal(str(x)), symbol)

    def _lot(self, x: float, symbol: str) -> Decimal:
        """A market-data quantity in whole lots of the symbol, rounded down."""
        return self.instruments.get(symbol).round_qty(Decimal(str(x)), ROUND_DOWN)

    def _tick(self, x: Decimal, symbol: str, rounding: str = ROUND_HALF_EVEN) -> Decimal:
        """On the symbol's tick (any tick, not only powers of ten), written with the tick's decimals."""
        return self.instruments.get(symbol).round_price(x, rounding)

    def _trim_history(self) -> None:
        if len(self._orders) <= self.max_history + self.max_history // 10:
            return  # trim in batches so the scan is amortised
        excess = len(self._orders) - self.max_history
        for oid in [oid for oid, o in self._orders.items() if not o.status.is_open][:excess]:
            del self._orders[oid]

    def _emit_order(self, order: Order) -> None:
        self.version += 1
        self.listener_errors += notify(self._order_listeners, order, "order")

    def _emit_fill(self, fill: Fill) -> None:
        self.version += 1
        self.listener_errors += notify(self._fill_listeners, fill, "fill")
