"""What the built-in exchange replays, and how it says no.

- A subscription to a symbol the recording does not hold gets an error answer in the protocol spoken, and the
  connection goes on serving what was asked before (it used to close with 1011 and loop through reconnects).
- A file it cannot replay is refused at construction with one sentence naming the file and what is wrong.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
import websockets

from app.market.adapters import binance, coinbase, kraken
from app.market.recording import RecordingError
from app.market.sim.replay import ReplaySource
from app.market.sim.server import ExchangeSimulator
from app.market.sim.synthetic import SyntheticMarket
from app.models import Trade
from tests.conftest import wait_until

START_MS = 1_700_000_012_345
TIMEOUT = 20


def write_binance_tape(path: Path, seconds: float = 30.0) -> Path:
    """A recording as ``--record`` writes it of Binance's combined streams: a market's frames, a depth snapshot."""
    market = SyntheticMarket("BTCUSDT", 60_000.0, 50.0, seed=21, start_ms=START_MS)
    wanted = {"btcusdt@trade", "btcusdt@bookTicker", "btcusdt@depth@100ms"}
    lines = []
    for i, now in enumerate(range(START_MS + 100, START_MS + int(seconds * 1000), 100)):
        for stream, payload in market.advance(now, wanted):
            lines.append(b'%d {"stream":"%s","data":%s}' % (now * 1_000_000, stream.encode(), payload))
        if i == 3:
            snap = asyncio.run(market.depth_snapshot("BTCUSDT", 100))
            lines.append(b"%d %s" % (now * 1_000_000, orjson.dumps(snap)))
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.fixture
def tape(tmp_path: Path) -> Path:
    return write_binance_tape(tmp_path / "btc.txt")


async def _recv_until(ws: websockets.ClientConnection, done) -> list[bytes | str]:  # type: ignore[no-untyped-def]
    seen: list[bytes | str] = []
    async with asyncio.timeout(TIMEOUT):
        while True:
            seen.append(await ws.recv())
            if done(seen[-1]):
                return seen


def test_replay_knows_the_symbols_its_recording_holds(tape):
    source = ReplaySource(tape, speed=0)
    assert source.symbols_held == {"BTCUSDT"}
    assert source.serves("btcusdt@trade") and source.serves("btcusdt@kline_1m")
    assert not source.serves("ethusdt@trade")


@pytest.mark.asyncio
async def test_binance_subscribe_to_a_symbol_not_in_the_replay_is_an_error_reply_and_trades_go_on(tape):
    async with ExchangeSimulator(ReplaySource(tape, speed=20)) as sim:
        async with websockets.connect(f"{sim.ws_url}/ws") as ws:
            await ws.send(orjson.dumps({"method": "SUBSCRIBE", "params": ["ethusdt@trade"], "id": 7}).decode())
            reply = orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
            assert reply["id"] == 7 and reply["error"]["code"] == 2 and "ethusdt@trade" in reply["error"]["msg"]
            await ws.send(orjson.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 8}).decode())
            frames = await _recv_until(ws, lambda raw: any(isinstance(e, Trade) for e in binance.parse(raw, 1)))
            assert orjson.loads(frames[0]) == {"result": None, "id": 8}
        # The URL form cannot be answered on a socket: the handshake is refused with Binance's 400.
        with pytest.raises(websockets.InvalidStatus) as err:
            async with websockets.connect(binance.stream_url(sim.ws_url, ["ethusdt@trade"])):
                pass
        assert err.value.response.status_code == 400


@pytest.mark.asyncio
async def test_coinbase_subscribe_to_a_product_not_in_the_replay_is_an_error_and_the_rest_is_served(tape):
    async with ExchangeSimulator(ReplaySource(tape, speed=20), protocol="coinbase") as sim, \
            websockets.connect(sim.ws_url) as ws:
        for msg in coinbase.subscribe_messages(["ETH-USDT"]):
            await ws.send(msg)
        error = orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert error["type"] == "error" and "ETH-USDT" in error["message"]
        for msg in coinbase.subscribe_messages(["BTC-USDT"]):
            await ws.send(msg)
        await _recv_until(ws, lambda raw: any(isinstance(e, Trade) for e in _safe(coinbase.parse, raw)))
        assert ws.close_code is None


@pytest.mark.asyncio
async def test_kraken_subscribe_to_a_pair_not_in_the_replay_is_success_false_and_the_rest_is_served(tape):
    async with ExchangeSimulator(ReplaySource(tape, speed=20), protocol="kraken") as sim, \
            websockets.connect(f"{sim.ws_url}/v2") as ws:
        await ws.send(kraken.subscribe_messages(["ETH/USDT"], ("trade",))[0])

        def refused(raw: bytes | str) -> bool:
            msg = orjson.loads(raw)
            return msg.get("method") == "subscribe" and msg.get("success") is False

        [*_, answer] = await _recv_until(ws, refused)
        assert "not supported" in orjson.loads(answer)["error"]
        for msg in kraken.subscribe_messages(["BTC/USDT"]):
            await ws.send(msg)
        await _recv_until(ws, lambda raw: any(isinstance(e, Trade) for e in _safe(kraken.parse, raw)))
        assert ws.close_code is None


def _safe(parse, raw):  # type: ignore[no-untyped-def]
    try:
        return parse(raw, 1)
    except ValueError:
        return []


@pytest.mark.parametrize("content,problem", [
    (b"", "the file is empty"),
    (b"\n\n  \n", "the file is empty"),
    (b"date,symbol,open,high,low,close\n2019-10-17 09-AM,BTCUSD,1,2,0.5,1.5\n", "it is not a recording"),
    (b'{"type":"match","product_id":"BTC-USD","price":"1"}\n{"type":"match"}\n',
     "none of its 2 frames comes from a Binance, Coinbase Advanced Trade or Kraken v2 feed"),
    (b"\x1f\x8b\x08\x00garbage", "cannot read recording"),
])
def test_a_file_the_replay_cannot_use_is_refused_with_one_sentence(tmp_path, content, problem):
    path = tmp_path / "tape.txt"
    path.write_bytes(content)
    with pytest.raises(RecordingError) as err:
        ReplaySource(path)
    message = str(err.value)
    assert str(path) in message and problem in message and "\n" not in message


def _coinbase_trades_frame(seq: int, ids: list[int], start_ms: int) -> bytes:
    """A market_trades frame as Coinbase sends it: several trades, newest first."""
    trades = [{"product_id": "BTC-USD", "trade_id": str(i), "price": f"{60_000 + i}.5", "size": "0.01",
               "time": coinbase_time(start_ms + i), "side": "BUY" if i % 2 else "SELL"}
              for i in sorted(ids, reverse=True)]
    return orjson.dumps({"channel": "market_trades", "timestamp": coinbase_time(start_ms + max(ids)),
                         "sequence_num": seq, "events": [{"type": "update", "trades": trades}]})


def coinbase_time(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


@pytest.mark.asyncio
async def test_a_coinbase_recording_of_several_trades_per_frame_replays_every_trade_once(tmp_path):
    from app.market.connection import FeedConnection

    batches = [[103, 102, 101], [106, 105, 104], [107], [112, 111, 110, 109, 108]]
    lines = [b"%d %s" % ((START_MS + 10 * n) * 1_000_000, _coinbase_trades_frame(n, ids, START_MS))
             for n, ids in enumerate(batches)]
    tape = tmp_path / "coinbase.rec"
    tape.write_bytes(b"\n".join(lines) + b"\n")
    recorded = {i for ids in batches for i in ids}
    delivered: list[int] = []

    def on_events(events):  # type: ignore[no-untyped-def]
        delivered.extend(e.trade_id for e in events if isinstance(e, Trade))

    async with ExchangeSimulator(ReplaySource(tape, speed=0), protocol="coinbase") as sim:
        conn = FeedConnection(sim.ws_url, coinbase, on_events,
                              subscribe=coinbase.subscribe_messages(["BTCUSD"], ("market_trades",)))
        task = asyncio.create_task(conn.run())
        try:
            await wait_until(lambda: len(delivered) + conn.stats.duplicates >= len(recorded), timeout=TIMEOUT,
                             what="every replayed trade received")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert delivered == sorted(recorded)  # every recorded trade, once, oldest first
    assert conn.stats.duplicates == 0 and conn.stats.gap_count == 0
