"""Trade sequencing through a real loopback server: Coinbase batches, reconnect snapshots, per-symbol ids."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime

import orjson
import pytest
from websockets.asyncio.server import serve

from app.market.adapters import coinbase
from app.market.connection import FeedConnection
from app.models import Trade
from tests.conftest import wait_until

NOW_MS = time.time_ns() // 1_000_000


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def market_trades(trade_ids: list[int], kind: str = "update", product: str = "BTC-USD", seq: int = 9,
                  times: dict[int, int] | None = None) -> bytes:
    """A ``market_trades`` frame shaped like the real one: its trades listed NEWEST FIRST, one event. ``times``:
    exchange ms of some trades (the others a time derived from the id)."""
    times = times or {}
    trades = [{"product_id": product, "trade_id": str(t), "price": f"{65000 + t % 50}.67", "size": "0.01034361",
               "time": iso(times.get(t, NOW_MS - 100_000 + t % 100_000)), "side": "SELL" if t % 3 else "BUY"}
              for t in sorted(trade_ids, reverse=True)]
    return orjson.dumps({"channel": "market_trades", "timestamp": iso(NOW_MS), "sequence_num": seq,
                         "events": [{"type": kind, "trades": trades}]})


def fast_backoff():
    while True:
        yield 0.01


@contextlib.asynccontextmanager
async def feed(sessions: list[list[bytes]]):
    """A server that plays ``sessions[i]`` on its i-th connection, closing all but the last one afterwards."""
    served = 0

    async def handler(ws):
        nonlocal served
        frames = sessions[min(served, len(sessions) - 1)]
        served += 1
        for f in frames:
            await ws.send(f.decode())
        if served < len(sessions):
            await ws.close()
        else:
            await ws.wait_closed()

    delivered: list = []
    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        conn = FeedConnection(f"ws://127.0.0.1:{port}", coinbase, delivered.extend, reconnect_delays=fast_backoff)
        task = asyncio.create_task(conn.run())
        try:
            yield conn, delivered
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def ids(delivered: list, product: str = "BTCUSD") -> list[int]:
    return [e.trade_id for e in delivered if isinstance(e, Trade) and e.symbol == product]


@pytest.mark.asyncio
async def test_coinbase_batches_listed_newest_first_lose_nothing():
    # 79 contiguous trades as the exchange batches them (1 to 6 per frame, newest first), like the real capture
    # on which 22 were dropped as "duplicates" and 12 false gaps reported.
    first = 1_068_572_000
    frames, t = [], first
    for n in [1, 3, 6, 2, 5, 1, 4, 6, 2, 3, 5, 1, 6, 4, 2, 3, 5, 6, 4, 1, 5, 4]:
        frames.append(market_trades(list(range(t, t + n))))
        t += n
    assert t - first == 79
    async with feed([frames]) as (conn, delivered):
        await wait_until(lambda: conn.stats.frames == len(frames), what="every frame")
    assert ids(delivered) == list(range(first, first + 79))  # all of them, oldest first
    assert conn.stats.duplicates == 0
    assert conn.stats.gap_count == 0
    assert conn.stats.rejected_total == 0


@pytest.mark.asyncio
async def test_a_reconnect_snapshot_delivers_only_what_was_missed():
    # First connection: a snapshot of 50 recent trades, then updates up to 1149. It drops; the exchange traded
    # 1150..1154 meanwhile; the new connection's snapshot (the 50 latest, newest first) repeats 1105..1149.
    first = [market_trades(list(range(1050, 1100)), kind="snapshot"), market_trades([1100, 1101, 1102]),
             market_trades(list(range(1103, 1150)))]
    second = [market_trades(list(range(1105, 1155)), kind="snapshot"), market_trades([1155, 1156])]
    async with feed([first, second]) as (conn, delivered):
        await wait_until(lambda: 1156 in ids(delivered), what="the second connection's updates")
    assert ids(delivered) == list(range(1050, 1157))  # each trade once: the repeats dropped, nothing real lost
    assert conn.stats.reconnects >= 1
    assert conn.stats.duplicates == 45
    assert conn.stats.gap_count == 0


@pytest.mark.asyncio
async def test_ids_are_sequenced_per_product_in_a_shared_frame():
    both = orjson.loads(market_trades([502, 501, 500], product="ETH-USD"))
    btc = orjson.loads(market_trades([9001, 9000]))
    both["events"][0]["trades"] = btc["events"][0]["trades"] + both["events"][0]["trades"]
    frames = [orjson.dumps(both), market_trades([503], product="ETH-USD"), market_trades([9002])]
    async with feed([frames]) as (conn, delivered):
        await wait_until(lambda: conn.stats.frames == len(frames), what="every frame")
    assert ids(delivered, "ETHUSD") == [500, 501, 502, 503]
    assert ids(delivered, "BTCUSD") == [9000, 9001, 9002]
    assert conn.stats.duplicates == 0
    assert conn.stats.gap_count == 0


@pytest.mark.asyncio
async def test_one_wild_trade_id_does_not_silence_the_symbol():
    # A (hostile or corrupt) id far ahead used to become "the last id": every real trade after it was a duplicate.
    frames = [market_trades([100, 101]), market_trades([10**15]), market_trades([102, 103]), market_trades([104])]
    async with feed([frames]) as (conn, delivered):
        await wait_until(lambda: conn.stats.frames == len(frames), what="every frame")
    assert ids(delivered) == [100, 101, 102, 103, 104]
    assert conn.stats.rejected["trade_id_jump"] == 1
    assert conn.stats.duplicates == 0


@pytest.mark.asyncio
async def test_ids_that_really_moved_are_followed():
    # Two trades in a row far from the last id agree with each other: the ids moved (not one wild value).
    frames = [market_trades([100, 101]), market_trades([5_000_000]), market_trades([5_000_001, 5_000_002])]
    async with feed([frames]) as (conn, delivered):
        await wait_until(lambda: conn.stats.frames == len(frames), what="every frame")
    assert ids(delivered) == [100, 101, 5_000_001, 5_000_002]
    assert conn.stats.rejected["trade_id_jump"] == 1
    assert conn.stats.id_resets == 1


@pytest.mark.asyncio
async def test_one_trade_with_an_implausible_time_costs_that_trade_not_its_frame():
    month_ago = NOW_MS - 30 * 86_400_000
    frames = [market_trades([100, 101]), market_trades([102, 103, 104, 105], times={104: month_ago}),
              market_trades([106])]
    async with feed([frames]) as (conn, delivered):
        await wait_until(lambda: conn.stats.frames == len(frames), what="every frame")
    assert ids(delivered) == [100, 101, 102, 103, 105, 106]
    assert conn.stats.rejected == {"time_off_stream": 1}  # counted per event
    assert conn.stats.missing_trades == 1  # and the id it leaves out is a gap, as for a trade never sent


@pytest.mark.asyncio
async def test_ids_restarted_a_little_lower_on_a_new_connection_are_a_reset_not_duplicates():
    # A restarted exchange numbers its trades from 3 again, only a little below the last id delivered (105): its
    # trades are newer than any delivered, so they are new trades, not repeats.
    later = {t: NOW_MS + t for t in (3, 4, 5, 6)}
    first = [market_trades([100, 101, 102]), market_trades([103, 104, 105])]
    second = [market_trades([3, 4], times=later), market_trades([5, 6], times=later)]
    async with feed([first, second]) as (conn, delivered):
        await wait_until(lambda: 6 in ids(delivered), what="the restarted exchange's trades")
    assert ids(delivered) == [100, 101, 102, 103, 104, 105, 3, 4, 5, 6]
    assert conn.stats.id_resets == 1 and conn.stats.duplicates == 0
