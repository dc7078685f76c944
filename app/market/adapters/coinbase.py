"""Coinbase Advanced Trade market-data WebSocket: URL, subscribe messages and ``parse``.

Frames are ``{"channel": ..., "timestamp": ..., "sequence_num": n, "events": [...]}``. Prices and sizes are JSON
strings and become float64 here (market data, not money). Times are RFC3339 strings with up to nanoseconds; they
become UTC milliseconds with :func:`rfc3339_ms` (no dateutil, a per-day cache).

Choices, documented because the exchange leaves them open:

* **Symbols.** Product ids ``"BTC-USD"`` become the terminal's form ``"BTCUSD"`` (:func:`to_symbol`: the dash is
  dropped). :func:`to_product` goes back: it accepts ``"BTC-USD"`` as is, and splits ``"BTCUSD"`` on the longest
  known quote currency at its end (:data:`QUOTES`), so ``"ETHUSDC"`` -> ``"ETH-USDC"``.
* **Trade side.** Coinbase's documentation does not say whose side ``market_trades.side`` is. We follow the
  NautilusTrader adapter (and the older Exchange feed, where it is documented): it is the *maker's* side, so the
  aggressor is the opposite (``"SELL"`` -> ``Side.BUY``). :data:`SIDE_IS_MAKER` switches this in one place if a
  capture ever proves otherwise. The built-in exchange (``app.market.sim.protocols``) encodes with the same convention.
* **Sequence numbers.** ``sequence_num`` counts every message on *one connection*, all channels together, and
  restarts at 0 on reconnect. A ``BookUpdate`` carries it as ``first_id == last_id`` (snapshot included), so an
  :class:`~app.market.book.OrderBook` can tell newer from older. Continuity cannot be judged from book updates alone
  (other channels take numbers too): the session checks it over all frames (``book_guard.CoinbaseSequenceGuard``),
  and the book takes any newer update (``contiguous_ids = False``). A snapshot resets the book.
* **Trade ids** are strings of digits; they become ``int`` (:func:`~app.market.adapters.checked_id`). Anything
  else is refused: an id that is not a number cannot be ordered, and ordering is how duplicates and gaps are found.
* **Trade order.** A ``market_trades`` event lists its trades *newest first*. ``parse`` keeps the wire order; the
  connection delivers a frame's trades in ascending id order (and drops those a reconnect's ``snapshot`` repeats).
* **Candles** are 5-minute buckets (timeframe ``"5m"``), ``closed=False``: the channel keeps re-sending the open
  bucket; a later ``start`` means the earlier bar closed.
"""

from __future__ import annotations

import calendar
from typing import Any

import orjson

from app.market.adapters import (
    ParseError,
    checked_id,
    checked_price,
    checked_qty,
    checked_symbol,
    checked_time_ms,
    checked_trade_qty,
    decode_object,
    reasoned,
)
from app.models import BookUpdate, Candle, MarketEvent, Quote, Side, Trade

NAME = "coinbase"
WS_URL = "wss://advanced-trade-ws.coinbase.com"
CHANNELS = ("market_trades", "ticker", "level2", "heartbeats", "candles")
CANDLE_TIMEFRAME = "5m"
CANDLE_MS = 300_000
SIDE_IS_MAKER = True  # see the module docstring
QUOTES = ("USDT", "USDC", "USD", "EUR", "GBP", "BTC", "ETH", "DAI", "SOL")


# ----- symbols ---------------------------------------------------------------------------------------------


def to_symbol(product_id: str) -> str:
    """``"BTC-USD"`` -> ``"BTCUSD"``."""
    return product_id.replace("-", "").upper()


def to_product(symbol: str) -> str:
    """``"BTCUSD"`` or ``"BTC-USD"`` -> ``"BTC-USD"``; raises ValueError when no known quote currency ends it."""
    s = symbol.upper()
    if "-" in s:
        return s
    for quote in sorted(QUOTES, key=len, reverse=True):
        if s.endswith(quote) and len(s) > len(quote):
            return f"{s[: -len(quote)]}-{quote}"
    raise ValueError(f"cannot split {symbol!r} into base and quote")


# ----- subscribe -------------------------------------------------------------------------------------------


def subscribe_messages(product_ids: list[str] | tuple[str, ...], channels: tuple[str, ...] = CHANNELS) -> list[bytes]:
    """One subscribe message per channel, as the exchange requires. ``product_ids`` may be terminal symbols."""
    products = [to_product(p) for p in product_ids]
    return [orjson.dumps({"type": "subscribe", "product_ids": products, "channel": ch}) for ch in channels]


def unsubscribe_messages(product_ids: list[str] | tuple[str, ...], channels: tuple[str, ...] = CHANNELS) -> list[bytes]:
    products = [to_product(p) for p in product_ids]
    return [orjson.dumps({"type": "unsubscribe", "product_ids": products, "channel": ch}) for ch in channels]


# ----- time ------------------------------------------------------------------------------------------------

_DAY_MS: dict[str, int] = {}


def rfc3339_ms(s: Any) -> int:
    """``"2026-08-09T21:05:48.251397169Z"`` (or ``+00:00``, or no fraction) -> UTC ms, truncated.

    Fast path: the date part's epoch ms is cached per day, the rest is sliced by position. Offsets other than
    UTC are honoured. Raises ValueError (TypeError for a non-string) on anything else, and on times not after
    1970 (an exchange time is positive)."""
    if not isinstance(s, str):
        raise TypeError("time is not a string")
    if len(s) < 20 or s[10] not in "Tt " or s[4] != "-" or s[7] != "-" or s[13] != ":" or s[16] != ":":
        raise ValueError(f"bad RFC3339 time {s!r}")
    day = s[:10]
    base = _DAY_MS.get(day)
    if base is None:
        y, m, d = int(day[:4]), int(day[5:7]), int(day[8:10])
        if not (1 <= m <= 12 and 1 <= d <= 31):
            raise ValueError(f"bad date in {s!r}")
        base = calendar.timegm((y, m, d, 0, 0, 0)) * 1000
        if len(_DAY_MS) > 64:
            _DAY_MS.clear()
        _DAY_MS[day] = base
    hh, mm, ss = s[11:13], s[14:16], s[17:19]
    if not (hh.isdigit() and mm.isdigit() and ss.isdigit()):
        raise ValueError(f"bad time of day in {s!r}")
    ms = base + ((int(hh) * 60 + int(mm)) * 60 + int(ss)) * 1000
    i = 19
    if s[i] == ".":
        j = i + 1
        while j < len(s) and s[j].isdigit():
            j += 1
        frac = s[i + 1 : j]
        if not frac:
            raise ValueError(f"empty fraction in {s!r}")
        ms += int((frac + "00")[:3])
        i = j
    tz = s[i:]
    if tz not in ("Z", "z", "+00:00", "-00:00"):
        if len(tz) == 6 and tz[0] in "+-" and tz[3] == ":" and tz[1:3].isdigit() and tz[4:6].isdigit():
            offset = (int(tz[1:3]) * 60 + int(tz[4:6])) * 60_000
            ms = ms - offset if tz[0] == "+" else ms + offset
        else:
            raise ValueError(f"bad zone in {s!r}")
    if ms <= 0:  # an exchange time before 1970 is not one (the connection judges later ones against a clock)
        raise ValueError(f"time {s!r} is not after 1970")
    return ms


# ----- parse -----------------------------------------------------------------------------------------------


def sequence_num(raw: bytes | str) -> int | None:
    """The connection-wide ``sequence_num`` of a frame, None when it has none (for callers checking gaps)."""
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    seq = msg.get("sequence_num") if isinstance(msg, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def parse(raw: bytes | str, recv_ns: int) -> list[MarketEvent]:
    return reasoned(_parse_message, decode_object(raw), recv_ns)


def _parse_message(msg: dict[str, Any], recv_ns: int) -> list[MarketEvent]:
    channel = msg.get("channel")
    if channel is None:
        if msg.get("type") == "error":
            raise ParseError("request_error", str(msg.get("message", "")))
        raise ParseError("unknown_event", "no channel")
    if channel in ("heartbeats", "subscriptions"):
        return []
    events = msg["events"]
    if not isinstance(events, list):
        raise TypeError("events is not a list")
    if channel == "market_trades":
        return [_trade(t, recv_ns) for ev in events for t in _list(ev["trades"])]
    if channel == "ticker":
        ms = rfc3339_ms(msg["timestamp"])
        seq = _int(msg["sequence_num"])
        return [_quote(t, seq, ms, recv_ns) for ev in events for t in _list(ev["tickers"])]
    if channel == "l2_data":
        ms = rfc3339_ms(msg["timestamp"])
        seq = _int(msg["sequence_num"])
        return [_book(ev, seq, ms, recv_ns) for ev in events]
    if channel == "candles":
        ms = rfc3339_ms(msg["timestamp"])
        return [_candle(c, ms, recv_ns) for ev in events for c in _list(ev["candles"])]
    raise ParseError("unknown_event", str(channel))


def _trade(t: dict[str, Any], recv_ns: int) -> Trade:
    side = t["side"]
    if side not in ("BUY", "SELL"):
        raise ValueError(f"side {side!r}")
    maker_buy = side == "BUY"
    buy = not maker_buy if SIDE_IS_MAKER else maker_buy
    return Trade(
        symbol=_symbol(t["product_id"]),
        price=_price(t["price"]),
        qty=checked_trade_qty(_num(t["size"]), t["size"]),
        side=Side.BUY if buy else Side.SELL,
        trade_id=trade_id_int(t["trade_id"]),
        exchange_ms=rfc3339_ms(t["time"]),
        recv_ns=recv_ns,
    )


def trade_id_int(v: Any) -> int:
    """A digit string (or a JSON integer) -> its int; anything else is refused (see the module docstring)."""
    return checked_id(v)


def _quote(t: dict[str, Any], seq: int, ms: int, recv_ns: int) -> Quote:
    return Quote(
        symbol=_symbol(t["product_id"]),
        bid=_price(t["best_bid"]),
        bid_qty=_qty(t["best_bid_quantity"]),
        ask=_price(t["best_ask"]),
        ask_qty=_qty(t["best_ask_quantity"]),
        update_id=seq,
        exchange_ms=ms,
        recv_ns=recv_ns,
    )


def _book(ev: dict[str, Any], seq: int, ms: int, recv_ns: int) -> BookUpdate:
    kind = ev["type"]
    if kind not in ("snapshot", "update"):
        raise ValueError(f"l2 event type {kind!r}")
    bids: list[tuple[float, float]] = []
    asks: list[tuple[float, float]] = []
    for u in _list(ev["updates"]):
        side = u["side"]
        level = (_price(u["price_level"]), _qty(u["new_quantity"]))
        if side == "bid":
            bids.append(level)
        elif side in ("offer", "ask"):
            asks.append(level)
        else:
            raise ValueError(f"book side {side!r}")
    return BookUpdate(
        symbol=_symbol(ev["product_id"]),
        bids=tuple(bids),
        asks=tuple(asks),
        first_id=seq,
        last_id=seq,
        is_snapshot=kind == "snapshot",
        exchange_ms=ms,
        recv_ns=recv_ns,
    )


def _candle(c: dict[str, Any], ms: int, recv_ns: int) -> Candle:
    return Candle(
        symbol=_symbol(c["product_id"]),
        timeframe=CANDLE_TIMEFRAME,
        open_ms=checked_time_ms(checked_id(c["start"]) * 1000),  # UNIX seconds, as a string
        open=_price(c["open"]),
        high=_price(c["high"]),
        low=_price(c["low"]),
        close=_price(c["close"]),
        volume=_qty(c["volume"]),
        trades=0,  # Coinbase does not count them
        closed=False,
        exchange_ms=ms,
        recv_ns=recv_ns,
    )


def _list(v: Any) -> list[Any]:
    if not isinstance(v, list):
        raise TypeError("expected a list")
    return v


def _int(v: Any) -> int:
    return checked_id(v) if v.__class__ is int else _not_an_integer(v)


def _not_an_integer(v: Any) -> int:
    raise TypeError(f"{v!r} is not an integer")


def _symbol(s: Any) -> str:
    return to_symbol(checked_symbol(s))


def _num(v: Any) -> float:
    if not isinstance(v, str):  # Coinbase always quotes numbers; a bare number is a different (wrong) feed
        raise TypeError(f"number {v!r} is not a string")
    return float(v)


def _price(v: Any) -> float:
    return checked_price(_num(v), v)


def _qty(v: Any) -> float:
    return checked_qty(_num(v), v)
