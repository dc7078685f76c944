"""A depth snapshot asked for before a reconnect and answered after it belongs to the old connection: refused.

A real HTTP server on 127.0.0.1 holds its answer until the test has reconnected the feed (invalidated the books)."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from app.config import Settings
from app.session import Session


async def _held_depth_server(release: asyncio.Event, asked: asyncio.Event, last_update_id: int):  # type: ignore[no-untyped-def]
    """Answers /api/v3/depth once ``release`` is set, with a book at ``last_update_id``."""
    body = orjson.dumps({"lastUpdateId": last_update_id, "bids": [["100.0", "1.0"]], "asks": [["101.0", "1.0"]]})

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        asked.set()
        await release.wait()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


@pytest.mark.asyncio
async def test_a_snapshot_asked_before_a_reconnect_is_not_applied_after_it(tmp_path):
    session = Session(Settings(symbol="BTCUSDT", symbols=["BTCUSDT"], journal_path=tmp_path / "j.sqlite3"))
    release, asked = asyncio.Event(), asyncio.Event()
    server = await _held_depth_server(release, asked, last_update_id=90_000)
    base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    book = session.desk.books["BTCUSDT"]
    try:
        loading = asyncio.create_task(session._load_depth(base, "BTCUSDT"))
        await asyncio.wait_for(asked.wait(), 10)
        session._invalidate_books(time.perf_counter_ns())  # the feed reconnected while the request was out
        release.set()
        await asyncio.wait_for(loading, 10)
        assert not book.has_snapshot and book.last_update_id is None  # the old exchange's book is not taken
        assert book.before_reconnect == 1
        # Asked after the reconnect: taken.
        await session._load_depth(base, "BTCUSDT")
        assert book.is_valid and book.last_update_id == 90_000
    finally:
        server.close()
        await session.stop()
