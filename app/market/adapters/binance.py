"""Binance spot combined streams: URLs, subscribe messages and ``parse``.

Prices and quantities arrive as JSON strings and become float64 here (market data, not money). A frame is
either a ``{"stream": ..., "data": ...}`` envelope, a bare payload (raw ``/ws`` streams), a subscribe reply
``{"result": null, "id": n}``, or a REST depth snapshot ``{"lastUpdateId": ...}`` (recorders put it inline).
"""

from __future__ import annotations

from typing import Any

import orjson

from app.market.adapters import (
    PRICE_MAX,
    PRICE_MIN,
    QTY_MAX,
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

NAME = "binance"
WS_BASE = "wss://stream.binance.com:9443"
REST_BASE = "https://api.binance.com"
KLINE_INTERVALS = ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d")


def streams_for(symbol: str, kline_interval: str = "1m") -> list[str]:
    s = symbol.lower()
    return [f"{s}@trade", f"{s}@bookTicker", f"{s}@depth@100ms", f"{s}@kline_{kline_interval}"]


def stream_url(base: str, streams: list[str]) -> str:
    return f"{base.rstrip('/')}/stream?streams={'/'.join(streams)}"


def subscribe_message(streams: list[str], request_id: int) -> bytes:
    return orjson.dumps({"method": "SUBSCRIBE", "params": streams, "id": request_id})


def parse(raw: bytes | str, recv_ns: int) -> list[MarketEvent]:
    return reasoned(_parse_payload, payload(raw), recv_ns)


def payload(raw: bytes | str) -> dict[str, Any]:
    """The event object of a frame: a combined-stream envelope's ``data``, or the frame itself (raw ``/ws``
    streams, replies, REST snapshots). Shared with the USD-M futures adapter, whose frames are enveloped alike."""
    msg = decode_object(raw)
    data = msg.get("data", msg) if "stream" in msg else msg
    if not isinstance(data, dict):
        raise ParseError("bad_envelope", "data is not an object")
    return data


def _parse_payload(d: dict[str, Any], recv_ns: int) -> list[MarketEvent]:
    kind = d.get("e")
    if kind == "trade":
        return [_trade(d, d["t"], recv_ns)]
    if kind == "aggTrade":
        return [_trade(d, d["a"], recv_ns)]
    if kind == "depthUpdate":
        return [
            BookUpdate(
                symbol=_symbol(d["s"]),
                bids=_levels(d["b"]),
                asks=_levels(d["a"]),
                first_id=checked_id(d["U"]),
                last_id=checked_id(d["u"]),
                is_snapshot=False,
                exchange_ms=checked_time_ms(d["E"]),
                recv_ns=recv_ns,
            )
        ]
    if kind == "kline":
        k = d["k"]
        return [
            Candle(
                symbol=_symbol(k["s"]),
                timeframe=str(k["i"]),
                open_ms=checked_time_ms(k["t"]),
                open=_price(k["o"]),
                high=_price(k["h"]),
                low=_price(k["l"]),
                close=_price(k["c"]),
                volume=_qty(k["v"]),
                trades=checked_id(k["n"]),
                closed=_bool(k["x"], "x"),
                exchange_ms=checked_time_ms(d["E"]),
                recv_ns=recv_ns,
            )
        ]
    if kind is None and "u" in d and "b" in d and "a" in d and "s" in d:  # spot bookTicker has no "e"
        return [
            Quote(
                symbol=_symbol(d["s"]),
                bid=_price(d["b"]),
                bid_qty=_qty(d["B"]),
                ask=_price(d["a"]),
                ask_qty=_qty(d["A"]),
                update_id=checked_id(d["u"]),
                exchange_ms=_optional_time(d.get("E")),
                recv_ns=recv_ns,
            )
        ]
    if kind is None and "lastUpdateId" in d:
        return [parse_depth_snapshot(d, d.get("s", ""), recv_ns)]
    if kind is None and "id" in d and ("result" in d or "error" in d):
        if d.get("error"):
            raise ParseError("request_error", str(d["error"]))
        return []  # reply to our SUBSCRIBE
    raise ParseError("unknown_event", str(kind))


def parse_depth_snapshot(d: dict[str, Any], symbol: str, recv_ns: int) -> BookUpdate:
    """The REST ``/api/v3/depth`` answer (it names no symbol, so the caller does)."""
    last = checked_id(d["lastUpdateId"])
    return BookUpdate(
        symbol=symbol.upper(),
        bids=_levels(d["bids"]),
        asks=_levels(d["asks"]),
        first_id=last,
        last_id=last,
        is_snapshot=True,
        exchange_ms=_optional_time(d.get("E")),
        recv_ns=recv_ns,
    )


def parse_klines(rows: list[list[Any]], symbol: str, timeframe: str, recv_ns: int) -> list[Candle]:
    """The REST ``/api/v3/klines`` answer: rows of [open_time, o, h, l, c, v, close_time, qv, n, ...]."""
    out = []
    for r in rows:
        out.append(
            Candle(
                symbol=symbol.upper(),
                timeframe=timeframe,
                open_ms=checked_time_ms(r[0]),
                open=_price(r[1]),
                high=_price(r[2]),
                low=_price(r[3]),
                close=_price(r[4]),
                volume=_qty(r[5]),
                trades=checked_id(r[8]),
                closed=True,
                exchange_ms=checked_time_ms(r[6]),
                recv_ns=recv_ns,
            )
        )
    return out


def _trade(d: dict[str, Any], trade_id: Any, recv_ns: int) -> Trade:
    m = _bool(d["m"], "m")
    return Trade(
        symbol=_symbol(d["s"]),
        price=_price(d["p"]),
        qty=checked_trade_qty(float(d["q"]), d["q"]),
        side=Side.SELL if m else Side.BUY,
        trade_id=checked_id(trade_id),
        exchange_ms=checked_time_ms(d["T"]),
        recv_ns=recv_ns,
    )


def _bool(v: Any, name: str) -> bool:
    if not isinstance(v, bool):  # bool("false") would be True
        raise TypeError(f"{name!r} is not a boolean")
    return v


def _symbol(s: Any) -> str:
    return checked_symbol(s)


def _optional_time(v: Any) -> int:
    """Spot bookTicker and the REST depth snapshot carry no event time: 0 says "none sent"."""
    return 0 if v is None else checked_time_ms(v)


def _price(v: Any) -> float:
    return checked_price(float(v), v)


def _qty(v: Any) -> float:
    return checked_qty(float(v), v)


def _levels(rows: Any) -> tuple[tuple[float, float], ...]:
    # Depth diffs carry dozens of levels: convert in one comprehension, then check the results in one pass
    # (twice as fast as a checked call per value; depth parsing is most of the adapter's time). Binance sends
    # strings: float(str(v)) is the string itself for them and refuses JSON booleans ("True" is not a number).
    out = tuple([(float(str(p)), float(str(q))) for p, q in rows])
    for p, q in out:
        if not (PRICE_MIN < p < PRICE_MAX and 0.0 <= q < QTY_MAX):  # NaN fails every comparison
            raise ValueError(f"level {p!r} x {q!r} is not a sane price and quantity")
    return out
