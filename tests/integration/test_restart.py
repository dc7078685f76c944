"""A restarted terminal carries on: positions, open orders, fill history, the kill switch and the day's PnL come back
from the journal; orders and proposals a crash left open end in a final state."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from app.config import Settings
from app.llm.schema import Action, CacheStatus, Decision, DecisionBody, DecisionMeta
from app.models import Fill, Liquidity, Order, OrderOrigin, OrderRequest, OrderStatus, OrderType, Side
from app.session import Session
from app.trading.journal import Journal
from app.trading.proposals import ProposalStatus
from app.trading.restore import MARKET_IN_FLIGHT, PENDING_AT_QUIT, PENDING_AT_RESTART, SYMBOL_NOT_TRADED
from app.trading.risk import RiskState
from tests.conftest import wait_until


async def started(journal) -> Session:
    session = Session(Settings(sim_trades_per_s=100.0, history_bars=30, journal_path=journal))
    await session.start()
    desk = session.desk
    await wait_until(lambda: desk.last_price("BTCUSDT") is not None and desk.books["BTCUSDT"].has_snapshot,
                     timeout=15, what="prices and a book")
    return session


@pytest.mark.asyncio
async def test_positions_open_orders_and_fills_survive_a_restart(tmp_path):
    journal = tmp_path / "journal.sqlite3"
    first = await started(journal)
    try:
        desk = first.desk
        result = await desk.submit_manual(OrderRequest("BTCUSDT", Side.BUY, OrderType.MARKET, Decimal("0.01"),
                                                       origin=OrderOrigin.MANUAL))
        assert result.ok, result.message
        await wait_until(lambda: desk.portfolio.position("BTCUSDT").qty == Decimal("0.01"), what="the fill")
        below = (desk.last_price("BTCUSDT") * Decimal("0.98")).quantize(Decimal("0.01"))
        result = await desk.submit_manual(OrderRequest("BTCUSDT", Side.BUY, OrderType.LIMIT, Decimal("0.002"),
                                                       limit_price=below, origin=OrderOrigin.MANUAL))
        assert result.ok, result.message
        await wait_until(lambda: len(desk.broker.open_orders("BTCUSDT")) == 1, what="a resting order")
        position = desk.portfolio.position("BTCUSDT")
        cash = desk.portfolio.cash
        resting = desk.broker.open_orders("BTCUSDT")[0]
        fills = list(desk.fills)
    finally:
        await first.stop()

    second = await started(journal)
    try:
        desk = second.desk
        again = desk.portfolio.position("BTCUSDT")
        assert (again.qty, again.avg_price, again.realized_pnl) == (position.qty, position.avg_price,
                                                                     position.realized_pnl)
        assert desk.portfolio.cash == cash
        (restored,) = desk.broker.open_orders("BTCUSDT")
        assert restored.id == resting.id and restored.request.limit_price == below
        assert [f.id for f in desk.fills] == [f.id for f in fills]
        # The run's own counts (the smoke test's) start at zero; what came back is counted apart.
        assert (desk.orders_sent, desk.fills_this_run) == (0, 0)
        assert (desk.orders_restored, desk.fills_restored) == (1, len(fills))
        # New ids never collide with the previous session's.
        result = await desk.submit_manual(OrderRequest("BTCUSDT", Side.SELL, OrderType.MARKET, Decimal("0.01"),
                                                       origin=OrderOrigin.MANUAL))
        assert result.ok and result.order_id not in {resting.id, *(f.order_id for f in fills)}
        await wait_until(lambda: desk.portfolio.position("BTCUSDT").qty == 0, what="flat again")
        assert desk.orders_sent == 1 and desk.fills_this_run >= 1
    finally:
        await second.stop()


# ----- what a restart must not forget (the session's own restore path, on hand-written journals) -----------------

DAY_MS = 86_400_000


def now_ms() -> int:
    return int(time.time() * 1000)


def restarted(journal: Path, **settings: object) -> Session:
    """The session a restart builds (nothing started: restore happens when it is made)."""
    return Session(Settings(journal_path=journal, symbols=["BTCUSDT"], **settings))  # type: ignore[arg-type]


def filled_buy(j: Journal, oid: str, qty: str, price: str, fee: str, ms: int) -> None:
    order = Order(oid, OrderRequest("BTCUSDT", Side.BUY, OrderType.MARKET, Decimal(qty), origin=OrderOrigin.MANUAL),
                  OrderStatus.NEW, created_ms=ms, updated_ms=ms)
    j.record_order(order)
    j.record_fill(Fill(f"F{oid}", oid, "BTCUSDT", Side.BUY, Decimal(qty), Decimal(price), Decimal(fee),
                       Liquidity.TAKER, ms))
    j.record_order(replace(order, status=OrderStatus.FILLED, filled_qty=Decimal(qty), avg_price=Decimal(price),
                           fees=Decimal(fee)))


@pytest.mark.asyncio
async def test_the_kill_switch_survives_a_restart_until_the_trader_resumes(tmp_path):
    journal = tmp_path / "journal.sqlite3"
    with Journal(journal) as j:
        j.record_risk_event(now_ms() - 2_000, "KILL", "kill_switch", "kill switch: cancel all, flatten, halt")
        j.record_risk_event(now_ms() - 1_000, "VETO", "HALTED", "trading is halted")
    session = restarted(journal)
    try:
        assert session.desk.risk.state is RiskState.HALTED
        session.desk.resume()
    finally:
        await session.stop()
    session = restarted(journal)
    try:
        assert session.desk.risk.state is RiskState.ACTIVE
    finally:
        await session.stop()


@pytest.mark.asyncio
async def test_the_days_pnl_and_the_loss_limit_carry_on_across_a_restart(tmp_path):
    journal = tmp_path / "journal.sqlite3"
    today = now_ms() - now_ms() % DAY_MS
    with Journal(journal) as j:
        filled_buy(j, "O1", "0.1", "60000", "6", today - DAY_MS)  # yesterday: cash 10000 - 6006
        # Today the day started at 9994 and the price fell to 54000: equity 9394, the day's PnL -600.
        j.record_balance(today + 1, Decimal("3994"), Decimal("9394"), {"BTCUSDT": (Decimal("0.1"), Decimal("60000"))},
                         day_start_ms=today, day_start_equity=Decimal("9994"), marks={"BTCUSDT": Decimal("54000")})
    session = restarted(journal, starting_cash=Decimal("10000"), daily_loss_limit=Decimal("500"))
    try:
        desk = session.desk
        assert desk.portfolio.day_pnl(now_ms()) == Decimal("-600")
        assert desk.risk.state is RiskState.REDUCING  # the loss limit is still breached: only reducing orders pass
    finally:
        await session.stop()


@pytest.mark.asyncio
async def test_orders_in_flight_at_a_crash_end_canceled_in_the_journal_and_are_counted_right(tmp_path, caplog):
    journal = tmp_path / "journal.sqlite3"
    t = now_ms() - 5_000

    def new(oid: str, type_: OrderType, symbol: str = "BTCUSDT", status: OrderStatus = OrderStatus.NEW) -> Order:
        limit = Decimal("50000") if type_ is OrderType.LIMIT else None
        req = OrderRequest(symbol, Side.BUY, type_, Decimal("0.01"), limit_price=limit, origin=OrderOrigin.MANUAL)
        return Order(oid, req, status, created_ms=t, updated_ms=t)

    with Journal(journal) as j:
        for order in (new("M1", OrderType.MARKET), new("M2", OrderType.MARKET, status=OrderStatus.PARTIALLY_FILLED),
                      new("L1", OrderType.LIMIT), new("L2", OrderType.LIMIT, symbol="DOGEUSDT")):
            j.record_order(order)
    with caplog.at_level(logging.INFO, logger="app.session"):
        session = restarted(journal)
    try:
        assert [o.id for o in session.desk.broker.open_orders()] == ["L1"]
        assert "1 open orders" in caplog.text
    finally:
        await session.stop()
    with Journal(journal) as j:
        final = {o.id: (o.status, o.reject_reason) for o in j.recent_orders()}
    assert final == {
        "M1": (OrderStatus.CANCELED, MARKET_IN_FLIGHT),
        "M2": (OrderStatus.CANCELED, MARKET_IN_FLIGHT),
        "L1": (OrderStatus.NEW, None),  # working again
        "L2": (OrderStatus.CANCELED, SYMBOL_NOT_TRADED),
    }


@pytest.mark.asyncio
async def test_pending_proposals_expire_at_restart_and_at_quit(tmp_path):
    journal = tmp_path / "journal.sqlite3"
    decision = Decision(
        symbol="BTCUSDT", timeframe="1m", state_ms=now_ms(),
        body=DecisionBody(action=Action.BUY, size_pct=1.0, stop_loss_pct=1.0, take_profit_pct=2.0, confidence=0.8,
                          rationale="test"),
        meta=DecisionMeta(provider="offline", model="rules", prompt_version="v1", cache_status=CacheStatus.OFFLINE),
    )
    with Journal(journal) as j:
        j.record_proposal("left-by-a-crash", decision, None, now_ms() - 1_000, now_ms() + 29_000)
    session = restarted(journal)
    try:
        shown = session.desk.on_decision(decision.model_copy(update={"state_ms": now_ms() + 1}), None)
        assert shown is not None
    finally:
        await session.stop()  # the trader quits with the new proposal still on screen
    assert shown.status is ProposalStatus.EXPIRED
    with Journal(journal) as j:
        reviews = {p.id: (p.status, p.review.kind, p.review.reason) for p in j.proposals()}  # type: ignore[union-attr]
    assert reviews == {
        "left-by-a-crash": ("EXPIRED", "EXPIRED", PENDING_AT_RESTART),
        shown.id: ("EXPIRED", "EXPIRED", PENDING_AT_QUIT),
    }
