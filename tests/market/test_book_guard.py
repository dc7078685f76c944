"""A Kraken book whose checksum stops matching is resubscribed, and is trusted again after the fresh snapshot."""

from __future__ import annotations

import asyncio
import contextlib

import orjson
import pytest
from websockets.asyncio.server import serve

from app.market.adapters import kraken
from app.market.book_guard import KrakenBookGuard
from app.market.connection import FeedConnection
from tests.conftest import wait_until

ASKS = [("60010.1", "0.5"), ("60010.2", "1.25")]
BIDS = [("60009.9", "0.75"), ("60009.8", "2")]


def book_frame(kind: str, asks, bids, checksum: int) -> bytes:
    # Prices as JSON numbers written from their exact text, as Kraken sends them.
    levels = lambda rows: ",".join(f'{{"price":{p},"qty":{q}}}' for p, q in rows)  # noqa: E731
    return (f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"BTC/USD","bids":[{levels(bids)}],'
            f'"asks":[{levels(asks)}],"checksum":{checksum}}}]}}').encode()


@pytest.mark.asyncio
async def test_checksum_mismatch_resubscribes_and_the_new_snapshot_restores_the_book():
    requests: list[dict] = []
    resubscribed = asyncio.Event()

    async def handler(ws):
        good = kraken.book_checksum(ASKS, BIDS)
        await ws.send(book_frame("snapshot", ASKS, BIDS, good))
        # An update whose checksum does not match what the book now holds: something was lost.
        await ws.send(book_frame("update", [("60010.1", "0.4")], [], good))
        async for msg in ws:
            requests.append(orjson.loads(msg))
            if len(requests) == 2:
                resubscribed.set()
                await ws.send(book_frame("snapshot", ASKS, BIDS, good))

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        holder: dict[str, FeedConnection] = {}
        guard = KrakenBookGuard(["BTCUSD"], lambda msgs: holder["conn"].send_soon(msgs))
        conn = FeedConnection(f"ws://127.0.0.1:{port}/v2", kraken, lambda events: None, taps=[guard.on_raw])
        holder["conn"] = conn
        task = asyncio.create_task(conn.run())
        try:
            await asyncio.wait_for(resubscribed.wait(), 5)
            await wait_until(lambda: not guard.resyncing, what="the fresh snapshot")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert guard.resyncs == 1
    assert [r["method"] for r in requests] == ["unsubscribe", "subscribe"]
    assert all(r["params"]["channel"] == "book" and r["params"]["symbol"] == ["BTC/USD"] for r in requests)
    book = guard.books["BTCUSD"]
    assert book.checksum() == kraken.book_checksum(ASKS, BIDS) and not book.needs_resync
