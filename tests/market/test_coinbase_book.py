"""Coinbase's order book: synced from the level2 channel's own snapshot, checked by the frame numbers of the whole
connection (``sequence_num`` counts every channel's frames), resubscribed on a real gap."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime

import orjson
import pytest
from websockets.asyncio.server import serve

from app.config import Settings
from app.market.adapters import coinbase
from app.market.book import OrderBook
from app.market.book_guard import CoinbaseSequenceGuard
from app.market.connection import FeedConnection
from app.models import BookUpdate, Side
from app.session import Session
from tests.conftest import wait_until


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_the_built_in_exchange_speaking_coinbase_keeps_the_book_synced(tmp_path):
    session = Session(Settings(symbol="BTCUSDT", symbols=["BTCUSDT"], sim_protocol="coinbase", sim_process=False,
                               sim_trades_per_s=80.0, history_bars=5, journal_path=tmp_path / "j.sqlite3"))
    await session.start()
    book = session.desk.books["BTCUSDT"]
    statuses: set[str] = set()

    def synced_through_many_updates() -> bool:
        if book.snapshots:
            statuses.add(book.status)  # every status seen once the first snapshot is in
        return book.diffs_applied >= 30 and session.market["BTCUSDT"].trades >= 30

    try:
        await wait_until(synced_through_many_updates, timeout=40, what="30 book updates and 30 trades")
        assert statuses == {"SYNCED"} and book.is_valid  # trades and tickers between updates are no gap
        assert book.gaps == 0 and session.coinbase_sequence.gaps == 0
        assert book.snapshots == 1  # the level2 snapshot; no REST snapshot in another id space
    finally:
        await session.stop()


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def _l2(seq: int, kind: str, bid: str) -> bytes:
    now = _iso(time.time_ns() // 1_000_000)
    return orjson.dumps({"channel": "l2_data", "timestamp": now, "sequence_num": seq, "events": [
        {"type": kind, "product_id": "BTC-USD", "updates": [
            {"side": "bid", "event_time": now, "price_level": bid, "new_quantity": "1.0"}]}]})


def _heartbeat(seq: int) -> bytes:
    return orjson.dumps({"channel": "heartbeats", "timestamp": _iso(time.time_ns() // 1_000_000),
                         "sequence_num": seq, "events": [{"current_time": "x", "heartbeat_counter": seq}]})


@pytest.mark.asyncio
async def test_a_lost_frame_resubscribes_level2_and_the_book_resyncs_from_its_snapshot():
    received: list[dict] = []
    resubscribed = asyncio.Event()

    async def handler(ws):  # type: ignore[no-untyped-def]
        for frame in [_l2(0, "snapshot", "100"), _l2(1, "update", "101"), _heartbeat(2), _l2(3, "update", "102"),
                      _l2(5, "update", "103")]:  # frame 4 lost
            await ws.send(frame.decode())
        async for msg in ws:
            received.append(orjson.loads(msg))
            if received[-1]["type"] == "subscribe":
                await ws.send(_l2(6, "snapshot", "200").decode())
                await ws.send(_l2(7, "update", "201").decode())
                resubscribed.set()

    book = OrderBook("BTCUSD")

    def on_events(events):  # type: ignore[no-untyped-def]
        for ev in events:
            if isinstance(ev, BookUpdate):
                book.apply(ev)

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        conn: FeedConnection | None = None
        guard = CoinbaseSequenceGuard(["BTCUSD"], {"BTCUSD": book}, lambda msgs: conn.send_soon(msgs))
        conn = FeedConnection(f"ws://127.0.0.1:{port}", coinbase, on_events, taps=[guard.on_raw],
                              on_boundary=[guard.on_boundary])
        task = asyncio.create_task(conn.run())
        try:
            await wait_until(lambda: book.diffs_applied == 3, what="the update after the resync")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert [(m["type"], m["channel"]) for m in received] == [("unsubscribe", "level2"), ("subscribe", "level2")]
    assert guard.gaps == 1 and book.gaps == 1 and book.snapshots == 2
    assert book.is_valid and book.best_bid() == (201.0, 1.0)  # the fresh snapshot and what followed it
    assert book.levels(Side.BUY) == [(201.0, 1.0), (200.0, 1.0)]  # nothing of the book before the gap
