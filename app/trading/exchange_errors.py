"""What an exchange's refusal means, in one sentence in the trader's words.

ccxt raises a class per kind of failure (``InsufficientFunds``, ``AuthenticationError``, ``NetworkError`` ...) with
the exchange's answer in the message; Binance's answer is ``{"code": -2010, "msg": "..."}``. ``explain`` reads both
(the code first: ccxt maps a code to a different class depending on the URL, and on loopback it cannot tell spot
from futures) and gives the sentence the terminal shows; ``classify`` gives the kind, for counters and decisions.

``is_uncertain`` says whether the request may have been executed although it failed (a timeout, a lost connection,
a 5xx): an order sent then must be looked up by its client order id before anything else is concluded, and never
sent again blindly.

ccxt is not imported here: classes are recognised by name along the exception's MRO, so the module is cheap to import
and testable with stand-ins.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum


class ErrorKind(StrEnum):
    INSUFFICIENT_BALANCE = "insufficient_balance"
    FILTER = "filter"  # LOT_SIZE, PRICE_FILTER, NOTIONAL ... (the rule is named in the sentence)
    KEYS = "keys"  # unknown key, no permission, IP not allowed, bad signature
    CLOCK = "clock"  # timestamp outside recvWindow
    RATE_LIMIT = "rate_limit"
    UNKNOWN_ORDER = "unknown_order"
    DUPLICATE = "duplicate"  # an open order with that client order id exists
    WOULD_TRIGGER = "would_trigger"  # a stop the market has already reached (Binance: "Stop price would trigger ...")
    UNAVAILABLE = "unavailable"  # maintenance, overload, 5xx
    NETWORK = "network"  # no answer: timeout, connection lost
    REFUSED = "refused"  # any other refusal of the order by the exchange
    OTHER = "other"


_FILTERS = {
    "LOT_SIZE": "the quantity is not a whole number of lots, or is outside the allowed range (LOT_SIZE rule)",
    "MARKET_LOT_SIZE": "the quantity is outside the range allowed for market orders (MARKET_LOT_SIZE rule)",
    "PRICE_FILTER": "the price is not on the tick size, or is outside the allowed price range (PRICE_FILTER rule)",
    "NOTIONAL": "the order's value (quantity × price) is outside the allowed range, usually below the minimum "
                "(NOTIONAL rule)",
    "MIN_NOTIONAL": "the order's value (quantity × price) is below the minimum (MIN_NOTIONAL rule)",
    "PERCENT_PRICE": "the price is too far from the market's average price (PERCENT_PRICE rule)",
    "PERCENT_PRICE_BY_SIDE": "the price is too far from the market's average price (PERCENT_PRICE_BY_SIDE rule)",
    "MAX_NUM_ORDERS": "the symbol already has the most open orders allowed (MAX_NUM_ORDERS rule)",
    "MAX_NUM_ALGO_ORDERS": "the symbol already has the most stop orders allowed (MAX_NUM_ALGO_ORDERS rule)",
    "ICEBERG_PARTS": "the iceberg order has too many parts (ICEBERG_PARTS rule)",
    "MAX_POSITION": "the position would exceed the largest allowed (MAX_POSITION rule)",
    "TRAILING_DELTA": "the trailing delta is outside the allowed range (TRAILING_DELTA rule)",
}
_FILTER_RE = re.compile(r"Filter failure:\s*([A-Z_]+)")
_BODY_RE = re.compile(r"\{[^{}]*\"code\"\s*:\s*-?\d+[^{}]*\}")


def binance_error(exc: BaseException) -> tuple[int | None, str | None]:
    """The ``code`` and ``msg`` of a Binance error answer carried in the exception's message, if any."""
    text = str(exc)
    for m in _BODY_RE.finditer(text):
        try:
            body = json.loads(m.group(0))
        except ValueError:
            continue
        code = body.get("code")
        if isinstance(code, int) and not isinstance(code, bool):
            msg = body.get("msg")
            return code, msg if isinstance(msg, str) else None
    return None, None


def _names(exc: BaseException) -> set[str]:
    return {c.__name__ for c in type(exc).__mro__}


def classify(exc: BaseException) -> ErrorKind:
    return _explain(exc, None)[0]


def explain(exc: BaseException, *, asset: str | None = None) -> str:
    """One sentence for the trader. ``asset``: the asset an order would spend (quote for a buy, base for a sell),
    named in an insufficient-balance sentence."""
    return _explain(exc, asset)[1]


def is_uncertain(exc: BaseException) -> bool:
    """The request may have been executed although no answer says so: look before trying again."""
    names = _names(exc)
    code, _ = binance_error(exc)
    if code in (-1006, -1007):  # "execution status unknown": whatever class ccxt files it under (OperationFailed,
        return True  # BadResponse, RequestTimeout, ExchangeError depending on the URL)
    if names & {"RateLimitExceeded", "DDoSProtection", "InvalidNonce"}:
        return False  # refused before execution
    if code is not None:
        return False  # the exchange answered with a definite error
    return bool(names & {"NetworkError", "RequestTimeout", "ExchangeNotAvailable", "TimeoutError",
                         "ConnectionError", "ClientError", "OSError"})


def _explain(exc: BaseException, asset: str | None) -> tuple[ErrorKind, str]:
    code, msg = binance_error(exc)
    by_code = _by_binance_code(code, msg, asset) if code is not None else _by_message(str(exc), asset)
    if by_code is not None:
        return by_code
    names = _names(exc)
    detail = _detail(exc, msg)
    if "InsufficientFunds" in names:
        return ErrorKind.INSUFFICIENT_BALANCE, _balance_sentence(asset)
    if "InvalidNonce" in names:
        return ErrorKind.CLOCK, _CLOCK
    if names & {"RateLimitExceeded", "DDoSProtection"}:
        return ErrorKind.RATE_LIMIT, _RATE
    if "AuthenticationError" in names or "PermissionDenied" in names or "AccountSuspended" in names:
        return ErrorKind.KEYS, f"The exchange rejected the API keys ({detail})." if detail else _KEYS
    if "OrderNotFound" in names:
        return ErrorKind.UNKNOWN_ORDER, _UNKNOWN
    if "DuplicateOrderId" in names:
        return ErrorKind.DUPLICATE, _DUPLICATE
    cause = _names(exc.__cause__) if exc.__cause__ is not None else set()
    if "ServerDisconnectedError" in cause or "ClientPayloadError" in cause:  # ccxt files these as unavailable
        return ErrorKind.NETWORK, "The connection to the exchange dropped before it answered."
    if cause & {"ClientConnectionError", "OSError", "gaierror"}:
        return ErrorKind.NETWORK, "The exchange could not be reached (network error)."
    if names & {"ExchangeNotAvailable", "OnMaintenance"}:
        return ErrorKind.UNAVAILABLE, _UNAVAILABLE
    if "RequestTimeout" in names or "TimeoutError" in names:
        return ErrorKind.NETWORK, "The exchange did not answer in time."
    if names & {"NetworkError", "ConnectionError", "ClientError", "OSError"}:
        return ErrorKind.NETWORK, "The exchange could not be reached (network error)."
    if (m := _FILTER_RE.search(str(exc))) is not None:
        return ErrorKind.FILTER, _filter_sentence(m.group(1))
    if names & {"InvalidOrder", "BadRequest", "OperationRejected", "BadSymbol", "MarketClosed"}:
        return ErrorKind.REFUSED, f"The exchange refused the order: {detail}." if detail else \
            "The exchange refused the order."
    return ErrorKind.OTHER, f"The exchange answered with an error: {detail}." if detail else \
        f"The exchange answered with an error ({type(exc).__name__})."


def _by_message(text: str, asset: str | None) -> tuple[ErrorKind, str] | None:
    """Binance's messages that ccxt matches (and then drops the code from the exception's text)."""
    low = text.lower()
    if "insufficient balance" in low:
        return ErrorKind.INSUFFICIENT_BALANCE, _balance_sentence(asset)
    if "duplicate order" in low:
        return ErrorKind.DUPLICATE, _DUPLICATE
    if "unknown order" in low or "order does not exist" in low:
        return ErrorKind.UNKNOWN_ORDER, _UNKNOWN
    if "would trigger immediately" in low:
        return ErrorKind.WOULD_TRIGGER, "The exchange refused the stop: the market is already through its stop price."
    if "immediately match" in low:
        return ErrorKind.REFUSED, "The exchange refused the order: a maker-only order would have taken liquidity " \
                                  "at once."
    return None


def _by_binance_code(code: int, msg: str | None, asset: str | None) -> tuple[ErrorKind, str] | None:
    text = msg or ""
    if code == -2010 or code == -2011:  # NEW_ORDER_REJECTED / CANCEL_REJECTED: the message says why
        if (known := _by_message(text, asset)) is not None:
            return known
        return ErrorKind.REFUSED, f"The exchange refused the order: {_clean(text)}." if text else \
            "The exchange refused the order."
    if (m := _FILTER_RE.search(text)) is not None:
        return ErrorKind.FILTER, _filter_sentence(m.group(1))
    if code == -1013:
        return ErrorKind.FILTER, f"The exchange refused the order's size or price: {_clean(text)}." if text else \
            "The exchange refused the order's size or price."
    if code == -2013:
        return ErrorKind.UNKNOWN_ORDER, _UNKNOWN
    if code == -2015:
        return ErrorKind.KEYS, ("The exchange rejected the API key: it is unknown, lacks the permission for this "
                                "action, or does not allow requests from this IP address.")
    if code == -2014:
        return ErrorKind.KEYS, "The exchange rejected the API key: it is not in a valid format."
    if code == -1022:
        return ErrorKind.KEYS, ("The exchange rejected the request's signature: the API secret does not belong to "
                                "this key.")
    if code == -1021:
        return ErrorKind.CLOCK, _CLOCK
    if code in (-1003, -1015):
        return ErrorKind.RATE_LIMIT, _RATE if code == -1003 else \
            "The exchange refused the order: too many new orders in a short time; wait before sending more."
    if code in (-1006, -1007):
        return ErrorKind.NETWORK, "The exchange did not say whether it executed the request (its back end timed out)."
    if code == -1001 or code == -1008:
        return ErrorKind.UNAVAILABLE, _UNAVAILABLE
    if code == -1121:
        return ErrorKind.REFUSED, "The exchange does not list this symbol."
    if code in (-1111, -1100, -1102, -1104, -1106, -1116, -1117):
        return ErrorKind.REFUSED, f"The exchange refused the order: {_clean(text)}." if text else \
            "The exchange refused the order as malformed."
    return None


def _filter_sentence(rule: str) -> str:
    why = _FILTERS.get(rule, f"it breaks the exchange's {rule} rule")
    return f"The exchange refused the order: {why}."


def _balance_sentence(asset: str | None) -> str:
    if asset:
        return f"The exchange refused the order: the account does not have enough free {asset} for it."
    return "The exchange refused the order: the account does not have enough free balance for it."


def _detail(exc: BaseException, msg: str | None) -> str:
    if msg:
        return _clean(msg)
    text = str(exc).strip()
    # ccxt prefixes the exchange id ("binance {...}" / "binance Order does not exist"): keep what follows
    parts = text.split(" ", 1)
    if len(parts) == 2 and parts[0].isalpha() and parts[0].islower():
        text = parts[1]
    return _clean(text)


def _clean(text: str) -> str:
    text = " ".join(text.split()).rstrip(".")
    return text if len(text) <= 200 else text[:199] + "…"


_CLOCK = ("The exchange refused the request because this computer's clock is out of step with the exchange's "
          "(timestamp outside recvWindow); synchronise the system clock.")
_RATE = "The exchange is limiting the request rate; wait a moment before trying again."
_KEYS = "The exchange rejected the API keys."
_UNKNOWN = "The exchange does not know this order (already filled, canceled, or never placed)."
_DUPLICATE = "The exchange already has an open order with this client order id; it was not placed twice."
_UNAVAILABLE = "The exchange is unavailable right now (maintenance or overload)."
