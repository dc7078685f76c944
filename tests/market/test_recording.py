"""Recorder: what --record writes replays byte for byte, a write error stops only the recording, and a session
recorded from the built-in exchange replays through ReplaySource with the same trades."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
from pathlib import Path

import pytest

from app.market.adapters import binance
from app.market.connection import FeedConnection
from app.market.recording import Recorder, iter_frames
from app.market.sim.replay import ReplaySource
from app.market.sim.server import ExchangeSimulator
from app.models import Trade
from tests.conftest import wait_until


def test_every_kind_of_frame_reads_back_exactly(tmp_path: Path):
    frames = [
        (1, '{"stream":"btcusdt@trade","data":{"e":"trade"}}'),  # text
        (2, b'{"binary":"json"}'),  # a binary frame holding JSON
        (3, b"\xff\xfe\x00not utf-8"),
        (4, '{"a":\n"line break"}\r\n'),
        (5, b"base64:looks like the marker"),
        (6, ""),
    ]
    path = tmp_path / "rec.txt"
    rec = Recorder(path)
    for ns, raw in frames:
        rec.write(ns, raw)
    rec.close()
    rec.close()  # idempotent
    back = list(iter_frames(path))
    assert back == [(ns, raw.encode() if isinstance(raw, str) else raw) for ns, raw in frames]
    assert rec.frames == len(frames) and rec.error == ""
    assert path.read_bytes().startswith(b'1 {"stream":"btcusdt@trade"')  # plain JSON stays readable


def test_a_write_error_is_reported_once_and_stops_the_recording_not_the_feed(caplog):
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full to make writes fail")
    rec = Recorder("/dev/full", flush_every_s=0)
    with caplog.at_level(logging.ERROR, logger="app.market.recording"):
        for i in range(100):
            rec.write(i + 10**12, b'{"x":1}')
    assert not rec.recording and "No space" in rec.error
    assert len([r for r in caplog.records if "recording" in r.getMessage()]) == 1
    rec.close()


@pytest.mark.asyncio
async def test_a_feed_keeps_delivering_when_its_recording_fails():
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full to make writes fail")
    from websockets.asyncio.server import serve

    from tests.market.test_connection import trade_frame

    async def handler(ws):
        for i in range(1, 201):
            await ws.send(trade_frame(i))
        await ws.wait_closed()

    rec = Recorder("/dev/full", flush_every_s=0)
    got: list[int] = []
    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        conn = FeedConnection(f"ws://127.0.0.1:{port}/ws", binance,
                              lambda evs: got.extend(e.trade_id for e in evs), recorder=rec)
        async with running(conn):
            await wait_until(lambda: len(got) == 200, what="every trade despite the failed recording")
    assert got == list(range(1, 201)) and rec.error


@contextlib.asynccontextmanager
async def running(conn: FeedConnection):
    task = asyncio.create_task(conn.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _session_trades(source_file: Path, record_to: Path | None, expected: int) -> list[tuple]:
    """Replays a file through the built-in exchange into a FeedConnection (optionally recording it)."""
    trades: list[Trade] = []
    recorder = Recorder(record_to) if record_to is not None else None
    async with ExchangeSimulator(ReplaySource(source_file, speed=0)) as sim:
        streams = ["btcusdt@trade", "btcusdt@bookTicker", "btcusdt@depth@100ms"]
        conn = FeedConnection(binance.stream_url(sim.ws_url, streams), binance,
                              lambda evs: trades.extend(e for e in evs if isinstance(e, Trade)), recorder=recorder)
        async with running(conn):
            await wait_until(lambda: len(trades) >= expected, timeout=30, what=f"{expected} trades")
    if recorder is not None:
        recorder.close()
    return [(t.trade_id, t.price, t.qty, t.side, t.exchange_ms) for t in trades]


@pytest.mark.asyncio
async def test_a_recorded_session_replays_with_the_same_trades(binance_capture: Path, tmp_path: Path):
    head = tmp_path / "head.txt"
    with gzip.open(binance_capture, "rb") as fh:
        lines = [next(fh) for _ in range(3000)]
    head.write_bytes(b"".join(lines))
    expected = sum(b"@trade" in line for line in lines)
    assert expected > 100

    recorded = tmp_path / "recorded.txt"
    first = await _session_trades(head, recorded, expected)
    assert len(first) == expected
    frames = list(iter_frames(recorded))
    assert all(ns is not None for ns, _ in frames) and len(frames) >= expected

    again = await _session_trades(recorded, None, expected)
    assert again == first
