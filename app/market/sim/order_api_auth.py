"""Binance's request rules for the built-in exchange's trading API: parameter parsing and validation, and the
HMAC-SHA256 signature with its timestamp / recvWindow checks (REST and WebSocket API).

REST (as Binance, and as ccxt's ``binance.sign()`` sends it): the signature is HMAC-SHA256, keyed with the
secret, over the query string concatenated with the urlencoded body, both exactly as sent, ``signature=`` left
out; the key travels in the ``X-MBX-APIKEY`` header. WebSocket API: the request's params other than
``signature``, sorted by name and joined as ``k=v&k=v`` without encoding (ccxt's ``sign_params``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from app.market.sim.orders import EngineError

MAX_RECV_WINDOW = 60_000
DEFAULT_RECV_WINDOW = 5_000
FUTURE_TOLERANCE_MS = 1_000  # Binance accepts a timestamp up to 1 s ahead of its clock

DECIMAL_RE = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
LONG_RE = re.compile(r"^[0-9]{1,19}$")
SYMBOL_RE = re.compile(r"^[A-Z0-9\-_.]{1,20}$")
CLIENT_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_\-]{1,36}$")
MAX_DECIMALS = 8


def illegal(name: str, legal: str) -> EngineError:
    return EngineError(-1100, f"Illegal characters found in parameter '{name}'; legal range is '{legal}'.")


def mandatory(name: str) -> EngineError:
    return EngineError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def parse_params(query: str, body: str) -> dict[str, str]:
    """Query and body parameters together. A name sent twice in one of them is refused (-1101); a name in both
    takes the query's value, as Binance documents (the signature still covers both exactly as sent)."""
    params: dict[str, str] = {}
    for part in (body, query):  # the query last: its values win
        try:
            pairs = parse_qsl(part, keep_blank_values=True, strict_parsing=bool(part), max_num_fields=64)
        except ValueError:
            raise EngineError(-1100, "Illegal characters found in a parameter.") from None
        names = [name for name, _ in pairs]
        if len(set(names)) != len(names):
            raise EngineError(-1101, "Duplicate values for a parameter detected.")
        params.update(pairs)
    return params


def check_known(params: Mapping[str, str], allowed: frozenset[str]) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise EngineError(-1104, f"Not all sent parameters were read; read '{len(params) - len(unknown)}' "
                                 f"parameter(s) but was sent '{len(params)}'. Unknown: {', '.join(unknown)}.")


def _without_signature(raw: str) -> str:
    return "&".join(p for p in raw.split("&") if not p.startswith("signature=")) if raw else ""


def _check_time(params: Mapping[str, Any], now_ms: int) -> None:
    if params.get("timestamp") in (None, ""):
        raise mandatory("timestamp")
    timestamp = long_param(params, "timestamp")
    recv_window = long_param(params, "recvWindow", DEFAULT_RECV_WINDOW)
    assert timestamp is not None and recv_window is not None
    if recv_window > MAX_RECV_WINDOW:
        raise EngineError(-1131, "recvWindow must be less than 60000")
    if timestamp >= now_ms + FUTURE_TOLERANCE_MS:
        raise EngineError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
    if now_ms - timestamp > recv_window:
        raise EngineError(-1021, "Timestamp for this request is outside of the recvWindow.")


def _secret_for(api_key: str | None, keys: Mapping[str, str]) -> str:
    if not api_key:
        raise EngineError(-2014, "API-key format invalid.", 401)
    secret = keys.get(api_key)
    if secret is None:
        raise EngineError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
    return secret


def _check_signature(secret: str, payload: str, signature: Any) -> None:
    if not isinstance(signature, str) or not signature:
        raise mandatory("signature")
    expected = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise EngineError(-1022, "Signature for this request is not valid.")


def api_key_only(api_key: str | None, keys: Mapping[str, str]) -> str:
    """The USER_STREAM endpoints: a known key, no signature."""
    _secret_for(api_key, keys)
    assert api_key is not None
    return api_key


def verify_rest(api_key: str | None, query: str, body: str, params: Mapping[str, str], keys: Mapping[str, str],
                now_ms: int) -> str:
    """The account's key if the request is signed by it and on time; else Binance's refusal."""
    secret = _secret_for(api_key, keys)
    _check_time(params, now_ms)
    _check_signature(secret, _without_signature(query) + _without_signature(body), params.get("signature"))
    assert api_key is not None
    return api_key


def verify_ws(params: Any, keys: Mapping[str, str], now_ms: int) -> str:
    """A signed WebSocket API request's params (``apiKey``, ``timestamp``, ``signature``...)."""
    if not isinstance(params, dict):
        raise mandatory("params")
    fields: dict[str, str] = {}
    for name, value in params.items():
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise illegal(str(name), "string or integer")
        fields[str(name)] = str(value)
    api_key = fields.get("apiKey")
    secret = _secret_for(api_key, keys)
    _check_time(fields, now_ms)
    payload = "&".join(f"{k}={fields[k]}" for k in sorted(fields) if k != "signature")
    _check_signature(secret, payload, fields.get("signature"))
    assert api_key is not None
    return api_key


# -- typed parameters -------------------------------------------------------------------------------------

def long_param(params: Mapping[str, Any], name: str, default: int | None = None, lo: int = 0,
               hi: int = 2**63 - 1) -> int | None:
    raw = params.get(name)
    if raw is None:
        return default
    if not LONG_RE.match(str(raw)):
        raise illegal(name, "^[0-9]{1,19}$")
    value = int(raw)
    if not lo <= value <= hi:
        raise illegal(name, f"{lo} to {hi}")
    return value


def decimal_param(params: Mapping[str, str], name: str) -> Decimal | None:
    raw = params.get(name)
    if raw is None:
        return None
    if not DECIMAL_RE.match(raw):
        raise illegal(name, r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
    value = Decimal(raw)
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > MAX_DECIMALS:
        raise EngineError(-1111, f"Parameter '{name}' has too much precision.")
    if value <= 0:
        raise EngineError(-1013, f"Invalid {name}.")
    return value


def symbol_param(params: Mapping[str, str], required: bool = True) -> str | None:
    raw = params.get("symbol")
    if raw is None or raw == "":
        if required:
            raise mandatory("symbol")
        return None
    if not SYMBOL_RE.match(raw):
        raise illegal("symbol", "^[A-Z0-9-_.]{1,20}$")
    return raw


def client_id_param(params: Mapping[str, str], name: str) -> str | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not CLIENT_ID_RE.match(raw):
        raise illegal(name, "^[\\.A-Z\\:/a-z0-9_-]{1,36}$")
    return raw


def enum_param(params: Mapping[str, str], name: str, allowed: tuple[str, ...], code: int, msg: str) -> str | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if raw not in allowed:
        raise EngineError(code, msg)
    return raw


def bool_param(params: Mapping[str, str], name: str) -> bool:
    raw = params.get(name)
    if raw is None:
        return False
    if raw.lower() not in ("true", "false"):
        raise illegal(name, "true, false")
    return raw.lower() == "true"
