"""Kraken Spot WebSocket v2: URL, subscribe messages, ``parse`` and the book checksum.

Frames are JSON objects: market data ``{"channel": c, "type": "snapshot"|"update", "data": [...]}``, ``status`` and
``heartbeat`` channel messages, and request replies ``{"method": "subscribe"|..., "success": bool, ...}``.
Prices and quantities are JSON *numbers*. ``parse`` reads them with orjson into float64 (market data, DESIGN
rule 5). The book's CRC32 checksum, however, is defined over the exact decimal text on the wire ("0.00100000" and
"0.001" hash differently), so :class:`KrakenBook` re-reads book frames with :func:`loads_exact` (the standard
``json`` module with ``parse_float=str``), keeps every price and quantity as its wire text, and checks the
checksum after each message. That slower path runs only for the book channel, and only for callers that keep a
``KrakenBook``.

Documented choices:

* **Symbols.** ``"BTC/USD"`` becomes the terminal's ``"BTCUSD"`` (:func:`to_symbol`); :func:`to_pair` goes back,
  splitting on the longest known quote currency (:data:`QUOTES`). v2 uses ``BTC``, not v1's ``XBT``.
* **Trade side** is the taker's (documented), so it is the aggressor as is.
* **No sequence numbers.** Kraken v2 books carry none, so ``BookUpdate.first_id == last_id == 0`` and an
  :class:`~app.market.book.OrderBook` cannot check continuity; the checksum is the integrity check. Keep a
  :class:`KrakenBook`: on a mismatch it raises :class:`ChecksumMismatch` (a ``ParseError``, reason
  ``"checksum_mismatch"``) and sets ``needs_resync``; the caller resubscribes the book channel (a new snapshot
  clears the flag). Updates received while ``needs_resync`` is set are ignored.
* **Quotes** come from the ``ticker`` channel (``bid``/``bid_qty``/``ask``/``ask_qty``); subscribe with
  ``event_trigger="bbo"`` to get one per best-bid/offer change. ``update_id`` is 0 (none is sent); ``exchange_ms``
  is the ticker's ``timestamp`` when present, else 0.
* **Candles**: ``ohlc`` with ``interval`` n minutes -> timeframe ``"{n}m"`` below an hour, ``"1h"``/``"4h"``,
  ``"1d"``, ``"1w"``, ``"15d"``; ``open_ms`` is ``interval_begin``; ``closed=False`` (the channel re-sends the open
  bar; a new ``interval_begin`` means the previous one closed).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import orjson

from app.market.adapters import (
    ParseError,
    checked_id,
    checked_price,
    checked_qty,
    checked_symbol,
    checked_trade_qty,
    decode_object,
    reasoned,
)
from app.market.adapters.coinbase import rfc3339_ms
from app.models import BookUpdate, Candle, MarketEvent, Quote, Side, Trade

NAME = "kraken"
WS_URL = "wss://ws.kraken.com/v2"
CHANNELS = ("trade", "ticker", "book", "ohlc")
BOOK_DEPTHS = (10, 25, 100, 500, 1000)
OHLC_INTERVALS = (1, 5, 15, 30, 60, 240, 1440, 10080, 21600)
CHECKSUM_LEVELS = 10
QUOTES = ("USDT", "USDC", "USD", "EUR", "GBP", "CAD", "JPY", "CHF", "AUD", "BTC", "ETH", "DAI")

_TIMEFRAMES = {60: "1h", 240: "4h", 1440: "1d", 10080: "1w", 21600: "15d"}


def to_symbol(pair: str) -> str:
    """``"BTC/USD"`` -> ``"BTCUSD"``."""
    return pair.replace("/", "").upper()


def to_pair(symbol: str) -> str:
    """``"BTCUSD"`` or ``"BTC/USD"`` -> ``"BTC/USD"``; raises ValueError when no known quote currency ends it."""
    s = symbol.upper()
    if "/" in s:
        return s
    for quote in sorted(QUOTES, key=len, reverse=True):
        if s.endswith(quote) and len(s) > len(quote):
            return f"{s[: -len(quote)]}/{quote}"
    raise ValueError(f"cannot split {symbol!r} into base and quote")


def timeframe(interval_min: int) -> str:
    return _TIMEFRAMES.get(interval_min, f"{interval_min}m")


def subscribe_messages(
    symbols: Sequence[str],
    channels: Sequence[str] = CHANNELS,
    *,
    depth: int = 10,
    interval: int = 5,
    ticker_trigger: str = "bbo",
    req_id: int = 1,
) -> list[bytes]:
    """One subscribe request per channel (each for all ``symbols``), with ``req_id`` counting up from ``req_id``.
    ``symbols`` may be terminal symbols ("BTCUSD") or pairs ("BTC/USD")."""
    if depth not in BOOK_DEPTHS:
        raise ValueError(f"book depth must be one of {BOOK_DEPTHS}")
    if interval not in OHLC_INTERVALS:
        raise ValueError(f"ohlc interval must be one of {OHLC_INTERVALS}")
    pairs = [to_pair(s) for s in symbols]
    out = []
    for i, channel in enumerate(channels):
        params: dict[str, Any] = {"channel": channel, "symbol": pairs}
        if channel == "book":
            params["depth"] = depth
        elif channel == "ohlc":
            params["interval"] = interval
        elif channel == "ticker":
            params["event_trigger"] = ticker_trigger
        out.append(orjson.dumps({"method": "subscribe", "params": params, "req_id": req_id + i}))
    return out


# ----- parse -----------------------------------------------------------------------------------------------


def parse(raw: bytes | str, recv_ns: int) -> list[MarketEvent]:
    return reasoned(_parse_message, decode_object(raw), recv_ns)


def _parse_message(msg: dict[str, Any], recv_ns: int) -> list[MarketEvent]:
    channel = msg.get("channel")
    if channel is None:
        if "method" in msg:  # a reply: subscribe / unsubscribe / pong
            if msg.get("success") is False:
                raise ParseError("request_error", str(msg.get("error", "")))
            return []
        raise ParseError("unknown_event", "no channel")
    if channel in ("heartbeat", "status"):
        return []
    kind = msg["type"]
    if kind not in ("snapshot", "update"):
        raise ValueError(f"message type {kind!r}")
    data = msg["data"]
    if not isinstance(data, list):
        raise TypeError("data is not a list")
    if channel == "trade":
        return [_trade(d, recv_ns) for d in data]
    if channel == "ticker":
        return [_quote(d, recv_ns) for d in data]
    if channel == "book":
        return [_book(d, kind == "snapshot", recv_ns) for d in data]
    if channel == "ohlc":
        msg_ms = rfc3339_ms(msg["timestamp"]) if "timestamp" in msg else 0
        return [_candle(d, msg_ms, recv_ns) for d in data]
    raise ParseError("unknown_event", str(channel))


def _trade(d: dict[str, Any], recv_ns: int) -> Trade:
    side = d["side"]
    if side not in ("buy", "sell"):
        raise ValueError(f"side {side!r}")
    return Trade(
        symbol=_symbol(d["symbol"]),
        price=_price(d["price"]),
        qty=checked_trade_qty(_num(d["qty"]), d["qty"]),
        side=Side.BUY if side == "buy" else Side.SELL,
        trade_id=_int(d["trade_id"]),
        exchange_ms=rfc3339_ms(d["timestamp"]),
        recv_ns=recv_ns,
    )


def _quote(d: dict[str, Any], recv_ns: int) -> Quote:
    ts = d.get("timestamp")
    return Quote(
        symbol=_symbol(d["symbol"]),
        bid=_price(d["bid"]),
        bid_qty=_qty(d["bid_qty"]),
        ask=_price(d["ask"]),
        ask_qty=_qty(d["ask_qty"]),
        update_id=0,
        exchange_ms=rfc3339_ms(ts) if ts is not None else 0,
        recv_ns=recv_ns,
    )


def _book(d: dict[str, Any], snapshot: bool, recv_ns: int) -> BookUpdate:
    ts = d.get("timestamp")
    return BookUpdate(
        symbol=_symbol(d["symbol"]),
        bids=_levels(d.get("bids", [])),
        asks=_levels(d.get("asks", [])),
        first_id=0,
        last_id=0,
        is_snapshot=snapshot,
        exchange_ms=rfc3339_ms(ts) if ts is not None else 0,
        recv_ns=recv_ns,
    )


def _candle(d: dict[str, Any], msg_ms: int, recv_ns: int) -> Candle:
    ts = d.get("timestamp")
    return Candle(
        symbol=_symbol(d["symbol"]),
        timeframe=timeframe(_int(d["interval"])),
        open_ms=rfc3339_ms(d["interval_begin"]),
        open=_price(d["open"]),
        high=_price(d["high"]),
        low=_price(d["low"]),
        close=_price(d["close"]),
        volume=_qty(d["volume"]),
        trades=_int(d["trades"]),
        closed=False,
        exchange_ms=msg_ms or (rfc3339_ms(ts) if ts is not None else 0),
        recv_ns=recv_ns,
    )


def _levels(rows: Any) -> tuple[tuple[float, float], ...]:
    if not isinstance(rows, list):
        raise TypeError("levels are not a list")
    return tuple((_price(r["price"]), _qty(r["qty"])) for r in rows)


def _int(v: Any) -> int:
    """Kraken sends ids and counts as JSON integers (never digit strings): 0 .. int64."""
    if v.__class__ is not int:
        raise TypeError(f"{v!r} is not an integer")
    return checked_id(v)


def _symbol(s: Any) -> str:
    return to_symbol(checked_symbol(s))


def _num(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):  # Kraken v2 sends numbers, never strings
        raise TypeError(f"{v!r} is not a number")
    return float(v)


def _price(v: Any) -> float:
    return checked_price(_num(v), v)


def _qty(v: Any) -> float:
    return checked_qty(_num(v), v)


# ----- the book checksum -----------------------------------------------------------------------------------

Number = str | Decimal | int
"""A price or quantity as exact decimal text (or a Decimal/int holding it). Floats are refused: they lose text."""


class ChecksumMismatch(ParseError):
    def __init__(self, symbol: str, expected: int, computed: int) -> None:
        super().__init__("checksum_mismatch", f"{symbol}: exchange {expected}, ours {computed}")
        self.symbol = symbol
        self.expected = expected
        self.computed = computed


def _text(v: Number) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, Decimal):
        return format(v, "f")  # str() would write 1E-8
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    raise TypeError(f"{v!r}: checksum needs exact decimal text, not {type(v).__name__}")


def _checksum_part(price: Number, qty: Number) -> str:
    return _text(price).replace(".", "").lstrip("0") + _text(qty).replace(".", "").lstrip("0")


def book_checksum(asks: Iterable[tuple[Number, Number]], bids: Iterable[tuple[Number, Number]]) -> int:
    """Kraken's CRC32 over the top 10 asks (best = lowest first) then the top 10 bids (highest first); each level
    is its price then its quantity, '.' removed and leading zeros stripped. Levels must come best first."""
    parts: list[str] = []
    for side in (asks, bids):
        for i, (price, qty) in enumerate(side):
            if i == CHECKSUM_LEVELS:
                break
            parts.append(_checksum_part(price, qty))
    return zlib.crc32("".join(parts).encode("ascii"))


def loads_exact(raw: bytes | str) -> Any:
    """JSON with every non-integer number kept as its wire text (integers stay ints; their text is exact)."""
    try:
        return json.loads(raw, parse_float=str)
    except UnicodeDecodeError as exc:
        raise ParseError("not_utf8", str(exc)) from None
    except ValueError as exc:
        raise ParseError("malformed_json", str(exc)) from None


class KrakenBook:
    """One symbol's v2 book with exact price/quantity text, truncated to ``depth``, checksum-verified.

    ``apply_frame(raw)`` takes a whole ``book`` frame (it ignores other channels and other symbols and returns
    whether it applied something); ``apply(entry, is_snapshot)`` one element of its ``data`` as read by
    :func:`loads_exact`. After every applied entry the checksum is compared; on a mismatch ``needs_resync``
    becomes True, ``mismatches`` is counted and :class:`ChecksumMismatch` is raised.
    """

    def __init__(self, symbol: str, depth: int = 10) -> None:
        if depth not in BOOK_DEPTHS:
            raise ValueError(f"book depth must be one of {BOOK_DEPTHS}")
        self.symbol = to_symbol(symbol)
        self.depth = depth
        self._bids: dict[Decimal, tuple[str, str]] = {}
        self._asks: dict[Decimal, tuple[str, str]] = {}
        self.has_snapshot = False
        self.needs_resync = False
        self.mismatches = 0
        self.checked = 0

    def apply_frame(self, raw: bytes | str) -> bool:
        msg = loads_exact(raw)
        if not isinstance(msg, dict) or msg.get("channel") != "book":
            return False
        snapshot = msg.get("type") == "snapshot"
        applied = False
        data = msg.get("data")
        if not isinstance(data, list):
            raise ParseError("bad_field", "data is not a list")
        for entry in data:
            if (
                isinstance(entry, dict)
                and isinstance(entry.get("symbol"), str)
                and to_symbol(entry["symbol"]) == (self.symbol)
            ):
                self.apply(entry, snapshot)
                applied = True
        return applied

    def apply(self, entry: dict[str, Any], is_snapshot: bool) -> None:
        if is_snapshot:
            self._bids.clear()
            self._asks.clear()
            self.has_snapshot = True
            self.needs_resync = False
        elif not self.has_snapshot or self.needs_resync:
            return
        try:
            for rows, levels in ((entry.get("bids", []), self._bids), (entry.get("asks", []), self._asks)):
                for row in rows:
                    price, qty = _text(row["price"]), _text(row["qty"])
                    key = Decimal(price)
                    if Decimal(qty) == 0:
                        levels.pop(key, None)
                    else:
                        levels[key] = (price, qty)
            expected = entry["checksum"]
        except (KeyError, TypeError, ArithmeticError) as exc:
            self.needs_resync = True
            raise ParseError("bad_field", f"{type(exc).__name__}: {exc}") from None
        self._truncate()
        computed = self.checksum()
        self.checked += 1
        if not isinstance(expected, int) or computed != expected:
            self.needs_resync = True
            self.mismatches += 1
            raise ChecksumMismatch(self.symbol, expected if isinstance(expected, int) else -1, computed)

    def _truncate(self) -> None:
        for levels, best_high in ((self._bids, True), (self._asks, False)):
            if len(levels) > self.depth:
                for key in sorted(levels, reverse=best_high)[self.depth :]:
                    del levels[key]

    def asks_text(self, n: int | None = None) -> list[tuple[str, str]]:
        return [self._asks[k] for k in sorted(self._asks)[:n]]

    def bids_text(self, n: int | None = None) -> list[tuple[str, str]]:
        return [self._bids[k] for k in sorted(self._bids, reverse=True)[:n]]

    def checksum(self) -> int:
        return book_checksum(self.asks_text(CHECKSUM_LEVELS), self.bids_text(CHECKSUM_LEVELS))

    def levels(self) -> tuple[tuple[tuple[float, float], ...], tuple[tuple[float, float], ...]]:
        """(bids, asks) as floats, best first, for the terminal's market-data side."""
        return (
            tuple((float(p), float(q)) for p, q in self.bids_text()),
            tuple((float(p), float(q)) for p, q in self.asks_text()),
        )
