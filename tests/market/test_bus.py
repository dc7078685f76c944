"""The bus never blocks the publisher: ordered kinds drop the oldest when full, quotes conflate, all counted."""

from __future__ import annotations

import asyncio

import pytest

from app.market.bus import EventBus
from app.models import Quote, Side, Trade


def trade(i: int, symbol: str = "BTCUSDT") -> Trade:
    return Trade(symbol, 100.0 + i, 1.0, Side.BUY, i, 1_000 + i, i)


def quote(i: int, symbol: str = "BTCUSDT") -> Quote:
    return Quote(symbol, 100.0 + i, 1.0, 100.5 + i, 1.0, i, 0, i)


def test_full_trade_queue_drops_oldest_and_counts_it():
    bus = EventBus()
    slow = bus.subscribe("slow", maxlen=10)
    fast = bus.subscribe("fast", maxlen=1000)
    bus.publish([trade(i) for i in range(25)])
    got = slow.drain()
    assert [t.trade_id for t in got] == list(range(15, 25))  # the newest 10, still in order
    assert slow.dropped == 15
    assert [t.trade_id for t in fast.drain()] == list(range(25))
    assert fast.dropped == 0


def test_quotes_conflate_to_latest_per_symbol_and_trades_are_never_conflated():
    bus = EventBus()
    sub = bus.subscribe("ui")
    bus.publish([quote(1), trade(1), quote(2), quote(3, "ETHUSDT"), trade(2), quote(4)])
    got = sub.drain()
    trades = [e for e in got if isinstance(e, Trade)]
    quotes = {e.symbol: e.update_id for e in got if isinstance(e, Quote)}
    assert [t.trade_id for t in trades] == [1, 2]
    assert quotes == {"BTCUSDT": 4, "ETHUSDT": 3}
    assert sub.conflated == 2
    assert bus.published["Quote"] == 4 and bus.published["Trade"] == 2


def test_subscriber_sees_only_its_kinds():
    bus = EventBus()
    trades_only = bus.subscribe("candles", kinds=(Trade,))
    bus.publish([quote(1), trade(1)])
    assert [type(e) for e in trades_only.drain()] == [Trade]


@pytest.mark.asyncio
async def test_next_batch_wakes_when_events_arrive():
    bus = EventBus()
    sub = bus.subscribe("x")
    waiter = asyncio.create_task(sub.next_batch())
    await asyncio.sleep(0)
    assert not waiter.done()
    bus.publish([trade(1), trade(2)])
    batch = await asyncio.wait_for(waiter, 1.0)
    assert [t.trade_id for t in batch] == [1, 2]
    assert sub.depth == 0 and sub.delivered == 2


@pytest.mark.asyncio
async def test_every_batch_after_a_drain_wakes_the_subscriber_again():
    """The wake-up is signalled once per batch, not per event: after each drain, the next event must wake it."""
    bus = EventBus()
    sub = bus.subscribe("x")
    for round_ in range(3):
        waiter = asyncio.create_task(sub.next_batch())
        await asyncio.sleep(0)
        assert not waiter.done()
        bus.publish([quote(round_), trade(round_), quote(round_ + 10)])
        batch = await asyncio.wait_for(waiter, 1.0)
        assert [type(e) for e in batch] == [Trade, Quote] and batch[1].update_id == round_ + 10
    assert sub.received == 9 and sub.delivered == 6 and sub.conflated == 3


def test_high_water_counts_the_longest_queue_even_when_full():
    bus = EventBus()
    sub = bus.subscribe("x", maxlen=5)
    bus.publish([trade(i) for i in range(3)])
    assert sub.high_water == 3
    bus.publish([trade(i) for i in range(3, 12)])
    assert sub.high_water == 5 and sub.dropped == 7 and sub.depth == 5
    sub.drain()
    bus.publish([trade(12)])
    assert sub.high_water == 5
