"""Hostile frames through a real loopback websockets server, a real FeedConnection and the real adapter.

For each protocol a table of bad frames (types, magnitudes, times, ids, encodings, sizes, sequence breaks) is
served interleaved with good trade frames. What a user relies on: every bad frame is counted under the reason
named in the table, every good trade is delivered once and in order, the feed stays live and its task alive,
and what was delivered feeds the terminal's consumers (candles, portfolio marks, the decision features) without
an exception. The connection judges exchange times against the wall clock, as it does for a live exchange.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from websockets.asyncio.server import serve

from app.market.adapters import binance, binance_futures, coinbase, kraken
from app.market.connection import FeedConnection
from app.market.exchange_time import ExchangeTimeWindow
from app.market.features import compute_state
from app.market.state import MarketData
from app.models import FeedState, Trade
from app.trading.portfolio import Portfolio
from tests.conftest import wait_until

NOW_MS = time.time_ns() // 1_000_000
YEAR_2100_MS = 4_102_444_800_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
FIRST_ID = 5_000
MAX_SIZE = 1 << 23  # FeedConnection's default limit; the big frames below stay under it


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


@dataclass(frozen=True)
class Bad:
    name: str
    frame: bytes | str  # bytes go out as a binary frame, str as a text frame
    reason: str  # the FeedStats.rejected key it must be counted under


@dataclass(frozen=True)
class Protocol:
    adapter: Any
    symbol: str  # the terminal's form
    good: Callable[[int, int], bytes]  # (trade id, exchange ms) -> a frame with that one trade
    bad: Callable[[], list[Bad]]


# ----- Binance spot ------------------------------------------------------------------------------------------

def binance_trade(**fields: Any) -> dict[str, Any]:
    d = {"e": "trade", "E": NOW_MS, "s": "BTCUSDT", "t": 1, "p": "61837.63", "q": "0.02000000", "T": NOW_MS,
         "m": False, "M": True}
    d.update(fields)
    return d


def futures_trade(**fields: Any) -> dict[str, Any]:
    """USD-M futures have no raw trade stream: an aggTrade, its id in ``a`` (``t`` in the fields means that)."""
    d = {"e": "aggTrade", "E": NOW_MS, "s": "BTCUSDT", "a": 1, "p": "61837.6", "q": "0.020", "f": 1, "l": 1,
         "T": NOW_MS, "m": False}
    if "t" in fields:
        fields["a"] = fields.pop("t")
    d.update(fields)
    return d


def binance_frame(data: Any, stream: str = "btcusdt@trade") -> bytes:
    return orjson.dumps({"stream": stream, "data": data})


def binance_good(tid: int, ms: int) -> bytes:
    return binance_frame(binance_trade(t=tid, T=ms, E=ms, p=f"{61000 + tid % 97}.5"))


def futures_good(tid: int, ms: int) -> bytes:
    return binance_frame(futures_trade(t=tid, T=ms, E=ms, p=f"{61000 + tid % 97}.5"), "btcusdt@aggTrade")


def binance_bad(futures: bool = False) -> list[Bad]:
    make = futures_trade if futures else binance_trade

    def trade(reason: str, name: str, **fields: Any) -> Bad:
        return Bad(name, binance_frame(make(**{"t": 999_999_999, **fields})), reason)

    depth = {"e": "depthUpdate", "E": NOW_MS, "s": "BTCUSDT", "U": 10, "u": 12, "pu": 9, "b": [["61000.1", "1.5"]],
             "a": [["61001.2", "0"]]}
    ticker = {"u": 400900217, "s": "BTCUSDT", "b": "61000.01", "B": "31.21", "a": "61000.02", "A": "40.66"}
    kline = {"t": NOW_MS - 60_000, "T": NOW_MS, "s": "BTCUSDT", "i": "1m", "o": "1", "h": "2", "l": "1", "c": "2",
             "v": "3", "n": 4, "x": False}
    wrong_id = make(t=1)
    return [
        # magnitudes and types of the price
        trade("bad_value", "price 1e308", p="1e308"),
        trade("bad_value", "price inf", p="inf"),
        trade("bad_value", "price nan", p="nan"),
        trade("bad_value", "price negative", p="-61837.63"),
        trade("bad_value", "price zero", p="0"),
        trade("bad_value", "price below any tick", p="1e-13"),
        trade("bad_value", "price 1e12", p="1000000000000"),
        trade("bad_value", "price JSON true", p=True),
        trade("bad_value", "price not a number", p="sixty thousand"),
        trade("bad_field", "price null", p=None),
        trade("bad_field", "price a list", p=["1"]),
        # quantity
        trade("bad_value", "qty 1e308", q="1e308"),
        trade("bad_value", "qty zero", q="0"),
        trade("bad_value", "qty negative", q="-0.5"),
        trade("bad_value", "qty nan", q="NaN"),
        trade("bad_value", "qty JSON false", q=False),
        # ids
        trade("bad_field", "id the float 1e300", t=1e300),
        trade("bad_field", "id a float with a fraction", t=12.5),
        trade("bad_value", "id negative", t=-1),
        trade("bad_field", "id JSON true", t=True),
        trade("bad_field", "id a list", t=[7]),
        trade("bad_value", "id in exponent text", t="1e300"),
        trade("bad_value", "id above int64", t=1 << 63),
        Bad("id of 30 digits (JSON reads it as a float)",
            binance_frame(wrong_id).replace(b'"t":1,', b'"t":' + b"9" * 30 + b",")
            .replace(b'"a":1,', b'"a":' + b"9" * 30 + b","), "bad_field"),
        # exchange times
        trade("time_ahead_of_clock", "time 2e13 ms (year 2603)", T=20_000_000_000_000, E=20_000_000_000_000),
        trade("time_ahead_of_clock", "time in 2100", T=YEAR_2100_MS, E=YEAR_2100_MS),
        trade("time_ahead_of_clock", "time an hour ahead", T=NOW_MS + HOUR_MS),
        trade("time_behind_clock", "time in 1970", T=1),
        trade("time_behind_clock", "time a month old", T=NOW_MS - 30 * DAY_MS),
        trade("bad_value", "time zero", T=0),
        trade("bad_value", "time negative", T=-NOW_MS),
        trade("bad_field", "time as a float", T=float(NOW_MS)),
        trade("bad_field", "time as a string", T=str(NOW_MS)),
        trade("bad_field", "time JSON true", T=True),
        # other fields
        trade("bad_field", "maker flag a string", m="false"),
        trade("bad_field", "symbol a number", s=42),
        trade("bad_value", "symbol empty", s=""),
        trade("bad_value", "symbol of 100k characters", s="B" * 100_000),
        trade("unknown_event", "unknown event", e="liquidation"),
        Bad("trade without a price", binance_frame({k: v for k, v in make().items() if k != "p"}),
            "bad_field"),
        Bad("data not an object", binance_frame([1, 2, 3]), "bad_envelope"),
        # book, quote and candle frames
        Bad("depth price 1e308", binance_frame({**depth, "b": [["1e308", "1"]]}, "btcusdt@depth"), "bad_value"),
        Bad("depth qty negative", binance_frame({**depth, "a": [["61001.2", "-1"]]}, "btcusdt@depth"), "bad_value"),
        Bad("depth price JSON true", binance_frame({**depth, "b": [[True, "1"]]}, "btcusdt@depth"), "bad_value"),
        Bad("depth level not a pair", binance_frame({**depth, "b": [["61000.1"]]}, "btcusdt@depth"), "bad_value"),
        Bad("depth update id a float", binance_frame({**depth, "U": 10.0}, "btcusdt@depth"), "bad_field"),
        Bad("depth time in 2100", binance_frame({**depth, "E": YEAR_2100_MS}, "btcusdt@depth"),
            "time_ahead_of_clock"),
        Bad("bookTicker bid nan", binance_frame({**ticker, "b": "nan"}, "btcusdt@bookTicker"), "bad_value"),
        Bad("bookTicker qty JSON true", binance_frame({**ticker, "B": True}, "btcusdt@bookTicker"), "bad_value"),
        Bad("kline open 1e308", binance_frame({"e": "kline", "E": NOW_MS, "s": "BTCUSDT",
                                               "k": {**kline, "o": "1e308"}}), "bad_value"),
        Bad("kline trade count negative", binance_frame({"e": "kline", "E": NOW_MS, "s": "BTCUSDT",
                                                         "k": {**kline, "n": -4}}), "bad_value"),
        Bad("subscribe refused", orjson.dumps({"id": 1, "error": {"code": 2, "msg": "Invalid request"}}),
            "request_error"),
        *common_bad(b'{"stream":"btcusdt@trade","data":'),
        *(futures_only() if futures else []),
    ]


def futures_only() -> list[Bad]:
    ticker = {"e": "bookTicker", "u": 400900217, "E": NOW_MS, "T": NOW_MS, "s": "BTCUSDT", "b": "61000.1",
              "B": "31.21", "a": "61000.2", "A": "40.66"}
    depth = {"e": "depthUpdate", "E": NOW_MS, "T": NOW_MS, "s": "BTCUSDT", "U": 10, "u": 12, "pu": 9,
             "b": [["61000.1", "1.5"]], "a": []}
    mark = {"e": "markPriceUpdate", "E": NOW_MS, "s": "BTCUSDT", "p": "61000.1", "i": "61000.0", "r": "0.0001",
            "T": NOW_MS}
    return [
        Bad("futures bookTicker ask 1e308", binance_frame({**ticker, "a": "1e308"}), "bad_value"),
        Bad("futures bookTicker time in 2100", binance_frame({**ticker, "E": YEAR_2100_MS}), "time_ahead_of_clock"),
        Bad("futures bookTicker update id a float", binance_frame({**ticker, "u": 4.0e8}), "bad_field"),
        Bad("futures depth pu a float", binance_frame({**depth, "pu": 9.0}), "bad_field"),
        Bad("futures depth without pu", binance_frame({k: v for k, v in depth.items() if k != "pu"}), "bad_field"),
        Bad("futures mark price nan", binance_frame({**mark, "p": "nan"}), "bad_value"),
    ]


# ----- Coinbase Advanced Trade -------------------------------------------------------------------------------

def coinbase_trade(**fields: Any) -> dict[str, Any]:
    t = {"product_id": "BTC-USD", "trade_id": "1", "price": "65083.67", "size": "0.01034361", "time": iso(NOW_MS),
         "side": "SELL"}
    t.update(fields)
    return t


def coinbase_frame(trades: list[dict[str, Any]], kind: str = "update", **fields: Any) -> bytes:
    msg = {"channel": "market_trades", "timestamp": iso(NOW_MS), "sequence_num": 9,
           "events": [{"type": kind, "trades": trades}]}
    msg.update(fields)
    return orjson.dumps(msg)


def coinbase_good(tid: int, ms: int) -> bytes:
    return coinbase_frame([coinbase_trade(trade_id=str(tid), time=iso(ms), price=f"{65000 + tid % 89}.25")])


def coinbase_bad() -> list[Bad]:
    def trade(reason: str, name: str, **fields: Any) -> Bad:
        return Bad(name, coinbase_frame([coinbase_trade(**{"trade_id": "999999999", **fields})]), reason)

    ticker = {"type": "ticker", "product_id": "BTC-USD", "price": "65000", "best_bid": "65000.1",
              "best_ask": "65000.2", "best_bid_quantity": "1", "best_ask_quantity": "2"}
    l2 = {"type": "update", "product_id": "BTC-USD",
          "updates": [{"side": "bid", "event_time": iso(NOW_MS), "price_level": "65062.5", "new_quantity": "0.1"}]}

    def channel(name: str, events: list[Any], **fields: Any) -> bytes:
        return orjson.dumps({"channel": name, "timestamp": iso(NOW_MS), "sequence_num": 10, "events": events,
                             **fields})

    return [
        trade("bad_value", "price 1e308", price="1e308"),
        trade("bad_value", "price inf", price="Infinity"),
        trade("bad_value", "price nan", price="nan"),
        trade("bad_value", "price negative", price="-65083.67"),
        trade("bad_value", "price zero", price="0"),
        trade("bad_value", "price 1e-13", price="1e-13"),
        trade("bad_field", "price a bare number (JSON true)", price=True),
        trade("bad_field", "price a bare number", price=65083.67),
        trade("bad_field", "price null", price=None),
        trade("bad_value", "price text", price="65k"),
        trade("bad_value", "size 1e308", size="1e308"),
        trade("bad_value", "size zero", size="0"),
        trade("bad_value", "size negative", size="-1"),
        trade("bad_field", "size JSON false", size=False),
        trade("bad_value", "trade id '1e300'", trade_id="1e300"),
        trade("bad_field", "trade id the float 1e300", trade_id=1e300),
        trade("bad_field", "trade id JSON true", trade_id=True),
        trade("bad_value", "trade id negative text", trade_id="-5"),
        trade("bad_value", "trade id empty", trade_id=""),
        trade("bad_value", "trade id not digits", trade_id="abc-123"),
        trade("bad_value", "trade id of 30 digits", trade_id="9" * 30),
        trade("bad_value", "trade id with unicode digits", trade_id="١٢٣"),
        trade("time_ahead_of_clock", "time in 2100", time="2100-01-01T00:00:00Z"),
        trade("time_ahead_of_clock", "time an hour ahead", time=iso(NOW_MS + HOUR_MS)),
        trade("time_behind_clock", "time a month old", time=iso(NOW_MS - 30 * DAY_MS)),
        trade("bad_value", "time at the epoch", time="1970-01-01T00:00:00Z"),
        trade("bad_value", "time before the epoch", time="1969-12-31T23:59:59Z"),
        trade("bad_value", "time not a date", time="yesterday at noon"),
        trade("bad_value", "time with a month 13", time="2026-13-01T00:00:00Z"),
        trade("bad_field", "time in ms as a number", time=NOW_MS),
        trade("bad_value", "side lower case", side="sell"),
        trade("bad_field", "product id a number", product_id=7),
        trade("bad_value", "product id of 100k characters", product_id="B" * 100_000),
        Bad("trade without a size", coinbase_frame([{k: v for k, v in coinbase_trade().items() if k != "size"}]),
            "bad_field"),
        Bad("trades not a list", coinbase_frame({"0": coinbase_trade()}), "bad_field"),  # type: ignore[arg-type]
        Bad("events not a list", channel("market_trades", {"a": 1}), "bad_field"),  # type: ignore[arg-type]
        Bad("good and bad trade in one event", coinbase_frame([coinbase_trade(trade_id="999999998"),
                                                               coinbase_trade(price="1e308")]), "bad_value"),
        Bad("unknown channel", channel("futures_balance_summary", []), "unknown_event"),
        Bad("no channel", orjson.dumps({"events": []}), "unknown_event"),
        Bad("error message", orjson.dumps({"type": "error", "message": "failure to subscribe"}), "request_error"),
        Bad("ticker bid nan", channel("ticker", [{"type": "update", "tickers": [{**ticker, "best_bid": "nan"}]}]),
            "bad_value"),
        Bad("ticker sequence a float", channel("ticker", [{"type": "update", "tickers": [ticker]}],
                                               sequence_num=10.5), "bad_field"),
        Bad("ticker time in 2100", channel("ticker", [{"type": "update", "tickers": [ticker]}],
                                           timestamp="2100-01-01T00:00:00Z"), "time_ahead_of_clock"),
        Bad("l2 price 1e308", channel("l2_data", [{**l2, "updates": [{**l2["updates"][0], "price_level": "1e308"}]}]),
            "bad_value"),
        Bad("l2 side unknown", channel("l2_data", [{**l2, "updates": [{**l2["updates"][0], "side": "both"}]}]),
            "bad_value"),
        Bad("candle start in exponent form", channel("candles", [{"type": "update", "candles": [
            {"start": "1e300", "high": "2", "low": "1", "open": "1", "close": "2", "volume": "1",
             "product_id": "BTC-USD"}]}]), "bad_value"),
        *common_bad(b'{"channel":"market_trades","events":'),
    ]


# ----- Kraken v2 ---------------------------------------------------------------------------------------------

def kraken_trade(**fields: Any) -> dict[str, Any]:
    t = {"symbol": "BTC/USD", "side": "buy", "price": 61000.1, "qty": 0.01, "ord_type": "market", "trade_id": 1,
         "timestamp": iso(NOW_MS)}
    t.update(fields)
    return t


def kraken_frame(data: Any, channel: str = "trade", kind: str = "update") -> bytes:
    return orjson.dumps({"channel": channel, "type": kind, "data": data})


def kraken_good(tid: int, ms: int) -> bytes:
    return kraken_frame([kraken_trade(trade_id=tid, timestamp=iso(ms), price=61000.5 + tid % 83)])


def kraken_bad() -> list[Bad]:
    def trade(reason: str, name: str, **fields: Any) -> Bad:
        return Bad(name, kraken_frame([kraken_trade(**{"trade_id": 999_999_999, **fields})]), reason)

    ticker = {"symbol": "BTC/USD", "bid": 61000.1, "bid_qty": 1.0, "ask": 61000.2, "ask_qty": 2.0}
    book = {"symbol": "BTC/USD", "bids": [{"price": 61000.1, "qty": 1.0}], "asks": [], "checksum": 1,
            "timestamp": iso(NOW_MS)}
    return [
        trade("bad_value", "price 1e308", price=1e308),
        trade("bad_value", "price negative", price=-61000.1),
        trade("bad_value", "price zero", price=0),
        trade("bad_value", "price 1e-13", price=1e-13),
        trade("bad_value", "price 1e12", price=10**12),
        trade("bad_field", "price JSON true", price=True),
        trade("bad_field", "price a string", price="61000.1"),
        trade("bad_field", "price null", price=None),
        Bad("price 1e400 (not a finite JSON number)",
            kraken_frame([kraken_trade(trade_id=999_999_999)]).replace(b'"price":61000.1', b'"price":1e400'),
            "malformed_json"),
        trade("bad_value", "qty 1e308", qty=1e308),
        trade("bad_value", "qty zero", qty=0.0),
        trade("bad_value", "qty negative", qty=-0.01),
        trade("bad_field", "qty JSON false", qty=False),
        trade("bad_field", "trade id the float 1e300", trade_id=1e300),
        trade("bad_field", "trade id a float", trade_id=5.0),
        trade("bad_field", "trade id a digit string", trade_id="123"),
        trade("bad_field", "trade id JSON true", trade_id=True),
        trade("bad_value", "trade id negative", trade_id=-3),
        trade("bad_value", "trade id above int64", trade_id=1 << 63),
        trade("time_ahead_of_clock", "time in 2100", timestamp="2100-01-01T00:00:00.000000Z"),
        trade("time_ahead_of_clock", "time an hour ahead", timestamp=iso(NOW_MS + HOUR_MS)),
        trade("time_behind_clock", "time a month old", timestamp=iso(NOW_MS - 30 * DAY_MS)),
        trade("bad_value", "time at the epoch", timestamp="1970-01-01T00:00:00Z"),
        trade("bad_value", "time garbage", timestamp="2026-08-09T25:99:00Z!"),
        trade("bad_field", "time a number", timestamp=NOW_MS),
        trade("bad_value", "side unknown", side="both"),
        trade("bad_field", "symbol a list", symbol=["BTC/USD"]),
        trade("bad_value", "symbol with a control character", symbol="BTC/\x07USD"),
        Bad("trade without a qty", kraken_frame([{k: v for k, v in kraken_trade().items() if k != "qty"}]),
            "bad_field"),
        Bad("data not a list", kraken_frame({"symbol": "BTC/USD"}), "bad_field"),
        Bad("type unknown", kraken_frame([kraken_trade()], kind="delta"), "bad_value"),
        Bad("unknown channel", kraken_frame([], channel="level3"), "unknown_event"),
        Bad("no channel", orjson.dumps({"data": []}), "unknown_event"),
        Bad("subscribe refused", orjson.dumps({"method": "subscribe", "success": False, "error": "Currency pair "
                                               "not supported"}), "request_error"),
        Bad("ticker ask nan (not JSON)", kraken_frame([ticker], channel="ticker").replace(b"61000.2", b"NaN"),
            "malformed_json"),
        Bad("ticker bid JSON true", kraken_frame([{**ticker, "bid": True}], channel="ticker"), "bad_field"),
        Bad("ticker qty negative", kraken_frame([{**ticker, "ask_qty": -2.0}], channel="ticker"), "bad_value"),
        Bad("book price 1e308", kraken_frame([{**book, "bids": [{"price": 1e308, "qty": 1.0}]}], channel="book"),
            "bad_value"),
        Bad("book levels not a list", kraken_frame([{**book, "asks": {"price": 1}}], channel="book"), "bad_field"),
        Bad("book time in 2100", kraken_frame([{**book, "timestamp": "2100-01-01T00:00:00Z"}], channel="book"),
            "time_ahead_of_clock"),
        Bad("ohlc interval a string", kraken_frame([{"symbol": "BTC/USD", "open": 1, "high": 2, "low": 1, "close": 2,
                                                     "volume": 1, "trades": 3, "interval": "5",
                                                     "interval_begin": iso(NOW_MS)}], channel="ohlc"), "bad_field"),
        *common_bad(b'{"channel":"trade","type":"update","data":'),
    ]


# ----- what every protocol must survive ----------------------------------------------------------------------

def common_bad(prefix: bytes) -> list[Bad]:
    """Encodings, sizes and shapes no adapter may choke on; ``prefix`` starts a frame of that protocol."""
    return [
        Bad("latin-1 bytes", prefix + b'"caf\xe9"}', "not_utf8"),
        Bad("utf-16 with a BOM", '{"a": 1}'.encode("utf-16"), "not_utf8"),
        Bad("random binary", bytes(range(256)) * 4, "not_utf8"),
        Bad("NUL bytes", b"\x00" * 64, "malformed_json"),
        Bad("truncated JSON", prefix + b"[{", "malformed_json"),
        Bad("empty frame", "", "malformed_json"),
        Bad("JSON array", "[1, 2, 3]", "not_an_object"),
        Bad("JSON null", "null", "not_an_object"),
        Bad("JSON string", '"trade"', "not_an_object"),
        Bad("JSON number", "1e308", "not_an_object"),
        Bad("nested 100k deep", "[" * 100_000, "malformed_json"),
        Bad("7 MB of whitespace then garbage", " " * (7 << 20) + "{", "malformed_json"),
        Bad("5 MB object of nothing known", orjson.dumps({"junk": "x" * (5 << 20)}), "unknown_event"),
    ]


PROTOCOLS = {
    "binance": Protocol(binance, "BTCUSDT", binance_good, binance_bad),
    "binance-futures": Protocol(binance_futures, "BTCUSDT", futures_good, lambda: binance_bad(futures=True)),
    "coinbase": Protocol(coinbase, "BTCUSD", coinbase_good, coinbase_bad),
    "kraken": Protocol(kraken, "BTCUSD", kraken_good, kraken_bad),
}


def script(protocol: Protocol) -> tuple[list[bytes | str], list[int], Counter[str], int]:
    """Good trades interleaved with every bad frame, then two sequence breaks (a repeat and a wild id jump).
    Returns the frames, the good ids in order, the rejections expected by reason, the duplicates expected."""
    frames: list[bytes | str] = []
    good_ids: list[int] = []
    expected: Counter[str] = Counter()
    tid = FIRST_ID

    def good() -> None:
        nonlocal tid
        # half a minute apart over the last hour: enough bars on every timeframe for the decision features
        frames.append(protocol.good(tid, NOW_MS - HOUR_MS + (tid - FIRST_ID) * 30_000).decode())
        good_ids.append(tid)
        tid += 1

    for bad in protocol.bad():
        good()
        frames.append(bad.frame)
        expected[bad.reason] += 1
    good()
    frames.append(frames[-1])  # the last good trade again: a duplicate, dropped, not rejected
    frames.append(protocol.good(tid + 10**12, NOW_MS).decode())  # a wild id: not believed alone
    expected["trade_id_jump"] += 1
    for _ in range(3):
        good()  # the real sequence goes on where it was
    return frames, good_ids, expected, 1


@contextlib.asynccontextmanager
async def loopback(frames: list[bytes | str]):
    async def handler(ws):
        for f in frames:
            await ws.send(f)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, max_size=None, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


@pytest.mark.asyncio
@pytest.mark.parametrize("name", sorted(PROTOCOLS))
async def test_bad_frames_are_counted_and_good_trades_all_arrive(name: str):
    protocol = PROTOCOLS[name]
    cases = protocol.bad()
    assert len(cases) >= 50, f"{name}: only {len(cases)} hostile cases"
    assert len({c.name for c in cases}) == len(cases), "case names must be unique"
    frames, good_ids, expected, duplicates = script(protocol)

    delivered: list = []
    async with loopback(frames) as url:
        conn = FeedConnection(url, protocol.adapter, delivered.extend, exchange_time=ExchangeTimeWindow("wall"),
                              max_size=MAX_SIZE)
        task = asyncio.create_task(conn.run())
        try:
            await wait_until(lambda: conn.stats.frames >= len(frames), timeout=60, what="every frame received")
            assert not task.done(), "the feed task ended"
            assert conn.stats.state is FeedState.LIVE
            assert conn.stats.reconnects == 0
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    stats = conn.stats
    # Every bad frame counted under its reason (a mismatch names the reason that was wrong)
    assert dict(stats.rejected) == dict(expected)
    assert stats.duplicates == duplicates
    assert stats.gap_count == 0
    # ... and every good trade delivered once, in order, as sent
    trades = [e for e in delivered if isinstance(e, Trade)]
    assert [t.trade_id for t in trades] == good_ids
    assert {t.symbol for t in trades} == {protocol.symbol}

    # What was delivered feeds the consumers without an exception.
    market = MarketData([protocol.symbol])
    market.apply(delivered)
    portfolio = Portfolio()
    for t in trades:
        portfolio.mark(t.symbol, Decimal(str(t.price)))
    assert portfolio.mark_price(protocol.symbol) == Decimal(str(trades[-1].price))
    m = market[protocol.symbol]
    assert m.trades == len(good_ids)
    for timeframe in ("1m", "5m"):
        state = compute_state(m.candles.series(timeframe), symbol=protocol.symbol, quote_bid=None, quote_ask=None)
        assert state is not None
        numbers = [v for v in dataclasses.asdict(state).values() if isinstance(v, float) and not math.isnan(v)]
        assert numbers and all(math.isfinite(v) for v in numbers), f"{timeframe}: {state}"
        assert state.last_price == trades[-1].price


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_every_hostile_case_is_refused_by_the_adapter_or_the_time_check(name: str):
    """The table itself: each bad frame is one the protocol's good frame differs from in one way only, so a case
    that parsed cleanly (and would be delivered) is a hole in the checks, named here."""
    protocol = PROTOCOLS[name]
    window = ExchangeTimeWindow("wall")
    holes = []
    for case in protocol.bad():
        try:
            events = protocol.adapter.parse(case.frame, 0)
        except ValueError:
            continue
        if window.reject_reason(events) is None:
            holes.append(case.name)
    assert holes == []
