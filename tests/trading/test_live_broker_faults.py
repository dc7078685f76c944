"""LiveBroker when things go wrong, on loopback (the built-in exchange's trading API, real ccxt, a real SQLite
journal): an order whose request has not arrived while the kill switch runs, an answer lost near the recvWindow,
an exchange that never acknowledges the user stream, a stream that keeps dropping, a journal that refuses an order,
amounts ccxt must not round through a float, coins the session did not buy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal as D
from typing import Any

import ccxt
import pytest
import pytest_asyncio
from aiohttp import web

from app.market.sim.order_api import OrderApi
from app.models import Order, OrderRequest, OrderStatus, OrderType, Side
from app.trading.exchange_errors import is_uncertain
from app.trading.journal import Journal
from app.trading.live_broker import LiveBrokerError
from tests.market.sim.fakes import order_api
from tests.trading.live_support import KEY, SECRET, SYM, make_broker, req, started, until

# ----- C: the kill switch and an order whose request has not arrived yet ---------------------------------------------


@pytest.mark.asyncio
async def test_the_kill_switch_waits_for_an_order_in_flight_then_cancels_it(api: OrderApi, journal: Journal,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    b = await started(make_broker(api, journal))
    try:
        gate = asyncio.Event()
        real_create = b._client.create_order

        async def on_the_wire(*args: Any, **kwargs: Any) -> Any:
            await gate.wait()  # the request is on its way: the exchange has not seen it yet
            return await real_create(*args, **kwargs)

        monkeypatch.setattr(b._client, "create_order", on_the_wire)
        submit = asyncio.create_task(b.submit(req(Side.BUY, "0.5", "90")))
        await until(lambda: len(b.open_orders()) == 1, "the order registered")
        (order,) = b.open_orders()
        rec = await b.reconcile("check")  # the exchange answers -2013 for it: not a conclusion while it is awaited
        assert order.status is OrderStatus.NEW and order.reject_reason is None
        assert [u["id"] for u in rec.unresolved] == [order.id] and rec.orders_updated == []
        kill = asyncio.create_task(b.cancel_all(SYM))
        await until(lambda: kill.done() or b.counters.kill_waits == 1, "the kill switch waiting for the answer")
        api.drop_next_response("/api/v3/order")  # when it arrives, its answer is lost too
        gate.set()
        report = await kill
        await submit
        assert api.engine.open_orders(KEY, SYM) == []  # nothing left at the exchange
        (at_exchange,) = api.engine.all_orders(KEY, SYM)
        assert at_exchange.client_id == order.id and at_exchange.status == "CANCELED"
        assert (report.canceled, report.refused) == (1, ())
        assert order.status is OrderStatus.CANCELED and order.exchange_id == str(at_exchange.order_id)
    finally:
        await b.aclose()


# ----- D: "never placed" only once the exchange would refuse the request ---------------------------------------------


@pytest.mark.parametrize("exc", [
    ccxt.OperationFailed('binance {"code":-1006,"msg":"An unexpected response was received from the message bus. '
                         'Execution status unknown."}'),
    ccxt.BadResponse('binance {"code":-1006,"msg":"An unexpected response was received from the message bus. '
                     'Execution status unknown."}'),
    ccxt.RequestTimeout('binance {"code":-1007,"msg":"Timeout waiting for response from backend server. Send status '
                        'unknown; execution status unknown."}'),
    ccxt.ExchangeError('binance {"code":-1007,"msg":"Timeout waiting for response from backend server."}'),
])
def test_execution_status_unknown_is_uncertain_whatever_the_class(exc: Exception) -> None:
    assert is_uncertain(exc)


@pytest.mark.asyncio
async def test_a_lost_order_is_not_concluded_while_its_request_may_still_arrive(
        api: OrderApi, journal: Journal, monkeypatch: pytest.MonkeyPatch) -> None:
    """The request left, no answer came, and the exchange does not have it yet: Binance would still take it until
    its timestamp + recvWindow. Arriving late, it is found; the broker never sends it again."""
    b = await started(make_broker(api, journal, recv_window_ms=5000))
    try:
        async def lost(*args: Any, **kwargs: Any) -> Any:
            raise ccxt.NetworkError("binance POST order: connection reset")

        monkeypatch.setattr(b._client, "create_order", lost)
        submit = asyncio.create_task(b.submit(req(Side.BUY, "0.5", "90")))
        await until(lambda: api.calls["GET /api/v3/order"] >= 3 or submit.done(), "three lookups by client id")
        order = next(o for o in b.orders)
        assert order.status is OrderStatus.NEW, order.reject_reason  # not concluded: the window is still open
        late = api.engine.place(KEY, symbol=SYM, side="BUY", type="LIMIT", quantity=D("0.5"), price=D("90"),
                                tif="GTC", client_id=order.id)  # the request arrives late
        await submit
        assert order.status is OrderStatus.NEW and order.exchange_id == str(late.order_id)
        assert api.calls["POST /api/v3/order"] == 0  # never sent again (the first never left)
        assert order.id not in {o.id for o in journal.recent_orders() if o.status is OrderStatus.REJECTED}
    finally:
        await b.aclose()


# ----- F: bounded start, stream state, faults, back-off ---------------------------------------------------------------


@pytest_asyncio.fixture
async def silent_ws_api() -> AsyncIterator[str]:
    """A WebSocket API that accepts the connection and never answers (a stalled exchange)."""
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_get("/ws-api/v3", handler)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"ws://127.0.0.1:{port}/ws-api/v3"
    finally:
        await runner.cleanup()


@pytest.mark.asyncio
async def test_a_user_stream_never_acknowledged_does_not_hold_start(api: OrderApi, journal: Journal,
                                                                   silent_ws_api: str) -> None:
    b = make_broker(api, journal, ws_api=silent_ws_api, timeout_ms=1000)
    try:
        await b.connect()
        assert b.stream_up is False and b.stream_down_since_ms is None  # not started: nothing to say yet
        await asyncio.wait_for(b.start(), 30)  # returns after the REST reconciliation, without the stream
        assert b.stream_up is False and b.stream_down_since_ms is not None
        assert journal.reconciliations()[0].trigger == "start (no user stream)"
        assert b.counters.stream_reconnects >= 1
    finally:
        await b.aclose()


@pytest.mark.asyncio
async def test_start_raises_a_sentence_when_the_first_reconciliation_cannot_finish(api: OrderApi,
                                                                                   journal: Journal) -> None:
    b = make_broker(api, journal, start_timeout_s=0.5)
    try:
        await b.connect()
        api.delay_next_response("/api/v3/openOrders", 5.0)  # the exchange is stuck on the listing
        with pytest.raises(LiveBrokerError, match=r"^built-in exchange did not let the live broker compare .* "
                                                  r"within 0\.5 s"):
            await b.start()
    finally:
        await b.aclose()


@pytest.mark.asyncio
async def test_a_task_that_fails_is_logged_counted_and_reported(api: OrderApi, journal: Journal) -> None:
    faults: list[tuple[str, BaseException]] = []
    b = await started(make_broker(api, journal, on_fault=lambda name, exc: faults.append((name, exc))))
    try:
        async def broken() -> None:
            raise RuntimeError("a bug in a broker task")

        b._spawn(broken(), "live-test-task")
        await until(lambda: faults, "the fault reported")
        ((name, exc),) = faults
        assert name == "live-test-task" and str(exc) == "a bug in a broker task"
        assert b.counters.task_faults == 1
        b._supervisor.cancel()  # cancelled is not a fault  # type: ignore[union-attr]
        await asyncio.sleep(0)
        assert b.counters.task_faults == 1
    finally:
        await b.aclose()


@pytest.mark.asyncio
async def test_the_back_off_grows_while_the_stream_keeps_dropping(api: OrderApi, journal: Journal,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("app.trading.live_stream.BACKOFF_S", (0.01, 0.02, 0.03, 0.04))
    b = await started(make_broker(api, journal))
    try:
        assert b.stream_up and b.stream_down_since_ms is None
        for n in (1, 2, 3):  # each drop right after the reconnect's reconciliation: not a stable stream
            api.drop_user_streams()
            await until(lambda n=n: b.counters.stream_reconnects == n, "the drop seen")
            await until(lambda n=n: b.stream_up and b.counters.reconciliations == n + 1, "the reconnect")
        assert b.stream_failures_in_a_row == 3  # a reconciliation does not reset the back-off
    finally:
        await b.aclose()


# ----- G: exact amounts to ccxt ---------------------------------------------------------------------------------------

PEPE_INFO: dict[str, Any] = {
    "symbol": "PEPEUSDT", "status": "TRADING", "baseAsset": "PEPE", "quoteAsset": "USDT", "filters": [
        {"filterType": "PRICE_FILTER", "minPrice": "0.00000001", "maxPrice": "1000.00000000", "tickSize": "0.00000001"},
        {"filterType": "LOT_SIZE", "minQty": "0.00000001", "maxQty": "90000000000.00000000",
         "stepSize": "0.00000001"},
        {"filterType": "NOTIONAL", "minNotional": "1.00000000", "applyMinToMarket": True},
    ]}


@pytest.mark.asyncio
async def test_a_quantity_a_float_cannot_hold_reaches_the_exchange_exactly(journal: Journal) -> None:
    qty = D("98765432.12345671")  # as a float: 98765432.12345672
    assert D(repr(float(qty))) != qty
    async with order_api(KEY, SECRET, {"USDT": D(1_000_000)}, symbol_info=PEPE_INFO) as api:
        b = await started(make_broker(api, journal, symbols=("PEPEUSDT",)))
        try:
            order = await b.submit(OrderRequest("PEPEUSDT", Side.BUY, OrderType.LIMIT, qty,
                                                limit_price=D("0.00001234")))
            assert order.status is OrderStatus.NEW, order.reject_reason
            (at_exchange,) = api.engine.all_orders(KEY, "PEPEUSDT")
            assert (at_exchange.qty, at_exchange.price) == (qty, D("0.00001234"))
        finally:
            await b.aclose()


# ----- H: an order the journal did not take is not sent --------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_order_the_journal_refuses_is_never_sent(api: OrderApi, journal: Journal) -> None:
    earlier = Order("T1", OrderRequest(SYM, Side.SELL, OrderType.LIMIT, D("9"), limit_price=D("500")),
                    OrderStatus.CANCELED, created_ms=1, updated_ms=1)
    journal.record_order(earlier)  # another session's T1: this broker was not told (no restore_ids)
    b = await started(make_broker(api, journal))
    try:
        order = await b.submit(req(Side.BUY, "0.5", "90"))
        assert order.id == "T1" and order.status is OrderStatus.REJECTED
        assert order.reject_reason is not None and order.reject_reason.startswith(
            "not sent: the journal could not record it")
        assert api.engine.all_orders(KEY, SYM) == [] and api.calls["POST /api/v3/order"] == 0
        assert b.counters.listener_errors >= 1 and b.counters.orders_sent == 0
    finally:
        await b.aclose()


# ----- I: the session's position against the account's coins ---------------------------------------------------------


@pytest.mark.asyncio
async def test_a_position_that_differs_from_the_accounts_coins_is_reported(api: OrderApi, journal: Journal) -> None:
    warnings: list[str] = []
    b = await started(make_broker(api, journal, on_warning=warnings.append))
    try:
        start = journal.reconciliations()[0]
        (gap,) = start.report["position_differences"]  # coins held before the session
        assert (gap["symbol"], D(gap["position"]), D(gap["account"]), D(gap["difference"])) == (SYM, 0, 1, 1)
        assert len(warnings) == 1 and "the account holds 1 BTC" in warnings[0]
        bought = await b.submit(req(Side.BUY, "0.5"))
        await until(lambda: b.counters.fills == 1 and not bought.status.is_open, "the fill")
        again = await b.reconcile("check")  # the session's fills explain the change: nothing new to say
        assert again.clean and len(warnings) == 1
        assert again.position_differences[0]["difference"] == D(1)
        free = api.engine.balances(KEY)["BTC"].free
        api.engine.open_account(KEY, {"BTC": free - D("0.25")})  # withdrawn on the exchange's website
        later = await b.reconcile("check")
        assert not later.clean and len(warnings) == 2 and "not from this terminal's fills" in warnings[1]
        assert later.position_differences[0]["difference"] == D("0.75")
    finally:
        await b.aclose()
