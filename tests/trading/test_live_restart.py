"""Restarting a live session: nothing the journal holds open is canceled by the terminal (an order in flight at the
quit may have filled at the exchange meanwhile; an order on a symbol no longer traded still works there); every
open order goes to the broker, whose reconciliation asks the exchange; no fill is counted twice. The built-in
exchange in-process with its trading API on loopback, outliving both sessions as a real exchange would; real ccxt,
real SQLite."""

from __future__ import annotations

import contextlib
import sqlite3
from decimal import Decimal as D

import pytest

from app.config import Settings
from app.market.sim.markets import MultiMarket
from app.market.sim.order_api_setup import TradingSetup
from app.market.sim.server import ExchangeSimulator
from app.models import Order, OrderOrigin, OrderRequest, OrderStatus, OrderType, Side
from app.session import Session
from app.trading.journal import Journal
from app.trading.live_broker import LiveEndpoints
from app.trading.live_exchange import make_client
from app.trading.live_start import connect_live
from tests.conftest import wait_until

BTC, ETH = "BTCUSDT", "ETHUSDT"
KEY, SECRET = "restart-key", "restart-secret"


async def yes(_account, _label) -> bool:
    return True


@contextlib.asynccontextmanager
async def live_session(tmp_path, exchange: ExchangeSimulator, symbols: list[str]):
    s = Settings(symbols=symbols, sim_process=False, history_bars=0, journal_path=tmp_path / "journal.sqlite3",
                 live_trading=True, decision_source="rules")
    start = await connect_live(s, yes, exchange="built-in", key=KEY, secret=SECRET, testnet=False,
                               endpoints=LiveEndpoints(exchange.trading_url, exchange.ws_api_url), started=exchange)
    assert start.live, start.reason
    session = Session(s, live=start)
    try:
        await session.start()  # returns once the broker's first reconciliation has run
        yield session
    finally:
        session.simulator = None  # the exchange outlives the session: the next one trades on the same account
        await session.stop()


def rows(journal, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(journal) as conn:
        return conn.execute(sql, args).fetchall()


@pytest.mark.asyncio
async def test_a_live_restart_settles_orders_in_flight_and_elsewhere_with_the_exchange_and_counts_each_fill_once(
        tmp_path):
    exchange = ExchangeSimulator(MultiMarket.for_symbols([BTC, ETH], 100.0),
                                 trading=TradingSetup(keys={KEY: SECRET}, balances={"USDT": D("10000")}))
    await exchange.start()
    try:
        # ----- the first session: a market buy filled, a limit resting far below the market
        async with live_session(tmp_path, exchange, [BTC]) as first:
            desk = first.desk
            await wait_until(lambda: desk.last_price(BTC) is not None, timeout=15, what="a last price")
            bought = await desk.submit_manual(OrderRequest(BTC, Side.BUY, OrderType.MARKET, D("0.002"),
                                                           origin=OrderOrigin.MANUAL))
            assert bought.ok, bought.message
            await wait_until(lambda: desk.broker.get(bought.order_id).status is OrderStatus.FILLED, timeout=10,
                             what="the market buy filled")
            low = (desk.last_price(BTC) * D("0.96")).quantize(D("0.01"))
            resting = await desk.submit_manual(OrderRequest(BTC, Side.BUY, OrderType.LIMIT, D("0.001"),
                                                            limit_price=low, origin=OrderOrigin.MANUAL))
            assert resting.ok, resting.message
            await wait_until(lambda: bool(desk.broker.get(resting.order_id).exchange_id), timeout=10,
                             what="the limit at the exchange")
            in_flight_id = f"{desk.broker.id_prefix}900"
            journal = first.journal.path
        # The crash lost the market buy's last order update: its fills are journaled, the order row still says NEW
        # without an exchange id (written before it was sent), as a crash between the fill and the update leaves it.
        bought_fills = rows(journal, "SELECT id, qty FROM fills WHERE order_id = ?", bought.order_id)
        assert bought_fills
        with sqlite3.connect(journal) as conn:
            conn.execute("UPDATE orders SET status = 'NEW', filled_qty = '0', avg_price = NULL, fees = '0', "
                         "exchange_id = NULL WHERE id = ?", (bought.order_id,))
        # A second market buy was journaled and sent as the terminal quit: the exchange filled it, no answer came.
        with Journal(journal) as j:
            j.record_order(Order(in_flight_id, OrderRequest(BTC, Side.BUY, OrderType.MARKET, D("0.001"),
                                                            origin=OrderOrigin.MANUAL),
                                 OrderStatus.NEW, created_ms=1, updated_ms=1))
        client = make_client("built-in", KEY, SECRET, testnet=False, rest=exchange.trading_url,
                             ws_api=exchange.ws_api_url)
        try:
            await client.load_markets()
            sent = await client.create_order("BTC/USDT", "market", "buy", 0.001, None,
                                             {"newClientOrderId": in_flight_id})
            assert sent["status"] == "closed"
            away_trades = await client.fetch_my_trades("BTC/USDT", None, None, {"orderId": sent["id"]})
        finally:
            await client.close()
        assert away_trades

        # ----- the restart, trading only ETH now: the BTC limit is on a symbol no longer traded
        async with live_session(tmp_path, exchange, [ETH]) as second:
            desk, broker = second.desk, second.desk.broker
            await wait_until(lambda: broker.get(bought.order_id).status is OrderStatus.FILLED
                             and broker.get(in_flight_id).status is OrderStatus.FILLED, timeout=10,
                             what="both market buys settled by the exchange")
            # The limit still works at the exchange and here: not canceled, not adopted as a stranger.
            limit = broker.get(resting.order_id)
            assert limit is not None and limit.status is OrderStatus.NEW and limit.exchange_id
            assert [o.id for o in broker.open_orders()] == [resting.order_id]
            assert broker.counters.orders_adopted == 0
            # Every fill once: the journaled ones never again, the one made while away recovered.
            qty = D("0.002") + D("0.001")
            in_coin = sum((D(r[0]) for r in rows(journal, "SELECT fee FROM fills WHERE fee_asset = 'BTC'")), D(0))
            assert desk.portfolio.position(BTC).qty == qty - in_coin  # a commission taken in the coin is gone
            assert broker.counters.fills_recovered == len(away_trades)
            assert broker.get(bought.order_id).filled_qty == D("0.002")
            assert broker.get(in_flight_id).filled_qty == D("0.001") and broker.get(in_flight_id).exchange_id
            # The cash is the account's: the fill made while away is in the balance the session started from.
            assert desk.portfolio.cash == broker.balances["USDT"]
    finally:
        await exchange.stop()

    statuses = dict(rows(journal, "SELECT id, status FROM orders"))
    assert statuses == {bought.order_id: "FILLED", in_flight_id: "FILLED", resting.order_id: "NEW"}
    fills = rows(journal, "SELECT id, order_id, qty FROM fills ORDER BY seq")
    assert [f[0] for f in fills if f[1] == in_flight_id] == [f"built-in:{t['id']}" for t in away_trades]
    assert [(f[0], f[2]) for f in fills if f[1] == bought.order_id] == bought_fills
    assert sum(D(f[2]) for f in fills) == qty
    assert rows(journal, "SELECT COUNT(*) FROM reconciliations WHERE trigger = 'start'") == [(2,)]  # one a session


@pytest.mark.asyncio
async def test_a_crash_between_an_entrys_fill_and_its_stop_places_the_legs_at_restart_and_never_twice(tmp_path):
    exchange = ExchangeSimulator(MultiMarket.for_symbols([BTC], 100.0),
                                 trading=TradingSetup(keys={KEY: SECRET}, balances={"USDT": D("10000")}))
    await exchange.start()
    engine = exchange.trading.engine

    def stops_at_exchange() -> list:
        return [o for o in engine.all_orders(KEY, BTC) if o.type == "STOP_LOSS"]

    try:
        async with live_session(tmp_path, exchange, [BTC]) as first:
            desk = first.desk
            await wait_until(lambda: desk.last_price(BTC) is not None, timeout=15, what="a last price")
            entry = await desk.submit_manual(OrderRequest(BTC, Side.BUY, OrderType.MARKET, D("0.01"),
                                                          origin=OrderOrigin.MANUAL))
            assert entry.ok, entry.message
            await wait_until(lambda: desk.broker.get(entry.order_id).status is OrderStatus.FILLED, timeout=10,
                             what="the entry filled")
            avg = desk.broker.get(entry.order_id).avg_price
            journal = first.journal.path
        # The crash came after the entry's fill was journaled and before its legs were placed: the journal holds a
        # done entry with a stop-loss and a take-profit, and no leg of it; the exchange holds no stop.
        with sqlite3.connect(journal) as conn:
            conn.execute("UPDATE orders SET stop_loss_pct = '5', take_profit_pct = '5' WHERE id = ?",
                         (entry.order_id,))
        assert stops_at_exchange() == []

        async with live_session(tmp_path, exchange, [BTC]) as second:
            broker = second.desk.broker
            legs = {o.request.type: o for o in broker.open_orders(BTC)}
            stop, tp = legs[OrderType.STOP_MARKET], legs[OrderType.LIMIT]
            held = second.desk.portfolio.position(BTC).qty
            (ex,) = stops_at_exchange()
            assert (ex.client_id, ex.status, ex.qty) == (stop.id, "NEW", held)
            assert stop.request.parent_id == tp.request.parent_id == entry.order_id
            assert stop.request.stop_price == (avg * D("0.95")).quantize(D("0.01"))
            assert tp.id.endswith("-TP") and tp.request.qty == held
            start = next(r for r in second.journal.reconciliations() if r.trigger == "start")
            (found,) = start.report["bracket_repairs"]
            assert found["entry"] == entry.order_id and found["stop"] == stop.id and found["take_profit"] == tp.id
            assert any(level == "warn" and entry.order_id in text and "stop-loss" in text
                       for _, level, text in second.desk.messages)

        async with live_session(tmp_path, exchange, [BTC]) as third:  # a further restart finds the legs working
            assert {o.id for o in third.desk.broker.open_orders(BTC)} == {stop.id, tp.id}
            start = next(r for r in third.journal.reconciliations() if r.trigger == "start")
            assert start.report.get("bracket_repairs", []) == []
        assert len(stops_at_exchange()) == 1
    finally:
        await exchange.stop()
