"""The Coinbase Advanced Trade adapter on the REAL frames quoted in ../shared/data/formats.md section 2, checked
field by field, and on bad input, where each kind of fault raises ParseError with its own reason."""

from __future__ import annotations

import calendar

import orjson
import pytest

from app.market.adapters import ParseError, coinbase
from app.models import BookUpdate, Candle, Quote, Side, Trade

# REAL frames from formats.md section 2 (recorded 2026-08-09 by cryptofeed, v3 branch).
TRADES = (
    b'{"channel":"market_trades","timestamp":"2026-08-09T21:05:48.251397169Z","sequence_num":9,"events":[{"type":'
    b'"update","trades":[{"product_id":"BTC-USD","trade_id":"1068572091","price":"65083.67","size":"0.01034361",'
    b'"time":"2026-08-09T21:05:48.167634Z","side":"SELL"}]}]}'
)
TICKER = (
    b'{"channel":"ticker","timestamp":"2026-08-09T21:05:48.298032046Z","sequence_num":10,"events":[{"type":"update",'
    b'"tickers":[{"type":"ticker","product_id":"ETH-USD","price":"1919.41","volume_24_h":"19975.95927439",'
    b'"low_24_h":"1911.04","high_24_h":"1925","low_52_w":"1505","high_52_w":"4955.9","price_percent_chg_24_h":'
    b'"0.02501394006035","best_bid":"1919.44","best_ask":"1919.49","best_bid_quantity":"0.02858092",'
    b'"best_ask_quantity":"0.07814824"}]}]}'
)
CANDLES = (
    b'{"channel":"candles","timestamp":"2026-08-09T21:05:51.491081826Z","sequence_num":138,"events":[{"type":'
    b'"update","candles":[{"start":"1786309500","high":"1919.6","low":"1919.27","open":"1919.58","close":"1919.41",'
    b'"volume":"36.36630914","product_id":"ETH-USD"}]}]}'
)
L2 = (
    b'{"channel":"l2_data","timestamp":"2026-08-09T21:05:48.505350477Z","sequence_num":14,"events":[{"type":"update",'
    b'"product_id":"BTC-USD","updates":[{"side":"bid","event_time":"2026-08-09T21:05:48.210883Z","price_level":'
    b'"65062.5","new_quantity":"0.00583"},{"side":"bid","event_time":"2026-08-09T21:05:48.210883Z","price_level":'
    b'"65061.91","new_quantity":"0"}]}]}'
)
HEARTBEAT = (
    b'{"channel":"heartbeats","timestamp":"2026-08-09T21:05:48.856364007Z","sequence_num":35,"events":[{"current_time":'
    b'"2026-08-09 21:05:48.854840045 +0000 UTC m=+41691.260485341","heartbeat_counter":41691}]}'
)
ACK = (
    b'{"channel":"subscriptions","timestamp":"2026-08-09T21:05:48.228846629Z","sequence_num":2,"events":'
    b'[{"subscriptions":{"market_trades":["BTC-USD","ETH-USD"]}}]}'
)


def utc_ms(y: int, mo: int, d: int, h: int, mi: int, s: int, ms: int) -> int:
    return calendar.timegm((y, mo, d, h, mi, s)) * 1000 + ms


def test_market_trade_real_frame() -> None:
    [t] = coinbase.parse(TRADES, 42)
    assert isinstance(t, Trade)
    assert t.symbol == "BTCUSD"
    assert t.price == 65083.67 and t.qty == 0.01034361
    assert t.trade_id == 1068572091
    assert t.exchange_ms == utc_ms(2026, 8, 9, 21, 5, 48, 167)
    assert t.recv_ns == 42
    # "side" is taken as the maker's (see the module docstring): a SELL maker was hit by a buyer.
    assert coinbase.SIDE_IS_MAKER and t.side is Side.BUY


def test_trade_snapshot_and_buy_maker() -> None:
    msg = orjson.loads(TRADES)
    msg["events"][0]["type"] = "snapshot"
    trade = dict(msg["events"][0]["trades"][0], side="BUY", trade_id="7")
    msg["events"][0]["trades"] = [trade, trade]
    out = coinbase.parse(orjson.dumps(msg), 0)
    assert [t.side for t in out] == [Side.SELL, Side.SELL] and out[0].trade_id == 7


def test_ticker_real_frame() -> None:
    [q] = coinbase.parse(TICKER, 0)
    assert isinstance(q, Quote)
    assert (q.symbol, q.bid, q.bid_qty, q.ask, q.ask_qty) == ("ETHUSD", 1919.44, 0.02858092, 1919.49, 0.07814824)
    assert q.update_id == 10
    assert q.exchange_ms == utc_ms(2026, 8, 9, 21, 5, 48, 298)


def test_candle_real_frame() -> None:
    [c] = coinbase.parse(CANDLES, 0)
    assert isinstance(c, Candle)
    assert c.symbol == "ETHUSD" and c.timeframe == "5m"
    assert c.open_ms == 1786309500_000 and c.open_ms % 300_000 == 0
    assert (c.open, c.high, c.low, c.close, c.volume) == (1919.58, 1919.6, 1919.27, 1919.41, 36.36630914)
    assert c.closed is False
    assert c.exchange_ms == utc_ms(2026, 8, 9, 21, 5, 51, 491)


def test_l2_update_real_frame_and_snapshot() -> None:
    [b] = coinbase.parse(L2, 0)
    assert isinstance(b, BookUpdate)
    assert b.symbol == "BTCUSD" and not b.is_snapshot
    assert b.bids == ((65062.5, 0.00583), (65061.91, 0.0)) and b.asks == ()
    assert b.first_id == b.last_id == 14
    msg = orjson.loads(L2)
    msg["events"][0]["type"] = "snapshot"
    msg["events"][0]["updates"].append(
        {"side": "offer", "event_time": "2026-08-09T21:05:48.210883Z", "price_level": "65070", "new_quantity": "1.5"}
    )
    [s] = coinbase.parse(orjson.dumps(msg), 0)
    assert s.is_snapshot and s.asks == ((65070.0, 1.5),)


def test_heartbeats_and_acks_are_empty() -> None:
    assert coinbase.parse(HEARTBEAT, 0) == []
    assert coinbase.parse(ACK, 0) == []
    assert coinbase.sequence_num(HEARTBEAT) == 35


def test_symbols() -> None:
    assert coinbase.to_symbol("BTC-USD") == "BTCUSD"
    assert coinbase.to_product("BTCUSD") == "BTC-USD"
    assert coinbase.to_product("BTC-USD") == "BTC-USD"
    assert coinbase.to_product("ethusdc") == "ETH-USDC"
    with pytest.raises(ValueError):
        coinbase.to_product("XYZ")


def test_subscribe_one_message_per_channel() -> None:
    msgs = [orjson.loads(m) for m in coinbase.subscribe_messages(["BTCUSD", "ETH-USD"])]
    assert [m["channel"] for m in msgs] == ["market_trades", "ticker", "level2", "heartbeats", "candles"]
    assert all(m["type"] == "subscribe" and m["product_ids"] == ["BTC-USD", "ETH-USD"] for m in msgs)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-08-09T21:05:48.251397169Z", utc_ms(2026, 8, 9, 21, 5, 48, 251)),
        ("2026-08-09T21:05:48Z", utc_ms(2026, 8, 9, 21, 5, 48, 0)),
        ("2026-08-09T21:05:48.5Z", utc_ms(2026, 8, 9, 21, 5, 48, 500)),
        ("2026-08-09T23:05:48.000+02:00", utc_ms(2026, 8, 9, 21, 5, 48, 0)),
        ("2024-02-29T00:00:00.999999Z", utc_ms(2024, 2, 29, 0, 0, 0, 999)),
    ],
)
def test_rfc3339(text: str, expected: int) -> None:
    assert coinbase.rfc3339_ms(text) == expected


def _mutate(frame: bytes, path: list[object], value: object) -> bytes:
    msg = orjson.loads(frame)
    target = msg
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return orjson.dumps(msg)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (TRADES[:-7], "malformed_json"),
        (b"\xff\xfe{}", "not_utf8"),
        (b"[1,2]", "not_an_object"),
        (b'{"channel":"level3","events":[]}', "unknown_event"),
        (b'{"type":"error","message":"bad product"}', "request_error"),
        (b'{"events":[]}', "unknown_event"),
        (_mutate(TRADES, ["events", 0, "trades", 0, "price"], 65083.67), "bad_field"),  # a number, not a string
        (_mutate(TRADES, ["events", 0, "trades", 0, "price"], "-1"), "bad_value"),
        (_mutate(TRADES, ["events", 0, "trades", 0, "price"], "abc"), "bad_value"),
        (_mutate(TRADES, ["events", 0, "trades", 0, "side"], "UNKNOWN"), "bad_value"),
        (_mutate(TRADES, ["events", 0, "trades", 0, "time"], "yesterday"), "bad_value"),
        (_mutate(TRADES, ["events", 0, "trades", 0, "trade_id"], None), "bad_field"),
        (_mutate(TRADES, ["events", 0, "trades"], {}), "bad_field"),
        (_mutate(TRADES, ["events"], "x"), "bad_field"),
        (_mutate(TICKER, ["events", 0, "tickers", 0, "best_bid"], None), "bad_field"),
        (_mutate(L2, ["events", 0, "updates", 0, "side"], "middle"), "bad_value"),
        (_mutate(L2, ["events", 0, "type"], "delta"), "bad_value"),
        (_mutate(L2, ["sequence_num"], "14"), "bad_field"),
        (_mutate(CANDLES, ["events", 0, "candles", 0, "start"], None), "bad_field"),
        (_mutate(CANDLES, ["events", 0, "candles", 0, "start"], "soon"), "bad_value"),
    ],
)
def test_bad_input_has_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        coinbase.parse(raw, 0)
    assert info.value.reason == reason
