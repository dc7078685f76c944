"""The built-in exchange speaking Coinbase Advanced Trade and Kraken v2 on loopback: a real websockets client
sends each adapter's own subscribe messages and parses what comes back with that adapter."""

from __future__ import annotations

import itertools

import orjson
import pytest
import websockets

from app.market.adapters import ParseError, coinbase, kraken
from app.market.sim.server import ExchangeSimulator
from app.market.sim.synthetic import SyntheticMarket
from app.models import BookUpdate, Candle, MarketEvent, Quote, Trade

N_TRADES = 30


async def _collect(ws: websockets.ClientConnection, parse, on_raw=None) -> list[MarketEvent]:  # type: ignore[no-untyped-def]
    events: list[MarketEvent] = []
    while sum(isinstance(e, Trade) for e in events) < N_TRADES or not any(isinstance(e, Quote) for e in events):
        raw = await ws.recv()
        if on_raw is not None:
            on_raw(raw)
        events.extend(parse(raw, 0))
    return events


def _check_sane(events: list[MarketEvent]) -> None:
    trades = [e for e in events if isinstance(e, Trade)]
    quotes = [e for e in events if isinstance(e, Quote)]
    assert len(trades) >= N_TRADES and quotes
    assert all(t.symbol == "BTCUSD" and t.price > 0 and t.qty > 0 for t in trades)
    assert all(a.exchange_ms <= b.exchange_ms for a, b in itertools.pairwise(trades))
    assert all(a.trade_id < b.trade_id for a, b in itertools.pairwise(trades))
    assert all(q.bid < q.ask and q.bid_qty > 0 and q.ask_qty > 0 for q in quotes)
    assert abs(trades[-1].price / 60_000 - 1) < 0.15  # the synthetic path stays within ~10 % of its start price


@pytest.mark.asyncio
@pytest.mark.timeout(30)
async def test_coinbase_loopback() -> None:
    market = SyntheticMarket("BTCUSD", 60_000.0, 400.0, seed=3)
    async with ExchangeSimulator(market, protocol="coinbase") as sim, websockets.connect(sim.ws_url) as ws:
        for msg in coinbase.subscribe_messages(["BTC-USD"]):
            await ws.send(msg)
        seqs: list[int] = []
        events = await _collect(ws, coinbase.parse, lambda raw: seqs.append(coinbase.sequence_num(raw)))
    _check_sane(events)
    assert seqs == list(range(len(seqs)))  # one counter per connection, no gaps
    books = [e for e in events if isinstance(e, BookUpdate)]
    assert books and books[0].is_snapshot and books[0].bids and books[0].asks
    assert books[0].bids[0][0] < books[0].asks[0][0]
    candles = [e for e in events if isinstance(e, Candle)]
    assert candles and all(c.timeframe == "5m" and c.open_ms % 300_000 == 0 for c in candles)


@pytest.mark.asyncio
@pytest.mark.timeout(30)
async def test_kraken_loopback_with_checksums() -> None:
    market = SyntheticMarket("BTCUSD", 60_000.0, 400.0, seed=4)
    async with ExchangeSimulator(market, protocol="kraken") as sim, websockets.connect(sim.ws_url + "/v2") as ws:
        for msg in kraken.subscribe_messages(["BTCUSD"], depth=10, interval=1):
            await ws.send(msg)
        book = kraken.KrakenBook("BTCUSD", depth=10)
        acks: list[dict] = []

        def on_raw(raw: str | bytes) -> None:
            msg = orjson.loads(raw)
            if msg.get("method") == "subscribe":
                acks.append(msg)
            book.apply_frame(raw)  # raises ChecksumMismatch if the server's book and ours disagree

        events = await _collect(ws, kraken.parse, on_raw)
        while book.checked < 5:
            on_raw(await ws.recv())
    _check_sane(events)
    assert [a["result"]["channel"] for a in acks] == ["trade", "ticker", "book", "ohlc"] and all(
        a["success"] for a in acks
    )
    assert [a["req_id"] for a in acks] == [1, 2, 3, 4]
    assert book.mismatches == 0 and not book.needs_resync
    bids, asks = book.levels()
    assert len(bids) == len(asks) == 10 and bids[0][0] < asks[0][0]
    assert any(isinstance(e, Candle) and e.timeframe == "1m" for e in events)


@pytest.mark.asyncio
@pytest.mark.timeout(30)
async def test_kraken_rejects_unknown_pair_and_answers_ping() -> None:
    market = SyntheticMarket("BTCUSD", 60_000.0, 50.0, seed=5)
    async with ExchangeSimulator(market, protocol="kraken") as sim, websockets.connect(sim.ws_url + "/v2") as ws:
        assert orjson.loads(await ws.recv())["channel"] == "status"
        await ws.send(kraken.subscribe_messages(["DOGE/USD"], ["trade"], req_id=9)[0])
        reply = orjson.loads(await ws.recv())
        assert reply["success"] is False and reply["req_id"] == 9
        await ws.send(b'{"method":"ping","req_id":10}')
        assert orjson.loads(await ws.recv())["method"] == "pong"


@pytest.mark.asyncio
@pytest.mark.timeout(30)
async def test_coinbase_rejects_unknown_channel() -> None:
    market = SyntheticMarket("BTCUSD", 60_000.0, 50.0, seed=6)
    async with ExchangeSimulator(market, protocol="coinbase") as sim, websockets.connect(sim.ws_url) as ws:
        await ws.send(b'{"type":"subscribe","product_ids":["BTC-USD"],"channel":"level3"}')
        reply = await ws.recv()
        assert orjson.loads(reply)["type"] == "error"
        with pytest.raises(ParseError) as info:
            coinbase.parse(reply, 0)
        assert info.value.reason == "request_error"


def test_unknown_protocol_is_refused() -> None:
    with pytest.raises(ValueError):
        ExchangeSimulator(SyntheticMarket("BTCUSD", seed=1), protocol="ftx")


@pytest.mark.asyncio
@pytest.mark.timeout(30)
async def test_binance_futures_loopback_book_syncs_by_pu_and_matches_book_ticker() -> None:
    import httpx

    from app.market.adapters import binance_futures
    from app.market.book import OrderBook

    market = SyntheticMarket("BTCUSDT", 60_000.0, 200.0, seed=5)
    url = binance_futures.stream_url("", binance_futures.streams_for("BTCUSDT"))
    async with ExchangeSimulator(market, protocol="binance-futures") as sim, \
            websockets.connect(sim.ws_url + url) as ws, httpx.AsyncClient() as http:
        book = OrderBook("BTCUSDT")
        first = binance_futures.parse(await ws.recv(), 1)  # streaming has begun: the snapshot comes after it
        for ev in first:
            if isinstance(ev, BookUpdate):
                book.apply(ev)
        resp = await http.get(f"{sim.rest_url}{binance_futures.DEPTH_PATH}", params={"symbol": "BTCUSDT"})
        book.apply(binance_futures.parse_depth_snapshot(resp.json(), "BTCUSDT", 2))
        diffs: list[BookUpdate] = []
        quote: Quote | None = None
        trades = 0
        while book.diffs_applied < 10 or trades < 5:
            for ev in binance_futures.parse(await ws.recv(), 3):
                if isinstance(ev, BookUpdate):
                    diffs.append(ev)
                    if book.apply(ev):  # every change of the top was sent as a bookTicker before the diff
                        assert quote is not None and quote.update_id <= ev.last_id
                        assert (book.best_bid(), book.best_ask()) == ((quote.bid, quote.bid_qty),
                                                                      (quote.ask, quote.ask_qty))
                elif isinstance(ev, Trade):
                    trades += 1
                elif isinstance(ev, Quote):
                    quote = ev
    assert book.is_valid and book.gaps == 0
    assert all(b.prev_id == a.last_id for a, b in itertools.pairwise(diffs))
    # Futures ids are not contiguous: spot's rule (U == previous u + 1) would call every diff a gap.
    assert all(b.first_id != a.last_id + 1 for a, b in itertools.pairwise(diffs))
