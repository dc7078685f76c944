"""Kraken v2 book integrity: every book frame's CRC32 checksum is verified on the exact text; a mismatch asks the
exchange for a fresh snapshot by unsubscribing and resubscribing that symbol's book.

Binance's book resyncs from a REST snapshot (sequence ids tell it when); Kraken's diffs carry no ids, only the
checksum, so this guard watches the raw frames beside the adapter (which stays pure).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import orjson

from app.market.adapters import ParseError, kraken

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
