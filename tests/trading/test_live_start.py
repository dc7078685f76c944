"""Choosing the broker before the session: paper unless live was asked for, the exchange took the keys and the trader
confirmed; every other outcome is paper with the reason. Against the real built-in exchange (its trading API on
loopback, in-process here) and real ccxt; no test talks to a real exchange."""

from __future__ import annotations

import contextlib
import sqlite3
from decimal import Decimal as D

import pytest

from app.config import Settings
from app.market.sim.markets import MultiMarket
from app.market.sim.order_api_setup import TradingSetup
from app.market.sim.server import ExchangeSimulator
from app.models import OrderOrigin, OrderRequest, OrderStatus, OrderType, Side
from app.secrets import Secrets
from app.session import Session
from app.trading.live_broker import LiveEndpoints
from app.trading.live_start import connect_live, live_journal_path, open_live
from tests.conftest import wait_until

SYMBOL = "BTCUSDT"


def settings(tmp_path, **kw) -> Settings:
    return Settings(**{"symbols": [SYMBOL], "sim_process": False, "sim_trades_per_s": 100.0, "history_bars": 0,
                       "journal_path": tmp_path / "journal.sqlite3", "live_trading": True, "decision_source": "rules",
                       **kw})


class Asked:
    """The confirmation: answers ``yes`` and remembers what it was shown."""

    def __init__(self, yes: bool) -> None:
        self.yes = yes
        self.shown: list[tuple[object, str]] = []

    async def __call__(self, account, label: str) -> bool:
        self.shown.append((account, label))
        return self.yes


@pytest.mark.asyncio
async def test_without_keys_live_binance_stays_paper_and_says_which_keys_are_missing(tmp_path):
    asked = Asked(True)
    start = await open_live(settings(tmp_path, exchange="binance"), asked, secrets=Secrets(env={}))
    assert not start.live and start.exchange is None and not asked.shown  # nothing to confirm: never connected
    assert start.reason == ("No Binance API key and secret: set BINANCE_API_KEY and BINANCE_API_SECRET in the "
                            "environment or store them in the OS keyring (binance_api_key, binance_api_secret). "
                            "Trading on PAPER.")


@pytest.mark.asyncio
async def test_futures_are_not_traded_live(tmp_path):
    start = await open_live(settings(tmp_path, exchange="binance-futures"), Asked(True), secrets=Secrets(env={}))
    assert not start.live and "spot markets" in start.reason and start.reason.endswith("Trading on PAPER.")


@pytest.mark.asyncio
@pytest.mark.parametrize(("key", "secret"), [("good-key", "not-the-secret"), ("unknown-key", "good-secret")])
async def test_keys_the_built_in_exchange_rejects_leave_the_terminal_in_paper_with_the_reason(tmp_path, key, secret):
    exchange = ExchangeSimulator(MultiMarket.for_symbols([SYMBOL], 50.0),
                                 trading=TradingSetup(keys={"good-key": "good-secret"}))
    await exchange.start()
    asked = Asked(True)
    try:
        start = await connect_live(settings(tmp_path), asked, exchange="built-in", key=key, secret=secret,
                                   testnet=False, endpoints=LiveEndpoints(exchange.trading_url, exchange.ws_api_url))
    finally:
        await exchange.stop()
    assert not start.live and not asked.shown
    assert start.reason.startswith("Live trading on the built-in exchange is not possible: ")
    assert "key" in start.reason.lower() and start.reason.endswith("Trading on PAPER."), start.reason
    assert key not in start.reason and secret not in start.reason


@pytest.mark.asyncio
async def test_declined_at_the_confirmation_stays_paper_and_keeps_the_exchange_it_started(tmp_path):
    asked = Asked(False)
    start = await open_live(settings(tmp_path), asked)
    session = Session(settings(tmp_path), live=start)
    try:
        assert not start.live and start.reason == "Live trading on the built-in exchange was not confirmed. " \
                                                  "Trading on PAPER."
        account, label = asked.shown[0]
        assert label == "LIVE · built-in exchange" and account.exchange == "built-in" and account.account
        # The play account is the paper account's money and none of the coins: nothing for reconciliation to report.
        assert account.balances == {"USDT": D(10_000)}
        assert start.exchange is not None and start.exchange.ws_url  # the session uses it for market data
        assert session.desk.broker.mode == "PAPER" and session.simulator is start.exchange
        assert session.journal.path == tmp_path / "journal.sqlite3"  # the paper journal
        assert any(start.reason in text for _ms, _level, text in session.desk.messages)
    finally:
        await session.stop()  # stops the exchange it was handed


def test_a_live_session_keeps_its_own_journal_beside_the_paper_one_unless_one_is_named(tmp_path):
    s = settings(tmp_path)
    assert live_journal_path(s, "binance", True, False) == tmp_path / "journal-live-binance-testnet.sqlite"
    assert live_journal_path(s, "binance", False, False) == tmp_path / "journal-live-binance.sqlite"
    assert live_journal_path(s, "built-in", False, False) == tmp_path / "journal-live-built-in.sqlite"
    assert live_journal_path(s, "binance", True, True) == tmp_path / "journal.sqlite3"  # --journal FILE names it


@contextlib.asynccontextmanager
async def live_session(tmp_path, child: bool = False):
    """Live on the built-in exchange, confirmed; ``child``: the exchange in its own process, as the terminal runs
    it (its key pair travels in the child's environment)."""
    s = settings(tmp_path, sim_process=child)
    asked = Asked(True)
    start = await open_live(s, asked)
    assert start.live, start.reason
    session = Session(s, live=start)
    try:
        await session.start()
        await wait_until(lambda: session.desk.last_price(SYMBOL) is not None, timeout=15, what="a last price")
        yield session
    finally:
        await session.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize("child", [False, True], ids=["in-process", "child-process"])
async def test_confirmed_the_desk_trades_at_the_built_in_exchange_on_the_live_journal(tmp_path, child):
    async with live_session(tmp_path, child) as session:
        desk = session.desk
        assert session.is_live and session.broker_label == "LIVE · built-in exchange"
        assert session.journal.path == tmp_path / "journal-live-built-in.sqlite"
        assert session.paper_broker is None
        # The account's cash is the portfolio's (10,000 USDT: the exchange funds it with starting_cash).
        assert desk.portfolio.cash == D("10000")
        # Rounded to the lot before risk and the exchange see it: 0.0012345 BTC is sent as 0.00123.
        sent = await desk.submit_manual(OrderRequest(SYMBOL, Side.BUY, OrderType.MARKET, D("0.0012345"),
                                                     origin=OrderOrigin.MANUAL))
        assert sent.ok, sent.message
        await wait_until(lambda: held(desk, sent.order_id) == D("0.00123") and
                         desk.portfolio.position(SYMBOL).qty == held(desk, sent.order_id, net=True), timeout=10,
                         what="the fill")
        order = desk.broker.get(sent.order_id)
        assert order.status is OrderStatus.FILLED and order.exchange_id
        journal = session.journal.path
    with sqlite3.connect(journal) as conn:
        rows = conn.execute("SELECT id, status, exchange_id FROM orders").fetchall()
        fills = conn.execute("SELECT id, order_id FROM fills").fetchall()
    assert rows == [(sent.order_id, "FILLED", order.exchange_id)]
    assert fills and all(fid.startswith("built-in:") and oid == sent.order_id for fid, oid in fills)
    assert not (tmp_path / "journal.sqlite3").exists()  # the paper journal is untouched


def held(desk, order_id: str, *, net: bool = False) -> D:
    """What an order's journaled fills bought; ``net``: less a commission the exchange took in the coin (Binance
    charges a buy in the base asset), i.e. what the account holds from it."""
    fills = [f for f in desk.journal.all_fills() if f.order_id == order_id]
    return sum((f.qty - (f.fee if net and f.fee_asset == "BTC" else 0) for f in fills), D(0))


@pytest.mark.asyncio
async def test_the_kill_switch_cancels_at_the_exchange_flattens_and_reports_what_it_refused(tmp_path):
    async with live_session(tmp_path) as session:
        desk = session.desk
        price = desk.last_price(SYMBOL)
        bought = await desk.submit_manual(OrderRequest(SYMBOL, Side.BUY, OrderType.MARKET, D("0.001")))
        assert bought.ok
        await wait_until(lambda: held(desk, bought.order_id) == D("0.001") and
                         desk.portfolio.position(SYMBOL).qty == held(desk, bought.order_id, net=True), timeout=10,
                         what="the fill")
        low = (price * D("0.97")).quantize(D("0.01"))
        resting = [await desk.submit_manual(OrderRequest(SYMBOL, Side.BUY, OrderType.LIMIT, D("0.001"),
                                                         limit_price=low - i)) for i in range(2)]
        assert all(r.ok for r in resting)
        await wait_until(lambda: len(desk.broker.open_orders(SYMBOL)) == 2, timeout=10, what="two resting orders")
        # The exchange cuts the answer to the next cancel (the client retries it and hears "unknown order"): the
        # broker asks what became of that order, finds it canceled, and reports no refusal.
        api = session.simulator.trading.api
        api.drop_next_response("/api/v3/order")
        result = await desk.kill_switch()
        assert result.ok and "KILL SWITCH: halted, 2 orders canceled" in result.message, result.message
        assert "refused" not in result.message
        # flat down to the lot: a commission taken in the coin can leave dust no order may sell (as on Binance)
        lot = desk.broker.instruments.get(SYMBOL).lot_size
        await wait_until(lambda: 0 <= desk.portfolio.position(SYMBOL).qty < lot, timeout=10, what="flattened")
        assert desk.risk.state.value == "HALTED"
