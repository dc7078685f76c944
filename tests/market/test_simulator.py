"""The built-in exchange, checked through real sockets with the real Binance adapter.

Everything the server sends is parsed with ``app.market.adapters.binance.parse``, as the terminal will parse
it. Nothing sleeps to wait: tests await frames, events and processes, each under a timeout.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from app.market.adapters import ParseError, binance
from app.market.recording import RecordingError, iter_frames
from app.market.sim.replay import ReplaySource
from app.market.sim.server import ExchangeSimulator
from app.market.sim.source import SimulatorPortInUse
from app.market.sim.synthetic import SyntheticMarket
from app.models import BookUpdate, Candle, MarketEvent, Quote, Side, Trade

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
CAPTURE = DATA / "binance-spot-btcusdt-capture" / "btcusdt_20240808.gz"
needs_capture = pytest.mark.skipif(
    not CAPTURE.exists(), reason=f"recorded Binance capture not found at {CAPTURE} (../shared/data is absent)"
)

TIMEOUT = 10.0
TICK, LOT = 0.01, 0.00001
START_MS = 1_700_000_012_345  # a fixed clock for tests that drive the synthetic market themselves


@pytest_asyncio.fixture
async def sim():
    async with ExchangeSimulator(SyntheticMarket(seed=7, trades_per_s=200)) as simulator:
        yield simulator


# -- helpers ------------------------------------------------------------------------------------------------


def connect(url: str, **kwargs: Any) -> ws_connect:
    """A client that can leave the server's frames unread when it closes: with websockets' default queue of
    16 frames it would stop reading, never see the server's close frame and wait close_timeout (10 s)."""
    return ws_connect(url, max_queue=4096, **kwargs)


async def http_get(sim: ExchangeSimulator, path: str) -> tuple[int, Any]:
    """A plain HTTP/1.1 GET over a real socket; returns the status and the decoded JSON body."""
    reader, writer = await asyncio.open_connection(sim.host, sim.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {sim.host}:{sim.port}\r\nConnection: close\r\n\r\n".encode())
    async with asyncio.timeout(TIMEOUT):
        data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), orjson.loads(body)


async def recv(ws: ClientConnection) -> str | bytes:
    async with asyncio.timeout(TIMEOUT):
        return await ws.recv()


async def events(ws: ClientConnection, kind: type, count: int) -> list[Any]:
    """The next ``count`` events of ``kind``, parsed by the real adapter."""
    out: list[Any] = []
    while len(out) < count:
        out += [e for e in binance.parse(await recv(ws), time.perf_counter_ns()) if isinstance(e, kind)]
    return out[:count]


def on_grid(x: float, step: float) -> bool:
    return abs(x / step - round(x / step)) < 1e-6


class LocalBook:
    """What the terminal's book does: a REST snapshot, then diffs with contiguous ids."""

    def __init__(self, snapshot: BookUpdate) -> None:
        self.last_id = snapshot.last_id
        self.bids = dict(snapshot.bids)
        self.asks = dict(snapshot.asks)

    def apply(self, diff: BookUpdate) -> None:
        for levels, side in ((diff.bids, self.bids), (diff.asks, self.asks)):
            for price, qty in levels:
                if qty == 0:
                    side.pop(price, None)
                else:
                    side[price] = qty
        self.last_id = diff.last_id

    def top(self) -> tuple[float, float, float, float]:
        bid, ask = max(self.bids), min(self.asks)
        return bid, self.bids[bid], ask, self.asks[ask]


def drive(market: SyntheticMarket, seconds: float, wanted: set[str], step_ms: int = 50) -> list[MarketEvent]:
    """Runs the market on the test's own clock from START_MS and parses what it produces."""
    out: list[MarketEvent] = []
    for now in range(START_MS + step_ms, START_MS + int(seconds * 1000) + 1, step_ms):
        for _, payload in market.advance(now, wanted):
            out += binance.parse(payload, 0)
    return out


# -- streams ------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_combined_stream_from_url_delivers_trades_on_the_grid_with_increasing_ids(sim):
    by_stream: dict[str, list[Trade]] = {"btcusdt@trade": [], "btcusdt@aggTrade": []}
    fills: list[tuple[int, int]] = []  # aggTrade first/last trade ids
    async with connect(binance.stream_url(sim.ws_url, list(by_stream))) as ws:
        # 60 aggregated trades, and on until both aggressor sides have traded: the market is a function of the
        # clock, and a second that only falls sells only (bounded: a market that never buys fails below).
        while len(by_stream["btcusdt@aggTrade"]) < 60 or (
                len({t.side for t in by_stream["btcusdt@trade"]}) < 2 and len(by_stream["btcusdt@trade"]) < 5_000):
            raw = await recv(ws)
            msg = orjson.loads(raw)
            assert set(msg) == {"stream", "data"}  # combined-stream envelope
            by_stream[msg["stream"]] += binance.parse(raw, 0)
            if msg["stream"] == "btcusdt@aggTrade":
                fills.append((msg["data"]["f"], msg["data"]["l"]))
    trades, aggs = by_stream["btcusdt@trade"], by_stream["btcusdt@aggTrade"]
    for stream in (trades, aggs):
        ids = [t.trade_id for t in stream]
        assert ids == list(range(ids[0], ids[0] + len(ids)))  # monotonic, none missing
    for t in trades + aggs:
        assert t.symbol == "BTCUSDT" and t.price > 0 and t.qty > 0
        assert on_grid(t.price, TICK) and on_grid(t.qty, LOT)
    assert {t.side for t in trades} == {Side.BUY, Side.SELL}
    recorded = {t.trade_id: (t.price, t.qty, t.side) for t in trades}
    for agg, (first, last) in zip(aggs, fills, strict=True):
        assert first == last  # one fill per aggressor
        if first in recorded:
            assert recorded[first] == (agg.price, agg.qty, agg.side)


@pytest.mark.asyncio
async def test_subscribe_request_gets_its_reply_then_raw_frames(sim):
    async with connect(f"{sim.ws_url}/ws") as ws:
        await ws.send(binance.subscribe_message(["btcusdt@trade"], 7).decode())
        assert orjson.loads(await recv(ws)) == {"result": None, "id": 7}
        first = orjson.loads(await recv(ws))
        assert first["e"] == "trade" and "stream" not in first  # raw /ws payload, no envelope
        await ws.send('{"method":"SUBSCRIBE","params":["btcusdt@bookTicker"],"id":8}')
        await ws.send('{"method":"LIST_SUBSCRIPTIONS","id":9}')
        replies = await _replies(ws, {8, 9})
        assert replies[8] == {"result": None, "id": 8}
        assert replies[9] == {"result": ["btcusdt@trade", "btcusdt@bookTicker"], "id": 9}
        quotes = await events(ws, Quote, 5)
        assert all(q.bid < q.ask for q in quotes)
        await ws.send('{"method":"UNSUBSCRIBE","params":["btcusdt@trade"],"id":10}')
        await _replies(ws, {10})
        await ws.send('{"method":"LIST_SUBSCRIPTIONS","id":11}')
        assert (await _replies(ws, {11}))[11]["result"] == ["btcusdt@bookTicker"]


async def _replies(ws: ClientConnection, ids: set[int]) -> dict[int, dict[str, Any]]:
    """Request replies by id, skipping the market frames around them."""
    found: dict[int, dict[str, Any]] = {}
    while set(found) != ids:
        msg = orjson.loads(await recv(ws))
        if "id" in msg and ("result" in msg or "error" in msg):
            found[msg["id"]] = msg
    return found


@pytest.mark.asyncio
async def test_malformed_requests_get_binance_errors_and_the_connection_keeps_delivering(sim):
    async with connect(binance.stream_url(sim.ws_url, ["btcusdt@trade"])) as ws:
        await ws.send("this is not json")
        await ws.send('{"method":"SUBSCRIBE","params":["btcusdt@nonsense"],"id":3}')
        await ws.send('{"method":"FLY","id":4}')
        await ws.send('{"params":[],"id":5}')
        errors: list[dict[str, Any]] = []
        while len(errors) < 4:
            raw = await recv(ws)
            msg = orjson.loads(raw)
            if "error" in msg:
                with pytest.raises(ParseError):  # the terminal's adapter reports it, by reason
                    binance.parse(raw, 0)
                errors.append(msg)
        assert [(e["id"], e["error"]["code"]) for e in errors] == [(None, 3), (3, 2), (4, 2), (5, 2)]
        assert "FLY" in errors[2]["error"]["msg"]
        assert len(await events(ws, Trade, 5)) == 5  # still delivering


@pytest.mark.asyncio
async def test_unknown_stream_in_url_is_refused(sim):
    with pytest.raises(InvalidStatus) as err:
        async with connect(binance.stream_url(sim.ws_url, ["ethusdt@trade"])):
            pass
    assert err.value.response.status_code == 400


@pytest.mark.asyncio
async def test_depth_diffs_are_contiguous_apply_to_the_rest_snapshot_and_match_book_ticker(sim):
    async with connect(binance.stream_url(sim.ws_url, ["btcusdt@depth@100ms", "btcusdt@bookTicker"])) as ws:
        pending = [await recv(ws)]  # streaming has begun; the snapshot is taken after this frame
        status, snapshot = await http_get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=100")
        assert status == 200
        book = LocalBook(binance.parse_depth_snapshot(snapshot, "BTCUSDT", 0))
        quote: Quote | None = None
        previous_last: int | None = None
        applied = 0
        while applied < 12:
            raw = pending.pop() if pending else await recv(ws)
            for event in binance.parse(raw, 0):
                if isinstance(event, Quote):
                    assert event.bid < event.ask
                    quote = event
                    continue
                assert isinstance(event, BookUpdate)
                if previous_last is not None:
                    assert event.first_id == previous_last + 1
                previous_last = event.last_id
                if event.last_id <= book.last_id:
                    continue  # already in the snapshot
                assert event.first_id <= book.last_id + 1
                book.apply(event)
                applied += 1
                assert quote is not None and quote.update_id <= event.last_id
                assert book.top() == (quote.bid, quote.bid_qty, quote.ask, quote.ask_qty)
    assert all(on_grid(p, TICK) for p in [*book.bids, *book.asks])
    spread_ticks = round((min(book.asks) - max(book.bids)) / TICK)
    assert 1 <= spread_ticks <= 8


@pytest.mark.asyncio
async def test_kline_closes_with_x_true_at_the_interval_boundary(sim):
    async with connect(binance.stream_url(sim.ws_url, ["btcusdt@kline_1s", "btcusdt@kline_1m"])) as ws:
        closed: list[dict[str, Any]] = []
        minute: list[Candle] = []
        while len(closed) < 2:
            raw = await recv(ws)
            msg = orjson.loads(raw)
            candle = binance.parse(raw, 0)[0]
            assert isinstance(candle, Candle)
            k = msg["data"]["k"]
            assert k["T"] == k["t"] + {"1s": 999, "1m": 59_999}[k["i"]]
            if k["i"] == "1s":
                assert candle.closed and candle.exchange_ms == candle.open_ms + 1000  # every 1s bar closes
                closed.append(k)
            else:
                minute.append(candle)
    assert closed[1]["t"] == closed[0]["t"] + 1000
    assert all(c.open_ms % 60_000 == 0 and c.low <= min(c.open, c.close) <= c.high for c in minute)


def test_a_minute_bar_closes_on_the_minute_and_summarises_its_trades():
    market = SyntheticMarket(seed=5, trades_per_s=50, start_ms=START_MS)
    got = drive(market, 130, {"btcusdt@trade", "btcusdt@kline_1m"})
    candles = [e for e in got if isinstance(e, Candle)]
    closed = [c for c in candles if c.closed]
    assert [c.open_ms for c in closed] == [1_699_999_980_000, 1_700_000_040_000]
    assert [c.exchange_ms for c in closed] == [1_700_000_040_000, 1_700_000_100_000]
    assert all(not c.closed for c in candles if c.exchange_ms % 60_000)  # updates in between stay open
    bar = closed[1]  # wholly live: compare with its trades
    trades = [t for t in got if isinstance(t, Trade) and bar.open_ms <= t.exchange_ms < bar.open_ms + 60_000]
    prices = [t.price for t in trades]
    assert (bar.open, bar.high, bar.low, bar.close) == (prices[0], max(prices), min(prices), prices[-1])
    assert bar.trades == len(trades)
    assert bar.volume == pytest.approx(sum(t.qty for t in trades), rel=1e-9)
    rest = binance.parse_klines(asyncio.run(market.klines("BTCUSDT", "1m", 3)), "BTCUSDT", "1m", 0)
    assert [(c.open_ms, c.close, c.trades) for c in rest[:2]] == [
        (c.open_ms, c.close, c.trades) for c in closed
    ]


# -- REST ---------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_rest_klines_history_is_contiguous_and_ends_at_the_live_price(sim):
    async with connect(binance.stream_url(sim.ws_url, ["btcusdt@trade"])) as ws:
        status, rows = await http_get(sim, "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=500")
        live = (await events(ws, Trade, 1))[0]
    assert status == 200 and len(rows) == 500
    assert all(len(r) == 12 and r[6] == r[0] + 59_999 for r in rows)
    candles = binance.parse_klines(rows, "BTCUSDT", "1m", 0)
    opens = np.array([c.open_ms for c in candles])
    assert np.all(np.diff(opens) == 60_000)
    assert opens[-1] <= time.time() * 1000 < opens[-1] + 60_000 + 5_000  # the last bar is the current one
    assert abs(candles[-1].close - live.price) / live.price < 0.005
    assert all(c.low <= min(c.open, c.close) <= max(c.open, c.close) <= c.high for c in candles)
    assert all(on_grid(x, TICK) for c in candles for x in (c.open, c.high, c.low, c.close))


@pytest.mark.asyncio
async def test_rest_timeframes_agree_with_each_other(sim):
    _, one = await http_get(sim, "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=100")
    _, five = await http_get(sim, "/api/v3/klines?symbol=BTCUSDT&interval=5m&limit=10")
    minutes = {c.open_ms: c for c in binance.parse_klines(one, "BTCUSDT", "1m", 0)}
    for bar in binance.parse_klines(five, "BTCUSDT", "5m", 0)[:-1]:  # closed bars only
        parts = [minutes[bar.open_ms + i * 60_000] for i in range(5)]
        assert bar.open == parts[0].open and bar.close == parts[-1].close
        assert bar.high == max(p.high for p in parts) and bar.low == min(p.low for p in parts)
        assert bar.trades == sum(p.trades for p in parts)
        assert bar.volume == pytest.approx(sum(p.volume for p in parts), rel=1e-9)


@pytest.mark.asyncio
async def test_rest_history_reaches_back_for_every_timeframe(sim):
    for interval, step in (("1s", 1_000), ("15m", 900_000), ("1h", 3_600_000)):
        status, rows = await http_get(sim, f"/api/v3/klines?symbol=BTCUSDT&interval={interval}&limit=1000")
        assert status == 200 and len(rows) == 1000
        assert np.all(np.diff([r[0] for r in rows]) == step)


@pytest.mark.asyncio
async def test_rest_klines_page_from_a_start_time(sim):
    start = (int(time.time()) // 3600 - 30) * 3_600_000  # in the 1-minute history, 30 hours back
    _, page = await http_get(sim, f"/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime={start + 1}&limit=3")
    assert [r[0] for r in page] == [start + i * 60_000 for i in (1, 2, 3)]  # bars opening at or after it


@pytest.mark.asyncio
async def test_rest_errors_are_binance_like(sim):
    assert await http_get(sim, "/api/v3/depth?symbol=ETHUSDT") == (
        400,
        {"code": -1121, "msg": "Invalid symbol."},
    )
    assert (await http_get(sim, "/api/v3/klines?symbol=BTCUSDT&interval=7m"))[1]["code"] == -1120
    assert (await http_get(sim, "/api/v3/klines?interval=1m"))[1]["code"] == -1102
    assert (await http_get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=x"))[1]["code"] == -1100
    assert (await http_get(sim, "/api/v3/nothing"))[0] == 404
    assert await http_get(sim, "/api/v3/ping") == (200, {})


# -- the synthetic market itself ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_synthetic_history_has_volatility_clustering():
    market = SyntheticMarket(seed=3, start_ms=START_MS)
    rows = await market.klines("BTCUSDT", "1s", 10_000)  # all the 1 s history there is: about an hour
    assert len(rows) > 3000
    closes = np.array([float(r[4]) for r in rows[:-1]])
    returns = np.diff(np.log(closes))
    size = np.abs(returns) - np.abs(returns).mean()
    acf = [float(np.mean(size[k:] * size[:-k]) / size.var()) for k in range(1, 11)]
    assert acf[0] > 0.08 and np.mean(acf) > 0.05  # |returns| cluster (the real capture: ~0.14)
    shuffled = np.random.default_rng(0).permutation(size)
    assert abs(np.mean(shuffled[1:] * shuffled[:-1]) / size.var()) < 0.05  # and order is what makes it
    kurtosis = np.mean((returns - returns.mean()) ** 4) / returns.var() ** 2
    assert kurtosis > 3.5  # fat tails, as the GARCH mixture gives
    # the path stays near its start price (where a restart finds it: tests/market/sim/test_continuous_path.py)
    assert abs(float(rows[-2][4]) / 60_000.0 - 1) < 0.1


def test_synthetic_spread_is_a_few_ticks_and_sizes_are_heavy_tailed():
    market = SyntheticMarket(seed=11, trades_per_s=100, start_ms=START_MS)
    got = drive(market, 30, {"btcusdt@bookTicker", "btcusdt@trade"})
    spreads = np.array([round((q.ask - q.bid) / TICK) for q in got if isinstance(q, Quote)])
    assert spreads.min() >= 1 and np.median(spreads) <= 3 and spreads.max() <= 8
    sizes = np.array([t.qty for t in got if isinstance(t, Trade)])
    assert len(sizes) > 2000
    assert np.percentile(sizes, 99) > 20 * np.median(sizes)  # a few large prints among many small ones


def test_synthetic_market_is_deterministic_for_a_seed():
    wanted = {"btcusdt@trade", "btcusdt@depth@100ms", "btcusdt@bookTicker"}
    runs = [drive(SyntheticMarket(seed=21, start_ms=START_MS), 5, wanted) for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0]) > 100
    other = drive(SyntheticMarket(seed=22, start_ms=START_MS), 5, wanted)
    assert other != runs[0]


# -- replay -------------------------------------------------------------------------------------------------


def _recorded(path: Path) -> tuple[list[Trade], int]:
    """The capture's trades and the last depth update id, straight from the file."""
    trades: list[Trade] = []
    last_depth = 0
    for _, raw in iter_frames(path):
        msg = orjson.loads(raw)
        if msg.get("stream") == "btcusdt@trade":
            trades += binance.parse(raw, 0)
        elif msg.get("stream") == "btcusdt@depth@100ms":
            last_depth = msg["data"]["u"]
    return trades, last_depth


def _key(t: Trade) -> tuple[Any, ...]:
    return t.trade_id, t.price, t.qty, t.side, t.exchange_ms


@needs_capture
@pytest.mark.realdata
@pytest.mark.asyncio
async def test_replay_at_full_speed_delivers_the_recorded_trades_in_order():
    expected, last_depth_id = _recorded(CAPTURE)
    source = ReplaySource(CAPTURE, speed=0)
    async with ExchangeSimulator(source) as sim:
        async with connect(binance.stream_url(sim.ws_url, ["btcusdt@trade"])) as ws:
            first = await events(ws, Trade, 200)
            assert [_key(t) for t in first] == [_key(t) for t in expected[:200]]
            rest = await events(ws, Trade, len(expected) - 200)
            assert [_key(t) for t in rest] == [_key(t) for t in expected[200:]]
        async with asyncio.timeout(TIMEOUT):
            await source.finished.wait()
        status, snapshot = await http_get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=5")
        assert status == 200 and snapshot["lastUpdateId"] == last_depth_id  # kept current with the diffs
        _, rows = await http_get(sim, "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=100")
        assert sum(r[8] for r in rows) == len(expected)  # bars built from the replayed trades
        assert rows[-1][4] == f"{expected[-1].price:.8f}"


@needs_capture
@pytest.mark.realdata
@pytest.mark.asyncio
async def test_replay_rest_depth_snapshot_is_consistent_with_the_diffs_that_follow():
    sim = ExchangeSimulator(ReplaySource(CAPTURE, speed=1))
    async with sim, connect(binance.stream_url(sim.ws_url, ["btcusdt@depth@100ms"])) as ws:
        # Asked at once, before the tape reaches the recorded snapshot: the answer waits for it.
        status, snapshot = await http_get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=1000")
        assert status == 200
        book = LocalBook(binance.parse_depth_snapshot(snapshot, "BTCUSDT", 0))
        synced = False
        while not synced:
            for diff in await events(ws, BookUpdate, 1):
                if diff.last_id <= book.last_id:
                    continue
                assert diff.first_id <= book.last_id + 1  # the first diff after the snapshot bridges it
                book.apply(diff)
                synced = True
    bid, _, ask, _ = book.top()
    assert bid < ask


def _write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _trade_line(trade_id: int, event_ms: int) -> bytes:
    data = {
        "e": "trade",
        "E": event_ms,
        "s": "BTCUSDT",
        "t": trade_id,
        "p": "100.00000000",
        "q": "1.00000000",
    }
    data |= {"T": event_ms, "m": False, "M": True}
    return orjson.dumps({"stream": "btcusdt@trade", "data": data})


@pytest.mark.asyncio
@pytest.mark.parametrize("timed_by", ["receive_ns", "event_time"])
async def test_replay_follows_the_recorded_timing_scaled_by_speed(tmp_path, timed_by):
    ms = [0, 150, 300, 450]
    if timed_by == "receive_ns":  # receive times 150 ms apart, at 1.5x speed: >= 300 ms in all
        lines = [b"%d %s" % (10**18 + m * 10**6, _trade_line(i, 5_000 + i)) for i, m in enumerate(ms)]
    else:  # JSON lines: the payload's E gives the time
        lines = [_trade_line(i, 1_700_000_000_000 + m) for i, m in enumerate(ms)]
    source = ReplaySource(_write_lines(tmp_path / "tape.txt", lines), speed=1.5)
    async with ExchangeSimulator(source) as sim:
        async with connect(binance.stream_url(sim.ws_url, ["btcusdt@trade"])) as ws:
            first = await events(ws, Trade, 1)
            started = time.monotonic()
            others = await events(ws, Trade, 3)
            elapsed = time.monotonic() - started
        async with asyncio.timeout(TIMEOUT):
            await source.finished.wait()
    assert [t.trade_id for t in first + others] == [0, 1, 2, 3]
    assert elapsed >= 0.45 / 1.5 * 0.9


def test_replay_of_a_missing_file_fails_at_construction_with_one_line(tmp_path):
    with pytest.raises(RecordingError) as err:
        ReplaySource(tmp_path / "nope.gz")
    assert "nope.gz" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(RecordingError):
        ReplaySource(_write_lines(tmp_path / "empty.txt", [b""]))


# -- lifecycle ----------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_taken_port_raises_simulator_port_in_use(sim):
    other = ExchangeSimulator(SyntheticMarket(seed=1), port=sim.port)
    with pytest.raises(SimulatorPortInUse) as err:
        await other.start()
    assert isinstance(err.value, OSError)
    assert str(err.value) == f"port {sim.port} is already in use"


@pytest.mark.asyncio
async def test_command_line_with_a_taken_port_exits_2_with_one_line(sim):
    code, _, err = await _run_cli("--port", str(sim.port))
    assert code == 2
    assert err == f"error: port {sim.port} is already in use\n"


@pytest.mark.asyncio
async def test_command_line_with_an_unreadable_replay_exits_2_with_one_line(tmp_path):
    code, _, err = await _run_cli("--replay", str(tmp_path / "missing.gz"))
    assert code == 2
    assert err.startswith("error: cannot read recording") and err.count("\n") == 1


async def _run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.market.sim",
        *args,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.asyncio
async def test_drop_clients_cuts_every_connection_and_new_ones_are_served(sim):
    url = binance.stream_url(sim.ws_url, ["btcusdt@trade"])
    async with connect(url) as first, connect(url) as second:
        await events(first, Trade, 1)
        await events(second, Trade, 1)
        assert sim.stats.clients == 2
        sim.drop_clients()
        for ws in (first, second):
            with pytest.raises(ConnectionClosed):
                while True:
                    await recv(ws)
    async with connect(url) as again:
        assert len(await events(again, Trade, 3)) == 3
    assert sim.stats.frames_sent > 0


@pytest.mark.asyncio
async def test_pause_stops_the_frames_and_resume_continues_without_a_gap(sim):
    async with connect(binance.stream_url(sim.ws_url, ["btcusdt@trade"])) as ws:
        last = (await events(ws, Trade, 1))[0]
        sim.pause()
        with pytest.raises(TimeoutError):
            for _ in range(1000):  # what was already queued drains, then nothing comes
                async with asyncio.timeout(0.5):
                    msg = await ws.recv()
                last = binance.parse(msg, 0)[0]
        assert sim.paused
        sim.resume()
        after = (await events(ws, Trade, 1))[0]
    assert after.trade_id == last.trade_id + 1  # the market stood still: nothing was lost


@pytest.mark.asyncio
async def test_stop_closes_clients_and_is_idempotent():
    simulator = ExchangeSimulator(SyntheticMarket(seed=2))
    await simulator.start()
    async with connect(binance.stream_url(simulator.ws_url, ["btcusdt@bookTicker"])) as ws:
        await events(ws, Quote, 1)
        await simulator.stop()
        with pytest.raises(ConnectionClosed) as err:
            while True:
                await recv(ws)
        assert err.value.rcvd is not None and err.value.rcvd.code == 1001  # going away
    await simulator.stop()
    assert simulator.stats.clients == 0


@pytest.mark.asyncio
async def test_a_client_that_stops_reading_is_closed_and_the_others_keep_receiving():
    market = SyntheticMarket(seed=4, trades_per_s=2000)
    streams = ["btcusdt@trade", "btcusdt@aggTrade", "btcusdt@bookTicker", "btcusdt@depth@100ms"]
    async with ExchangeSimulator(market, max_backlog=200) as simulator:
        # The stalled client has a tiny receive window and stops reading: the server's socket buffer fills,
        # then that client's outbox.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (simulator.host, simulator.port))
        async with (
            connect(binance.stream_url(simulator.ws_url, streams), sock=sock) as stalled,
            connect(binance.stream_url(simulator.ws_url, ["btcusdt@trade"])) as reader,
        ):
            stalled.transport.pause_reading()
            last_id: int | None = None
            async with asyncio.timeout(30):
                while simulator.stats.slow_clients_dropped == 0:
                    for trade in await events(reader, Trade, 20):
                        assert last_id is None or trade.trade_id == last_id + 1  # never held up
                        last_id = trade.trade_id
            assert simulator.stats.clients == 1
            assert len(await events(reader, Trade, 10)) == 10
            stalled.transport.abort()
