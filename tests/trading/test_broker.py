"""PaperBroker fills on hand-computed cases, in exact Decimal: a market order walking the book, a thin book, the
quote fallback with size-based slippage, resting limits filled only by trades through them, a marketable limit,
a stop-loss, a bracket whose legs act as OCO, cancels, and the listeners seeing every change in order."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import deque
from decimal import Decimal as D

import pytest

from app.market.book import OrderBook
from app.market.instruments import Instrument, Instruments
from app.models import (
    BookUpdate,
    Fill,
    Liquidity,
    Order,
    OrderOrigin,
    OrderRequest,
    OrderStatus,
    OrderType,
    Quote,
    Side,
    Trade,
)
from app.trading.broker import Broker, CancelReport, PaperBroker
from tests.conftest import wait_until

S = "BTCUSDT"
NOW = 1_723_161_255_000
ASKS = ((60000.0, 0.1), (60001.0, 0.2), (60002.5, 0.5))
BIDS = ((59999.0, 0.3), (59998.0, 0.4), (59990.0, 1.0))


class Tape:
    """Everything the listeners heard, in order."""

    def __init__(self, broker: PaperBroker) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.fills: list[Fill] = []
        broker.add_listener(self.on_order, self.on_fill)

    def on_order(self, o: Order) -> None:
        self.events.append(("order", o.id, o.status.value))

    def on_fill(self, f: Fill) -> None:
        self.fills.append(f)
        self.events.append(("fill", f.order_id, f"{f.qty.normalize():f}"))


def make(bids=BIDS, asks=ASKS, **kw) -> tuple[PaperBroker, OrderBook, Tape]:
    broker = PaperBroker(submit_latency_s=0.001, clock_ms=lambda: NOW, **kw)
    book = OrderBook(S)
    book.apply(BookUpdate("", tuple(bids), tuple(asks), 1, 1, True, 0, 0))
    broker.on_book(book)
    return broker, book, Tape(broker)


def trade(price: float, qty: float, i: int = 1) -> Trade:
    return Trade(S, price, qty, Side.SELL, i, NOW, 0)


def quote(bid: float, bid_qty: float, ask: float, ask_qty: float) -> Quote:
    return Quote(S, bid, bid_qty, ask, ask_qty, 1, 0, 0)


def market(side: Side, qty: str, **kw) -> OrderRequest:
    return OrderRequest(S, side, OrderType.MARKET, D(qty), **kw)


def limit(side: Side, qty: str, price: str, **kw) -> OrderRequest:
    return OrderRequest(S, side, OrderType.LIMIT, D(qty), limit_price=D(price), **kw)


def stop(side: Side, qty: str, price: str, **kw) -> OrderRequest:
    return OrderRequest(S, side, OrderType.STOP_MARKET, D(qty), stop_price=D(price), **kw)


def fills_of(tape: Tape, order_id: str) -> list[tuple[D, D, D, Liquidity]]:
    return [(f.qty, f.price, f.fee, f.liquidity) for f in tape.fills if f.order_id == order_id]


def test_paper_broker_is_a_broker():
    assert isinstance(PaperBroker(), Broker)


@pytest.mark.asyncio
async def test_market_buy_walks_three_ask_levels_with_exact_average_and_fees():
    broker, _, tape = make()
    o = await broker.submit(market(Side.BUY, "0.35"))
    assert o.id == "P1" and o.status is OrderStatus.FILLED and o.remaining == 0
    assert fills_of(tape, "P1") == [
        (D("0.1"), D("60000.00"), D("6.000000"), Liquidity.TAKER),
        (D("0.2"), D("60001.00"), D("12.0002"), Liquidity.TAKER),
        (D("0.05"), D("60002.50"), D("3.000125"), Liquidity.TAKER),
    ]
    assert [f.id for f in tape.fills] == ["PF1", "PF2", "PF3"]
    assert o.avg_price == D("60000.92857143")  # 21000.325 / 0.35 = 60000.928571428...
    assert o.fees == D("21.000325")
    assert all(type(x) is D for f in tape.fills for x in (f.qty, f.price, f.fee))
    assert tape.events == [
        ("order", "P1", "NEW"),
        ("fill", "P1", "0.1"),
        ("order", "P1", "PARTIALLY_FILLED"),
        ("fill", "P1", "0.2"),
        ("order", "P1", "PARTIALLY_FILLED"),
        ("fill", "P1", "0.05"),
        ("order", "P1", "FILLED"),
    ]
    assert broker.position_qty(S) == D("0.35")


@pytest.mark.asyncio
async def test_market_sell_walks_the_bids_down():
    broker, _, tape = make()
    o = await broker.submit(market(Side.SELL, "0.5"))
    assert [(q, p) for q, p, _, _ in fills_of(tape, o.id)] == [(D("0.3"), D("59999.00")), (D("0.2"), D("59998.00"))]
    assert o.avg_price == D("59998.60")  # (17999.7 + 11999.6) / 0.5


@pytest.mark.asyncio
async def test_market_order_larger_than_the_book_fills_what_is_there_and_cancels_the_rest():
    broker, _, tape = make()
    o = await broker.submit(market(Side.BUY, "1"))
    assert o.status is OrderStatus.CANCELED and o.filled_qty == D("0.8")
    assert o.reject_reason == "the book was too thin: 0.8 of 1 filled, the rest canceled"
    assert len(fills_of(tape, o.id)) == 3


@pytest.mark.asyncio
async def test_without_depth_the_quote_and_size_based_slippage_are_used():
    broker = PaperBroker(submit_latency_s=0.001, clock_ms=lambda: NOW, slippage_bps_per_unit=D("10"))
    tape = Tape(broker)
    broker.on_quote(quote(99.99, 2.0, 100.0, 1.0))
    o = await broker.submit(market(Side.BUY, "3"))
    # 1 at the touch; the excess 2 is 2x the top size -> 10 bps x 2 = 20 bps above 100.00
    assert fills_of(tape, o.id) == [
        (D("1"), D("100.00"), D("0.1000"), Liquidity.TAKER),
        (D("2"), D("100.20"), D("0.2004"), Liquidity.TAKER),
    ]
    assert o.avg_price == D("100.13333333") and o.fees == D("0.3004")
    s = await broker.submit(market(Side.SELL, "2.5"))
    # 2 at 99.99; 0.5 excess is 0.25x the top -> 2.5 bps below: 99.99 - 0.0249975 = 99.9650025, floored to 99.96
    assert [(q, p) for q, p, _, _ in fills_of(tape, s.id)] == [(D("2"), D("99.99")), (D("0.5"), D("99.96"))]


@pytest.mark.asyncio
async def test_a_book_waiting_for_resync_is_not_walked():
    broker, book, tape = make()
    book.apply(BookUpdate(S, (), (), 5, 6, False, 0, 0))  # a gap
    assert book.needs_resync
    broker.on_quote(quote(59999.0, 0.3, 60000.5, 1.0))
    o = await broker.submit(market(Side.BUY, "0.2"))
    assert fills_of(tape, o.id) == [(D("0.2"), D("60000.50"), D("12.000100"), Liquidity.TAKER)]


@pytest.mark.asyncio
async def test_market_order_without_any_market_data_is_rejected():
    broker = PaperBroker(submit_latency_s=0.001, clock_ms=lambda: NOW)
    o = await broker.submit(market(Side.BUY, "0.1"))
    assert o.status is OrderStatus.REJECTED and "no live order book or bid/ask" in o.reject_reason
    assert broker.rejected == 1 and not broker.open_orders()


@pytest.mark.asyncio
async def test_after_a_feed_reset_the_old_connections_bid_ask_is_no_price_to_fill_at():
    broker = PaperBroker(submit_latency_s=0.001, clock_ms=lambda: NOW)
    broker.on_quote(quote(59999.0, 0.3, 60000.5, 1.0))  # received at recv_ns 0, on the old connection
    broker.feed_reset(since_ns=100)  # the feed dropped
    broker.on_quote(quote(59999.0, 0.3, 60000.5, 1.0))  # still queued from the old connection: ignored
    o = await broker.submit(market(Side.BUY, "0.1"))
    assert o.status is OrderStatus.REJECTED and "the feed is connecting" in o.reject_reason
    assert broker.fills == deque()

    fresh = dataclasses.replace(quote(29999.0, 0.3, 30000.5, 1.0), recv_ns=200)  # the new connection's first
    broker.on_quote(fresh)
    o = await broker.submit(market(Side.BUY, "0.1"))
    assert o.status is OrderStatus.FILLED and o.avg_price == D("30000.50")


@pytest.mark.asyncio
async def test_invalid_request_is_rejected_at_once():
    broker, _, _ = make()
    o = await broker.submit(market(Side.BUY, "0.000001"))  # below one lot: nothing left after rounding down
    assert o.status is OrderStatus.REJECTED and "not positive" in o.reject_reason
    assert (await broker.submit(limit(Side.BUY, "0.1", "0"))).status is OrderStatus.REJECTED


XRP = Instrument.from_steps("XRPUSDT", D("0.0001"), D("0.1"), min_qty=D("1"), min_notional=D("5"))


@pytest.mark.asyncio
async def test_orders_are_put_on_the_instruments_grid_and_refused_below_its_minimums():
    """Each symbol its own grid: an XRP order is rounded to XRP's lot (0.1) and tick (0.0001), not BTC's, and
    refused below XRP's minimum quantity and order value in the trader's words."""
    broker = PaperBroker(submit_latency_s=0.001, clock_ms=lambda: NOW, instruments=Instruments.of(XRP))
    broker.on_quote(Quote("XRPUSDT", 0.6011, 5000.0, 0.6012, 5000.0, 1, NOW, 0))
    buy = await broker.submit(OrderRequest("XRPUSDT", Side.BUY, OrderType.LIMIT, D("100.07"),
                                           limit_price=D("0.60118")))
    assert buy.request.qty == D("100.0") and buy.request.limit_price == D("0.6011")  # a buy never pays more
    sell = await broker.submit(OrderRequest("XRPUSDT", Side.SELL, OrderType.LIMIT, D("50"),
                                            limit_price=D("0.60131")))
    assert sell.request.limit_price == D("0.6014")  # a sell never gets less than asked
    small = await broker.submit(OrderRequest("XRPUSDT", Side.BUY, OrderType.MARKET, D("0.5")))
    assert small.status is OrderStatus.REJECTED
    assert small.reject_reason == "quantity 0.5 XRP is below the minimum 1.0 XRP for XRPUSDT"
    cheap = await broker.submit(OrderRequest("XRPUSDT", Side.BUY, OrderType.MARKET, D("8")))  # 4.81 USDT
    assert cheap.status is OrderStatus.REJECTED
    assert cheap.reject_reason == "order value 4.81 USDT is below the minimum 5.00 USDT for XRPUSDT"
    fine = await broker.submit(OrderRequest("XRPUSDT", Side.BUY, OrderType.MARKET, D("10")))
    assert fine.status is OrderStatus.FILLED and fine.avg_price == D("0.6012")


@pytest.mark.asyncio
async def test_resting_limit_fills_only_when_a_trade_goes_through_it_and_partially():
    broker, _, tape = make()
    o = await broker.submit(limit(Side.BUY, "0.5", "59995.00"))
    assert o.status is OrderStatus.NEW and broker.open_orders() == [o]
    broker.on_trade(trade(59995.0, 1.0))  # touching the limit does not fill: the queue ahead took it
    broker.on_trade(trade(59996.0, 1.0))
    assert o.filled_qty == 0 and not tape.fills
    broker.on_trade(trade(59994.99, 0.2))  # strictly through: fills at the limit, up to the traded quantity
    assert o.status is OrderStatus.PARTIALLY_FILLED
    assert fills_of(tape, o.id) == [(D("0.2"), D("59995.00"), D("11.999000"), Liquidity.MAKER)]
    broker.on_trade(trade(59980.0, 5.0))
    assert o.status is OrderStatus.FILLED and o.avg_price == D("59995.00")
    assert fills_of(tape, o.id)[1] == (D("0.3"), D("59995.00"), D("17.998500"), Liquidity.MAKER)
    assert not broker.open_orders()


@pytest.mark.asyncio
async def test_sell_limit_touch_does_not_fill_and_trade_qty_is_shared_by_price_then_time():
    broker, _, tape = make()
    a = await broker.submit(limit(Side.SELL, "0.3", "60010.00"))
    b = await broker.submit(limit(Side.SELL, "0.3", "60005.00"))
    c = await broker.submit(limit(Side.SELL, "0.3", "60005.00"))
    broker.on_trade(trade(60005.0, 1.0))
    assert not tape.fills
    broker.on_trade(trade(60010.01, 0.5))  # 0.5 traded: b first (better price), then c (later), a gets nothing
    assert (b.filled_qty, c.filled_qty, a.filled_qty) == (D("0.3"), D("0.2"), 0)
    assert [f.price for f in tape.fills] == [D("60005.00"), D("60005.00")]


@pytest.mark.asyncio
async def test_marketable_limit_takes_up_to_its_price_and_rests_the_rest_as_maker():
    broker, _, tape = make()
    o = await broker.submit(limit(Side.BUY, "0.5", "60001.00"))
    assert o.status is OrderStatus.PARTIALLY_FILLED and o.remaining == D("0.2")
    assert fills_of(tape, o.id) == [
        (D("0.1"), D("60000.00"), D("6.000000"), Liquidity.TAKER),
        (D("0.2"), D("60001.00"), D("12.000200"), Liquidity.TAKER),
    ]
    broker.on_trade(trade(60000.99, 1.0))
    assert o.status is OrderStatus.FILLED
    assert fills_of(tape, o.id)[2] == (D("0.2"), D("60001.00"), D("12.000200"), Liquidity.MAKER)
    assert o.fees == D("30.0004")  # 6 + 12.0002 taker, 12.0002 maker
    assert o.avg_price == D("60000.80")  # (6000 + 12000.2 + 12000.2) / 0.5


@pytest.mark.asyncio
async def test_stop_loss_triggers_when_a_trade_reaches_it_then_fills_like_a_market_order():
    broker, book, tape = make()
    o = await broker.submit(stop(Side.SELL, "0.1", "59000.00"))
    broker.on_trade(trade(59000.01, 1.0))
    assert o.status is OrderStatus.NEW
    book.apply(BookUpdate("", ((58999.0, 0.05), (58998.0, 1.0)), ((59001.0, 1.0),), 9, 9, True, 0, 0))
    broker.on_trade(trade(59000.0, 0.01))  # reaching the stop is enough
    assert o.status is OrderStatus.FILLED
    assert fills_of(tape, o.id) == [
        (D("0.05"), D("58999.00"), D("2.949950"), Liquidity.TAKER),
        (D("0.05"), D("58998.00"), D("2.949900"), Liquidity.TAKER),
    ]
    assert broker.position_qty(S) == D("-0.1")


@pytest.mark.asyncio
async def test_bracket_legs_attach_on_fill_and_act_as_oco_take_profit_side():
    broker, _, tape = make(asks=((60000.0, 1.0),))
    entry = await broker.submit(market(Side.BUY, "0.1", stop_loss_pct=D("1"), take_profit_pct=D("2"), proposal_id="X"))
    assert entry.status is OrderStatus.FILLED
    sl, tp = broker.open_orders(S)
    assert (sl.id, sl.request.type, sl.request.side, sl.request.stop_price, sl.request.qty) == (
        "P2",
        OrderType.STOP_MARKET,
        Side.SELL,
        D("59400.00"),
        D("0.1"),
    )
    assert (tp.id, tp.request.type, tp.request.limit_price) == ("P3", OrderType.LIMIT, D("61200.00"))
    for leg in (sl, tp):
        assert leg.request.reduce_only and leg.request.origin is OrderOrigin.BRACKET
        assert leg.request.parent_id == entry.id and leg.request.proposal_id == "X"
    broker.on_trade(trade(61200.01, 0.04))  # TP partly filled: the stop shrinks to cover what is left
    assert tp.status is OrderStatus.PARTIALLY_FILLED and tp.filled_qty == D("0.04")
    assert sl.status is OrderStatus.NEW and sl.request.qty == D("0.06")
    broker.on_trade(trade(61300.0, 1.0))
    assert tp.status is OrderStatus.FILLED
    assert sl.status is OrderStatus.CANCELED and "OCO" in sl.reject_reason
    assert broker.position_qty(S) == 0 and not broker.open_orders()
    assert fills_of(tape, tp.id) == [
        (D("0.04"), D("61200.00"), D("2.448000"), Liquidity.MAKER),
        (D("0.06"), D("61200.00"), D("3.672000"), Liquidity.MAKER),
    ]


@pytest.mark.asyncio
async def test_bracket_stop_loss_side_cancels_the_take_profit_and_short_entries_mirror_the_prices():
    broker, book, tape = make(bids=((60000.0, 1.0),))
    entry = await broker.submit(market(Side.SELL, "0.2", stop_loss_pct=D("0.5"), take_profit_pct=D("1.5")))
    sl, tp = broker.open_orders(S)
    assert (sl.request.side, sl.request.stop_price) == (Side.BUY, D("60300.00"))
    assert (tp.request.side, tp.request.limit_price) == (Side.BUY, D("59100.00"))
    book.apply(BookUpdate("", ((60290.0, 1.0),), ((60310.0, 1.0),), 20, 20, True, 0, 0))
    broker.on_trade(trade(60300.0, 0.01))
    assert sl.status is OrderStatus.FILLED and tp.status is OrderStatus.CANCELED
    assert fills_of(tape, sl.id) == [(D("0.2"), D("60310.00"), D("12.062000"), Liquidity.TAKER)]
    assert broker.position_qty(S) == 0 and entry.status is OrderStatus.FILLED


@pytest.mark.asyncio
async def test_canceled_entry_with_a_partial_fill_gets_legs_for_the_filled_part():
    broker, _, _ = make()
    entry = await broker.submit(limit(Side.BUY, "0.5", "59995.00", stop_loss_pct=D("2")))
    broker.on_trade(trade(59990.0, 0.12))
    assert await broker.cancel(entry.id)
    [sl] = broker.open_orders(S)
    assert sl.request.qty == D("0.12") and sl.request.stop_price == D("58795.10")  # 59995 * 0.98


@pytest.mark.asyncio
async def test_flattening_by_hand_cancels_the_bracket_legs():
    broker, _, _ = make(asks=((60000.0, 1.0),))
    await broker.submit(market(Side.BUY, "0.1", stop_loss_pct=D("1"), take_profit_pct=D("2")))
    await broker.submit(market(Side.SELL, "0.1", origin=OrderOrigin.FLATTEN))
    assert broker.position_qty(S) == 0 and not broker.open_orders()
    assert all(o.status is OrderStatus.CANCELED for o in broker.orders[1:3])


@pytest.mark.asyncio
async def test_reduce_only_never_increases_the_position():
    broker, _, _ = make()
    o = await broker.submit(market(Side.SELL, "0.1", reduce_only=True))
    assert o.status is OrderStatus.CANCELED and o.filled_qty == 0 and "reduce-only" in o.reject_reason
    await broker.submit(market(Side.BUY, "0.05"))
    o = await broker.submit(market(Side.SELL, "0.1", reduce_only=True))
    assert o.filled_qty == D("0.05") and o.status is OrderStatus.CANCELED and broker.position_qty(S) == 0


@pytest.mark.asyncio
async def test_cancel_and_cancel_all():
    broker, _, tape = make()
    a = await broker.submit(limit(Side.BUY, "0.1", "59000.00"))
    b = await broker.submit(limit(Side.SELL, "0.1", "61000.00"))
    c = await broker.submit(stop(Side.SELL, "0.1", "58000.00"))
    eth = await broker.submit(OrderRequest("ETHUSDT", Side.BUY, OrderType.LIMIT, D("1"), limit_price=D("2500.00")))
    assert await broker.cancel(a.id) is True and a.status is OrderStatus.CANCELED
    assert await broker.cancel(a.id) is False
    assert await broker.cancel("nope") is False
    broker.on_trade(trade(58999.0, 1.0))
    assert a.filled_qty == 0  # a canceled order never fills
    assert await broker.cancel_all(S) == CancelReport(2)
    assert (b.status, c.status, eth.status) == (OrderStatus.CANCELED, OrderStatus.CANCELED, OrderStatus.NEW)
    assert await broker.cancel_all() == CancelReport(1) and not broker.open_orders()
    assert [e for e in tape.events if e[2] == "CANCELED"] == [
        ("order", a.id, "CANCELED"),
        ("order", b.id, "CANCELED"),
        ("order", c.id, "CANCELED"),
        ("order", eth.id, "CANCELED"),
    ]
    assert [o.id for o in broker.orders] == ["P1", "P2", "P3", "P4"]


@pytest.mark.asyncio
async def test_cancel_during_the_submit_latency_stops_the_order_before_it_arrives():
    broker, _, tape = make()
    broker.submit_latency_s = 0.2
    task = asyncio.create_task(broker.submit(market(Side.BUY, "0.1")))
    await wait_until(lambda: bool(broker.open_orders()), what="the order to be registered")
    [o] = broker.open_orders()
    assert o.status is OrderStatus.NEW
    assert await broker.cancel(o.id)
    assert (await task).status is OrderStatus.CANCELED
    assert not tape.fills


@pytest.mark.asyncio
async def test_an_order_sent_arrives_even_if_its_caller_is_cancelled_and_aclose_stops_the_rest():
    broker, _, tape = make()
    broker.submit_latency_s = 0.05
    caller = asyncio.create_task(broker.submit(market(Side.BUY, "0.1")))
    await wait_until(lambda: bool(broker.open_orders()), what="the order to be registered")
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await wait_until(lambda: bool(tape.fills), what="the order to arrive")
    assert broker.orders[0].status is OrderStatus.FILLED
    broker.submit_latency_s = 10
    late = asyncio.create_task(broker.submit(market(Side.BUY, "0.1")))
    await wait_until(lambda: bool(broker.open_orders()), what="the second order")
    await broker.aclose()
    with pytest.raises(asyncio.CancelledError):
        await late
    assert broker.orders[1].status is OrderStatus.CANCELED


@pytest.mark.asyncio
async def test_a_failing_listener_does_not_break_the_broker():
    broker, _, tape = make()

    def bad(_):
        raise RuntimeError("boom")

    broker.add_listener(bad, bad)
    o = await broker.submit(market(Side.BUY, "0.1"))
    assert o.status is OrderStatus.FILLED and broker.listener_errors == 3  # NEW, fill, FILLED
    assert len(tape.fills) == 1


def test_history_is_bounded_but_open_orders_are_kept():
    broker = PaperBroker(clock_ms=lambda: NOW, max_history=10)
    for i in range(30):
        o = broker._register(limit(Side.BUY, "0.1", "100.00"))
        if i:
            broker._close(o, OrderStatus.CANCELED, None)
    assert len(broker.orders) <= 11
    assert broker.orders[0].id == "P1" and broker.orders[0].status is OrderStatus.NEW


@pytest.mark.asyncio
async def test_restart_restores_working_orders_oco_links_and_numbering():
    before, _, _ = make(asks=((60000.0, 1.0),))
    await before.submit(market(Side.BUY, "0.1", stop_loss_pct=D("1"), take_profit_pct=D("2")))
    await before.submit(limit(Side.BUY, "0.1", "59000.00"))
    stale_market = Order("P9", market(Side.BUY, "0.1"), OrderStatus.NEW, NOW)
    saved = [*before.open_orders(), stale_market]  # what a journal would hand back
    after, _, tape = make(asks=((60000.0, 1.0),))
    after.restore_ids(fill_ids=[f.id for f in before.fills])
    after.set_position(S, before.position_qty(S))
    after.restore_open_orders(saved)
    assert stale_market.status is OrderStatus.CANCELED
    assert [o.id for o in after.open_orders()] == ["P2", "P3", "P4"]
    nxt = await after.submit(limit(Side.SELL, "0.01", "65000.00"))
    assert nxt.id == "P10"  # after the highest restored id
    after.on_trade(trade(61200.5, 1.0))  # the take-profit fills; its OCO stop-loss is canceled
    sl, tp = after.get("P2"), after.get("P3")
    assert tp.status is OrderStatus.FILLED and sl.status is OrderStatus.CANCELED
    assert tape.fills[0].id == "PF2"  # the entry's fill was PF1


@pytest.mark.asyncio
async def test_a_bracket_leg_shrunk_by_its_sibling_is_journaled_and_restored_at_its_new_size(tmp_path):
    # The take-profit fills in part and the stop shrinks to what is left: the journal must take the smaller size
    # (it refused any change of quantity, so the shrink was lost as a listener error and a restart brought the stop
    # back at the entry's full size).
    from app.trading.journal import Journal

    broker, _, _ = make(asks=((60000.0, 1.0),))
    with Journal(tmp_path / "j.sqlite3") as journal:
        broker.add_listener(journal.record_order, journal.record_fill)
        await broker.submit(market(Side.BUY, "0.1", stop_loss_pct=D("1"), take_profit_pct=D("2")))
        sl, tp = broker.open_orders(S)
        broker.on_trade(trade(61200.01, 0.04))
        assert sl.request.qty == D("0.06") and broker.listener_errors == 0
        stored = {o.id: o for o in journal.open_orders()}
        assert stored[sl.id].request.qty == D("0.06") and stored[tp.id].filled_qty == D("0.04")
        # Growing an order, or another order under the same id, is still refused.
        from app.trading.journal import JournalError

        bigger = dataclasses.replace(sl, request=dataclasses.replace(sl.request, qty=D("0.2")))
        with pytest.raises(JournalError, match="another order"):
            journal.record_order(bigger)
