"""The order book ladder and the trades tape (time and sales) of the symbol on screen, made without Qt.

``book_ladder`` reads a local book through :class:`BookSource` (two calls, nothing else): the desk's ``OrderBook``
for Binance's sequenced books and Coinbase's (checked by the sequence guard) is one as it is; Kraken's books live in
the checksum guard (``session.kraken_books``) and :func:`kraken_book` wraps one. A book that cannot be trusted (a gap,
a checksum mismatch, a reconnect) shows no levels at all, only its state in words: a stale level is a price the
trader might click into the ticket.

``tape`` reads the trades the market state keeps per symbol (``SymbolMarket.recent``, oldest first) and lists the
newest first. Every text is already in the instrument's precision; the widgets only paint.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Protocol

from app.market.instruments import Instrument
from app.models import Side, Trade
from app.view.watchlist import bps_text

LADDER_DEPTH = 20  # levels shown on each side of the touch
TAPE_ROWS = 60  # trades shown, newest first
BIG_QUANTILE = 0.95  # a print is big when its size is above this quantile of the recent sizes
BIG_MIN_TRADES = 20  # fewer recent trades than this: nothing is called big
MAX_READ_LEVELS = 1000  # the most levels read from a book for one grouped ladder

STATUS_WORDS = {
    "SYNCED": "synced",
    "RESYNCING": "resyncing: waiting for a fresh snapshot",
    "NO BOOK": "no book yet",
}


class BookSource(Protocol):
    """What the ladder reads of a local book (``app.market.book.OrderBook`` is one)."""

    @property
    def status(self) -> str: ...  # "SYNCED", "RESYNCING" or anything else for no book yet

    def levels(self, side: Side, depth: int = 20) -> list[tuple[float, float]]: ...  # BUY: bids, best first


class _KrakenBook(Protocol):
    has_snapshot: bool
    needs_resync: bool

    def asks_text(self, n: int | None = None) -> list[tuple[str, str]]: ...

    def bids_text(self, n: int | None = None) -> list[tuple[str, str]]: ...


class _KrakenGuard(Protocol):
    books: dict
    resyncing: set[str]


class KrakenBookSource:
    """A Kraken book kept by ``app.market.book_guard.KrakenBookGuard``, read as a :class:`BookSource`."""

    __slots__ = ("_book", "_resyncing")

    def __init__(self, book: _KrakenBook, resyncing: bool) -> None:
        self._book = book
        self._resyncing = resyncing

    @property
    def status(self) -> str:
        b = self._book
        if b.has_snapshot and not b.needs_resync and not self._resyncing:
            return "SYNCED"
        return "RESYNCING" if self._resyncing or b.needs_resync else "NO BOOK"

    def levels(self, side: Side, depth: int = 20) -> list[tuple[float, float]]:
        rows = self._book.bids_text(depth) if side is Side.BUY else self._book.asks_text(depth)
        return [(float(p), float(q)) for p, q in rows]


def kraken_book(guard: _KrakenGuard | None, symbol: str) -> KrakenBookSource | None:
    """``session.kraken_books``' book of ``symbol`` (None: not a Kraken feed, or not one of its symbols)."""
    if guard is None:
        return None
    book = guard.books.get(symbol.upper())
    return None if book is None else KrakenBookSource(book, symbol.upper() in guard.resyncing)


# ----- the ladder -----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LadderLevel:
    key: str  # the price text: a level is its price
    side: Side  # the book's side: SELL = an ask, BUY = a bid
    price: Decimal  # on the instrument's tick grid (or the group's), with its decimals: what a click puts in the ticket
    price_text: str
    size_text: str
    cum_text: str  # the size from the touch up to and including this level
    size_short: str  # the size for a narrow column: "17.3K", "1.25M" (the full text in the tooltip)
    cum_short: str
    bar: float  # size / the largest size shown (both sides on one scale), 0..1
    cum_bar: float  # cumulative / the largest cumulative shown, 0..1
    best: bool  # the touch


@dataclass(frozen=True, slots=True)
class BookLadder:
    symbol: str
    asks: tuple[LadderLevel, ...]  # top-down as on a ladder: the farthest first, the best ask last
    bids: tuple[LadderLevel, ...]  # the best bid first
    mid_text: str  # in the instrument's precision (a mid half a tick off the grid is rounded; exact in the tip)
    spread_text: str  # "1 tick · 1.6 bps": short enough for a narrow dock
    status: str  # SYNCED, RESYNCING, NO BOOK
    status_text: str  # the same in the trader's words
    depth: int  # levels asked for on each side (the widget's fixed rows)
    group_text: str  # the price step of one level
    tick: Decimal  # the instrument's tick: a level is ``group`` ticks wide
    group: int
    spread_tip: str = ""  # bid, ask, the spread in price and the exact mid, for the spread line's tooltip

    @property
    def keys(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return tuple(lv.key for lv in self.asks), tuple(lv.key for lv in self.bids)


def _dec(x: float) -> Decimal:
    return Decimal(repr(x))  # the shortest text that reads back as this float: the exchange's own digits


def _grouped(rows: list[tuple[float, float]], step: Decimal, rounding: str, depth: int) -> list[tuple[Decimal, float]]:
    out: list[tuple[Decimal, float]] = []
    for p, q in rows:
        bucket = (_dec(p) / step).to_integral_value(rounding) * step
        if out and out[-1][0] == bucket:
            out[-1] = (bucket, out[-1][1] + q)
        else:
            if len(out) == depth:
                break
            out.append((bucket, q))
    return out


def compact_qty(x: float) -> str:
    """A size in three significant digits with K / M / B from a thousand up ("17.3K", "123K", "1.25M"), for a
    column too narrow for the full text; below a thousand the number itself, at most four significant digits."""
    if x == 0:
        return "0"
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= scale * 0.9995:
            v = x / scale
            if abs(v) >= 999.5 and unit != "B":
                continue
            return f"{v:.{0 if abs(v) >= 99.95 else 1 if abs(v) >= 9.995 else 2}f}{unit}"
    return f"{x:.4g}"


def _fmt_places(x: Decimal, places: int) -> str:
    return f"{x:,.{places}f}"


def book_ladder(book: BookSource | None, instrument: Instrument, depth: int = LADDER_DEPTH, *,
                group: int = 1) -> BookLadder:
    """The ladder of ``book`` (None: no book for this symbol yet): ``depth`` levels each side of the touch,
    each ``group`` ticks wide (1: the book's own levels; 10: ten ticks summed into one, asks rounded up and bids down,
    as exchanges group them)."""
    inst = instrument
    group = max(1, int(group))
    step = inst.tick_size * group
    places = max(inst.price_decimals, -step.normalize().as_tuple().exponent)  # type: ignore[operator]
    state = book.status if book is not None else "NO BOOK"
    status = state if state in ("SYNCED", "RESYNCING") else "NO BOOK"
    empty = BookLadder(inst.symbol, (), (), "—", "—", status, STATUS_WORDS[status], depth,
                       _fmt_places(step, places), inst.tick_size, group)
    if book is None or status != "SYNCED":
        return empty
    read = min(MAX_READ_LEVELS, depth * group) if group > 1 else depth
    # The book's own levels go to the nearest tick (a float's last digit must not move a level); groups round
    # asks up and bids down, so a group never shows a better price than the book has.
    asks = _grouped(book.levels(Side.SELL, read), step, ROUND_CEILING if group > 1 else ROUND_HALF_EVEN, depth)
    bids = _grouped(book.levels(Side.BUY, read), step, ROUND_FLOOR if group > 1 else ROUND_HALF_EVEN, depth)
    biggest = max((q for _, q in (*asks, *bids)), default=0.0) or 1.0
    cum_asks, cum_bids = _cumulative(asks), _cumulative(bids)
    biggest_cum = max(cum_asks[-1] if cum_asks else 0.0, cum_bids[-1] if cum_bids else 0.0) or 1.0
    quantum = Decimal(1).scaleb(-places)

    def level(side: Side, i: int, price: Decimal, qty: float, cum: float) -> LadderLevel:
        text = _fmt_places(price, places)
        return LadderLevel(key=text, side=side, price=price.quantize(quantum), price_text=text,
                           size_text=inst.fmt_qty(qty), cum_text=inst.fmt_qty(cum), size_short=compact_qty(qty),
                           cum_short=compact_qty(cum), bar=qty / biggest,
                           cum_bar=cum / biggest_cum, best=i == 0)

    ask_levels = [level(Side.SELL, i, p, q, cum_asks[i]) for i, (p, q) in enumerate(asks)]
    bid_levels = [level(Side.BUY, i, p, q, cum_bids[i]) for i, (p, q) in enumerate(bids)]
    mid_text = spread_text = "—"
    spread_tip = ""
    best_bid, best_ask = book.levels(Side.BUY, 1), book.levels(Side.SELL, 1)
    if best_bid and best_ask:
        bid, ask = _dec(best_bid[0][0]), _dec(best_ask[0][0])
        mid = (bid + ask) / 2
        mid_text = inst.fmt_price(mid)
        exact_mid = _fmt_places(mid, inst.price_decimals + (0 if inst.on_tick(mid) else 1))  # half a tick
        spread = ask - bid
        ticks = spread / inst.tick_size
        tick_text = f"{ticks:,.0f} tick{'' if ticks == 1 else 's'}" if ticks == ticks.to_integral_value() \
            else f"{ticks:,.1f} ticks"
        bps = float(spread / mid * 10_000) if mid else 0.0
        spread_text = f"{tick_text} · {bps_text(bps)} bps"
        quote = f" {inst.quote}" if inst.quote else ""
        spread_tip = (f"bid {inst.fmt_price(bid)} · ask {inst.fmt_price(ask)}\nspread {inst.fmt_price(spread)}{quote} "
                      f"= {tick_text} = {bps:.3g} bps of the mid {exact_mid}")
    return BookLadder(inst.symbol, tuple(reversed(ask_levels)), tuple(bid_levels), mid_text, spread_text, status,
                      STATUS_WORDS[status], depth, _fmt_places(step, places), inst.tick_size, group, spread_tip)


def step_text(tick: Decimal, group: int, price_decimals: int | None = None) -> str:
    """The price step of ``group`` ticks as the ladder writes prices ("0.10" for 10 ticks of 0.01)."""
    step = tick * group
    places = max(price_decimals if price_decimals is not None else max(0, -tick.normalize().as_tuple().exponent),
                 -step.normalize().as_tuple().exponent)  # type: ignore[operator]
    return _fmt_places(step, max(0, places))


def _cumulative(levels: list[tuple[Decimal, float]]) -> list[float]:
    out, total = [], 0.0
    for _, q in levels:
        total += q
        out.append(total)
    return out


# ----- the tape -------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TapeRow:
    key: str  # the exchange's trade id; "id#n" (n: the trade's number since start) when that id came before
    time_text: str  # HH:MM:SS.mmm, the exchange's time of the trade on this machine's clock face
    price_text: str
    qty_text: str
    side: Side  # the aggressor's: BUY lifted the offer, SELL hit the bid
    big: bool  # its size is above the quantile of the recent sizes


@dataclass(frozen=True, slots=True)
class Tape:
    symbol: str
    rows: tuple[TapeRow, ...]  # newest first
    big_text: str  # what counts as big, for a tooltip: "above 0.25000 (90th percentile of the last 500)"

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(r.key for r in self.rows)


class _RowCache:
    """Rows already made, by the trade they show (with its key and whether it is big), for one instrument and time
    zone: a refresh after one new trade formats one row, not sixty. Trades never change once made, and the whole
    trade is the key, so a row is reused only for exactly what it shows."""

    __slots__ = ("rows", "setting")

    def __init__(self) -> None:
        self.setting: tuple[Instrument, dt.tzinfo | None] | None = None
        self.rows: dict[tuple[Trade, str, bool], TapeRow] = {}

    def start(self, inst: Instrument, tz: dt.tzinfo | None, bound: int) -> dict[tuple[Trade, str, bool], TapeRow]:
        setting = (inst, tz)
        if setting != self.setting or len(self.rows) > bound:
            self.setting = setting
            self.rows = {}
        return self.rows


_ROWS: dict[str, _RowCache] = {}  # per symbol
_MAX_SYMBOLS = 64


def _time_text(ms: int, tz: dt.tzinfo | None) -> str:
    t = dt.datetime.fromtimestamp(ms / 1000, tz)
    return f"{t:%H:%M:%S}.{ms % 1000:03d}"


def _keys(trades: Sequence[Trade], first_seq: int) -> list[str] | None:
    """Each trade's key, or None when no id repeats (the usual case: the key is the id, made only for rows shown)."""
    if len({t.trade_id for t in trades}) == len(trades):
        return None
    seen: set[int] = set()
    keys = []
    for i, t in enumerate(trades):
        tid = t.trade_id
        if tid in seen:
            keys.append(f"{tid}#{first_seq + i}")
        else:
            seen.add(tid)
            keys.append(str(tid))
    return keys


def tape(trades: Iterable[Trade], instrument: Instrument, limit: int = TAPE_ROWS, *, first_seq: int = 0,
         big_quantile: float = BIG_QUANTILE, tz: dt.tzinfo | None = None) -> Tape:
    """The newest ``limit`` of ``trades`` (oldest first, as ``SymbolMarket.recent`` keeps them; ``first_seq`` is the
    oldest one's number since start, ``SymbolMarket.recent_first_seq``). Times are local unless ``tz`` is given.
    A print is big when its size is above the ``big_quantile`` of the sizes of every trade passed."""
    trades = trades if isinstance(trades, Sequence) else list(trades)
    n = len(trades)
    inst = instrument
    threshold = None
    big_text = f"not enough trades yet to call one big (fewer than {BIG_MIN_TRADES})"
    if n >= BIG_MIN_TRADES:
        sizes = sorted(t.qty for t in trades)
        threshold = sizes[min(n - 1, int(big_quantile * (n - 1)))]
        big_text = f"big: above {inst.fmt_qty(threshold)} {inst.base} ({big_quantile * 100:.0f}th percentile of the " \
                   f"last {n} trades)".replace("  ", " ")
    keys = _keys(trades, first_seq)
    cache = _ROWS.get(inst.symbol)
    if cache is None:
        if len(_ROWS) >= _MAX_SYMBOLS:
            _ROWS.clear()
        cache = _ROWS[inst.symbol] = _RowCache()
    made = cache.start(inst, tz, 4 * max(limit, TAPE_ROWS))
    rows = []
    for i in range(n - 1, max(-1, n - 1 - limit), -1):
        t = trades[i]
        key = str(t.trade_id) if keys is None else keys[i]
        big = threshold is not None and t.qty > threshold
        row = made.get((t, key, big))
        if row is None:
            row = made[(t, key, big)] = TapeRow(key=key, time_text=_time_text(t.exchange_ms, tz),
                                                price_text=inst.fmt_price(t.price), qty_text=inst.fmt_qty(t.qty),
                                                side=t.side, big=big)
        rows.append(row)
    return Tape(inst.symbol, tuple(rows), big_text)
