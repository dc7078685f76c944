"""Market events: cheap to build, still values (equal, hashable, replaceable), and never changed once built."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from app.market.adapters import ParseError, binance
from app.market.book import OrderBook
from app.market.bus import EventBus
from app.market.connection import FeedConnection
from app.market.recording import iter_frames
from app.market.state import MarketData
from app.models import BookUpdate, Candle, Quote, Side, Trade, guard_market_events
from tests.conftest import require_data

CAPTURE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "binance-spot-btcusdt-capture"

EVENTS = [
    Trade("BTCUSDT", 61000.5, 0.25, Side.BUY, 7, 1_723_161_255_342, 11),
    Quote("BTCUSDT", 61000.0, 1.5, 61000.5, 2.0, 9, 0, 12),
    BookUpdate("BTCUSDT", ((61000.0, 1.0),), ((61001.0, 0.0),), 10, 12, False, 1_723_161_255_342, 13),
    Candle("BTCUSDT", "1m", 1_723_161_240_000, 1.0, 2.0, 0.5, 1.5, 3.0, 4, False, 1_723_161_255_342, 14),
]


@pytest.mark.parametrize("ev", EVENTS, ids=lambda ev: type(ev).__name__)
def test_an_event_cannot_be_changed_once_built(ev):
    field = dataclasses.fields(ev)[1].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(ev, field, getattr(ev, field))
    with pytest.raises(dataclasses.FrozenInstanceError):
        delattr(ev, "symbol")


@pytest.mark.parametrize("ev", EVENTS, ids=lambda ev: type(ev).__name__)
def test_events_are_values_equal_and_hashable_by_their_fields(ev):
    twin = dataclasses.replace(ev)
    assert twin == ev and twin is not ev and hash(twin) == hash(ev)
    other = dataclasses.replace(ev, recv_ns=ev.recv_ns + 1)
    assert other != ev and len({ev, twin, other}) == 2
    assert dataclasses.replace(ev, symbol="ETHUSDT").symbol == "ETHUSDT" and ev.symbol == "BTCUSDT"


def test_keyword_and_positional_construction_agree():
    assert Quote(symbol="X", bid=1.0, bid_qty=2.0, ask=3.0, ask_qty=4.0, update_id=5, exchange_ms=6, recv_ns=7) == \
        Quote("X", 1.0, 2.0, 3.0, 4.0, 5, 6, 7)
    assert BookUpdate("X", (), (), 1, 2, True, 3, 4).prev_id is None


def test_the_guard_is_what_forbids_it_and_it_can_be_lifted():
    """Outside tests the fields are plain slots (the guard costs more than a frozen class to build)."""
    guard_market_events(False)
    try:
        q = Quote("X", 1.0, 2.0, 3.0, 4.0, 5, 6, 7)
        q.bid = 1.5
        assert q.bid == 1.5
    finally:
        guard_market_events(True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Quote("X", 1.0, 2.0, 3.0, 4.0, 5, 6, 7).bid = 1.5


def test_the_whole_market_pipeline_runs_on_write_once_events():
    """The real capture through the connection, the bus, the market state (candles, tape) and the book: nothing
    along the way writes to an event (the guard would raise)."""
    paths = [require_data(CAPTURE / "btcusdt_20240808.gz")]
    bus = EventBus()
    sub = bus.subscribe("market", maxlen=200_000)
    conn = FeedConnection("ws://unused", binance, bus.publish)
    market, book = MarketData(["BTCUSDT"]), OrderBook("BTCUSDT")
    for i, (_, raw) in enumerate(iter_frames(paths[0])):
        conn._on_frame(raw.decode(), i + 1)
        if i % 64 == 63:
            batch = sub.drain()
            market.apply(batch)
            for ev in batch:
                if isinstance(ev, BookUpdate):
                    book.apply(ev)
    assert conn.stats.rejected_total == 0 and conn.stats.gap_count == 0
    assert market["BTCUSDT"].trades > 5000 and book.is_valid and book.diffs_applied > 1000


def test_a_symbol_is_checked_on_every_frame_even_after_good_ones():
    """The adapter remembers symbols it has checked; a bad one is still refused, and the memory stays bounded."""
    good = b'{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"1","B":"1","a":"2","A":"1"}}'
    assert binance.parse(good, 0)[0].symbol == "BTCUSDT"
    for bad, reason in ((b'"B TC"', "bad_value"), (b'""', "bad_value"), (b"42", "bad_field"), (b'["X"]', "bad_field")):
        with pytest.raises(ParseError) as exc:
            binance.parse(good.replace(b'"BTCUSDT"', bad), 0)
        assert exc.value.reason == reason, bad
    for i in range(binance._KNOWN_SYMBOLS_MAX + 100):
        binance.parse(good.replace(b'"BTCUSDT"', f'"S{i}"'.encode()), 0)
    assert len(binance._KNOWN_SYMBOLS) <= binance._KNOWN_SYMBOLS_MAX
