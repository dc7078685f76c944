"""Binance spot combined streams: URLs, subscribe messages and ``parse``.

Prices and quantities arrive as JSON strings and become float64 here (market data, not money). A frame is
either a ``{"stream": ..., "data": ...}`` envelope, a bare payload (raw ``/ws`` streams), a subscribe reply
``{"result": null, "id": n}``, or a REST depth snapshot ``{"lastUpdateId": ...}`` (recorders put it inline).
"""

from __future__ import annotations

from typing import Any

import orjson
from orjson import JSONDecodeError, loads

from app.market.adapters import (
    ID_MAX,
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
    # The hot path of the whole feed: every frame of every symbol comes through here. It does by hand what
    # ``payload`` and ``reasoned`` do, with the most frequent kinds (bookTicker, then trades) first and their checks
    # inlined; what a field trips on still becomes the same countable reason (``reasoned``'s mapping, below).
    try:
        msg = loads(raw)
    except JSONDecodeError:
        msg = decode_object(raw)  # raises with the precise reason (not UTF-8, not JSON)
    if msg.__class__ is not dict:
        raise ParseError("not_an_object", type(msg).__name__)
    if "stream" in msg:
        d = msg.get("data", msg)
        if d.__class__ is not dict:
            raise ParseError("bad_envelope", "data is not an object")
    else:
        d = msg
    try:
        kind = d.get("e")
        if kind is None:
            if "A" in d and "u" in d and "b" in d and "a" in d and "s" in d:  # spot bookTicker has no "e"
                return [_quote(d, recv_ns)]
            return _untyped(d, recv_ns)
        if kind == "trade":
            return [_trade(d, d["t"], recv_ns)]
        if kind == "aggTrade":
            return [_trade(d, d["a"], recv_ns)]
        return _parse_payload(d, recv_ns)
    except ParseError:
        raise
    except (KeyError, TypeError, AttributeError) as exc:  # as ``reasoned``: a field missing or of the wrong type
        raise ParseError("bad_field", f"{type(exc).__name__}: {exc}") from None
    except ValueError as exc:  # the right type, an unacceptable value
        raise ParseError("bad_value", str(exc)) from None


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
                _symbol(d["s"]),
                _levels(d["b"]),
                _levels(d["a"]),
                checked_id(d["U"]),
                checked_id(d["u"]),
                False,
                checked_time_ms(d["E"]),
                recv_ns,
            )
        ]
    if kind == "kline":
        k = d["k"]
        return [
            Candle(
                _symbol(k["s"]),
                str(k["i"]),
                checked_time_ms(k["t"]),
                _price(k["o"]),
                _price(k["h"]),
                _price(k["l"]),
                _price(k["c"]),
                _qty(k["v"]),
                checked_id(k["n"]),
                _bool(k["x"], "x"),
                checked_time_ms(d["E"]),
                recv_ns,
            )
        ]
    if kind is None:
        return _untyped(d, recv_ns)
    raise ParseError("unknown_event", str(kind))


def _untyped(d: dict[str, Any], recv_ns: int) -> list[MarketEvent]:
    """A payload without ``"e"``: a bookTicker (``parse`` takes whole ones first; one without its sizes is refused
    here for the missing field), a REST depth snapshot, or a reply to our SUBSCRIBE."""
    if "u" in d and "b" in d and "a" in d and "s" in d:
        return [_quote(d, recv_ns)]
    if "lastUpdateId" in d:
        return [parse_depth_snapshot(d, d.get("s", ""), recv_ns)]
    if "id" in d and ("result" in d or "error" in d):
        if d.get("error"):
            raise ParseError("request_error", str(d["error"]))
        return []  # reply to our SUBSCRIBE
    raise ParseError("unknown_event", "None")


def _quote(d: dict[str, Any], recv_ns: int) -> Quote:
    b, bq, a, aq = d["b"], d["B"], d["a"], d["A"]
    bid, bid_qty, ask, ask_qty = float(b), float(bq), float(a), float(aq)
    # One comparison chain for the four values (NaN fails it too); JSON booleans would pass float() as 1.0 / 0.0.
    if not (PRICE_MIN < bid < PRICE_MAX and PRICE_MIN < ask < PRICE_MAX and 0.0 <= bid_qty < QTY_MAX
            and 0.0 <= ask_qty < QTY_MAX) or bool in (b.__class__, bq.__class__, a.__class__, aq.__class__):
        bid, bid_qty, ask, ask_qty = _price(b), _qty(bq), _price(a), _qty(aq)  # raises with the value at fault
    u = d["u"]
    if u.__class__ is not int or not 0 <= u <= ID_MAX:
        u = checked_id(u)
    e = d.get("E")
    return Quote(_symbol(d["s"]), bid, bid_qty, ask, ask_qty, u, 0 if e is None else checked_time_ms(e), recv_ns)


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
    m, p, q, t = d["m"], d["p"], d["q"], d["T"]
    price, qty = float(p), float(q)
    if not (PRICE_MIN < price < PRICE_MAX and 0.0 < qty < QTY_MAX) or p.__class__ is bool or q.__class__ is bool:
        price, qty = _price(p), checked_trade_qty(qty, q)  # raises with the value at fault
    if m.__class__ is not bool:  # bool("false") would be True
        raise TypeError("'m' is not a boolean")
    if trade_id.__class__ is not int or not 0 <= trade_id <= ID_MAX:
        trade_id = checked_id(trade_id)
    if t.__class__ is not int or not 0 < t <= ID_MAX:
        t = checked_time_ms(t)
    return Trade(_symbol(d["s"]), price, qty, _SELL if m else _BUY, trade_id, t, recv_ns)


def _bool(v: Any, name: str) -> bool:
    if not isinstance(v, bool):  # bool("false") would be True
        raise TypeError(f"{name!r} is not a boolean")
    return v


def _symbol(s: Any) -> str:
    # A feed names a handful of symbols, each on every frame: remember the ones already checked (bounded, so a
    # hostile feed inventing names cannot grow it).
    if s.__class__ is str:
        known = _KNOWN_SYMBOLS.get(s)
        if known is not None:
            return known
    s = checked_symbol(s)
    if len(_KNOWN_SYMBOLS) < _KNOWN_SYMBOLS_MAX:
        _KNOWN_SYMBOLS[s] = s
    return s


_KNOWN_SYMBOLS: dict[str, str] = {}
_KNOWN_SYMBOLS_MAX = 4096
_SELL, _BUY = Side.SELL, Side.BUY


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
