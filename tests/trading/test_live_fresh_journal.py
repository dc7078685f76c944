"""``--exchange sim --live``: the built-in exchange's account lives as long as the exchange this run started, so
each run starts on a fresh live journal; the previous one is moved aside (replacing an older one) and the trader is
told. A real exchange's account persists, and so does its journal. The built-in exchange in-process, real ccxt."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from decimal import Decimal as D

import pytest

from app.config import Settings
from app.market.sim.markets import MultiMarket
from app.market.sim.order_api_setup import TradingSetup
from app.market.sim.server import ExchangeSimulator
from app.models import OrderOrigin, OrderRequest, OrderType, Side
from app.session import Session
from app.trading.live_broker import LiveEndpoints
from app.trading.live_start import connect_live, open_live
from tests.conftest import wait_until

SYMBOL = "BTCUSDT"
NOTE = ("The built-in exchange opens a new account each run: this run's live journal starts empty; the previous one "
        "is kept as journal-live-built-in.previous.sqlite.")


async def yes(_account, _label) -> bool:
    return True


def settings(tmp_path) -> Settings:
    return Settings(symbols=[SYMBOL], sim_process=False, sim_trades_per_s=100.0, history_bars=0,
                    journal_path=tmp_path / "journal.sqlite3", live_trading=True, decision_source="rules")


@contextlib.asynccontextmanager
async def run(tmp_path, start=None):
    """One terminal run: ``open_live`` starts the built-in exchange with a new account (or ``start`` is given)."""
    start = start if start is not None else await open_live(settings(tmp_path), yes)
    assert start.live, start.reason
    session = Session(settings(tmp_path), live=start)
    try:
        await session.start()
        yield session
    finally:
        await session.stop()


async def buy(session: Session, qty: str) -> None:
    desk = session.desk
    await wait_until(lambda: desk.last_price(SYMBOL) is not None, timeout=15, what="a last price")
    held = desk.portfolio.position(SYMBOL).qty
    assert (await desk.submit_manual(OrderRequest(SYMBOL, Side.BUY, OrderType.MARKET, D(qty),
                                                  origin=OrderOrigin.MANUAL))).ok
    order = desk.broker.orders[-1]
    await wait_until(lambda: not order.status.is_open and desk.portfolio.fills_applied > 0
                     and sum(f.qty for f in desk.journal.all_fills() if f.order_id == order.id) == D(qty),
                     timeout=10, what="the fill")
    # the coins the account got: a commission taken in the coin (as Binance does) is not held
    in_coin = sum((f.fee for f in desk.journal.all_fills() if f.order_id == order.id and f.fee_asset == "BTC"), D(0))
    assert desk.portfolio.position(SYMBOL).qty == held + D(qty) - in_coin


def fill_qty(path) -> D:
    """What the journal's fills bought (one order may fill at several levels)."""
    with sqlite3.connect(path) as conn:
        return sum((D(q) for (q,) in conn.execute("SELECT qty FROM fills")), D(0))


@pytest.mark.asyncio
async def test_each_built_in_live_run_starts_on_a_fresh_journal_and_keeps_the_previous_one(tmp_path, caplog):
    journal = tmp_path / "journal-live-built-in.sqlite"
    previous = tmp_path / "journal-live-built-in.previous.sqlite"
    async with run(tmp_path) as first:
        assert not any(NOTE in text for _ms, _level, text in first.desk.messages)  # nothing to move the first time
        await buy(first, "0.002")
    assert fill_qty(journal) == D("0.002")

    caplog.set_level(logging.INFO, logger="app.trading.live_start")
    async with run(tmp_path) as second:
        # The new account has no BTC: the earlier run's position is not restored onto it.
        assert second.journal.path == journal and second.desk.portfolio.position(SYMBOL).qty == 0
        assert second.desk.portfolio.cash == D("10000")
        assert ("info", NOTE) in [(level, text) for _ms, level, text in second.desk.messages]
        await buy(second, "0.001")
    assert NOTE in caplog.text
    assert fill_qty(previous) == D("0.002") and fill_qty(journal) == D("0.001")

    async with run(tmp_path):
        pass
    assert fill_qty(previous) == D("0.001") and fill_qty(journal) == 0  # the older one replaced
    assert {p.name for p in tmp_path.glob("journal-live-built-in*.sqlite")} == {journal.name, previous.name}


@pytest.mark.asyncio
async def test_an_account_that_outlives_the_run_keeps_its_journal(tmp_path):
    """The path every real exchange takes (connect_live, no exchange started by this run): the journal stays."""
    exchange = ExchangeSimulator(MultiMarket.for_symbols([SYMBOL], 100.0),
                                 trading=TradingSetup(keys={"k": "s"}, balances={"USDT": D("10000")}))
    await exchange.start()
    try:
        held = D(0)
        for qty in ("0.002", "0.001"):
            start = await connect_live(settings(tmp_path), yes, exchange="built-in", key="k", secret="s",
                                       testnet=False, endpoints=LiveEndpoints(exchange.trading_url,
                                                                              exchange.ws_api_url))
            assert start.notes == []
            async with run(tmp_path, start) as session:
                assert session.desk.portfolio.position(SYMBOL).qty == held  # restored: the account has it
                await buy(session, qty)
                held = session.desk.portfolio.position(SYMBOL).qty
    finally:
        await exchange.stop()
    assert fill_qty(tmp_path / "journal-live-built-in.sqlite") == D("0.003")
    assert not (tmp_path / "journal-live-built-in.previous.sqlite").exists()
