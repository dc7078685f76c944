"""Exchange adapters: pure modules that know one exchange's URLs, subscribe messages and frame format.

Each exposes ``parse(raw, recv_ns) -> list[MarketEvent]`` and raises ``ParseError`` for a frame it cannot
accept; the connection counts the error by its ``reason`` and goes on (DESIGN rule 3: no I/O here).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import orjson

T = TypeVar("T")
_INF = float("inf")


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
    """A price must be positive and finite (NaN fails the comparison too)."""
    if not 0.0 < p < _INF:
        raise ValueError(f"price {raw!r} is not positive and finite")
    return p


def checked_qty(q: float, raw: Any) -> float:
    if not 0.0 <= q < _INF:
        raise ValueError(f"quantity {raw!r} is not non-negative and finite")
    return q
