"""Live brackets end to end on loopback (the built-in exchange's order API, real ccxt, a real SQLite journal): the
stop-loss rests at the exchange as a STOP_LOSS order, the take-profit is held by the terminal and sent when the
market reaches it, the legs are linked, survive a restart, and the kill switch ends both."""

from __future__ import annotations

import dataclasses
import sqlite3
from decimal import Decimal as D
from typing import Any

import pytest

from app.market.sim.order_api import OrderApi
from app.models import Order, OrderOrigin, OrderStatus, OrderType, Side, Trade
from app.trading.journal import Journal
from app.trading.live_broker import LiveBroker
from tests.trading.live_support import KEY, SYM, make_broker, now_ms, req, started, stream_caught_up, until


def trade(price: str) -> Trade:
    return Trade(SYM, float(price), 1.0, Side.SELL, 1, now_ms(), 0)


def at_exchange(api: OrderApi, client_id: str) -> Any:
    return api.engine.get(KEY, SYM, client_id=client_id)


def held(api: OrderApi, entry: Order) -> D:
    """The coins the account got for a buy: its fills less any commission the exchange took in the coin (Binance
    does; the built-in exchange did not always), so the tests hold before and after it charges buys in the base."""
    trades = [t for t in api.engine.my_trades(KEY, SYM) if str(t.order_id) == entry.exchange_id]
    return sum((t.qty - (t.commission if t.commission_asset == "BTC" else 0) for t in trades), D(0))


async def bracketed_entry(broker: LiveBroker) -> tuple[Order, Order, Order]:
    """A 0.5 BTC market buy (fills at 100) with a 2 % stop-loss (98.00) and a 3 % take-profit (103.00)."""
    entry = await broker.submit(req(Side.BUY, "0.5", origin=OrderOrigin.MODEL, stop_loss_pct=D(2),
                                    take_profit_pct=D(3)))
    assert entry.status is OrderStatus.FILLED and entry.avg_price == D(100)
    legs = {o.request.type: o for o in broker.open_orders(SYM)}
    return entry, legs[OrderType.STOP_MARKET], legs[OrderType.LIMIT]


@pytest.mark.asyncio
async def test_the_stop_rests_at_the_exchange_and_the_take_profit_is_held(broker: LiveBroker, api: OrderApi,
                                                                         journal: Journal) -> None:
    entry, stop, tp = await bracketed_entry(broker)
    got = held(api, entry)
    ex = at_exchange(api, stop.id)  # our client order id
    assert (ex.type, ex.side, ex.qty, ex.stop_price, ex.status) == ("STOP_LOSS", "SELL", got, D(98), "NEW")
    assert (stop.request.origin, stop.request.parent_id, stop.request.reduce_only) == \
        (OrderOrigin.BRACKET, entry.id, True)
    assert stop.status is OrderStatus.NEW and stop.exchange_id == str(ex.order_id)
    assert api.engine.balances(KEY)["BTC"].locked == got
    # the take-profit: an open order the chart and blotter show, never sent
    assert tp.id.endswith("-TP") and tp.exchange_id is None and tp.status is OrderStatus.NEW
    assert (tp.request.side, tp.request.limit_price, tp.request.qty, tp.request.parent_id) == \
        (Side.SELL, D(103), got, entry.id)
    assert tp.reject_reason is not None and "held by the terminal, not at the exchange" in tp.reject_reason
    assert len(api.engine.all_orders(KEY, SYM)) == 2  # the entry and the stop; nothing for the take-profit
    assert {o.id for o in journal.open_orders()} == {stop.id, tp.id}
    broker.on_market([trade("102.99")])  # below the take-profit: nothing happens
    assert tp.status is OrderStatus.NEW and tp.id in {o.id for o in broker.open_orders()}


@pytest.mark.asyncio
async def test_the_market_through_the_stop_fills_it_at_the_exchange_and_ends_the_take_profit(
        broker: LiveBroker, api: OrderApi, journal: Journal) -> None:
    entry, stop, tp = await bracketed_entry(broker)
    api.engine.on_trade(SYM, D("97.5"), D("0.01"))  # the exchange triggers the stop: a market sell of 0.5
    await until(lambda: stop.status is OrderStatus.FILLED and not tp.status.is_open, "the stop's fill")
    assert (stop.filled_qty, stop.avg_price) == (held(api, entry), D(99))
    assert tp.status is OrderStatus.CANCELED and tp.reject_reason == f"the stop-loss {stop.id} filled"
    assert broker.open_orders() == [] and broker._positions[SYM] == 0
    await stream_caught_up(broker, api)
    recorded = {o.id: o for o in journal.recent_orders()}
    assert (recorded[stop.id].status, recorded[tp.id].status) == (OrderStatus.FILLED, OrderStatus.CANCELED)
    assert [(f.order_id, f.side, f.qty) for f in journal.all_fills()][-1] == (stop.id, Side.SELL,
                                                                              held(api, entry))
    assert journal.open_orders() == []


@pytest.mark.asyncio
async def test_the_take_profit_cancels_the_stop_at_the_exchange_then_exits(broker: LiveBroker, api: OrderApi,
                                                                          journal: Journal) -> None:
    entry, stop, tp = await bracketed_entry(broker)
    broker.on_market([trade("103.5")])
    await until(lambda: broker._positions[SYM] == 0 and not broker.open_orders(), "the exit")
    assert at_exchange(api, stop.id).status == "CANCELED"
    assert stop.status is OrderStatus.CANCELED
    assert stop.reject_reason == f"canceled: the take-profit {tp.id} was reached"
    exit_order = next(o for o in broker.orders if o.request.type is OrderType.MARKET and o.request.side is Side.SELL)
    assert tp.status is OrderStatus.CANCELED
    assert tp.reject_reason == f"take-profit reached at 103.5: exit sent to the exchange as {exit_order.id} (market)"
    assert (exit_order.status, exit_order.filled_qty, exit_order.request.origin, exit_order.request.parent_id) == \
        (OrderStatus.FILLED, held(api, entry), OrderOrigin.BRACKET, entry.id)
    assert api.engine.open_orders(KEY, SYM) == [] and api.engine.balances(KEY)["BTC"].free == D(1)
    broker.on_market([trade("104")])  # reached again: nothing more is sent
    await stream_caught_up(broker, api)
    assert len(api.engine.all_orders(KEY, SYM)) == 3
    assert journal.open_orders() == []


@pytest.mark.asyncio
async def test_an_exit_the_book_cannot_fill_leaves_the_rest_protected_by_a_new_stop(broker: LiveBroker,
                                                                                   api: OrderApi) -> None:
    entry, stop, _ = await bracketed_entry(broker)
    api.engine.book.sides["bids"] = [(D(103), D("0.2"))]  # the take-profit's market sell finds only 0.2
    broker.on_market([trade("103")])
    await until(lambda: any(o.request.type is OrderType.STOP_MARKET and o.status.is_open and o.id != stop.id
                            and o.exchange_id for o in broker.orders), "the new stop at the exchange")
    (again,) = [o for o in broker.open_orders() if o.request.type is OrderType.STOP_MARKET]
    rest = held(api, entry) - D("0.2")
    assert (again.request.qty, again.request.stop_price, again.request.parent_id) == (rest, D(98), entry.id)
    ex = at_exchange(api, again.id)
    assert (ex.type, ex.qty, ex.stop_price, ex.status) == ("STOP_LOSS", rest, D(98), "NEW")
    assert broker._positions[SYM] == rest


@pytest.mark.asyncio
async def test_a_stop_already_triggered_when_the_take_profit_is_reached_means_no_second_exit(
        broker: LiveBroker, api: OrderApi, journal: Journal) -> None:
    entry, stop, tp = await bracketed_entry(broker)
    api.engine.on_trade(SYM, D(97), D("0.01"))  # the stop fills at the exchange ...
    broker.on_market([trade("103.5")])  # ... and a whipsaw reaches the take-profit before the stream says so
    await until(lambda: stop.status is OrderStatus.FILLED and not tp.status.is_open, "the stop's fill")
    await stream_caught_up(broker, api)
    await until(lambda: not broker._brackets._triggering, "the take-profit attempt to end")
    assert tp.status is OrderStatus.CANCELED and tp.reject_reason == f"the stop-loss {stop.id} filled"
    assert len(api.engine.all_orders(KEY, SYM)) == 2  # the entry and the stop: no exit was sent
    assert api.engine.balances(KEY)["BTC"].free == D(1)  # bought 0.5, sold 0.5: nothing oversold
    assert broker._positions[SYM] == 0 and broker.open_orders() == []
    assert sum(f.qty for f in journal.all_fills() if f.side is Side.SELL) == held(api, entry)
    # the stop could not be canceled (it had filled): its state was asked for, and journaled
    assert broker.counters.cancel_refusals == 1
    assert "take-profit: stop not cancelable" in [r.trigger for r in journal.reconciliations()]


@pytest.mark.asyncio
async def test_a_partial_stop_fill_shrinks_the_take_profit_to_what_is_left(broker: LiveBroker, api: OrderApi,
                                                                           journal: Journal) -> None:
    entry, stop, tp = await bracketed_entry(broker)
    api.engine.book.sides["bids"] = [(D(97), D("0.2"))]  # thin book: the stop sells 0.2, the rest expires
    api.engine.on_trade(SYM, D(97), D("0.01"))
    await until(lambda: not stop.status.is_open and not tp.status.is_open, "the stop's partial fill")
    assert stop.filled_qty == D("0.2")
    (smaller,) = [o for o in broker.open_orders() if o.request.type is OrderType.LIMIT]
    rest = held(api, entry) - D("0.2")
    assert smaller.id.endswith("-TP") and smaller.request.qty == rest and smaller.request.parent_id == entry.id
    assert tp.reject_reason == f"the stop-loss {stop.id} sold 0.2: replaced by {smaller.id} for {rest.normalize():f}"
    assert {o.id for o in journal.open_orders()} == {smaller.id}


@pytest.mark.asyncio
async def test_a_stop_the_market_already_passed_closes_at_market(broker: LiveBroker, api: OrderApi) -> None:
    api.engine.on_trade(SYM, D(97), D("0.01"))  # the last trade is already below where the stop would go
    entry = await broker.submit(req(Side.BUY, "0.5", stop_loss_pct=D(2), take_profit_pct=D(3)))
    stop = next(o for o in broker.orders if o.request.type is OrderType.STOP_MARKET)
    assert stop.status is OrderStatus.REJECTED
    assert stop.reject_reason == "The exchange refused the stop: the market is already through its stop price."
    out = next(o for o in broker.orders if o.request.type is OrderType.MARKET and o.request.side is Side.SELL)
    assert (out.status, out.filled_qty, out.request.parent_id) == (OrderStatus.FILLED, held(api, entry), entry.id)
    assert broker.open_orders() == [] and broker._positions[SYM] == 0  # no take-profit for a closed position


@pytest.mark.asyncio
async def test_a_position_closed_another_way_ends_both_legs(broker: LiveBroker, api: OrderApi) -> None:
    _, stop, tp = await bracketed_entry(broker)
    assert await broker.cancel(stop.id)  # the trader frees the coins, then sells them himself
    flat = await broker.submit(req(Side.SELL, "0.5", origin=OrderOrigin.FLATTEN))
    assert flat.status is OrderStatus.FILLED
    assert tp.status is OrderStatus.CANCELED and tp.reject_reason == \
        "the position is closed; nothing left to take profit on"
    assert broker.open_orders() == []


@pytest.mark.asyncio
async def test_the_kill_switch_cancels_both_legs(broker: LiveBroker, api: OrderApi, journal: Journal) -> None:
    _, stop, tp = await bracketed_entry(broker)
    report = await broker.cancel_all(SYM)
    assert (report.canceled, report.refused) == (2, ())
    assert at_exchange(api, stop.id).status == "CANCELED" and stop.status is OrderStatus.CANCELED
    assert tp.status is OrderStatus.CANCELED and broker.open_orders() == []
    assert api.engine.balances(KEY)["BTC"].locked == 0
    broker.on_market([trade("110")])  # a canceled take-profit is not watched any more
    await stream_caught_up(broker, api)
    assert len(api.engine.all_orders(KEY, SYM)) == 2 and journal.open_orders() == []


@pytest.mark.asyncio
@pytest.mark.parametrize("stop_filled_while_away", [False, True])
async def test_a_restart_restores_the_stop_from_the_exchange_and_the_held_take_profit(
        api: OrderApi, journal: Journal, stop_filled_while_away: bool) -> None:
    first = await started(make_broker(api, journal))
    try:
        entry, stop, tp = await bracketed_entry(first)
    finally:
        await first.aclose()  # the terminal quits: the stop stays at the exchange, the take-profit in the journal
    if stop_filled_while_away:
        api.engine.on_trade(SYM, D(97), D("0.01"))
    records = journal.restart_records()
    assert {o.id for o in records.open_orders} == {stop.id, tp.id}
    lookups_before = api.calls.copy()

    second = make_broker(api, journal)
    second.restore_ids([o.id for o in journal.recent_orders()], [f.id for f in records.fills])
    second.set_position(SYM, held(api, entry))  # what the desk does from the journal's positions
    second.restore_open_orders(records.open_orders)
    await started(second)
    try:
        start = journal.reconciliations()[-1]
        assert start.trigger == "start" and start.report["errors"] == [] and start.report["unknown_orders"] == []
        asked = api.calls - lookups_before
        assert asked["GET /api/v3/order"] == 1  # the stop, by its client id; the take-profit never
        stop2, tp2 = second.get(stop.id), second.get(tp.id)
        assert stop2 is not None and tp2 is not None
        if stop_filled_while_away:  # reconciliation recovers the stop's fill, which ends the take-profit
            assert (stop2.status, stop2.filled_qty) == (OrderStatus.FILLED, held(api, entry))
            assert tp2.status is OrderStatus.CANCELED and second.open_orders() == []
            assert second._positions[SYM] == 0
            return
        assert {o.id for o in second.open_orders()} == {stop.id, tp.id}
        assert stop2.status is OrderStatus.NEW and tp2.status is OrderStatus.NEW and tp2.exchange_id is None
        second.on_market([trade("103")])  # the restored take-profit works: stop canceled, exit sent
        await until(lambda: second._positions[SYM] == 0 and not second.open_orders(), "the exit")
        assert at_exchange(api, stop.id).status == "CANCELED"
        assert api.engine.balances(KEY)["BTC"].free == D(1)
        nxt = await second.submit(req(Side.BUY, "0.1", "90"))
        assert nxt.id == "T5"  # numbering carried on after T3-TP and the exit T4
    finally:
        await second.aclose()


async def restarted(api: OrderApi, journal: Journal, position: D, **kw: Any) -> LiveBroker:
    """A second broker on the same journal and account, restored as the session restores it."""
    records = journal.restart_records()
    again = make_broker(api, journal, **kw)
    again.restore_ids([o.id for o in journal.recent_orders()], [f.id for f in records.fills])
    again.set_position(SYM, position)
    again.restore_open_orders(records.open_orders)
    again.restore_bracket_orders(journal.bracket_orders())
    return await started(again)


def start_report(journal: Journal) -> dict[str, Any]:
    return next(r for r in journal.reconciliations() if r.trigger == "start").report


@pytest.mark.asyncio
@pytest.mark.parametrize("market", ["102", "103"])  # below the take-profit; at it
@pytest.mark.parametrize("cancel_journaled", [False, True])
async def test_a_crash_between_the_stops_cancel_and_the_take_profit_exit_is_made_safe_at_restart(
        api: OrderApi, journal: Journal, market: str, cancel_journaled: bool) -> None:
    first = await started(make_broker(api, journal))
    try:
        entry, stop, tp = await bracketed_entry(first)
    finally:
        await first.aclose()
    # The take-profit was reached: the stop was canceled at the exchange, and the terminal died before the exit.
    api.engine.cancel(KEY, SYM, client_id=stop.id)
    if cancel_journaled:  # the cancel's answer was journaled too; or the journal still says the stop works
        journal.record_order(dataclasses.replace(stop, status=OrderStatus.CANCELED,
                                                 reject_reason=f"canceled: the take-profit {tp.id} was reached"))
    got = held(api, entry)
    warnings: list[str] = []
    second = await restarted(api, journal, got, price_of=lambda _s: D(market), on_warning=warnings.append)
    try:
        (repair,) = start_report(journal)["bracket_repairs"]
        assert repair["entry"] == entry.id and repair["take_profit"] == tp.id
        warnings = [w for w in warnings if tp.id in w]  # the account's other coin is reported too
        assert len(warnings) == 1
        if market == "103":  # the market is at the take-profit: the exit goes now
            out = next(o for o in second.orders if o.request.type is OrderType.MARKET and o.request.side is Side.SELL)
            assert (out.status, out.filled_qty, out.request.parent_id) == (OrderStatus.FILLED, got, entry.id)
            assert second.get(tp.id).status is OrderStatus.CANCELED and second.open_orders() == []
            assert second._positions[SYM] == 0 and api.engine.open_orders(KEY, SYM) == []
            assert repair["action"] == "exit sent" and repair["exit"] == out.id and "exit" in warnings[0]
            return
        # below it: a new stop at the original price protects the position again; the take-profit stays held
        (again,) = [o for o in second.open_orders() if o.request.type is OrderType.STOP_MARKET]
        assert again.id != stop.id and again.exchange_id
        assert (again.request.qty, again.request.stop_price, again.request.parent_id) == (got, D(98), entry.id)
        ex = at_exchange(api, again.id)
        assert (ex.type, ex.qty, ex.stop_price, ex.status) == ("STOP_LOSS", got, D(98), "NEW")
        assert second.get(tp.id).status is OrderStatus.NEW
        assert repair["action"] == "stop placed" and repair["stop"] == again.id and "stop-loss" in warnings[0]
        second.on_market([trade("103")])  # the take-profit still works: the new stop canceled, the exit sent
        await until(lambda: second._positions[SYM] == 0 and not second.open_orders(), "the exit")
        assert at_exchange(api, again.id).status == "CANCELED"
    finally:
        await second.aclose()


@pytest.mark.asyncio
async def test_a_stop_already_at_the_exchange_is_never_doubled_by_the_restart_repair(api: OrderApi,
                                                                                      journal: Journal) -> None:
    first = await started(make_broker(api, journal))
    try:
        entry = await first.submit(req(Side.BUY, "0.5"))
    finally:
        await first.aclose()
    # The crash left the entry's legs unjournaled, but a stop for its coins rests at the exchange (placed by hand,
    # or by a terminal whose journal did not keep it): adopted at restart, it counts as the protection.
    with sqlite3.connect(journal.path) as conn:
        conn.execute("UPDATE orders SET stop_loss_pct = '2', take_profit_pct = '3' WHERE id = ?", (entry.id,))
    got = held(api, entry)
    api.engine.place(KEY, symbol=SYM, side="SELL", type="STOP_LOSS", quantity=got, stop_price=D(97),
                     client_id="by-hand-1")
    warnings: list[str] = []
    second = await restarted(api, journal, got, on_warning=warnings.append)
    try:
        assert [o.type for o in api.engine.open_orders(KEY, SYM)] == ["STOP_LOSS"]  # still one
        assert [o.request.origin for o in second.open_orders()] == [OrderOrigin.MANUAL]  # adopted; nothing held
        (repair,) = start_report(journal)["bracket_repairs"]
        assert repair["entry"] == entry.id and repair["action"] == "already protected"
        assert any(entry.id in w for w in warnings)
    finally:
        await second.aclose()


@pytest.mark.asyncio
async def test_a_stop_the_trader_canceled_is_not_put_back_by_a_reconciliation(broker: LiveBroker, api: OrderApi,
                                                                             journal: Journal) -> None:
    _, stop, tp = await bracketed_entry(broker)
    assert await broker.cancel(stop.id)  # his choice: the position without a stop, the take-profit still held
    rec = await broker.reconcile("reconnect")
    assert rec.bracket_repairs == [] and stop.reject_reason == "canceled by the trader"
    assert [o.id for o in broker.open_orders()] == [tp.id] and api.engine.open_orders(KEY, SYM) == []
    assert {o.id: o.reject_reason for o in journal.recent_orders()}[stop.id] == "canceled by the trader"
