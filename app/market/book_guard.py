"""Book integrity where the exchange's book updates carry no ids of their own, checked on the raw frames beside the
adapter (which stays pure).

Kraken v2: every book frame's CRC32 checksum is verified on the exact text; a mismatch asks the exchange for a fresh
snapshot by unsubscribing and resubscribing that symbol's book.

Coinbase Advanced Trade: ``sequence_num`` counts every frame of a connection, all channels together, from 0. A
number skipped means a frame was lost, perhaps a level2 update: every book waits for a fresh snapshot and level2 is
resubscribed (Coinbase sends an l2 snapshot on subscribe). No REST snapshot is needed.

Binance's book resyncs from a REST snapshot (its own update ids tell it when); no guard.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable

import orjson

from app.market.adapters import ParseError, coinbase, kraken
from app.market.book import OrderBook

log = logging.getLogger(__name__)


class KrakenBookGuard:
    def __init__(self, symbols: Iterable[str], resubscribe: Callable[[list[bytes]], None], depth: int = 10) -> None:
        self.books = {kraken.to_symbol(s): kraken.KrakenBook(s, depth) for s in symbols}
        self.depth = depth
        self.resyncs = 0
        self.resyncing: set[str] = set()
        self._resubscribe = resubscribe
        self._req_id = 10_000

    def on_raw(self, raw: bytes | str, recv_ns: int) -> None:
        data = raw if isinstance(raw, bytes) else raw.encode()
        if b'"book"' not in data:  # cheap filter: most frames are trades and tickers
            return
        try:
            msg = kraken.loads_exact(data)
        except ValueError:
            return  # the adapter counts malformed frames
        if not isinstance(msg, dict) or msg.get("channel") != "book" or not isinstance(msg.get("data"), list):
            return
        snapshot = msg.get("type") == "snapshot"
        for entry in msg["data"]:
            symbol = entry.get("symbol") if isinstance(entry, dict) else None
            book = self.books.get(kraken.to_symbol(symbol)) if isinstance(symbol, str) else None
            if book is None:
                continue
            try:
                book.apply(entry, snapshot)
            except kraken.ChecksumMismatch:
                self._resync(book.symbol)
            except ParseError as exc:
                log.warning("kraken book %s: %s", book.symbol, exc)
            else:
                if snapshot and book.symbol in self.resyncing:
                    self.resyncing.discard(book.symbol)
                    log.info("kraken book %s resynced from a fresh snapshot", book.symbol)

    def _resync(self, symbol: str) -> None:
        if symbol in self.resyncing:
            return  # already asked; updates are ignored until the snapshot arrives
        self.resyncs += 1
        self.resyncing.add(symbol)
        log.warning("kraken book %s checksum mismatch: resubscribing for a fresh snapshot", symbol)
        pair = kraken.to_pair(symbol)
        self._req_id += 2
        unsubscribe = orjson.dumps({"method": "unsubscribe", "params": {"channel": "book", "symbol": [pair]},
                                    "req_id": self._req_id})
        subscribe = kraken.subscribe_messages([pair], ("book",), depth=self.depth, req_id=self._req_id + 1)
        self._resubscribe([unsubscribe, *subscribe])


# The frame's top-level ``sequence_num`` read from the text: a second JSON parse of every frame would cost more.
_SEQ_TEXT = re.compile(r'"sequence_num":\s*(\d+)')
_SEQ_BYTES = re.compile(rb'"sequence_num":\s*(\d+)')


def _sequence_num(raw: bytes | str) -> int | None:
    m = (_SEQ_TEXT if isinstance(raw, str) else _SEQ_BYTES).search(raw)  # type: ignore[arg-type]
    return int(m.group(1)) if m else None


class CoinbaseSequenceGuard:
    """Watches ``sequence_num`` over every frame; on a gap, marks the books and resubscribes level2."""

    def __init__(self, symbols: Iterable[str], books: dict[str, OrderBook],
                 resubscribe: Callable[[list[bytes]], None]) -> None:
        self.products = [coinbase.to_product(s) for s in symbols]
        self.books = books
        for book in books.values():
            book.contiguous_ids = False  # Coinbase's ids count frames of every channel; continuity is checked here
        self.gaps = 0  # frame numbers skipped
        self.resyncs = 0  # level2 resubscriptions asked for
        self._resubscribe = resubscribe
        self._last: int | None = None

    def on_raw(self, raw: bytes | str, recv_ns: int) -> None:
        seq = _sequence_num(raw)
        if seq is None:
            return  # an error reply carries none; the adapter counts malformed frames
        last, self._last = self._last, seq
        if last is None or seq == last + 1:
            return
        self.gaps += 1
        log.warning("coinbase frames %d..%d missing: resubscribing level2 for fresh book snapshots", last + 1, seq - 1)
        for book in self.books.values():
            book.mark_gap()
        self.resyncs += 1
        channel = ("level2",)
        self._resubscribe([*coinbase.unsubscribe_messages(self.products, channel),
                           *coinbase.subscribe_messages(self.products, channel)])

    def on_boundary(self, since_ns: int) -> None:
        """A connection opened or ended: the next one numbers its frames from 0 again."""
        self._last = None
