"""Feed faults against real loopback servers: drops, repeats after reconnect, garbage, silence, a slow consumer."""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import orjson
import pytest
from websockets.asyncio.server import serve

from app.market.adapters import binance
from app.market.bus import EventBus
from app.market.connection import FeedConnection
from app.market.sim.server import ExchangeSimulator
from app.market.sim.synthetic import SyntheticMarket
from app.models import FeedState, Trade
from tests.conftest import wait_until


def fast_backoff():
    while True:
        yield 0.01


def trade_frame(trade_id: int) -> bytes:
    return orjson.dumps({"stream": "btcusdt@trade", "data": {
        "e": "trade", "E": 1723161255343, "s": "BTCUSDT", "t": trade_id, "p": "61837.63", "q": "0.02",
        "T": 1723161255342 + trade_id, "m": trade_id % 2 == 0, "M": True}})


class Collector:
    def __init__(self) -> None:
        self.trades: list[Trade] = []

    def __call__(self, events) -> None:
        self.trades.extend(e for e in events if isinstance(e, Trade))

    @property
    def ids(self) -> list[int]:
        return [t.trade_id for t in self.trades]


@contextlib.asynccontextmanager
async def running(conn: FeedConnection):
    task = asyncio.create_task(conn.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def assert_gaps_match(ids: list[int], conn: FeedConnection) -> None:
    """Every jump in the delivered ids is a reported gap with the exact missing range, and nothing else is."""
    jumps = [(a + 1, b - 1) for a, b in itertools.pairwise(ids) if b != a + 1]
    reported = [(g.first_missing, g.last_missing) for g in conn.stats.gaps]
    assert reported == jumps
    assert conn.stats.gap_count == len(jumps)
    assert conn.stats.missing_trades == sum(b - a + 1 for a, b in jumps)


@pytest.mark.asyncio
async def test_twenty_drops_reconnect_and_resubscribe_with_no_duplicates_and_every_gap_reported():
    market = SyntheticMarket(trades_per_s=2000, seed=7)
    async with ExchangeSimulator(market) as sim:
        out = Collector()
        # A raw /ws connection: nothing arrives until it subscribes, so data after each reconnect proves it did.
        conn = FeedConnection(f"{sim.ws_url}/ws", binance, out,
                              subscribe=[binance.subscribe_message(["btcusdt@trade"], 1)],
                              reconnect_delays=fast_backoff)
        async with running(conn):
            for drop in range(20):
                seen = len(out.ids)
                await wait_until(lambda seen=seen: len(out.ids) >= seen + 20, what=f"trades before drop {drop}")
                sim.drop_clients()
                await wait_until(lambda drop=drop: conn.stats.reconnects == drop + 1, what=f"reconnect {drop + 1}")
            seen = len(out.ids)
            await wait_until(lambda: len(out.ids) >= seen + 20, what="trades after the last reconnect")
            assert conn.stats.state is FeedState.LIVE
    ids = out.ids
    assert conn.stats.reconnects == 20
    assert len(ids) == len(set(ids)) and ids == sorted(ids)
    assert_gaps_match(ids, conn)
    assert sum(1 for _, s in conn.stats.transitions if s is FeedState.LIVE) == 21


@pytest.mark.asyncio
async def test_a_server_that_repeats_recent_trades_after_a_reconnect_delivers_nothing_twice():
    connections = 0

    async def handler(ws):
        nonlocal connections
        connections += 1
        start = (connections - 1) * 10 + 1 - 5 * (connections > 1)  # five old trades again, then new ones
        if connections == 3:
            start = 24  # and once, no repeat but a gap of three (21..23)
        for i in range(start, connections * 10 + 1):
            await ws.send(trade_frame(i))
        if connections < 20:
            await ws.close(1012, "restart")
        else:
            await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        out = Collector()
        conn = FeedConnection(f"ws://127.0.0.1:{port}/ws", binance, out, reconnect_delays=fast_backoff)
        async with running(conn):
            await wait_until(lambda: out.ids[-1:] == [200], what="the 20th connection's last trade")
    ids = out.ids
    assert len(ids) == len(set(ids)) and ids == sorted(ids)
    assert conn.stats.duplicates == 5 * 18
    assert [(g.first_missing, g.last_missing) for g in conn.stats.gaps] == [(21, 23)]
    assert_gaps_match(ids, conn)
    assert conn.stats.reconnects == 19


@pytest.mark.asyncio
async def test_garbage_and_an_oversized_frame_are_survived_and_the_feed_keeps_delivering():
    garbage = [
        b'{"stream":"btcusdt@trade","data":{"e":"trade"',  # truncated
        b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":5,"p":"1","q":"1","T":1,"m":"no"}}',
        b'{"e":"somethingNew","E":1}',  # unknown event
        b"\xff\xfe\x00garbage",  # not UTF-8, a binary frame
        b"42",
    ]
    connections = 0

    async def handler(ws):
        nonlocal connections
        connections += 1
        if connections == 1:
            await ws.send(trade_frame(1))
            for g in garbage:
                await ws.send(g)
            await ws.send(trade_frame(2))
            await ws.send(b'{"pad":"' + b"x" * 100_000 + b'"}')  # over the client's max_size: it closes (1009)
            await ws.send(trade_frame(3))  # lost with the connection: reported as a gap
        else:
            await ws.send(trade_frame(4))
            await ws.send(b"\xc3\x28")  # invalid UTF-8 again, on the new connection
            await ws.send(trade_frame(5))
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        out = Collector()
        conn = FeedConnection(f"ws://127.0.0.1:{port}/ws", binance, out, max_size=64 * 1024,
                              reconnect_delays=fast_backoff)
        async with running(conn):
            await wait_until(lambda: out.ids == [1, 2, 4, 5], what="trades around the garbage, on two connections")
    assert conn.stats.reconnects == 1
    assert "1009" in conn.stats.last_error
    assert conn.stats.rejected_total == len(garbage) + 1
    assert conn.stats.rejected["not_utf8"] == 2
    assert set(conn.stats.rejected) >= {"malformed_json", "bad_field", "unknown_event", "not_an_object"}
    assert conn.stats.received == conn.stats.parsed + conn.stats.rejected_total
    assert [(g.first_missing, g.last_missing) for g in conn.stats.gaps] == [(3, 3)]


@pytest.mark.asyncio
async def test_a_silent_server_makes_the_feed_stale_and_it_recovers_when_data_flows_again():
    async with ExchangeSimulator(SyntheticMarket(trades_per_s=500, seed=3)) as sim:
        out = Collector()
        url = binance.stream_url(sim.ws_url, ["btcusdt@trade"])
        conn = FeedConnection(url, binance, out, stale_after_s=0.3, reconnect_delays=fast_backoff)
        async with running(conn):
            await wait_until(lambda: len(out.ids) >= 10, what="live trades")
            sim.pause()
            await wait_until(lambda: conn.stats.stale_events >= 1 and conn.stats.reconnects >= 1,
                             what="the stale timer and a reconnect")
            assert conn.stats.status in ("stale", "live")  # stale, or already on the new (still silent) socket
            assert FeedState.STALE in [s for _, s in conn.stats.transitions]
            seen = len(out.ids)
            sim.resume()
            await wait_until(lambda: len(out.ids) >= seen + 10, what="trades after the pause")
            await wait_until(lambda: conn.stats.state is FeedState.LIVE, what="live again")
    states = [s for _, s in conn.stats.transitions]
    assert states[states.index(FeedState.STALE) + 1] is FeedState.LIVE
    assert out.ids == sorted(set(out.ids))


@pytest.mark.asyncio
async def test_a_sleeping_consumer_never_blocks_the_reader_and_its_queue_stays_bounded():
    bus = EventBus()
    sub = bus.subscribe("sleepy", maxlen=50)
    fast = bus.subscribe("fast", maxlen=100_000, kinds=(Trade,))
    fast_ids: list[int] = []

    async def sleepy():
        while True:
            await sub.next_batch()
            await asyncio.sleep(0.5)  # a consumer stuck in slow work between batches

    async def keeps_up():
        while True:
            fast_ids.extend(e.trade_id for e in await fast.next_batch())

    async with ExchangeSimulator(SyntheticMarket(trades_per_s=3000, seed=5)) as sim:
        streams = ["btcusdt@trade", "btcusdt@bookTicker", "btcusdt@depth@100ms"]
        conn = FeedConnection(binance.stream_url(sim.ws_url, streams), binance, bus.publish,
                              reconnect_delays=fast_backoff)
        tasks = [asyncio.create_task(sleepy()), asyncio.create_task(keeps_up())]
        try:
            async with running(conn):
                await wait_until(lambda: sub.dropped > 0 and sub.conflated > 0, what="drops at the sleeping consumer")
                frames = conn.stats.frames
                await wait_until(lambda: conn.stats.frames > frames + 500, what="the reader reading on")
                assert sub.high_water <= sub.maxlen
                assert len(sub._fifo) <= sub.maxlen and sub.depth <= sub.maxlen + 2  # + the latest quote per kind
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    assert conn.stats.reconnects == 0 and sim.stats.slow_clients_dropped == 0
    assert sub.received == sub.delivered + sub.dropped + sub.conflated + sub.depth
    assert fast.dropped == 0 and fast_ids == sorted(set(fast_ids))
    assert bus.dropped_total == sub.dropped
