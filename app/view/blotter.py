"""The Orders dock's read model: working orders, the order history, fills, open positions, closed positions and the
realised PnL per day and per symbol, as frozen keyed snapshots built without Qt.

``TradeHistory`` keeps the trade history: it replays fills (the journal's since a restart, then each new one) through
``apply_to_position``, the portfolio's own rule, so a position that goes flat stays listed with its realised PnL, and
each fill's realised PnL (after fees) is added to its UTC day and its symbol. ``blotter_view`` builds the snapshot
from the parts it reads; ``desk_blotter`` reads them from a trading desk (what the Orders dock and the view model
call). Every price and quantity is text in its instrument's precision; times come from the arguments.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Protocol

from app.market.instruments import Instrument, Instruments
from app.models import Fill, Order, OrderStatus, Position, Side
from app.trading.journal import HistoryRecords, read_history
from app.trading.portfolio import DAY_MS, apply_to_position, utc_day_start

log = logging.getLogger(__name__)

HISTORY_DAYS = 30  # how far back a restart reads the journal for the blotter's history
ORDER_ROWS = 300  # the Orders tab: the newest orders
FILL_ROWS = 300
CLOSED_ROWS = 300
ZERO = Decimal(0)


# ----- rows ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OrderRow:
    key: str  # the order id, whole
    order_id: str
    time: str  # "14:03:22", or "Dec 05 14:03" for another day
    time_utc: str  # ISO-8601 UTC, for the tooltip
    symbol: str
    origin: str
    side: str  # BUY / SELL
    type: str
    qty: str
    price: str  # the limit or stop price; "" for a market order
    price_value: Decimal | None  # the same as a number (the chart draws working orders at it)
    filled: str
    avg: str
    status: str
    note: str  # why it was refused or canceled
    working: bool  # NEW or PARTIALLY_FILLED: modify / cancel apply
    created_ms: int

    @property
    def id(self) -> str:
        """The order id (as ``Order.id``): what cancel and modify take."""
        return self.order_id


@dataclass(frozen=True, slots=True)
class FillRow:
    key: str  # the fill id
    fill_id: str
    order_id: str
    time: str
    time_utc: str
    symbol: str
    side: str
    qty: str
    price: str
    fee: str  # "0.6000 USDT", "0.00001 BTC": every fee names its asset
    liquidity: str  # MAKER / TAKER
    exchange_ms: int


@dataclass(frozen=True, slots=True)
class PositionRow:
    key: str  # the symbol
    symbol: str
    side: str  # LONG / SHORT
    qty: str  # signed, in the instrument's lot precision
    avg: str
    mark: str  # "—" while no price is known
    unrealised: str  # at the mark, quote currency, signed
    unrealised_sign: int  # -1, 0, 1: the colour
    realised: str  # realised so far on this position (partial exits, fees), signed
    realised_sign: int
    fees: str
    opened: str  # when it opened ("" when it was open before the history starts)


@dataclass(frozen=True, slots=True)
class ClosedRow:
    key: str  # symbol + the fill that opened it: stable
    symbol: str
    side: str  # LONG / SHORT
    qty: str  # the largest size held
    entry: str  # average entry price
    exit: str  # average exit price
    opened: str
    closed: str
    closed_ms: int
    realised: str  # after fees, signed, quote currency
    realised_sign: int
    fees: str
    fills: int


@dataclass(frozen=True, slots=True)
class PnlRow:
    """Realised PnL of one UTC day or one symbol, after fees."""

    key: str  # "2024-08-08" or the symbol
    label: str
    realised: str
    realised_sign: int
    fees: str
    fills: int
    closed: int  # positions closed


@dataclass(frozen=True, slots=True)
class BlotterView:
    working: tuple[OrderRow, ...]  # newest first
    orders: tuple[OrderRow, ...]  # newest first: this run's and the journal's
    fills: tuple[FillRow, ...]  # newest first
    positions: tuple[PositionRow, ...]  # open, in symbol order
    closed: tuple[ClosedRow, ...]  # newest first
    days: tuple[PnlRow, ...]  # newest first
    symbols: tuple[PnlRow, ...]  # by symbol
    history_line: str  # what the History tab covers, and its total, in words
    history_loading: bool = False  # the journal's history is still being read (history_line says so)

    @property
    def keys(self) -> tuple[tuple[str, ...], ...]:
        return tuple(tuple(r.key for r in rows) for rows in (self.working, self.orders, self.fills, self.positions,
                                                             self.closed, self.days, self.symbols))


# ----- the trade history --------------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Open:
    """A position being followed from the fill that opened it."""

    pos: Position
    opened_ms: int | None  # None: it was open before the history starts
    opened_by: str
    max_qty: Decimal = ZERO
    exit_qty: Decimal = ZERO
    exit_value: Decimal = ZERO
    fills: int = 0


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    symbol: str
    long: bool
    qty: Decimal  # the largest size held
    entry: Decimal  # average entry price (the position's average when it closed)
    exit: Decimal  # quantity-weighted average of the exits
    opened_ms: int | None
    closed_ms: int
    realised: Decimal  # after fees, every fee of the position's fills
    fees: Decimal
    fills: int
    key: str


@dataclass(slots=True)
class PnlTotal:
    realised: Decimal = ZERO
    fees: Decimal = ZERO
    fills: int = 0
    closed: int = 0


@dataclass(slots=True)
class TradeHistory:
    """Positions followed fill by fill since ``since_ms``; see the module docstring. Fills are taken once each (by
    id), in the order they happened."""

    since_ms: int = 0
    quote: str = "USDT"  # the portfolio's currency: PnL is in it
    floor_ms: int = 0  # fills older than this are in the start positions already (or before a bound): not taken
    note: str = ""  # a bound or a gap the History tab says
    closed: list[ClosedTrade] = field(default_factory=list)  # oldest first
    days: dict[int, PnlTotal] = field(default_factory=dict)  # UTC day start (ms) ->
    symbols: dict[str, PnlTotal] = field(default_factory=dict)
    _open: dict[str, _Open] = field(default_factory=dict)
    _seen: set[str] = field(default_factory=set)
    version: int = 0  # moves with every fill taken

    @classmethod
    def from_records(cls, records: HistoryRecords, quote: str = "USDT") -> TradeHistory:
        h = cls(since_ms=records.since_ms, quote=quote)
        for symbol, (qty, avg) in records.start_positions.items():
            if qty != 0:
                h._open[symbol] = _Open(Position(symbol, qty, avg), None, "start", max_qty=abs(qty))
        h.add(records.fills)  # the first may be older than since_ms: after the balance the positions start from
        h.floor_ms = records.since_ms
        if records.fills_truncated:
            h.note = f"only the newest {len(records.fills):,} fills were read"
            h.floor_ms = min(records.fills[0].exchange_ms, records.since_ms) if records.fills else records.since_ms
        return h

    @classmethod
    def load(cls, journal, now_ms: int, days: int = HISTORY_DAYS, quote: str = "USDT") -> TradeHistory:
        """From ``journal`` (``Journal.history``): the last ``days`` days."""
        return cls.from_records(journal.history(now_ms - days * DAY_MS), quote)

    def add(self, fills: Iterable[Fill]) -> int:
        """Take the fills not taken yet (oldest first); returns how many were new."""
        n = 0
        for f in fills:
            if f.id in self._seen or f.exchange_ms < self.floor_ms:
                continue
            self._seen.add(f.id)
            self._apply(f)
            n += 1
        if n:
            self.version += 1
        return n

    def open_trade(self, symbol: str) -> _Open | None:
        return self._open.get(symbol)

    def _apply(self, f: Fill) -> None:
        o = self._open.get(f.symbol)
        if o is None or o.pos.qty == 0:
            o = self._open[f.symbol] = _Open(Position(f.symbol), f.exchange_ms, f.id)
        pos = o.pos
        before_qty, before_avg, before_pnl, before_fees = pos.qty, pos.avg_price, pos.realized_pnl, pos.fees
        apply_to_position(pos, f, self.quote)
        o.fills += 1
        reducing = before_qty != 0 and (before_qty > 0) != (f.side is Side.BUY)
        if reducing:
            closed_qty = min(f.qty, abs(before_qty))
            o.exit_qty += closed_qty
            o.exit_value += closed_qty * f.price
        pnl, fee = pos.realized_pnl - before_pnl, pos.fees - before_fees
        if f.exchange_ms >= self.since_ms:
            for total in (self.days.setdefault(utc_day_start(f.exchange_ms), PnlTotal()),
                          self.symbols.setdefault(f.symbol, PnlTotal())):
                total.realised += pnl
                total.fees += fee
                total.fills += 1
        flipped = reducing and pos.qty != 0 and (pos.qty > 0) != (before_qty > 0)
        if reducing and (pos.qty == 0 or flipped):
            trade = ClosedTrade(
                symbol=f.symbol, long=before_qty > 0, qty=o.max_qty, entry=before_avg,
                exit=o.exit_value / o.exit_qty if o.exit_qty else f.price, opened_ms=o.opened_ms,
                closed_ms=f.exchange_ms, realised=pos.realized_pnl, fees=pos.fees, fills=o.fills,
                key=f"{f.symbol}:{o.opened_by}")
            self.closed.append(trade)
            if f.exchange_ms >= self.since_ms:
                self.days[utc_day_start(f.exchange_ms)].closed += 1
                self.symbols[f.symbol].closed += 1
            if flipped:  # the rest opens a new position at the fill price, its realised PnL from here
                self._open[f.symbol] = _Open(Position(f.symbol, pos.qty, pos.avg_price), f.exchange_ms, f.id,
                                             max_qty=abs(pos.qty), fills=1)
            else:
                del self._open[f.symbol]
        else:
            o.max_qty = max(o.max_qty, abs(pos.qty))


# ----- texts --------------------------------------------------------------------------------------------------------
def time_text(ms: int, now_ms: int, tz: dt.tzinfo | None = None) -> str:
    """The clock time for today's events ("14:03:22"), the date and minute for older ones ("Dec 05 14:03");
    ``tz`` None is the machine's local time."""
    if not ms:
        return ""
    t = dt.datetime.fromtimestamp(ms / 1000, tz=tz)
    now = dt.datetime.fromtimestamp(now_ms / 1000, tz=tz)
    return t.strftime("%H:%M:%S") if t.date() == now.date() else t.strftime("%b %d %H:%M")


def utc_text(ms: int) -> str:
    if not ms:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _sign(v: Decimal) -> int:
    return (v > 0) - (v < 0)


def _qty(inst: Instrument, v: Decimal | None) -> str:
    return "" if v is None else inst.fmt_qty(v)


def _price(inst: Instrument, v: Decimal | None) -> str:
    return "" if v is None else inst.fmt_price(v)


def _fee(f: Fill, inst: Instrument, quote: str) -> str:
    """In the quote currency to at least 4 places; a fee taken in a coin keeps every digit: 0.00001 BTC must not
    read 0.0000. Each names its asset."""
    if f.fee_asset is None or f.fee_asset == (inst.quote or quote):
        return f"{f.fee:,.{max(4, inst.price_decimals)}f} {inst.quote or quote}".strip()
    return f"{f.fee.normalize():f} {f.fee_asset}"


def _money(inst: Instrument, v: Decimal, sign: bool = True) -> str:
    return inst.fmt_money(v, sign=sign and v != 0)


# Short words where the exchange's are long, so a narrow dock keeps the numbers and the id in view.
TYPE_TEXT = {"STOP_MARKET": "STOP MKT"}
STATUS_TEXT = {"PARTIALLY_FILLED": "PARTIAL"}
REPLACED = re.compile(r"replaced by (\S+)")


def _status(o: Order) -> str:
    """PARTIAL for PARTIALLY_FILLED; REPLACED for a canceled order whose reason names the order that replaced it
    (a moved bracket leg: "moved: replaced by <id>")."""
    if o.status is OrderStatus.CANCELED and o.reject_reason and REPLACED.search(o.reject_reason):
        return "REPLACED"
    return STATUS_TEXT.get(o.status.value, o.status.value)


def order_row(o: Order, inst: Instrument, now_ms: int, tz: dt.tzinfo | None = None) -> OrderRow:
    r = o.request
    return OrderRow(
        key=o.id, order_id=o.id, time=time_text(o.created_ms, now_ms, tz), time_utc=utc_text(o.created_ms),
        symbol=o.symbol, origin=r.origin.value, side=r.side.value, type=TYPE_TEXT.get(r.type.value, r.type.value),
        qty=_qty(inst, r.qty),
        price=_price(inst, r.limit_price if r.limit_price is not None else r.stop_price),
        price_value=r.limit_price if r.limit_price is not None else r.stop_price,
        filled=_qty(inst, o.filled_qty), avg=_price(inst, o.avg_price),
        status=_status(o), note=o.reject_reason or "", working=o.status.is_open,
        created_ms=o.created_ms)


def fill_row(f: Fill, inst: Instrument, now_ms: int, quote: str = "USDT", tz: dt.tzinfo | None = None) -> FillRow:
    return FillRow(
        key=f.id, fill_id=f.id, order_id=f.order_id, time=time_text(f.exchange_ms, now_ms, tz),
        time_utc=utc_text(f.exchange_ms), symbol=f.symbol, side=f.side.value, qty=_qty(inst, f.qty),
        price=_price(inst, f.price), fee=_fee(f, inst, quote), liquidity=f.liquidity.value, exchange_ms=f.exchange_ms)


def _position_row(p: Position, inst: Instrument, mark: Decimal | None, history: TradeHistory | None, now_ms: int,
                  tz: dt.tzinfo | None) -> PositionRow:
    unrealised = ZERO if mark is None else p.qty * (mark - p.avg_price)
    o = history.open_trade(p.symbol) if history is not None else None
    if o is not None and o.pos.qty == p.qty:  # this position's own realised PnL and fees, since it opened
        realised, fees, opened = o.pos.realized_pnl, o.pos.fees, o.opened_ms
    else:  # not followed (no history): the symbol's since the portfolio began
        realised, fees, opened = p.realized_pnl, p.fees, None
    return PositionRow(
        key=p.symbol, symbol=p.symbol, side="LONG" if p.qty > 0 else "SHORT", qty=inst.fmt_qty(p.qty),
        avg=inst.fmt_price(p.avg_price), mark=inst.fmt_price(mark), unrealised=_money(inst, unrealised),
        unrealised_sign=_sign(unrealised) if mark is not None else 0, realised=_money(inst, realised),
        realised_sign=_sign(realised), fees=inst.fmt_money(fees),
        opened=time_text(opened, now_ms, tz) if opened else "")


def _closed_row(t: ClosedTrade, inst: Instrument, now_ms: int, tz: dt.tzinfo | None) -> ClosedRow:
    return ClosedRow(
        key=t.key, symbol=t.symbol, side="LONG" if t.long else "SHORT", qty=inst.fmt_qty(t.qty),
        entry=inst.fmt_price(t.entry), exit=inst.fmt_price(t.exit),
        opened=time_text(t.opened_ms, now_ms, tz) if t.opened_ms else "before",
        closed=time_text(t.closed_ms, now_ms, tz), closed_ms=t.closed_ms, realised=_money(inst, t.realised),
        realised_sign=_sign(t.realised), fees=inst.fmt_money(t.fees), fills=t.fills)


def _pnl_row(key: str, label: str, t: PnlTotal, fmt: Callable[..., str], quote: str) -> PnlRow:
    """``fmt``: the quote currency's amounts (cents for USDT, 8 places for BTC)."""
    return PnlRow(key=key, label=label, realised=f"{fmt(t.realised, sign=t.realised != 0)} {quote}".strip(),
                  realised_sign=_sign(t.realised), fees=f"{fmt(t.fees)} {quote}".strip(), fills=t.fills,
                  closed=t.closed)


def quote_money(quote: str) -> Callable[..., str]:
    """Amounts of the account currency in its precision: cents for USDT, 8 places for BTC."""
    return Instrument.from_steps(f"PNL{quote}", Decimal("1e-8"), Decimal(1), quote=quote).fmt_money


def _history_line(history: TradeHistory, listed: int) -> str:
    """The History tab's header: the sum of the closed positions (what their rows add up to; ``listed``: how many
    rows are shown, the newest), then, apart, what the open positions have realised so far (their fees, partial
    exits), which the day and symbol totals count as well."""
    money = quote_money(history.quote)
    total = sum((t.realised for t in history.closed), ZERO)
    closed = len(history.closed)
    since = dt.datetime.fromtimestamp(history.since_ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d") \
        if history.since_ms else "the first fill"
    text = (f"realised since {since}, after fees: {money(total, sign=total != 0)} {history.quote} · "
            f"{closed} position{'' if closed == 1 else 's'} closed")
    if listed < closed:
        text += f" (the newest {listed:,} listed)"
    open_pnl = sum((o.pos.realized_pnl for o in history._open.values()), ZERO)
    if open_pnl:
        text += f" · open positions: {money(open_pnl, sign=True)} {history.quote} so far (fees, partial exits)"
    return f"{text} · {history.note}" if history.note else text


# ----- the snapshot -------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class RowCache:
    """Rows already made, reused while what they show is unchanged (an order by its state, a fill and a closed
    position by id, each with the instrument it was formatted in) and the local day is the same (a time shows its
    date once its day has passed): a rebuild after one fill then formats one fill, not three hundred. A row made
    with the fallback instrument (before the exchange's filters arrived) is made again in the exchange's."""

    day: dt.date | None = None
    orders: dict[tuple, OrderRow] = field(default_factory=dict)
    fills: dict[str, tuple[Instrument, FillRow]] = field(default_factory=dict)
    closed: dict[str, tuple[Instrument, ClosedRow]] = field(default_factory=dict)

    def start(self, now_ms: int, tz: dt.tzinfo | None, bound: int) -> None:
        day = dt.datetime.fromtimestamp(now_ms / 1000, tz=tz).date()
        if day != self.day or max(len(self.orders), len(self.fills), len(self.closed)) > bound:
            self.day = day
            self.orders.clear()
            self.fills.clear()
            self.closed.clear()


def blotter_view(*, working: Sequence[Order], orders: Sequence[Order], fills: Sequence[Fill],
                 positions: Iterable[Position], mark: Callable[[str], Decimal | None], instruments: Instruments,
                 now_ms: int, history: TradeHistory | None = None, tz: dt.tzinfo | None = None,
                 order_rows: int = ORDER_ROWS, fill_rows: int = FILL_ROWS, closed_rows: int = CLOSED_ROWS,
                 cache: RowCache | None = None) -> BlotterView:
    """The Orders dock's snapshot. ``working``/``orders``/``fills``: in any order (each is shown newest first, one
    row per id: the first given wins, so pass this run's live objects before the journal's copies); ``positions``:
    the portfolio's (flat ones are left out); ``mark``: a symbol's last price; ``history``: closed positions and
    PnL per day and symbol (none without it); ``tz``: for the times (None: local)."""
    inst = instruments.get
    quote = history.quote if history is not None else "USDT"
    if cache is None:
        cache = RowCache()
    cache.start(now_ms, tz, 4 * (order_rows + fill_rows + closed_rows))

    def orow(o: Order) -> OrderRow:
        i = inst(o.symbol)
        k = (o.id, o.request, o.status, o.filled_qty, o.avg_price, o.reject_reason, o.updated_ms, o.created_ms, i)
        row = cache.orders.get(k)
        if row is None:
            row = cache.orders[k] = order_row(o, i, now_ms, tz)
        return row

    def frow(f: Fill) -> FillRow:
        i = inst(f.symbol)
        made = cache.fills.get(f.id)
        if made is None or made[0] != i:
            made = cache.fills[f.id] = (i, fill_row(f, i, now_ms, quote, tz))
        return made[1]

    def crow(t: ClosedTrade) -> ClosedRow:
        i = inst(t.symbol)
        made = cache.closed.get(t.key)
        if made is None or made[0] != i:
            made = cache.closed[t.key] = (i, _closed_row(t, i, now_ms, tz))
        return made[1]

    def unique_orders(rows: Iterable[Order]) -> list[Order]:
        seen: dict[str, Order] = {}
        for o in rows:
            seen.setdefault(o.id, o)
        return sorted(seen.values(), key=lambda o: o.created_ms, reverse=True)

    def unique_fills(rows: Iterable[Fill]) -> list[Fill]:
        seen: dict[str, Fill] = {}
        for f in rows:
            seen.setdefault(f.id, f)
        return sorted(seen.values(), key=lambda f: f.exchange_ms, reverse=True)

    working_rows = tuple(orow(o) for o in unique_orders(working) if o.status.is_open)
    order_list = unique_orders(orders)[:order_rows]
    fill_list = unique_fills(fills)[:fill_rows]
    open_positions = [p for p in positions if p.qty != 0]
    position_rows = tuple(_position_row(p, inst(p.symbol), mark(p.symbol), history, now_ms, tz)
                          for p in sorted(open_positions, key=lambda p: p.symbol))
    closed_rows_: tuple[ClosedRow, ...] = ()
    days: tuple[PnlRow, ...] = ()
    symbols: tuple[PnlRow, ...] = ()
    line = "no trade history"
    if history is not None:
        listed = history.closed[-closed_rows:]
        closed_rows_ = tuple(crow(t) for t in reversed(listed))
        money = quote_money(quote)

        days = tuple(_pnl_row(dt.datetime.fromtimestamp(d / 1000, tz=dt.UTC).strftime("%Y-%m-%d"),
                              dt.datetime.fromtimestamp(d / 1000, tz=dt.UTC).strftime("%Y-%m-%d"), t, money, quote)
                     for d, t in sorted(history.days.items(), reverse=True))
        symbols = tuple(_pnl_row(s, s, t, money, quote) for s, t in sorted(history.symbols.items()))
        line = _history_line(history, len(listed))
    return BlotterView(
        working=working_rows,
        orders=tuple(orow(o) for o in order_list),
        fills=tuple(frow(f) for f in fill_list),
        positions=position_rows, closed=closed_rows_, days=days, symbols=symbols, history_line=line)


class _Desk(Protocol):
    """What ``desk_blotter`` reads of ``app.trading.desk.TradingDesk``."""

    broker: object
    portfolio: object
    fills: list[Fill]
    books: dict
    version: int

    @property
    def instruments(self) -> Instruments: ...

    def last_price(self, symbol: str) -> Decimal | None: ...

    def now_ms(self) -> int: ...


LOADING_LINE = "loading history…"  # the History tab while the journal is read off the loop thread


def _history_in_thread(read: Callable[[], tuple[TradeHistory, list[Order]]]) -> Future:
    """``read()`` in a daemon thread of its own; its result (or error) in the returned future. A thread, not the
    loop's executor: the blotter is built from a Qt timer as well as from coroutines."""
    future: Future = Future()
    future.set_running_or_notify_cancel()

    def run() -> None:
        try:
            future.set_result(read())
        except BaseException as exc:  # handed to the loop thread, which says it
            future.set_exception(exc)

    threading.Thread(target=run, name="blotter history", daemon=True).start()
    return future


class DeskBlotter:
    """The Orders dock's snapshots from a trading desk, with the journal's history since the last restart.

    ``start`` reads the journal's history (up to ``HISTORY_FILL_LIMIT`` fills, replayed) in a thread of its own
    with its own read-only connection, so the first refresh does not hold the event loop; until it is in, the
    History tab says ``LOADING_LINE``. ``load`` reads it at once (tests, scripts). Either way every new fill is
    taken from the broker's fill listener (after the desk's own, which journals it), not sampled from
    ``desk.fills`` (the newest 1,000): a burst of any size between two refreshes is all counted. Fills that arrive
    while the history loads wait and are added after it; one the read already holds is taken once (by id).
    Orders and fills are rebuilt only when the desk's version moves; positions (marks) at every call."""

    def __init__(self, desk: _Desk, history: TradeHistory | None, journal_orders: list[Order],
                 tz: dt.tzinfo | None = None, *, loading: Future | None = None) -> None:
        self.desk = desk
        self.history = history if history is not None else TradeHistory(quote=_quote(desk))
        self.journal_orders = journal_orders
        self.tz = tz
        self.cache = RowCache()
        self.loading: Future | None = loading  # the history being read; None once it is in
        self._new: list[Fill] = []  # fills from the broker not yet taken into the history
        self._version = -1
        self._instruments: tuple[Instrument, ...] = ()  # the desk's symbols' instruments the rows were made in
        self._last: BlotterView | None = None
        me = weakref.ref(self)

        def on_fill(fill: Fill) -> None:  # a blotter dropped by its window leaves no work behind
            blotter = me()
            if blotter is not None:
                blotter._new.append(fill)

        add = getattr(getattr(desk, "broker", None), "add_listener", None)
        self.listening = add is not None
        if add is not None:
            add(lambda order: None, on_fill)

    @classmethod
    def load(cls, desk, *, days: int = HISTORY_DAYS, tz: dt.tzinfo | None = None) -> DeskBlotter:
        """With the journal's history read now, on this thread."""
        now_ms = desk.now_ms()
        journal = getattr(desk, "journal", None)
        if journal is None:
            return cls(desk, TradeHistory(since_ms=now_ms, quote=_quote(desk), floor_ms=now_ms), [], tz)
        records = journal.history(now_ms - days * DAY_MS)
        return cls(desk, TradeHistory.from_records(records, _quote(desk)), records.orders, tz)

    @classmethod
    def start(cls, desk, *, days: int = HISTORY_DAYS, tz: dt.tzinfo | None = None) -> DeskBlotter:
        """At once, with the journal's history read in a worker thread (see the class); a journal without a file
        (none at all) is read here."""
        journal = getattr(desk, "journal", None)
        path = getattr(journal, "path", None)
        if journal is None or path is None:
            return cls.load(desk, days=days, tz=tz)
        since_ms, quote = desk.now_ms() - days * DAY_MS, _quote(desk)

        def read() -> tuple[TradeHistory, list[Order]]:
            records = read_history(path, since_ms)
            return TradeHistory.from_records(records, quote), records.orders

        return cls(desk, None, [], tz, loading=_history_in_thread(read))

    def _take_history(self) -> None:
        """The loaded history, once its thread is done; then the fills that came meanwhile."""
        future = self.loading
        if future is None or not future.done():
            return
        self.loading = None
        self._version = -1  # rebuild: closed positions and day totals arrive now
        try:
            self.history, self.journal_orders = future.result()
        except Exception as exc:  # the trader sees why; this run's fills still count
            log.warning("the trade history could not be read from the journal: %s", exc)
            now_ms = self.desk.now_ms()
            self.history = TradeHistory(since_ms=now_ms, quote=_quote(self.desk), floor_ms=now_ms,
                                        note=f"the journal's history could not be read ({exc})")

    def snapshot(self, now_ms: int | None = None) -> BlotterView:
        d = self.desk
        now_ms = d.now_ms() if now_ms is None else now_ms
        self._take_history()
        pf = d.portfolio
        positions = [pf.position(s) for s in d.books]  # type: ignore[attr-defined]
        last = self._last
        today = dt.datetime.fromtimestamp(now_ms / 1000, tz=self.tz).date()
        history = None if self.loading is not None else self.history
        # The exchange's filters may arrive after the first rows were made in the fallback's 8 places: made again.
        instruments = tuple(d.instruments.get(s) for s in d.books)
        if (last is not None and d.version == self._version and today == self.cache.day
                and instruments == self._instruments):  # only the marks moved
            rows = tuple(_position_row(p, d.instruments.get(p.symbol), d.last_price(p.symbol), history, now_ms,
                                       self.tz) for p in sorted((p for p in positions if p.qty != 0),
                                                                key=lambda p: p.symbol))
            if rows != last.positions:
                self._last = replace(last, positions=rows)
            return self._last
        self._version = d.version
        self._instruments = instruments
        if history is not None:
            if self.listening:
                new, self._new = self._new, []
            else:  # a desk whose broker has no listener: its newest fills (restored ones are known: skipped)
                new = list(d.fills)
            history.add(sorted(new, key=lambda f: f.exchange_ms))
        broker = d.broker
        live_orders = list(getattr(broker, "orders", ()))[-ORDER_ROWS:]
        view = blotter_view(
            working=broker.open_orders(),  # type: ignore[attr-defined]
            orders=[*reversed(live_orders), *self.journal_orders], fills=d.fills, positions=positions,
            mark=d.last_price, instruments=d.instruments, now_ms=now_ms, history=history, tz=self.tz,
            cache=self.cache)
        self._last = view if history is not None else replace(view, history_line=LOADING_LINE, history_loading=True)
        return self._last


def _quote(desk) -> str:
    return getattr(desk.portfolio, "quote_currency", "USDT")
