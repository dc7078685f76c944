"""FeedConnection against real websockets servers on 127.0.0.1: delivery, bad frames, stale feed, reconnects."""

from __future__ import annotations

import asyncio
import contextlib

import orjson
import pytest
from websockets.asyncio.server import serve

from app.market.adapters import binance
from app.market.connection import FeedConnection
from app.models import FeedState, Trade
from tests.conftest import wait_until


def trade_frame(trade_id: int, price: str = "61837.63") -> bytes:
    return orjson.dumps({"stream": "btcusdt@trade", "data": {
        "e": "trade", "E": 1723161255343, "s": "BTCUSDT", "t": trade_id, "p": price, "q": "0.02000000",
        "T": 1723161255342 + trade_id, "m": trade_id % 2 == 0, "M": True}})


def fast_backoff():
    while True:
        yield 0.01


class Collector:
    def __init__(self) -> None:
        self.events: list = []

    def __call__(self, events) -> None:
        self.events.extend(events)

    @property
    def trade_ids(self) -> list[int]:
        return [e.trade_id for e in self.events if isinstance(e, Trade)]


@contextlib.asynccontextmanager
async def running(conn: FeedConnection):
    task = asyncio.create_task(conn.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.asyncio
async def test_subscribes_and_delivers_parsed_trades():
    received_requests: list[dict] = []

    async def handler(ws):
        received_requests.append(orjson.loads(await ws.recv()))
        for i in range(1, 51):
            await ws.send(trade_frame(i))
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        out = Collector()
        conn = FeedConnection(f"ws://127.0.0.1:{port}/ws", binance, out,
                              subscribe=[binance.subscribe_message(["btcusdt@trade"], 7)])
        async with running(conn):
            await wait_until(lambda: len(out.trade_ids) == 50, what="50 trades")
            assert conn.stats.state is FeedState.LIVE
    assert received_requests == [{"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 7}]
    assert out.trade_ids == list(range(1, 51))
    assert conn.stats.frames == 50 and conn.stats.events == 50
    assert conn.stats.state is FeedState.STOPPED


@pytest.mark.asyncio
async def test_garbage_frames_are_counted_and_skipped_and_the_feed_keeps_going():
    garbage = [
        b'{"stream":"btcusdt@trade","data":{"e":"trade"',  # truncated
        b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":5,"p":[1],"q":"1","T":1,"m":true}}',
        b'{"e":"somethingNew","E":1}',  # unknown event
        b"\xff\xfe\x00garbage",  # not UTF-8 (sent as a binary frame)
        b"[1,2,3]",
        b'{"stream":"x","data":{"e":"trade","E":1,"s":"BTCUSDT","t":6,"p":"NaN","q":"1","T":1,"m":false}}',
    ]

    async def handler(ws):
        await ws.send(trade_frame(1))
        for g in garbage:
            await ws.send(g)
        await ws.send(trade_frame(2))
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        out = Collector()
        conn = FeedConnection(f"ws://127.0.0.1:{port}/ws", binance, out)
        async with running(conn):
            await wait_until(lambda: out.trade_ids == [1, 2], what="the trades around the garbage")
    assert conn.stats.frames == 2 + len(garbage)
    assert conn.stats.rejected_total == len(garbage)
    assert set(conn.stats.rejected) >= {"malformed_json", "bad_field", "unknown_event", "not_an_object"}


@pytest.mark.asyncio
async def test_silent_server_makes_the_feed_stale_and_the_client_reconnects():
    connections = 0

    async def handler(ws):
        nonlocal connections
        connections += 1
        await ws.send(trade_frame(connections))
        await ws.wait_closed()  # and say nothing more, like a hung exchange

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        out = Collector()
        conn = FeedConnection(f"ws://127.0.0.1:{port}/ws", binance, out, stale_after_s=0.4,
                              reconnect_delays=fast_backoff)

        async with running(conn):
            await wait_until(lambda: out.trade_ids == [1, 2], timeout=10, what="a second connection")
        states = [state for _, state in conn.stats.transitions]
    assert conn.stats.stale_events >= 1
    assert conn.stats.reconnects >= 1
    assert FeedState.STALE in states
    assert states[states.index(FeedState.STALE) + 1] is FeedState.LIVE  # stale until the new connection


@pytest.mark.asyncio
async def test_reconnects_and_resubscribes_after_the_server_drops_the_connection():
    subscribe_count = 0

    async def handler(ws):
        nonlocal subscribe_count
        await ws.recv()
        subscribe_count += 1
        await ws.send(trade_frame(subscribe_count))
        if subscribe_count < 4:
            await ws.close(1011, "server restarting")
        else:
            await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        out = Collector()
        conn = FeedConnection(f"ws://127.0.0.1:{port}/ws", binance, out,
                              subscribe=[binance.subscribe_message(["btcusdt@trade"], 1)],
                              reconnect_delays=fast_backoff)
        async with running(conn):
            await wait_until(lambda: out.trade_ids == [1, 2, 3, 4], what="four connections' trades")
            await wait_until(lambda: conn.stats.state is FeedState.LIVE, what="live again")
    assert conn.stats.reconnects == 3
    assert subscribe_count == 4
    assert "1011" in conn.stats.last_error


@pytest.mark.asyncio
async def test_unreachable_server_reports_reconnecting_with_the_reason():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conn = FeedConnection(f"ws://127.0.0.1:{port}/ws", binance, Collector(), reconnect_delays=fast_backoff)
    async with running(conn):
        await wait_until(lambda: conn.stats.state is FeedState.RECONNECTING, what="reconnecting")
        await wait_until(lambda: "refused" in conn.stats.last_error.lower() or "Errno" in conn.stats.last_error,
                         what="the reason")


@pytest.mark.asyncio
async def test_a_burst_is_read_in_small_chunks_so_one_turn_of_the_loop_never_frames_thousands_of_messages():
    from app.market.connection import READ_CHUNK_BYTES

    burst = 3000  # ~600 KiB: asyncio alone would read it in 256 KiB gulps
    reads: list[int] = []

    def watch_reads(_ns: int) -> None:
        ws = conn._ws
        if ws is None:
            return
        received = ws.data_received

        def counting(data: bytes) -> None:
            reads.append(len(data))
            received(data)

        ws.data_received = counting

    async def burst_handler(ws):
        await ws.recv()
        for i in range(1, burst + 1):
            ws.protocol.send_text(trade_frame(i))  # queued, then written in one go: the reader gets one burst
        ws.send_data()
        await ws.wait_closed()

    async with serve(burst_handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        out = Collector()
        conn = FeedConnection(f"ws://127.0.0.1:{port}/ws", binance, out,
                              subscribe=[binance.subscribe_message(["btcusdt@trade"], 7)], on_boundary=[watch_reads])
        async with running(conn):
            await wait_until(lambda: len(out.trade_ids) == burst, what="the whole burst")
    assert out.trade_ids == list(range(1, burst + 1))
    assert reads and max(reads) <= READ_CHUNK_BYTES
