"""Coinbase Advanced Trade and Kraken v2 recordings as the Binance frames the built-in exchange replays.

The built-in exchange makes and keeps its market as Binance frames and translates them for each client's dialect
(``sim.protocols``). A recording made with ``--record`` on Coinbase or Kraken holds that exchange's frames, so the
replay reads them with the terminal's own adapter (the same checks as live) and writes each event back as the
Binance frame that means the same: a trade as ``@trade``, a quote as ``@bookTicker``, a book snapshot as the REST
depth snapshot and a book update as a ``depthUpdate``. Neither exchange numbers its book updates the way Binance
does, so they are numbered here, per symbol, 1, 2, 3 ...; a later snapshot (a resubscription in the recording)
becomes the diff that turns the replayed book into it. Candles are not carried over: the replay builds its klines
from the trades, as for a Binance recording.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from app.market.adapters import ParseError, coinbase, kraken
from app.models import BookUpdate, Quote, Side, Trade

Converted = tuple[str | None, dict[str, Any]]
"""(Binance stream, payload); the stream is None for a depth snapshot (what ``/api/v3/depth`` answers)."""


def dialect_of(msg: dict[str, Any]) -> ModuleType | None:
    if "channel" not in msg:
        return None
    return coinbase if "events" in msg else kraken


class ForeignFrames:
    """Converts one recording's Coinbase or Kraken frames; keeps each symbol's book to number and diff it."""

    def __init__(self) -> None:
        self._books: dict[str, tuple[dict[str, str], dict[str, str]]] = {}  # symbol -> (bids, asks) as text
        self._ids: dict[str, int] = {}
        self.rejected = 0  # frames the adapter refused (counted as skipped by the replay)

    def convert(self, adapter: ModuleType, raw: bytes) -> list[Converted]:
        try:
            events = adapter.parse(raw, 0)
        except ParseError:
            self.rejected += 1
            return []
        if len(events) > 1:
            # Coinbase lists a market_trades event's trades newest first. Each becomes a frame of its own here, so
            # the terminal's per-frame ordering never sees them together: sent newest first, all but the newest
            # would be taken for duplicates. Oldest first, as Binance sends them (stable: others keep their order).
            events = sorted(events, key=_trade_order)
        out: list[Converted] = []
        for ev in events:
            if isinstance(ev, Trade):
                out.append((f"{ev.symbol.lower()}@trade", {
                    "e": "trade", "E": ev.exchange_ms, "s": ev.symbol, "t": ev.trade_id, "p": _num(ev.price),
                    "q": _num(ev.qty), "T": ev.exchange_ms, "m": ev.side is Side.SELL, "M": True,
                }))
            elif isinstance(ev, Quote):
                out.append((f"{ev.symbol.lower()}@bookTicker", {
                    "u": self._ids.get(ev.symbol, 0), "s": ev.symbol, "b": _num(ev.bid), "B": _num(ev.bid_qty),
                    "a": _num(ev.ask), "A": _num(ev.ask_qty),
                }))
            elif isinstance(ev, BookUpdate):
                out.extend(self._book(ev))
        return out

    def _book(self, ev: BookUpdate) -> list[Converted]:
        symbol = ev.symbol
        bids = {_num(p): _num(q) for p, q in ev.bids}
        asks = {_num(p): _num(q) for p, q in ev.asks}
        book = self._books.get(symbol)
        if ev.is_snapshot and book is None:
            self._books[symbol] = ({p: q for p, q in bids.items() if float(q) > 0},
                                   {p: q for p, q in asks.items() if float(q) > 0})
            self._ids[symbol] = 1
            return [(None, {"s": symbol, "lastUpdateId": 1, "bids": [[p, q] for p, q in bids.items()],
                            "asks": [[p, q] for p, q in asks.items()]})]
        if book is None:
            return []  # an update before any snapshot: nothing to apply it to
        if ev.is_snapshot:  # a fresh snapshot mid-tape: what changed, and the levels gone as quantity 0
            bids = {**{p: "0" for p in book[0] if p not in bids}, **bids}
            asks = {**{p: "0" for p in book[1] if p not in asks}, **asks}
        for side, changes in ((book[0], bids), (book[1], asks)):
            for p, q in changes.items():
                if float(q) > 0:
                    side[p] = q
                else:
                    side.pop(p, None)
        n = self._ids[symbol] = self._ids[symbol] + 1
        return [(f"{symbol.lower()}@depth@100ms", {
            "e": "depthUpdate", "E": ev.exchange_ms, "s": symbol, "U": n, "u": n,
            "b": [[p, q] for p, q in bids.items()], "a": [[p, q] for p, q in asks.items()],
        })]


def _trade_order(ev: object) -> int:
    return ev.trade_id if isinstance(ev, Trade) else -1


def _num(x: float) -> str:
    """The shortest text that reads back as the same float, never in exponent form (Binance writes "0.00001")."""
    return np.format_float_positional(x, trim="-")
