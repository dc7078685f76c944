"""Exchange adapters: pure modules that know one exchange's URLs, subscribe messages and frame format.

Each exposes ``parse(raw, recv_ns) -> list[MarketEvent]`` and raises ``ParseError`` for a frame it cannot
accept; the connection counts the error by its ``reason`` and goes on (DESIGN rule 3: no I/O here).

The shared value checks every adapter applies at this trust boundary (they raise ValueError or TypeError, which
:func:`reasoned` turns into the reasons ``bad_value`` / ``bad_field``):

* :func:`checked_price` -- finite, inside (:data:`PRICE_MIN`, :data:`PRICE_MAX`), never a JSON boolean
  (``float(True)`` is 1.0).
* :func:`checked_qty` -- a book level's or a quote's size: 0 (a diff's "delete this level") up to :data:`QTY_MAX`.
* :func:`checked_trade_qty` -- a trade's size: strictly positive, below :data:`QTY_MAX`.
* :func:`checked_id` (alias :func:`checked_trade_id`) -- trade and update ids: a JSON integer or a string of ASCII
  digits (as Coinbase sends them), in 0 .. :data:`ID_MAX` (int64, what numpy and SQLite hold). Never a float, a
  boolean or an exponent: ``1e300`` accepted as an int would make every later trade look like a duplicate.
* :func:`checked_symbol` -- an instrument name: 1 .. :data:`SYMBOL_MAX_LEN` printable ASCII characters, no space
  (a megabyte "symbol" would otherwise become a key in every per-symbol table).
* :func:`checked_time_ms` -- an exchange time in UTC ms: a positive JSON integer. Whether it is *plausible* (not in
  2100) needs a clock, so that check lives in the connection (``app.market.exchange_time``), not here.

The bounds are sanity limits, not market knowledge: no instrument trades at 10^12 or at 10^-12 of its quote
currency, and nothing inside the terminal (Decimal money, float64 candles, HdrHistogram latencies) survives 1e308.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import orjson

T = TypeVar("T")

PRICE_MIN = 1e-12  # exclusive
PRICE_MAX = 1e12  # exclusive
QTY_MAX = 1e12  # exclusive
ID_MAX = (1 << 63) - 1
SYMBOL_MAX_LEN = 40
_ID_DIGITS_MAX = len(str(ID_MAX))


class ParseError(ValueError):
    """A frame that is not valid for this exchange. ``reason`` is a short, countable category."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def decode_object(raw: bytes | str) -> dict[str, Any]:
    """The frame as a JSON object, or a ParseError saying why not (not UTF-8, not JSON, not an object)."""
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ParseError(_undecodable_reason(raw), str(exc)) from None
    if not isinstance(msg, dict):
        raise ParseError("not_an_object", type(msg).__name__)
    return msg


def reasoned(parse_message: Callable[..., T], *args: Any) -> T:
    """Run an adapter's message parser and turn what it trips on into a countable ParseError reason."""
    try:
        return parse_message(*args)
    except ParseError:
        raise  # already precise (unknown_event, request_error); it is a ValueError, so keep it from below
    except (KeyError, TypeError, AttributeError) as exc:  # a field is missing or has the wrong JSON type
        raise ParseError("bad_field", f"{type(exc).__name__}: {exc}") from None
    except ValueError as exc:  # the right type, an unacceptable value: a negative or NaN price, "abc"
        raise ParseError("bad_value", str(exc)) from None


def _undecodable_reason(raw: bytes | str) -> str:
    """Tell text that is not UTF-8 (a transport or recording fault) from text that is not JSON."""
    if isinstance(raw, bytes | bytearray | memoryview):
        try:
            bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            return "not_utf8"
    return "malformed_json"


def checked_price(p: float, raw: Any) -> float:
    """``p`` (the float read from ``raw``) if it is a sane price; NaN fails the comparison too."""
    if not PRICE_MIN < p < PRICE_MAX or raw.__class__ is bool:
        raise ValueError(f"price {raw!r} is not a number in ({PRICE_MIN:g}, {PRICE_MAX:g})")
    return p


def checked_qty(q: float, raw: Any) -> float:
    """A book level's or a quote's quantity: 0 is legal (a diff deleting the level)."""
    if not 0.0 <= q < QTY_MAX or raw.__class__ is bool:
        raise ValueError(f"quantity {raw!r} is not a number in [0, {QTY_MAX:g})")
    return q


def checked_trade_qty(q: float, raw: Any) -> float:
    """A trade's quantity: a trade of nothing did not happen."""
    if not 0.0 < q < QTY_MAX or raw.__class__ is bool:
        raise ValueError(f"trade quantity {raw!r} is not a number in (0, {QTY_MAX:g})")
    return q


def checked_id(v: Any) -> int:
    """A trade or update id: a JSON integer or a string of ASCII digits, 0 .. ID_MAX."""
    cls = v.__class__
    if cls is int:
        if 0 <= v <= ID_MAX:
            return v
        raise ValueError(f"id {v!r} is out of range")
    if cls is str:
        if 0 < len(v) <= _ID_DIGITS_MAX and v.isascii() and v.isdigit():
            n = int(v)
            if n <= ID_MAX:
                return n
        raise ValueError(f"id {v[:40]!r} is not a string of digits in range")
    raise TypeError(f"id {v!r} is not an integer")  # float, bool, None, list ...


checked_trade_id = checked_id


def checked_symbol(s: Any) -> str:
    """An exchange's instrument name as sent (adapters map it to the terminal's form afterwards)."""
    if s.__class__ is not str:
        raise TypeError(f"symbol {s!r} is not a string")
    if not 0 < len(s) <= SYMBOL_MAX_LEN or not s.isascii() or not s.isprintable() or " " in s:
        raise ValueError(f"symbol {s[:SYMBOL_MAX_LEN]!r} is not 1..{SYMBOL_MAX_LEN} printable ASCII characters")
    return s


def checked_time_ms(v: Any) -> int:
    """An exchange time in UTC ms: a positive JSON integer (plausibility against a clock: the connection)."""
    if v.__class__ is not int:
        raise TypeError(f"time {v!r} is not an integer")
    if not 0 < v <= ID_MAX:
        raise ValueError(f"time {v!r} is not positive")
    return v
