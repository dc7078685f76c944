"""Exchange refusals in the trader's words: the exceptions real ccxt raises for Binance's answers (on a loopback URL,
as against the built-in exchange, and on Binance's own), network failures, and other exchanges' classes."""

from __future__ import annotations

import json

import ccxt
import pytest

from app.trading.exchange_errors import ErrorKind, binance_error, classify, explain, is_uncertain

LOOPBACK = "http://127.0.0.1:9/api/v3/order"
BINANCE = "https://api.binance.com/api/v3/order"


def raised(code: int, msg: str, *, url: str = LOOPBACK, status: int = 400) -> BaseException:
    """What ccxt's binance raises for this answer (its own error mapping, not a stand-in)."""
    body = json.dumps({"code": code, "msg": msg})
    ex = ccxt.binance()
    with pytest.raises(ccxt.BaseError) as info:
        ex.handle_errors(status, "Bad Request", url, "POST", {}, body, json.loads(body), None, None)
    return info.value


@pytest.mark.parametrize("url", [LOOPBACK, BINANCE])
def test_insufficient_balance_names_the_asset(url: str) -> None:
    exc = raised(-2010, "Account has insufficient balance for requested action.", url=url)
    assert classify(exc) is ErrorKind.INSUFFICIENT_BALANCE
    assert explain(exc, asset="USDT") == \
        "The exchange refused the order: the account does not have enough free USDT for it."
    assert "enough free balance" in explain(exc)
    assert not is_uncertain(exc)


@pytest.mark.parametrize("url", [LOOPBACK, BINANCE])
def test_a_stop_the_market_already_reached_is_its_own_kind(url: str) -> None:
    exc = raised(-2010, "Stop price would trigger immediately.", url=url)  # ccxt: OrderImmediatelyFillable
    assert classify(exc) is ErrorKind.WOULD_TRIGGER  # a bracket's stop then closes at market instead
    assert explain(exc) == "The exchange refused the stop: the market is already through its stop price."
    assert not is_uncertain(exc)


@pytest.mark.parametrize(("rule", "words"), [
    ("LOT_SIZE", "whole number of lots"),
    ("PRICE_FILTER", "not on the tick size"),
    ("NOTIONAL", "below the minimum (NOTIONAL rule)"),
    ("MIN_NOTIONAL", "MIN_NOTIONAL rule"),
    ("PERCENT_PRICE_BY_SIDE", "too far from the market"),
    ("SOMETHING_NEW", "SOMETHING_NEW rule"),
])
@pytest.mark.parametrize("url", [LOOPBACK, BINANCE])
def test_filter_failures_name_the_rule(rule: str, words: str, url: str) -> None:
    exc = raised(-1013, f"Filter failure: {rule}", url=url)
    assert classify(exc) is ErrorKind.FILTER
    text = explain(exc)
    assert text.startswith("The exchange refused the order: ") and words in text and text.endswith(".")


@pytest.mark.parametrize(("code", "msg", "kind", "words"), [
    (-2015, "Invalid API-key, IP, or permissions for action.", ErrorKind.KEYS, "IP address"),
    (-2014, "API-key format invalid.", ErrorKind.KEYS, "valid format"),
    (-1022, "Signature for this request is not valid.", ErrorKind.KEYS, "API secret does not belong"),
    (-1021, "Timestamp for this request is outside of the recvWindow.", ErrorKind.CLOCK, "clock"),
    (-1003, "Too much request weight used.", ErrorKind.RATE_LIMIT, "limiting the request rate"),
    (-1015, "Too many new orders.", ErrorKind.RATE_LIMIT, "too many new orders"),
    (-2013, "Order does not exist.", ErrorKind.UNKNOWN_ORDER, "does not know this order"),
    (-2011, "Unknown order sent.", ErrorKind.UNKNOWN_ORDER, "does not know this order"),
    (-2010, "Duplicate order sent.", ErrorKind.DUPLICATE, "not placed twice"),
    (-2010, "Order would immediately match and take.", ErrorKind.REFUSED, "maker-only"),
    (-2010, "This action is disabled on this account.", ErrorKind.REFUSED, "disabled on this account"),
    (-1121, "Invalid symbol.", ErrorKind.REFUSED, "does not list this symbol"),
])
def test_binance_codes(code: int, msg: str, kind: ErrorKind, words: str) -> None:
    exc = raised(code, msg)
    assert classify(exc) is kind
    assert words in explain(exc)
    assert not is_uncertain(exc)  # the exchange answered: the request was not executed


def test_a_5xx_or_lost_connection_is_uncertain_and_said_so() -> None:
    for exc in (ccxt.NetworkError("binance POST http://127.0.0.1:9/api/v3/order Server disconnected"),
                ccxt.RequestTimeout("binance POST request timed out (10000 ms)"),
                ccxt.ExchangeNotAvailable("binance 503 Service Unavailable"),
                raised(-1007, "Timeout waiting for response from backend server.")):
        assert is_uncertain(exc), exc
    assert explain(ccxt.NetworkError("x")) == "The exchange could not be reached (network error)."
    assert explain(ccxt.RequestTimeout("x")) == "The exchange did not answer in time."
    assert classify(ccxt.ExchangeNotAvailable("x")) is ErrorKind.UNAVAILABLE
    assert classify(ccxt.OnMaintenance("x")) is ErrorKind.UNAVAILABLE
    # refused before execution although ccxt files them under NetworkError
    assert not is_uncertain(ccxt.RateLimitExceeded("x")) and not is_uncertain(ccxt.InvalidNonce("x"))
    assert not is_uncertain(ccxt.InsufficientFunds("x"))


def test_connection_failures_ccxt_files_as_unavailable_are_said_as_network() -> None:
    import aiohttp

    def wrapped(cause: BaseException) -> BaseException:
        try:
            raise ccxt.ExchangeNotAvailable("binance POST http://127.0.0.1:9/api/v3/order") from cause
        except ccxt.ExchangeNotAvailable as exc:
            return exc

    dropped = wrapped(aiohttp.ServerDisconnectedError())
    assert explain(dropped) == "The connection to the exchange dropped before it answered."
    assert classify(dropped) is ErrorKind.NETWORK and is_uncertain(dropped)
    refused = wrapped(ConnectionRefusedError(111, "Connection refused"))
    assert explain(refused) == "The exchange could not be reached (network error)."
    assert explain(ccxt.ExchangeNotAvailable("binance 503 Service Unavailable")) == \
        "The exchange is unavailable right now (maintenance or overload)."


def test_other_exchanges_by_class() -> None:
    assert classify(ccxt.InsufficientFunds("kraken EOrder:Insufficient funds")) is ErrorKind.INSUFFICIENT_BALANCE
    assert classify(ccxt.AuthenticationError("coinbase 401 Unauthorized")) is ErrorKind.KEYS
    assert explain(ccxt.AuthenticationError("kraken EAPI:Invalid key")) == \
        "The exchange rejected the API keys (EAPI:Invalid key)."
    assert classify(ccxt.OrderNotFound("kraken EOrder:Unknown order")) is ErrorKind.UNKNOWN_ORDER
    assert explain(ccxt.InvalidOrder("kraken EOrder:Invalid price")) == \
        "The exchange refused the order: EOrder:Invalid price."
    assert classify(ccxt.DDoSProtection("x")) is ErrorKind.RATE_LIMIT
    assert explain(ValueError("odd")) == "The exchange answered with an error: odd."


def test_binance_error_reads_the_answer_inside_the_message() -> None:
    assert binance_error(ccxt.ExchangeError('binance {"code":-1013,"msg":"Filter failure: LOT_SIZE"}')) == \
        (-1013, "Filter failure: LOT_SIZE")
    assert binance_error(ccxt.ExchangeError("binance no body")) == (None, None)
    long = explain(ccxt.InvalidOrder("binance " + "x" * 500))
    assert len(long) < 260
