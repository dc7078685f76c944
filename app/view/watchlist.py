"""The watchlist: one keyed row per feed symbol, in the feed's order, made without Qt.

Each row: the symbol, its last trade price, the change over this session, the change over 24 h where the exchange
gives it, the spread (price and basis points), a marker when a proposal for it waits for the trader, the directions
that colour the numbers, and a stale mark when no trade has come for a while. Every text is already written in the
symbol's precision (``Instruments``); the widget only paints.

"Session" is this run of the terminal: the change is measured from the first trade the terminal saw after it
started, not from the first candle of the history loaded at start. That candle's age depends on how much history
was asked for (a setting), so a change from it would be a number with no fixed meaning; "since I opened the
terminal at 14:52" is one a trader can use, and the tooltip says the reference price and its time. The 24 h
column is the exchange's own rolling window. ``PriceMemory`` keeps the first price per symbol (and the previous
different price, which colours the last price by its latest move); the view model owns one for the session.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Protocol

from app.market.instruments import Instrument, Instruments
from app.market.state import MarketData
from app.market.ticker24h import Ticker24h
from app.models import Trade

STALE_AFTER_S = 60.0  # no trade for this long on a symbol that has traded: marked stale
DASH = "—"


class Stats24h(Protocol):
    """What the watchlist reads of the 24 h statistics (``app.market.ticker24h.Ticker24hPoller`` or
    ``Ticker24hUnavailable``)."""

    def get(self, symbol: str) -> Ticker24h | None: ...

    def why_missing(self, symbol: str) -> str: ...


@dataclass(frozen=True, slots=True)
class WatchRow:
    key: str  # the symbol
    symbol: str
    tooltip: str  # the symbol cell's: base / quote, stale and pending in words
    last: str  # the last trade's price, or "—"
    last_tip: str
    tick: str  # "up" / "down" / "flat": the last price against the previous different one (colours it)
    change: str  # since this session's first trade: "+0.20 %", or "—"
    change_pct: float | None
    change_tip: str
    direction: str  # "up" / "down" / "flat": the sign of ``change`` as shown (colours it and the row's marker)
    change_24h: str  # the exchange's 24 h change, or "—"
    change_24h_pct: float | None
    change_24h_tip: str  # the day's open, high, low and volume; or why there is none
    direction_24h: str
    spread: str  # ask - bid in the symbol's precision, or "—"
    spread_bps: str  # the spread in basis points of the mid, one decimal ("0.3", "<0.1"), or "—"
    spread_tip: str
    pending: bool  # a proposal for this symbol waits for the trader
    stale: bool  # it has traded, but not for ``stale_after_s``


@dataclass(frozen=True, slots=True)
class Watchlist:
    rows: tuple[WatchRow, ...]  # in the feed's symbol order

    @property
    def keys(self) -> tuple[str, ...]:
        """Row keys: a widget rebuilds only when these change, else it updates cells in place."""
        return tuple(r.key for r in self.rows)

    def row(self, symbol: str) -> WatchRow:
        for r in self.rows:
            if r.key == symbol:
                return r
        raise KeyError(symbol)


@dataclass(slots=True)
class _Seen:
    first: Trade
    last_price: float
    previous_price: float | None = None  # the last different price before ``last_price``


@dataclass
class PriceMemory:
    """Per symbol: the first trade this session and the latest price move. Updated by ``watchlist`` from the
    market's last trades (seeing the same trade twice changes nothing)."""

    seen: dict[str, _Seen] = field(default_factory=dict)

    def observe(self, t: Trade) -> _Seen:
        s = self.seen.get(t.symbol)
        if s is None:
            s = self.seen[t.symbol] = _Seen(t, t.price)
        elif t.price != s.last_price:
            s.previous_price, s.last_price = s.last_price, t.price
        return s


def _utc(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%H:%M:%S UTC")


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _pct(x: float) -> str:
    return f"{x:+.2f} %"


def _direction(pct_text_value: float | None) -> str:
    if pct_text_value is None:
        return "flat"
    shown = round(pct_text_value, 2)  # what the trader reads: "+0.00 %" is not green
    return "up" if shown > 0 else "down" if shown < 0 else "flat"


def _spread(inst: Instrument, market_quote) -> tuple[str, str, str]:
    if market_quote is None:
        return DASH, DASH, "no bid/ask received yet"
    bid, ask = market_quote.bid, market_quote.ask
    if not (bid > 0 and ask > 0):
        return DASH, DASH, "one side of the book is empty"
    if ask < bid:
        return DASH, DASH, f"the book is crossed (bid {inst.fmt_price(bid)} above ask {inst.fmt_price(ask)})"
    spread, mid = ask - bid, (ask + bid) / 2
    bps = bps_text(spread / mid * 10_000)
    return (inst.fmt_price(spread), bps,
            f"bid {inst.fmt_price(bid)} · ask {inst.fmt_price(ask)} · spread {inst.fmt_price(spread)} "
            f"{inst.quote} = {bps} bps of the mid")


def bps_text(x: float) -> str:
    """Basis points at one precision for every symbol (one decimal: "0.3", "1.3", "20.0"), so a column of them reads
    as one scale; a spread under 0.05 bps (one BTC tick is 0.002) reads "<0.1", never "0.0" as if there were none."""
    if x <= 0:
        return "0"
    return "<0.1" if x < 0.05 else f"{x:,.1f}"


def _stats_24h(inst: Instrument, symbol: str, stats: Stats24h | None) -> tuple[str, float | None, str]:
    if stats is None:
        return DASH, None, "no 24 h statistics for this feed"
    t = stats.get(symbol)
    if t is None:
        return DASH, None, stats.why_missing(symbol) or "no 24 h statistics"
    parts = [f"24 h (the exchange's): open {inst.fmt_price(t.open)} → last {inst.fmt_price(t.last)}"]
    if t.high is not None and t.low is not None:
        parts.append(f"high {inst.fmt_price(t.high)} · low {inst.fmt_price(t.low)}")
    if t.quote_volume is not None:
        parts.append(f"volume {t.quote_volume:,.0f} {inst.quote}".rstrip())
    parts.append(f"as of {_utc(t.received_ms)}")
    return _pct(t.change_pct), t.change_pct, "\n".join(parts)


def watchlist(market: MarketData, instruments: Instruments, *, memory: PriceMemory,
              pending_symbols: Collection[str] = (), stats24h: Stats24h | None = None, now_ns: int,
              stale_after_s: float = STALE_AFTER_S) -> Watchlist:
    """The watchlist now. ``memory``: the session's (it learns each symbol's first trade here). ``pending_symbols``:
    symbols with a proposal waiting. ``stats24h``: the 24 h statistics, None where there are none. ``now_ns``:
    ``time.perf_counter_ns()``, the clock trades are stamped with on receipt (staleness is judged by arrival)."""
    rows = []
    for symbol in market.symbols:
        m = market.by_symbol[symbol]
        inst = instruments.get(symbol)
        t = m.last_trade
        notes = [f"{inst.base} / {inst.quote}" if inst.quote else symbol]
        pending = symbol in pending_symbols
        if pending:
            notes.append("a proposal for it waits for your approval")
        stale = False
        if t is None:
            last, last_tip, tick = DASH, "no trade received yet", "flat"
            change, change_pct, change_tip = DASH, None, "no trade received yet this session"
        else:
            seen = memory.observe(t)
            last = inst.fmt_price(t.price)
            age_s = max(0.0, (now_ns - t.recv_ns) / 1e9)
            last_tip = f"last trade {last} at {_utc(t.exchange_ms)}, {_ago(age_s)} ago"
            prev = seen.previous_price
            tick = "flat" if prev is None else "up" if seen.last_price > prev else "down"
            first = seen.first.price
            change_pct = (t.price - first) / first * 100 if first > 0 else None
            change = DASH if change_pct is None else _pct(change_pct)
            change_tip = (f"since {inst.fmt_price(first)} at {_utc(seen.first.exchange_ms)}, the first trade this "
                          "session saw (history loaded at start is not counted)")
            if age_s > stale_after_s:
                stale = True
                notes.append(f"stale: no trade for {_ago(age_s)}")
        spread, bps, spread_tip = _spread(inst, m.quote)
        c24, c24_pct, c24_tip = _stats_24h(inst, symbol, stats24h)
        rows.append(WatchRow(
            key=symbol, symbol=symbol, tooltip="\n".join(notes), last=last, last_tip=last_tip, tick=tick,
            change=change, change_pct=change_pct, change_tip=change_tip, direction=_direction(change_pct),
            change_24h=c24, change_24h_pct=c24_pct, change_24h_tip=c24_tip, direction_24h=_direction(c24_pct),
            spread=spread, spread_bps=bps, spread_tip=spread_tip, pending=pending, stale=stale,
        ))
    return Watchlist(tuple(rows))
