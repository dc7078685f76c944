"""LiveBroker end to end on loopback: the built-in exchange's trading API (a real aiohttp server, Binance's signing
and refusals, its user data stream), real ccxt, and a real SQLite journal recording every order, fill and
reconciliation exactly as the desk does. No test talks to a real exchange."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from decimal import Decimal as D
from typing import Any

import pytest
import pytest_asyncio

from app.market.instruments import Instruments
from app.market.sim.order_api import OrderApi
from app.models import OrderOrigin, OrderStatus, Side
from app.trading.journal import Journal
from app.trading.live_broker import LiveBroker, LiveBrokerError, LiveEndpoints
from tests.market.sim.fakes import order_api
from tests.trading.live_support import KEY, SECRET, SYM, make_broker, req, started, stream_caught_up, until


def api_balances(api: OrderApi) -> dict[str, D]:
    """The exchange's own books for the account: free + locked per asset, non-zero."""
    totals = {a: b.free + b.locked for a, b in api.engine.balances(KEY).items()}
    return {a: t for a, t in totals.items() if t}


def exchange_orders(api: OrderApi) -> list[Any]:
    return api.engine.all_orders(KEY, SYM)


# ----- connect ------------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_connect_proves_the_keys_and_loads_the_filters(api: OrderApi, journal: Journal) -> None:
    b = make_broker(api, journal)
    try:
        account = await b.connect()
        assert (account.exchange, account.testnet) == ("built-in", False)
        assert account.account.startswith("live…0001")
        assert account.balances == {"USDT": D(10_000), "BTC": D(1)}
        inst = b.instruments.get(SYM)
        assert (inst.tick_size, inst.lot_size, inst.min_notional, inst.from_exchange) == \
            (D("0.01"), D("0.00001"), D(5), True)
        assert b.label == "LIVE · built-in exchange" and b.mode == "LIVE"
    finally:
        await b.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize(("key", "secret", "words"), [
    (KEY, "not-the-secret", "signature: the API secret does not belong to this key"),
    ("someone-elses-key", SECRET, "rejected the API key: it is unknown"),
])
async def test_keys_the_exchange_rejects_fail_connect_with_a_sentence(api: OrderApi, journal: Journal, key: str,
                                                                      secret: str, words: str) -> None:
    b = make_broker(api, journal, key=key, secret=secret)
    with pytest.raises(LiveBrokerError) as info:
        await b.connect()
    text = str(info.value)
    assert text.startswith("built-in exchange: The exchange rejected") and words in text and text.endswith(".")
    assert "\n" not in text and "{" not in text
    await b.aclose()


@pytest.mark.asyncio
async def test_no_exchange_listening_is_a_sentence(journal: Journal) -> None:
    b = LiveBroker(exchange="built-in", api_key=KEY, secret=SECRET, testnet=False, instruments=Instruments(),
                   endpoints=LiveEndpoints("http://127.0.0.1:9", "ws://127.0.0.1:9/ws-api/v3"), id_prefix="T")
    with pytest.raises(LiveBrokerError, match=r"^built-in exchange: The exchange could not be reached"):
        await b.connect()
    await b.aclose()


# ----- orders -------------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_filled_market_order(broker: LiveBroker, api: OrderApi, journal: Journal) -> None:
    order = await broker.submit(req(Side.BUY, "1.5"))  # walks 1 @ 100 and 0.5 @ 101
    assert order.status is OrderStatus.FILLED and order.filled_qty == D("1.5")
    assert order.avg_price == D("100.33333333") and order.exchange_id is not None
    assert order.fees == D("0.1505")  # 0.1 % of 150.5 USDT, in USDT
    (at_exchange,) = exchange_orders(api)
    assert (at_exchange.client_id, str(at_exchange.order_id)) == (order.id, order.exchange_id)
    await stream_caught_up(broker, api)
    fills = journal.all_fills()
    assert [(f.qty, f.price) for f in fills] == [(D(1), D(100)), (D("0.5"), D(101))]
    assert all(f.id.startswith("built-in:") and f.order_id == order.id for f in fills)
    (recorded,) = journal.recent_orders()
    assert (recorded.status, recorded.exchange_id, recorded.filled_qty) == (OrderStatus.FILLED, order.exchange_id,
                                                                           D("1.5"))
    assert broker.counters.fills == 2 and broker.counters.orders_sent == 1
    # each fill's commission exactly as the exchange charged it, in its asset (the quote, or the coin a buy got)
    charged = {f"built-in:{t.trade_id}": (t.commission, t.commission_asset) for t in api.engine.my_trades(KEY, SYM)}
    assert {f.id: (f.fee, f.fee_asset) for f in fills} == charged
    in_base = sum((f.fee for f in fills if f.fee_asset == "BTC"), D(0))
    in_quote = sum((f.fee for f in fills if f.fee_asset in (None, "USDT")), D(0))
    assert in_base + in_quote > 0
    assert broker.balances["BTC"] == D("2.5") - in_base
    assert broker.balances["USDT"] == D("10000") - D("150.5") - in_quote
    assert broker.balances == api_balances(api)


@pytest.mark.asyncio
async def test_a_resting_limit_fills_from_the_user_stream(broker: LiveBroker, api: OrderApi,
                                                         journal: Journal) -> None:
    order = await broker.submit(req(Side.SELL, "0.5", "120"))
    assert order.status is OrderStatus.NEW and broker.open_orders(SYM) == [order]
    assert journal.open_orders()[0].exchange_id == order.exchange_id is not None
    seen: list[str] = []
    broker.add_listener(lambda o: seen.append(f"order {o.status.value}"), lambda f: seen.append("fill"))
    api.engine.on_trade(SYM, D("120.5"), D("1"))  # the market trades through it
    await until(lambda: order.status is OrderStatus.FILLED, "the fill from the stream")
    assert seen == ["fill", "order FILLED"]  # the fill before the order update it causes
    assert (order.filled_qty, order.avg_price) == (D("0.5"), D("120"))
    assert journal.all_fills()[0].liquidity.value == "MAKER"
    assert broker.open_orders() == []


@pytest.mark.asyncio
async def test_a_partially_filled_order(broker: LiveBroker, api: OrderApi, journal: Journal) -> None:
    limit = await broker.submit(req(Side.BUY, "2", "100"))  # 1 @ 100 taken, 1 rests
    assert limit.status is OrderStatus.PARTIALLY_FILLED and limit.filled_qty == D(1)
    assert broker.open_orders() == [limit]
    assert await broker.cancel(limit.id)
    assert limit.status is OrderStatus.CANCELED and limit.filled_qty == D(1)
    market = await broker.submit(req(Side.BUY, "5"))  # the book holds 1 @ 100 and 2 @ 101: the rest expires
    assert market.status is OrderStatus.CANCELED and market.filled_qty == D(3)
    assert market.reject_reason == "the exchange filled 3 of 5; the rest expired"
    await stream_caught_up(broker, api)
    assert [f.qty for f in journal.all_fills()] == [D(1), D(1), D(2)]
    statuses = {o.id: o.status for o in journal.recent_orders()}
    assert statuses == {limit.id: OrderStatus.CANCELED, market.id: OrderStatus.CANCELED}


@pytest.mark.asyncio
async def test_insufficient_balance_is_rejected_with_the_sentence(broker: LiveBroker, api: OrderApi,
                                                                 journal: Journal) -> None:
    order = await broker.submit(req(Side.BUY, "200", "90"))  # 18,000 USDT of 10,000
    assert order.status is OrderStatus.REJECTED
    assert order.reject_reason == "The exchange refused the order: the account does not have enough free USDT for it."
    sell = await broker.submit(req(Side.SELL, "3"))
    assert sell.reject_reason is not None and "enough free BTC" in sell.reject_reason
    assert exchange_orders(api) == [] and broker.open_orders() == []
    assert [o.status for o in journal.recent_orders()] == [OrderStatus.REJECTED] * 2
    assert broker.counters.orders_rejected == 2


@pytest.mark.asyncio
async def test_filters_round_what_rounding_fixes_and_refuse_what_it_cannot(broker: LiveBroker,
                                                                           api: OrderApi) -> None:
    rounded = await broker.submit(req(Side.BUY, "0.1234567", "90.009"))
    assert rounded.status is OrderStatus.NEW
    assert (rounded.request.qty, rounded.request.limit_price) == (D("0.12345"), D("90.00"))  # lot down, tick down
    (at_exchange,) = exchange_orders(api)
    assert (at_exchange.qty, at_exchange.price) == (D("0.12345"), D("90.00"))
    # below the minimum value at its own price: refused here, never sent
    small = await broker.submit(req(Side.BUY, "0.01", "90"))
    assert small.status is OrderStatus.REJECTED
    assert small.reject_reason == "order value 0.90 USDT is below the minimum 5.00 USDT for BTCUSDT"
    # a market order's value is the exchange's to judge (no price given to the broker): its NOTIONAL rule, named
    market = await broker.submit(req(Side.BUY, "0.01"))
    assert market.status is OrderStatus.REJECTED
    assert market.reject_reason is not None and "(NOTIONAL rule)" in market.reject_reason
    dust = await broker.submit(req(Side.BUY, "0.000001", "90"))  # rounds to zero lots
    assert dust.reject_reason is not None and dust.reject_reason.startswith("quantity 0 BTC is not positive")
    assert len(exchange_orders(api)) == 1


# ----- a lost answer, a restart -------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_order_in_flight_when_the_connection_drops_is_found_by_client_id(
        broker: LiveBroker, api: OrderApi, journal: Journal) -> None:
    api.drop_next_response("/api/v3/order")  # the exchange places it, the answer never comes back
    order = await broker.submit(req(Side.BUY, "0.5", "90"))
    assert order.status is OrderStatus.NEW and order.exchange_id is not None
    (at_exchange,) = exchange_orders(api)  # exactly one: never sent twice
    assert at_exchange.client_id == order.id and at_exchange.status == "NEW"
    # a market order whose answer is lost filled at the exchange: its fills are recovered, once
    api.drop_next_response("/api/v3/order")
    market = await broker.submit(req(Side.BUY, "1.5"))
    assert market.status is OrderStatus.FILLED and market.filled_qty == D("1.5")
    assert len(exchange_orders(api)) == 2
    await stream_caught_up(broker, api)
    assert len(journal.all_fills()) == 2 and len({f.id for f in journal.all_fills()}) == 2
    in_flight = [r for r in journal.reconciliations() if r.trigger == "in-flight"]
    assert len(in_flight) == 2 and all(r.count("orders_updated") == 1 for r in in_flight)
    assert broker.counters.in_flight_lookups == 2


@pytest_asyncio.fixture
async def quick_broker(api: OrderApi, journal: Journal) -> AsyncIterator[LiveBroker]:
    """A broker whose requests the exchange refuses 1.5 s after their timestamp (recvWindow): a lost order is
    concluded sooner."""
    b = await started(make_broker(api, journal, recv_window_ms=1500))
    try:
        yield b
    finally:
        await b.aclose()


@pytest.mark.asyncio
async def test_an_order_that_never_reached_the_exchange_is_rejected_as_never_placed(
        quick_broker: LiveBroker, api: OrderApi, monkeypatch: pytest.MonkeyPatch) -> None:
    import ccxt

    broker = quick_broker

    async def lost(*args: Any, **kwargs: Any) -> Any:
        raise ccxt.NetworkError("binance POST order: connection reset before the request was sent")

    monkeypatch.setattr(broker._client, "create_order", lost)  # the request never leaves
    order = await broker.submit(req(Side.BUY, "0.5", "90"))
    assert order.status is OrderStatus.REJECTED
    assert order.reject_reason == ("the exchange never received it (The exchange could not be reached (network "
                                   "error)); nothing was placed")
    assert exchange_orders(api) == []


@pytest.mark.asyncio
@pytest.mark.parametrize("fill_ids_given", [True, False])
async def test_a_restart_with_open_orders_recovers_the_fills_made_while_away(api: OrderApi, journal: Journal,
                                                                            fill_ids_given: bool) -> None:
    first = await started(make_broker(api, journal))
    sell = await first.submit(req(Side.SELL, "0.5", "120"))
    buy = await first.submit(req(Side.BUY, "1", "95"))
    api.engine.on_trade(SYM, D("121"), D("0.1"))  # the sell fills in part while the terminal runs
    await until(lambda: len(journal.all_fills()) == 1, "the first fill")
    await first.aclose()  # the terminal quits; both orders stay at the exchange
    api.engine.on_trade(SYM, D("121"), D("0.2"))  # while away: the sell fills more ...
    api.engine.on_trade(SYM, D("122"), D("1"))  # ... then in full
    manual = api.engine.place(KEY, symbol=SYM, side="BUY", type="LIMIT", quantity=D("0.1"), price=D("80"),
                              tif="GTC", client_id="web_manual1")  # placed on the exchange's website
    records = journal.restart_records()
    assert {o.id for o in records.open_orders} == {sell.id, buy.id}

    second = make_broker(api, journal)
    # without the journal's fill ids, the restored order's filled quantity tells which trades it already holds
    second.restore_ids([o.id for o in journal.recent_orders()], [f.id for f in records.fills] if fill_ids_given
                       else [])
    second.restore_open_orders(records.open_orders)
    await second.connect()
    await second.start()
    try:
        start = journal.reconciliations()[0]
        assert start.trigger == "start"
        assert start.count("fills_recovered") == 2 and start.count("orders_updated") == 1
        assert [u["id"] for u in start.report["unknown_orders"]] == [f"built-in-{manual.order_id}"]
        assert start.report["balance_differences"] == [] and start.report["errors"] == []
        by_id = {o.id: o for o in journal.recent_orders()}
        assert (by_id[sell.id].status, by_id[sell.id].filled_qty) == (OrderStatus.FILLED, D("0.5"))
        assert by_id[buy.id].status is OrderStatus.NEW
        adopted = by_id[f"built-in-{manual.order_id}"]
        assert (adopted.request.origin.value, adopted.request.limit_price, adopted.status) == \
            ("MANUAL", D("80"), OrderStatus.NEW)
        assert {o.id for o in second.open_orders()} == {buy.id, adopted.id}
        # a second look finds nothing new: no fill twice, no order adopted twice
        again = await second.reconcile("check")
        assert again.clean
        assert len(journal.all_fills()) == 3 == len({f.id for f in journal.all_fills()})
        assert sum(f.qty for f in journal.all_fills()) == D("0.5") and second.counters.errors == 0
        # numbering carries on after the journal's ids
        nxt = await second.submit(req(Side.BUY, "0.1", "90"))
        assert nxt.id == "T3"
    finally:
        await second.aclose()


@pytest.mark.asyncio
async def test_a_restart_skips_exactly_the_journaled_fills_when_a_later_one_is_journaled_and_an_earlier_not(
        api: OrderApi, journal: Journal) -> None:
    """A crash can leave the journal holding an order's later trade without an earlier one (journaled from the
    stream before the earlier one was recovered over REST): the journal's fill ids say which trades it holds, not
    the order's filled quantity taken from the exchange's earliest trades."""
    first = await started(make_broker(api, journal))
    sell = await first.submit(req(Side.SELL, "0.5", "120"))
    api.engine.on_trade(SYM, D("121"), D("0.1"))  # T1
    api.engine.on_trade(SYM, D("121"), D("0.2"))  # T2
    await until(lambda: len(journal.all_fills()) == 2, "both fills journaled")
    await first.aclose()
    t1, t2 = (f"built-in:{t.trade_id}" for t in api.engine.my_trades(KEY, SYM))
    # the crash: T2 and the order update it caused are in the journal, T1 is not
    with sqlite3.connect(journal.path) as conn:
        conn.execute("DELETE FROM fills WHERE id = ?", (t1,))
        conn.execute("UPDATE orders SET filled_qty = '0.2', avg_price = '121' WHERE id = ?", (sell.id,))
    records = journal.restart_records()
    assert [f.id for f in records.fills] == [t2]
    (restored,) = records.open_orders
    assert restored.filled_qty == D("0.2")

    second = make_broker(api, journal)
    second.restore_ids([o.id for o in journal.recent_orders()], [f.id for f in records.fills])
    second.restore_open_orders(records.open_orders)
    await second.connect()
    await second.start()
    try:
        start = journal.reconciliations()[0]
        assert [f["id"] for f in start.report["fills_recovered"]] == [t1] and start.report["errors"] == []
        assert second.counters.errors == 0
        assert sorted(f.id for f in journal.all_fills()) == sorted([t1, t2])
        assert sum(f.qty for f in journal.all_fills()) == D("0.3")
        assert second.get(sell.id).filled_qty == D("0.3")
    finally:
        await second.aclose()


@pytest.mark.asyncio
async def test_a_cut_user_stream_reconnects_and_reconciles(broker: LiveBroker, api: OrderApi,
                                                          journal: Journal) -> None:
    order = await broker.submit(req(Side.SELL, "0.5", "120"))
    api.drop_user_streams()
    await until(lambda: broker.counters.stream_reconnects >= 1, "the reconnect")
    api.engine.on_trade(SYM, D("125"), D("1"))  # maybe while the stream is down: either way it arrives once
    await until(lambda: order.status is OrderStatus.FILLED, "the fill")
    await until(lambda: any(r.trigger == "reconnect" for r in journal.reconciliations()), "the reconciliation")
    assert len(journal.all_fills()) == 1


# ----- the kill switch ----------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_cancel_all_cancels_every_open_order_at_the_exchange_and_reports_refusals(
        broker: LiveBroker, api: OrderApi, journal: Journal, monkeypatch: pytest.MonkeyPatch) -> None:
    a = await broker.submit(req(Side.BUY, "0.5", "90"))
    b = await broker.submit(req(Side.SELL, "0.5", "130"))
    c = await broker.submit(req(Side.SELL, "0.2", "125"))
    api.engine.place(KEY, symbol=SYM, side="BUY", type="LIMIT", quantity=D("0.1"), price=D("80"), tif="GTC",
                     client_id="web_manual2")  # not ours: canceled too
    listed = broker._client.fetch_open_orders

    async def listed_then_filled(*args: Any, **kwargs: Any) -> Any:
        out = await listed(*args, **kwargs)
        api.engine.on_trade(SYM, D("126"), D("1"))  # c fills between the listing and its cancel
        return out

    monkeypatch.setattr(broker._client, "fetch_open_orders", listed_then_filled)
    report = await broker.cancel_all(SYM)
    monkeypatch.undo()
    # c filled between the listing and its cancel (-2011 unknown order): asked what it became, it is no refusal
    assert (report.canceled, report.refused) == (3, ())
    assert c.status is OrderStatus.FILLED and c.filled_qty == D("0.2")
    assert api.engine.open_orders(KEY, SYM) == []
    assert (a.status, b.status) == (OrderStatus.CANCELED, OrderStatus.CANCELED)
    assert broker.open_orders() == []
    assert broker.counters.cancel_refusals == 0
    (recorded,) = [o for o in journal.recent_orders() if o.id == c.id]
    assert recorded.status is OrderStatus.FILLED


# ----- commissions in the coin, closing orders ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_closing_order_never_sells_more_than_the_account_holds(journal: Journal) -> None:
    """Binance charges a buy's commission in the coin: a buy of 1 holds 0.999. The portfolio (from the journal's
    fills) and the broker say what the account holds, and flatten sells exactly that (asking for more would be
    refused whole for balance)."""
    async with order_api(KEY, SECRET, {"USDT": D(1000)}) as api:  # no coins before this session
        b = await started(make_broker(api, journal))
        try:
            await _flatten_what_is_held(b, api, journal)
        finally:
            await b.aclose()


async def _flatten_what_is_held(b: LiveBroker, api: OrderApi, journal: Journal) -> None:
    from app.trading.portfolio import Portfolio

    bought = await b.submit(req(Side.BUY, "1"))
    assert bought.status is OrderStatus.FILLED
    await until(lambda: b.counters.fills == 1, "the fill")
    holds = api.engine.balances(KEY)["BTC"].free  # 0.999 when the commission was in BTC
    pf = Portfolio(starting_cash=D(1000))
    for f in journal.all_fills():
        pf.apply_fill(f)
    assert pf.position(SYM).qty == holds == b.closable(SYM, Side.SELL)
    flat = await b.submit(req(Side.SELL, "1", origin=OrderOrigin.FLATTEN))  # the position as asked: 1
    assert flat.status is OrderStatus.FILLED and flat.filled_qty == holds
    assert api.engine.balances(KEY)["BTC"].free == 0
